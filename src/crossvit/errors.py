"""The one error type for a bad config key, file or argument; entry scripts print it without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

OOM_FIX = (
    "lower data.batch_size (trainer.accumulate_grad_batches=N keeps the global batch), use "
    "trainer.precision=bf16-mixed, or choose a smaller model="
)


class ConfigError(ValueError):
    """Something the user asked for cannot work; the message names the key or file and the fix."""


@contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Print a ConfigError, or running out of memory, as one line and exit with status 2; others pass through.

    A ConfigError raised inside a wrapper (hydra.utils.instantiate re-raises as InstantiationException) or in a
    DataLoader worker counts too.
    """
    try:
        yield
    except Exception as e:
        where = out_of_memory(e)
        if where:
            print(f"error: out of {where} memory during the run; {OOM_FIX}", file=sys.stderr)
            sys.exit(2)
        error = e if isinstance(e, ConfigError) else e.__cause__
        if not isinstance(error, ConfigError):
            raise
        message = str(error)
        if "Original Traceback" in message:  # raised in a DataLoader worker: the message carries its traceback
            message = message.rstrip().splitlines()[-1].partition(f"{type(error).__name__}: ")[2] or message
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def out_of_memory(e: BaseException) -> str | None:
    """'GPU' or 'host' when `e` is an allocation failure of the device's memory, else None."""
    if isinstance(e, torch.OutOfMemoryError):
        return "GPU"
    if isinstance(e, RuntimeError) and "can't allocate memory" in str(e):  # the CPU allocator's own words
        return "host"
    return None


def check_one_batch(images: int, devices: int, batch_size: int, what: str, fix: str) -> None:
    """Refuse a training set that gives no full batch per device (training drops the last, partial batch)."""
    if images // devices < batch_size:
        raise ConfigError(
            f"{what} leave {images} training images, not one batch of data.batch_size={batch_size} per device on "
            f"{devices} device(s); {fix}"
        )
