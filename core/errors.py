"""The one exception type that means "the user gave us something we cannot use".

The CLI turns a `UserError` into one line on stderr and exit code 2; anything else is an
internal failure (exit code 1).
"""


class UserError(Exception):
    """Bad input: a missing or corrupt file, an invalid config value, a refused overwrite."""
