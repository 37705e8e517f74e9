"""Exceptions raised at the toolkit's boundaries.

Every error a user can provoke (bad arguments, files, instrument replies, limits) is a
``DevmodelError`` whose message is one sentence naming the file, field or command; the CLI prints it
and exits non-zero without a traceback.
"""


class DevmodelError(Exception):
    """A user-facing error: the message is the whole story."""


class LimitError(DevmodelError):
    """A request that would exceed a declared safety limit of the chip; nothing was sent."""


class SessionFileError(DevmodelError):
    """A session file that is missing, foreign, truncated or from an unknown schema version."""


class ChipURLError(DevmodelError):
    """A chip URL that names no known backend or carries invalid options."""
