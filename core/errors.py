"""The one exception type that the command line turns into a one-line message and exit code 2."""


class PhysadvError(Exception):
    """A user-facing error: bad input, a missing file, an unknown key.

    The message must name the culprit (file, field or value) and say what to do.
    """
