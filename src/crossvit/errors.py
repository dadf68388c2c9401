"""The one error type for a bad config key, file or argument; entry scripts print it without a traceback."""


class ConfigError(ValueError):
    """Something the user asked for cannot work; the message names the key or file and the fix."""
