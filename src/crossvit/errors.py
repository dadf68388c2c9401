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

    A ConfigError raised inside a wrapper (hydra.utils.instantiate re-raises as InstantiationException) counts too.
    """
    try:
        yield
    except Exception as e:
        error = e if isinstance(e, ConfigError) else e.__cause__
        if not isinstance(error, ConfigError):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
