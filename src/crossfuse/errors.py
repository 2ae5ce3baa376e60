"""Errors that reach the user as one line and exit status 2."""


class CrossfuseError(Exception):
    """Bad input or a refused request: the message names the file, field or modality and the problem.

    The command line prints ``str(error)`` on one line and exits with status 2; library callers can
    catch it like any exception.
    """


class DataError(CrossfuseError, ValueError):
    """A dataset file is missing, corrupt or malformed (a ``ValueError``, as Python and scikit-learn
    call bad input values, so that code written for them catches it)."""


class ConfigError(CrossfuseError, ValueError):
    """A configuration value or option is unknown or invalid (a ``ValueError`` too)."""
