"""The one exception type users see for bad input: printed as a single line, before any compute."""


class SparqError(Exception):
    """Bad input: unknown option, value out of range, missing file, corrupt checkpoint."""


class ConfigError(SparqError):
    """A config key has a value that is not allowed. The message names the key and the options."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}")
