"""Writing session files: the protocol every writer implements, and the plain incremental writer.

:class:`SessionSink` is what the procedures write through (levels, devices, bursts, ground truth,
appended reads and trace rows, attributes, the final status). Two writers implement it: the plain
:class:`SessionWriter` here, and the crash-safe :class:`~devmodel.store.durable.DurableSessionWriter`,
which also implements :class:`Checkpointing` (commits at the procedures' safe points, resume state,
chip journal). A procedure asks ``isinstance(writer, Checkpointing)``, never probes for methods.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import h5py
import numpy as np

from devmodel.errors import SessionFileError, quiet_stderr
from devmodel.store.schema import (
    BURST_COLUMNS,
    COMPRESSION,
    DEVICE_COLUMNS,
    STOP_REASONS,
    TABLES,
    append_rows,
    header_attrs,
    provenance,
    to_json,
    utc_now,
)

_CHUNK_ROWS = 1 << 16
#: Appended rows are buffered and written in blocks: at this many rows, or after this much wall time.
_FLUSH_ROWS = 1 << 16
_FLUSH_S = 2.0


@runtime_checkable
class SessionSink(Protocol):
    """What procedures write a session through (both writers)."""

    path: Path

    def write_levels(self, targets_us: np.ndarray) -> None: ...

    def write_devices(self, columns: dict[str, np.ndarray]) -> None: ...

    def write_bursts(self, columns: dict[str, np.ndarray]) -> None: ...

    def write_ground_truth(self, truth: dict, rows_addresses: np.ndarray) -> None: ...

    def append(self, table: str, columns: dict[str, np.ndarray]) -> None: ...

    def set_attr(self, key: str, value: Any) -> None: ...

    def flush(self) -> None: ...

    def finish(self, status: str = "complete", reason: str = "") -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Checkpointing(Protocol):
    """A writer that commits atomically at safe points, with the procedure's state (resumable)."""

    on_commit: Callable[[int], None] | None

    def checkpoint(self, state: Any, force: bool = False) -> bool: ...

    def journal_path(self, seq: int | None = None) -> Path: ...


#: Free space kept beyond what a flush writes: HDF5 does not survive a full disk in the middle of
#: a write (its later calls fail or crash), so a plain writer stops before the disk is full.
_SPACE_MARGIN_BYTES = 4 << 20


def check_space(path: Path, need_bytes: int) -> None:
    """Refuse, before HDF5 is asked to write, a write the file system has no room for."""
    try:
        st = os.statvfs(path.parent)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if free < need_bytes:
        raise SessionFileError(f"cannot write {path}: no space left on the device ({free / 2**20:.1f} MB "
                               f"free, {need_bytes / 2**20:.1f} MB needed); the rows written so far are "
                               "kept")


class _Closed:
    """Stands for the HDF5 file once a failed writer let go of it."""

    class id:  # noqa: N801 (mirrors h5py.File.id)
        valid = False

    def close(self) -> None:
        pass

    def flush(self) -> None:
        pass


class SessionWriter:
    """Create a session file and append to it as the session runs (not crash-safe: see
    :class:`~devmodel.store.durable.DurableSessionWriter`).

    Refuses an existing path unless ``overwrite``. The header (technology, g_max, t0, chip,
    configuration, provenance) is written at creation; tables grow with ``append``; ``finish``
    records the end time and status.

    Appended rows are buffered and written in whole blocks (a partial gzip chunk rewritten on every
    small append cost 10× the session itself); the buffer is written at least every
    ``_FLUSH_S`` seconds of wall time and on ``flush``/``finish``/``close``.
    """

    def __init__(self, path: str | Path, *, technology: str, g_max_us: float, t0_s: float, chip: dict,
                 config: dict, seed: int | None, command: str = "", overwrite: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise SessionFileError(
                f"{self.path} already exists; choose another --out or pass --overwrite"
            )
        if not self.path.parent.exists():
            raise SessionFileError(f"the folder of {self.path} does not exist")
        try:
            self.f = h5py.File(self.path, "w", libver="latest")
        except OSError:
            with contextlib.suppress(OSError):  # an empty file left by a create that failed
                if self.path.stat().st_size == 0:
                    self.path.unlink()
            raise
        self.f.attrs.update(header_attrs(technology, g_max_us, t0_s))
        self.f.create_group("provenance").attrs.update(provenance(seed, command))
        self.f.create_group("chip").attrs["json"] = to_json(chip)
        self.f.create_group("config").attrs["json"] = to_json(config)
        for name, cols in TABLES.items():
            g = self.f.create_group(name)
            g.attrs["n_rows"] = 0
            for col, (dtype, unit) in cols.items():
                ds = g.create_dataset(col, shape=(0,), maxshape=(None,), dtype=dtype,
                                      chunks=(_CHUNK_ROWS,), **COMPRESSION)
                ds.attrs["unit"] = unit
        self._buffer: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in TABLES}
        self._buffered = dict.fromkeys(TABLES, 0)
        self._last_flush = time.monotonic()
        self.f.flush()

    def write_levels(self, targets_us: np.ndarray) -> None:
        g = self.f.require_group("levels")
        ds = g.create_dataset("target_us", data=np.asarray(targets_us, float))
        ds.attrs["unit"] = "uS"

    def write_devices(self, columns: dict[str, np.ndarray]) -> None:
        """Write the per-device table (one row per programmed device)."""
        self._write_table("devices", DEVICE_COLUMNS, columns)
        self.f["devices"].attrs["stop_reasons"] = to_json(STOP_REASONS)
        self.f.flush()

    def append_devices(self, columns: dict[str, np.ndarray]) -> None:
        """Append rows to the per-device table: a session too large to hold in memory writes its
        devices chunk by chunk (docs/scale.md); readers see the same table as ``write_devices``."""
        if "devices" not in self.f:
            g = self.f.create_group("devices")
            g.attrs["stop_reasons"] = to_json(STOP_REASONS)
            for col, (dtype, unit) in DEVICE_COLUMNS.items():
                ds = g.create_dataset(col, shape=(0,), maxshape=(None,), dtype=dtype,
                                      chunks=(_CHUNK_ROWS,), **COMPRESSION)
                ds.attrs["unit"] = unit
        g = self.f["devices"]
        k = np.asarray(columns["address"]).size
        start = g["address"].shape[0]
        for col, (dtype, _) in DEVICE_COLUMNS.items():
            ds = g[col]
            ds.resize((start + k,))
            ds[start:] = np.asarray(columns[col]).astype(dtype)

    def write_bursts(self, columns: dict[str, np.ndarray]) -> None:
        self._write_table("bursts", BURST_COLUMNS, columns)
        self.f.flush()

    def write_ground_truth(self, truth: dict, rows_addresses: np.ndarray) -> None:
        """Simulation ground truth: parameters and the per-device state of the programmed devices."""
        g = self.f.create_group("ground_truth")
        g.attrs["model"] = truth.get("model", "")
        g.attrs["params_json"] = to_json(truth.get("params", {}))
        for name, arr in truth.get("devices", {}).items():
            g.create_dataset(name, data=np.asarray(arr)[rows_addresses], **COMPRESSION)
        self.f.flush()

    def write_group(self, name: str, attrs: dict[str, Any], datasets: dict[str, np.ndarray]) -> None:
        """A group of extra datasets (imports keep their extra columns under ``/import``)."""
        g = self.f.require_group(name)
        g.attrs.update(attrs)
        for key, data in datasets.items():
            g.create_dataset(key, data=data)
        self.f.flush()

    def append(self, table: str, columns: dict[str, np.ndarray]) -> None:
        """Append rows to ``reads`` or ``trace``; all columns required, equal lengths."""
        spec = TABLES[table]
        k = append_rows(table, columns)
        if k == 0:
            return
        self._buffer[table].append({c: np.asarray(columns[c]).ravel() for c in spec})
        self._buffered[table] += k
        if (self._buffered[table] >= _FLUSH_ROWS
                or time.monotonic() - self._last_flush >= _FLUSH_S):
            self.flush()

    def flush(self) -> None:
        """Write buffered rows to the file and flush it (rows are then on disk)."""
        need = sum(p[c].nbytes for parts in self._buffer.values() for p in parts for c in p)
        if need:
            check_space(self.path, 2 * need + _SPACE_MARGIN_BYTES)
        for table, parts in self._buffer.items():
            if not parts:
                continue
            g = self.f[table]
            start = int(g.attrs["n_rows"])
            k = self._buffered[table]
            for col in TABLES[table]:
                ds = g[col]
                ds.resize((start + k,))
                ds[start:] = np.concatenate([p[col] for p in parts])
            g.attrs["n_rows"] = start + k
            parts.clear()
            self._buffered[table] = 0
        self.f.flush()
        self._last_flush = time.monotonic()

    def set_attr(self, key: str, value: Any) -> None:
        self.f.attrs[key] = value

    def finish(self, status: str = "complete", reason: str = "") -> None:
        self.flush()
        self.f.attrs["status"] = status
        self.f.attrs["status_reason"] = reason
        self.f["provenance"].attrs["end_utc"] = utc_now()
        self.f.flush()

    def close(self) -> None:
        if self.f.id.valid:
            self.flush()
            self.f.close()

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        # recording the failure (a full disk fails it too) must not hide the error that caused it,
        # nor HDF5's own reports of the ids it then cannot free (printed straight to stderr)
        with quiet_stderr():
            with contextlib.suppress(Exception):
                if self.f.id.valid:
                    try:
                        self.finish("failed", f"{exc_type.__name__}: {exc}")
                    except Exception:  # no room for the buffered rows: the status still goes in
                        for parts in self._buffer.values():
                            parts.clear()
                        self.finish("failed", f"{exc_type.__name__}: {exc}")
            with contextlib.suppress(Exception):
                self.close()
            self.f = _Closed()
            gc.collect()

    def _write_table(self, name: str, spec: dict, columns: dict[str, np.ndarray]) -> None:
        g = self.f.create_group(name)
        for col, (dtype, unit) in spec.items():
            ds = g.create_dataset(col, data=np.asarray(columns[col]).astype(dtype), **COMPRESSION)
            ds.attrs["unit"] = unit
