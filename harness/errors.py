"""One exception type whose message is the one-line error a user sees."""


class HarnessError(Exception):
    """A user-facing fault: ``str(err)`` names the file (or item) and the fault."""


def one_line(err: BaseException, limit: int = 200, with_type: bool = False) -> str:
    """A foreign exception's message on one line (whitespace collapsed, at most ``limit``
    characters), for ``HarnessError(f"{path}: ... ({one_line(err)})")``; its type name
    when it has no message, prefixed with ``with_type``."""
    text = " ".join(str(err).split())[:limit]
    if not text:
        return type(err).__name__
    return f"{type(err).__name__}: {text}" if with_type else text
