"""The one error type for a bad config key, file or argument; entry scripts print it without a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


class ConfigError(ValueError):
    """Something the user asked for cannot work; the message names the key or file and the fix."""


@contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Print a ConfigError as one line and exit with status 2; other exceptions pass through untouched.

    A ConfigError raised inside a wrapper (hydra.utils.instantiate re-raises as InstantiationException) or in a
    DataLoader worker counts too.
    """
    try:
        yield
    except Exception as e:
        error = e if isinstance(e, ConfigError) else e.__cause__
        if not isinstance(error, ConfigError):
            raise
        message = str(error)
        if "Original Traceback" in message:  # raised in a DataLoader worker: the message carries its traceback
            message = message.rstrip().splitlines()[-1].partition(f"{type(error).__name__}: ")[2] or message
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def check_one_batch(images: int, devices: int, batch_size: int, what: str, fix: str) -> None:
    """Refuse a training set that gives no full batch per device (training drops the last, partial batch)."""
    if images // devices < batch_size:
        raise ConfigError(
            f"{what} leave {images} training images, not one batch of data.batch_size={batch_size} per device on "
            f"{devices} device(s); {fix}"
        )
