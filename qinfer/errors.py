"""Exceptions that carry a message meant for the user.

The CLI prints `QinferError` messages as one line and exits 1; anything else
is a bug and keeps its traceback.
"""


class QinferError(Exception):
    """Base class: bad input or an unsupported request, explained in the message."""


class FormatError(QinferError):
    """A file is not what it claims to be (corrupt, truncated, lying header)."""


class UnsupportedError(QinferError):
    """Valid input that qinfer does not handle (architecture, type, feature)."""
