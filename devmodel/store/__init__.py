"""The session file (docs/architecture.md, seam 2): one HDF5 file per characterisation session.

The only thing fitters read. One reader (:class:`SessionFile`, :func:`read_session`), one schema
(:mod:`devmodel.store.schema`), two writers behind one protocol (:class:`SessionSink`): the plain
:class:`SessionWriter` and the crash-safe :class:`DurableSessionWriter`; CSV tables land in the same
schema (:mod:`devmodel.store.table_import`). Format: docs/session-format.md. :func:`open_xarray`
gives a session as an xarray Dataset (:mod:`devmodel.store.xarray_view`; xarray is optional and
imported only when it is called).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from devmodel.store.durable import DurableSessionWriter, sidecar
from devmodel.store.reader import Session, SessionFile, read_session
from devmodel.store.schema import SCHEMA, SCHEMA_VERSION, StopReason, sha256_of
from devmodel.store.writer import Checkpointing, SessionSink, SessionWriter

if TYPE_CHECKING:
    import xarray

__all__ = ["SCHEMA", "SCHEMA_VERSION", "Checkpointing", "DurableSessionWriter", "Session", "SessionFile",
           "SessionSink", "SessionWriter", "StopReason", "open_xarray", "read_session", "sha256_of",
           "sidecar"]


def open_xarray(path_or_session: str | Path | Session) -> xarray.Dataset:
    """A session file (or loaded :class:`Session`) as an :class:`xarray.Dataset` with units as
    attributes (docs/session-format.md, "As xarray"); see :func:`devmodel.store.xarray_view.open_xarray`.
    xarray is imported here, not when :mod:`devmodel.store` is."""
    from devmodel.store.xarray_view import open_xarray as _open_xarray

    return _open_xarray(path_or_session)
