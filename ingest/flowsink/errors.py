"""Errors a user can fix (bad configuration, unreachable services): printed as one line, never a traceback."""


class UserError(Exception):
    """A problem with the user's input or environment; ``flowsink`` prints ``flowsink: error: <message>``."""


class ConfigError(UserError):
    """The configuration is invalid; the message names the key and the value."""
