"""One exception type whose message is the one-line error a user sees."""


class HarnessError(Exception):
    """A user-facing fault: ``str(err)`` names the file (or item) and the fault."""
