"""The session file (DESIGN.md seam 2): one HDF5 file per characterisation session.

Schema ``devmodel.session`` version 1, documented in ``docs/session-format.md``. Written
incrementally as the session runs (extendable, chunked, compressed datasets; flushed after every
append, with the acknowledged row count in an attribute), readable with plain h5py. The fitters
read nothing else.
"""

from __future__ import annotations

import getpass
import json
import platform
import socket
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from devmodel import __version__
from devmodel.errors import SessionFileError

SCHEMA = "devmodel.session"
SCHEMA_VERSION = 1
_CHUNK_ROWS = 1 << 16
#: Appended rows are buffered and written in blocks: at this many rows, or after this much wall time.
_FLUSH_ROWS = 1 << 16
_FLUSH_S = 2.0
_COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}

#: Extendable tables: name → {column: (dtype, unit)}
TABLES: dict[str, dict[str, tuple[str, str]]] = {
    "reads": {
        "device": ("i4", "row of /devices"),
        "t_s": ("f8", "s"),
        "age_s": ("f8", "s"),
        "g_us": ("f8", "uS"),
        "burst": ("i4", "burst id, -1 for a schedule read"),
    },
    "trace": {
        "device": ("i4", "row of /devices"),
        "iteration": ("i4", "verify iteration"),
        "g_before_us": ("f8", "uS"),
        "kind": ("i1", "0 SET, 1 RESET"),
        "amplitude": ("f8", "chip pulse unit (see /chip attribute pulse_unit)"),
        "width_ns": ("f8", "ns"),
        "compliance_ua": ("f8", "uA, NaN if none"),
        "t_s": ("f8", "s, end of the pulse"),
        "g_after_us": ("f8", "uS, the next verify reading"),
    },
}

DEVICE_COLUMNS: dict[str, tuple[str, str]] = {
    "address": ("i8", "chip address"),
    "level": ("i4", "index into /levels/target_us"),
    "target_us": ("f8", "uS"),
    "converged": ("u1", "1 if the verify loop converged"),
    "iterations": ("i4", "verify iterations"),
    "pulses": ("i4", "pulses applied"),
    "g_verify_us": ("f8", "uS, final verify reading"),
    "t_last_pulse_s": ("f8", "s, chip time at the end of the last pulse"),
    "stop_reason": ("i1", "see attribute stop_reasons"),
}

BURST_COLUMNS: dict[str, tuple[str, str]] = {
    "burst": ("i4", "burst id"),
    "device": ("i4", "row of /devices"),
    "n_reads": ("i4", "reads"),
    "interval_s": ("f8", "s"),
    "t_start_s": ("f8", "s"),
}


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_json(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, sort_keys=True)


class SessionWriter:
    """Create a session file and append to it as the session runs.

    Refuses an existing path unless ``overwrite``. The header (technology, g_max, t0, chip,
    configuration, provenance) is written at creation; tables grow with ``append``; ``finish``
    records the end time and status.

    Appended rows are buffered and written in whole blocks (a partial gzip chunk rewritten on every
    small append cost 10× the session itself); the buffer is written at least every
    ``_FLUSH_S`` seconds of wall time and on ``flush``/``finish``/``close``.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        technology: str,
        g_max_us: float,
        t0_s: float,
        chip: dict,
        config: dict,
        seed: int | None,
        command: str = "",
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise SessionFileError(
                f"{self.path} already exists; choose another --out or pass --overwrite"
            )
        if not self.path.parent.exists():
            raise SessionFileError(f"the folder of {self.path} does not exist")
        self.f = h5py.File(self.path, "w", libver="latest")
        self.f.attrs.update(header_attrs(technology, g_max_us, t0_s))
        self.f.create_group("provenance").attrs.update(provenance(seed, command))
        self.f.create_group("chip").attrs["json"] = to_json(chip)
        self.f.create_group("config").attrs["json"] = to_json(config)
        for name, cols in TABLES.items():
            g = self.f.create_group(name)
            g.attrs["n_rows"] = 0
            for col, (dtype, unit) in cols.items():
                ds = g.create_dataset(col, shape=(0,), maxshape=(None,), dtype=dtype,
                                      chunks=(_CHUNK_ROWS,), **_COMPRESSION)
                ds.attrs["unit"] = unit
        self._buffer: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in TABLES}
        self._buffered = dict.fromkeys(TABLES, 0)
        self._last_flush = time.monotonic()
        self.f.flush()

    def write_levels(self, targets_us: np.ndarray) -> None:
        g = self.f.require_group("levels")
        ds = g.create_dataset("target_us", data=np.asarray(targets_us, float))
        ds.attrs["unit"] = "uS"

    def write_devices(self, columns: dict[str, np.ndarray], stop_reasons: dict[int, str]) -> None:
        """Write the per-device table (one row per programmed device)."""
        self._write_table("devices", DEVICE_COLUMNS, columns)
        self.f["devices"].attrs["stop_reasons"] = to_json(
            {str(k): v for k, v in stop_reasons.items()})
        self.f.flush()

    def write_bursts(self, columns: dict[str, np.ndarray]) -> None:
        self._write_table("bursts", BURST_COLUMNS, columns)
        self.f.flush()

    def write_ground_truth(self, truth: dict, rows_addresses: np.ndarray) -> None:
        """Simulation ground truth: parameters and the per-device state of the programmed devices."""
        g = self.f.create_group("ground_truth")
        g.attrs["model"] = truth.get("model", "")
        g.attrs["params_json"] = to_json(truth.get("params", {}))
        for name, arr in truth.get("devices", {}).items():
            g.create_dataset(name, data=np.asarray(arr)[rows_addresses], **_COMPRESSION)
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
        self.f["provenance"].attrs["end_utc"] = _utc_now()
        self.f.flush()

    def close(self) -> None:
        if self.f.id.valid:
            self.flush()
            self.f.close()

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.f.id.valid:
            self.finish("failed", f"{exc_type.__name__}: {exc}")
        self.close()

    def _write_table(self, name: str, spec: dict, columns: dict[str, np.ndarray]) -> None:
        g = self.f.create_group(name)
        for col, (dtype, unit) in spec.items():
            ds = g.create_dataset(col, data=np.asarray(columns[col]).astype(dtype),
                                  **_COMPRESSION)
            ds.attrs["unit"] = unit


@dataclass
class Session:
    """A session file loaded for analysis (arrays in memory; the file is closed)."""

    path: Path
    technology: str
    g_max_us: float
    t0_s: float
    status: str
    status_reason: str
    levels_us: np.ndarray
    devices: dict[str, np.ndarray]
    reads: dict[str, np.ndarray]
    bursts: dict[str, np.ndarray]
    trace: dict[str, np.ndarray]
    chip: dict
    config: dict
    provenance: dict
    ground_truth: dict | None
    attrs: dict

    @property
    def n_devices(self) -> int:
        return int(self.devices["address"].size)


def append_rows(table: str, columns: dict[str, np.ndarray]) -> int:
    """Rows in an append to ``reads`` or ``trace`` (both writers): every column, equal lengths."""
    missing = set(TABLES[table]) - set(columns)
    if missing:
        raise ValueError(f"append to {table}: missing columns {sorted(missing)}")
    n = {np.size(v) for v in columns.values()}
    if len(n) != 1:
        raise ValueError(f"append to {table}: columns of different lengths {n}")
    return n.pop()


def header_attrs(technology: str, g_max_us: float, t0_s: float) -> dict[str, Any]:
    """Root attributes of a new session file (both writers)."""
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "technology": technology,
            "g_max_us": float(g_max_us), "t0_s": float(t0_s), "status": "running", "status_reason": ""}


def provenance(seed: int | None, command: str) -> dict[str, Any]:
    """``/provenance`` attributes of a new session file (both writers)."""
    return {"toolkit_version": __version__, "seed": -1 if seed is None else int(seed),
            "host": socket.gethostname(), "user": getpass.getuser(), "python": sys.version.split()[0],
            "platform": platform.platform(), "numpy": np.__version__, "h5py": h5py.__version__,
            "command": command, "start_utc": _utc_now(), "end_utc": ""}


def read_session(path: str | Path, *, with_trace: bool = True) -> Session:
    """Load a session file, validating its schema and contents; errors name the file and what is wrong.

    A file that opens but is inconsistent (columns of different lengths, row counts beyond the data,
    device indices outside the device table, text where numbers belong, a non-finite g_max…) is
    refused with one sentence rather than left to fail later inside a fit.
    """
    path = Path(path)
    if not path.exists():
        raise SessionFileError(f"{path} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise SessionFileError(f"{path} is not a readable HDF5 file ({e.__class__.__name__})") from None
    except Exception as e:  # h5py raises other types on some damaged files
        raise SessionFileError(f"{path} is not a readable HDF5 file ({e.__class__.__name__})") from None
    with f:
        try:
            _check_schema(path, f)
            session = _load(path, f, with_trace)
        except SessionFileError:
            raise
        except KeyError as e:
            raise SessionFileError(f"{path} is missing {e.args[0]!s}") from None
        # HDF5 reports damaged metadata as OSError or RuntimeError (e.g. a wrong heap signature)
        except (OSError, RuntimeError, ValueError, TypeError, AttributeError) as e:
            raise SessionFileError(f"{path} is damaged: {str(e).splitlines()[0] if str(e) else e!r}") \
                from None
    _check_contents(path, session)
    return session


def _check_schema(path: Path, f: h5py.File) -> None:
    schema = f.attrs.get("schema")
    if schema != SCHEMA:
        raise SessionFileError(f"{path} is not a devmodel session file (no '{SCHEMA}' schema)")
    raw = f.attrs.get("schema_version", -1)
    try:
        version = int(raw)
    except (TypeError, ValueError):
        raise SessionFileError(f"{path} has an invalid schema_version {raw!r}") from None
    if version > SCHEMA_VERSION:
        raise SessionFileError(
            f"{path} uses session schema version {version}; this devmodel {__version__} reads up "
            f"to version {SCHEMA_VERSION}: upgrade devmodel"
        )
    if version < 1:
        raise SessionFileError(f"{path} has an invalid schema_version {version}")


def _table(path: Path, f: h5py.File, name: str, required: dict | None, extendable: bool
           ) -> dict[str, np.ndarray] | None:
    """One table's columns, checked: a group, every required column, equal lengths, numeric types,
    and (for extendable tables) an acknowledged row count within the data."""
    if name not in f:
        return None
    g = f[name]
    if not isinstance(g, h5py.Group):
        raise SessionFileError(f"{path}: /{name} is not a group of columns")
    for col in required or {}:
        if col not in g:
            raise SessionFileError(f"{path} is missing the column /{name}/{col}")
    lengths = {col: ds.shape[0] if isinstance(ds, h5py.Dataset) and ds.ndim == 1 else -1
               for col, ds in g.items()}
    bad = [c for c, n in lengths.items() if n < 0]
    if bad:
        raise SessionFileError(f"{path}: /{name}/{bad[0]} is not a one-dimensional column")
    for col, ds in g.items():
        if ds.dtype.kind not in "biuf" and (required is None or col in required):
            raise SessionFileError(f"{path}: /{name}/{col} holds {ds.dtype} values, not numbers")
    n = min(lengths.values(), default=0)
    if extendable:
        raw = g.attrs.get("n_rows", n)
        try:
            n_rows = int(raw)
        except (TypeError, ValueError):
            raise SessionFileError(f"{path}: /{name} attribute n_rows = {raw!r} is not a count") from None
        if not 0 <= n_rows <= n:
            raise SessionFileError(f"{path}: /{name} attribute n_rows = {n_rows} but its columns hold "
                                   f"{n} rows")
        return {col: ds[:n_rows] for col, ds in g.items()}
    if len(set(lengths.values())) > 1:
        raise SessionFileError(f"{path}: the columns of /{name} have different lengths "
                               f"({', '.join(f'{c} {k}' for c, k in sorted(lengths.items()))})")
    return {col: ds[()] for col, ds in g.items()}


def _check_contents(path: Path, s: Session) -> None:
    """Cross-table consistency, once everything is loaded."""
    if s.technology not in ("pcm", "reram"):
        raise SessionFileError(f"{path}: technology {s.technology!r} is not pcm or reram")
    for key, value in (("g_max_us", s.g_max_us), ("t0_s", s.t0_s)):
        if not (np.isfinite(value) and value > 0):
            raise SessionFileError(f"{path}: {key} = {value} is not a positive number")
    n_dev = s.n_devices if s.devices else 0
    if not s.devices:
        if s.reads["device"].size or s.status == "complete":
            if s.status != "complete":
                raise SessionFileError(f"{path} stopped before its programming finished (status "
                                       f"{s.status}); continue it with devmodel characterize --resume {path}")
            raise SessionFileError(f"{path} is missing its /devices table")
        return
    if s.levels_us.size == 0:
        raise SessionFileError(f"{path} is missing /levels/target_us")
    lv = s.devices["level"]
    if lv.size and (lv.min() < 0 or lv.max() >= s.levels_us.size):
        raise SessionFileError(f"{path}: /devices/level holds {int(lv.max())}, beyond the "
                               f"{s.levels_us.size} levels")
    for table in ("reads", "trace", "bursts"):
        dev = getattr(s, table).get("device")
        if dev is not None and dev.size and (dev.min() < 0 or dev.max() >= n_dev):
            bad = int(dev[(dev < 0) | (dev >= n_dev)][0])
            raise SessionFileError(f"{path}: /{table}/device holds {bad}, not a row of the "
                                   f"{n_dev}-device table")


def _json_attr(path: Path, obj, key: str, default: str | None = None):
    raw = obj.attrs.get(key, default)
    if raw is None:
        raise KeyError(f"the attribute {obj.name}@{key}")
    try:
        return json.loads(raw)
    except (TypeError, ValueError) as e:
        msg = getattr(e, "msg", str(e))
        raise SessionFileError(f"{path}: the attribute {obj.name}@{key} is not valid JSON ({msg})") from None


def _load(path: Path, f: h5py.File, with_trace: bool) -> Session:
    a = dict(f.attrs)
    gt = None
    if "ground_truth" in f:
        g = f["ground_truth"]
        gt = {
            "model": g.attrs.get("model", ""),
            "params": _json_attr(path, g, "params_json", "{}"),
            "devices": {k: v[()] for k, v in g.items()},
        }
    reads = _table(path, f, "reads", TABLES["reads"], extendable=True)
    if reads is None:
        raise KeyError("/reads")
    trace = {}
    if with_trace and "trace" in f:
        trace = _table(path, f, "trace", TABLES["trace"], extendable=True) or {}
    return Session(
        path=path,
        technology=str(a["technology"]),
        g_max_us=float(a["g_max_us"]),
        t0_s=float(a["t0_s"]),
        status=str(a.get("status", "")),
        status_reason=str(a.get("status_reason", "")),
        levels_us=np.asarray(f["levels/target_us"][()], dtype=float) if "levels" in f else np.empty(0),
        devices=_table(path, f, "devices", DEVICE_COLUMNS, extendable=False) or {},
        reads=reads,
        bursts=_table(path, f, "bursts", None, extendable=False) or {},
        trace=trace,
        chip=_json_attr(path, f["chip"], "json"),
        config=_json_attr(path, f["config"], "json"),
        provenance=dict(f["provenance"].attrs),
        ground_truth=gt,
        attrs=a,
    )
