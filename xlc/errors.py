"""The one exception type xlc raises for problems a user can fix."""


class XlcError(Exception):
    """A user-facing error: the message names the problem and the fix."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name when the message is empty."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
