"""One error type for everything a user can get wrong; the CLI prints it as one line."""


class SafetuneError(Exception):
    """A problem with the user's input or environment, stated with the path and the fix."""
