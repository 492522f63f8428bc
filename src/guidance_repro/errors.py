"""The one exception type the CLI turns into a one-line error message."""


class ReproError(Exception):
    """A user-facing error: bad input, a missing file, a wrong config value.

    The message must name the culprit (a file path or a config key); the CLI prints it on one line
    as ``error: <message>`` and exits with status 2, leaving no output that looks complete.
    """
