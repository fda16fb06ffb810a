"""The one exception type the command line turns into a one-line error and exit code 2."""


class ReplicationError(Exception):
    """Bad input or a missing resource, stated in one line that names the culprit."""
