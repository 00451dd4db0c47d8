"""The one exception type xlc raises for problems a user can fix."""


class XlcError(Exception):
    """A user-facing error: the message names the problem and the fix."""
