"""The session file (docs/architecture.md, seam 2): one HDF5 file per characterisation session.

The only thing fitters read. One reader (:class:`SessionFile`, :func:`read_session`), one schema
(:mod:`devmodel.store.schema`), two writers behind one protocol (:class:`SessionSink`): the plain
:class:`SessionWriter` and the crash-safe :class:`DurableSessionWriter`; CSV tables land in the same
schema (:mod:`devmodel.store.table_import`). Format: docs/session-format.md.
"""

from devmodel.store.durable import DurableSessionWriter, sidecar
from devmodel.store.reader import Session, SessionFile, read_session
from devmodel.store.schema import SCHEMA, SCHEMA_VERSION, StopReason, sha256_of
from devmodel.store.writer import Checkpointing, SessionSink, SessionWriter

__all__ = ["SCHEMA", "SCHEMA_VERSION", "Checkpointing", "DurableSessionWriter", "Session", "SessionFile",
           "SessionSink", "SessionWriter", "StopReason", "read_session", "sha256_of", "sidecar"]
