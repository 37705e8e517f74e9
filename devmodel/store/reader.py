"""Reading session files: one reader, one schema check, columns on demand (docs/session-format.md).

:class:`SessionFile` opens a file read-only and checks its schema once; tables and attributes are
then read on demand, so the replay backends read only the columns they serve. :func:`read_session`
loads everything the fitters use into a :class:`Session` and checks the tables against each other.
Every problem is one sentence naming the file and what is wrong
(:class:`~devmodel.errors.SessionFileError`), never a traceback from deep inside a fit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from devmodel import __version__
from devmodel.errors import SessionFileError, UnknownNameError
from devmodel.store.schema import DEVICE_COLUMNS, OPTIONAL_COLUMNS, SCHEMA, SCHEMA_VERSION, TABLES
from devmodel.technologies import technology

EXTENDABLE = tuple(TABLES)  # tables with an acknowledged row count (n_rows)


@dataclass(repr=False)
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

    @property
    def verify_config(self) -> dict | None:
        """The program-and-verify configuration the session ran (``/config`` key ``verify``)."""
        return verify_config_of(self.config, self.attrs, self.path)

    def __repr__(self) -> str:  # never the arrays
        n = self.n_devices if self.devices else 0
        return (f"Session({str(self.path)!r}, {self.technology}, {self.status}, {n} devices, "
                f"{self.levels_us.size} levels, {self.reads['device'].size} reads)")

    def _repr_html_(self) -> str:
        """A notebook's summary (docs/notebook.md): the header and, per level, devices, converged
        fraction and reads."""
        import html

        n = self.n_devices if self.devices else 0
        head = (f"<p><b>session</b> {html.escape(self.path.name)} — {html.escape(self.technology)}, "
                f"{html.escape(self.status)}; {n} devices, {self.levels_us.size} levels, "
                f"{self.reads['device'].size} reads; g<sub>max</sub> {self.g_max_us:g} µS, "
                f"t<sub>0</sub> {self.t0_s:g} s; chip {html.escape(str(self.chip.get('identity', '?')))}</p>")
        if not n:
            return head
        k = self.levels_us.size
        level = self.devices["level"]
        per_level = np.bincount(level, minlength=k)
        conv = np.bincount(level, weights=self.devices["converged"] > 0, minlength=k)
        reads = np.bincount(level[self.reads["device"]], minlength=k)
        rows = "".join(f"<tr><td>{g:.4g}</td><td>{d}</td><td>{100 * c / max(d, 1):.1f}</td><td>{r}</td></tr>"
                       for g, d, c, r in zip(self.levels_us, per_level, conv, reads, strict=True))
        return (head + "<table><thead><tr><th>level µS</th><th>devices</th><th>converged %</th>"
                f"<th>reads</th></tr></thead><tbody>{rows}</tbody></table>")


def verify_config_of(config: dict, attrs: dict, path: Path) -> dict | None:
    """``/config``'s verify configuration; files written before it was stored only there keep it in
    the root attribute ``verify_config``."""
    v = config.get("verify") if isinstance(config, dict) else None
    if v is None and attrs.get("verify_config") is not None:
        try:
            v = json.loads(attrs["verify_config"])
        except (TypeError, ValueError):
            raise SessionFileError(f"{path} has an unreadable verify_config attribute") from None
    if v is not None and not isinstance(v, dict):
        raise SessionFileError(f"{path}: the verify configuration in /config is not a JSON object")
    return v


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else e.__class__.__name__


def _decode(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


class SessionFile:
    """A session file opened read-only with its schema checked; read tables with :meth:`table`."""

    def __init__(self, path: str | Path) -> None:
        self.path = path = Path(path)
        if not path.exists():
            raise SessionFileError(f"{path} does not exist")
        if path.is_dir():
            raise SessionFileError(f"{path} is a folder, not a session file")
        try:
            self.f = h5py.File(path, "r")
        except Exception as e:  # OSError, and other types on some damaged files
            raise SessionFileError(f"{path} is not a readable HDF5 file ({e.__class__.__name__})") \
                from None
        try:
            self._check_schema()
            self.attrs = {k: _decode(v) for k, v in self.f.attrs.items()}
        except SessionFileError:
            self.f.close()
            raise
        except (OSError, RuntimeError, ValueError, TypeError, KeyError) as e:  # damaged metadata
            self.f.close()
            raise SessionFileError(f"{path} is damaged: {_first_line(e)}") from None
        except BaseException:
            self.f.close()
            raise

    def close(self) -> None:
        self.f.close()

    def __enter__(self) -> SessionFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_schema(self) -> None:
        path, f = self.path, self.f
        if _decode(f.attrs.get("schema")) != SCHEMA:
            raise SessionFileError(f"{path} is not a devmodel session file (no '{SCHEMA}' schema)")
        raw = f.attrs.get("schema_version", -1)
        try:
            version = int(raw)
        except (TypeError, ValueError):
            raise SessionFileError(f"{path} has an invalid schema_version {raw!r}") from None
        if version > SCHEMA_VERSION:
            raise SessionFileError(
                f"{path} uses session schema version {version}, newer than the version "
                f"{SCHEMA_VERSION} this devmodel {__version__} reads: upgrade devmodel"
            )
        if version < 1:
            raise SessionFileError(f"{path} has an invalid schema_version {version}")

    # -- on demand ------------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        return name in self.f

    def json_attr(self, group: str, key: str, default: str | None = None) -> Any:
        """The JSON document in attribute ``key`` of ``group`` ("/" for the root)."""
        obj = self.f[group] if group in self.f else None
        raw = obj.attrs.get(key, default) if obj is not None else default
        if raw is None:
            raise SessionFileError(f"{self.path} is missing the attribute /{group.strip('/')}@{key}")
        try:
            return json.loads(raw)
        except (TypeError, ValueError) as e:
            msg = getattr(e, "msg", str(e))
            raise SessionFileError(f"{self.path}: the attribute {obj.name}@{key} is not valid JSON "
                                   f"({msg})") from None

    def table(self, name: str, columns: tuple[str, ...] | None = None, *, what: str = "",
              numeric: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Columns of table ``name`` (every column when ``columns`` is None), checked: a group of
        one-dimensional, equally long columns; ``numeric`` (default: ``columns``) hold numbers;
        extendable tables are cut at their acknowledged row count. ``what`` names the reader in
        errors ("which replay needs")."""
        path, need = self.path, f", which {what} needs" if what else ""
        if name not in self.f:
            raise SessionFileError(f"{path} is missing the table /{name}{need}")
        g = self.f[name]
        if not isinstance(g, h5py.Group):
            raise SessionFileError(f"{path}: /{name} is not a group of columns")
        for col in columns or ():
            if col not in g:
                raise SessionFileError(f"{path} is missing the column /{name}/{col}{need}")
        names = list(columns) if columns is not None else list(g)
        lengths = {c: g[c].shape[0] if isinstance(g[c], h5py.Dataset) and g[c].ndim == 1 else -1
                   for c in names}
        bad = [c for c, n in lengths.items() if n < 0]
        if bad:
            raise SessionFileError(f"{path}: /{name}/{bad[0]} is not a one-dimensional column")
        for col in (numeric if numeric is not None else names):
            if col in g and g[col].dtype.kind not in "biuf":
                raise SessionFileError(f"{path}: /{name}/{col} holds {g[col].dtype} values, not numbers")
        n = min(lengths.values(), default=0)
        if name in EXTENDABLE:
            n_rows = _checked_n_rows(path, name, g, n)
            return {c: self._column(g, name, c, slice(0, n_rows)) for c in names}
        if len(set(lengths.values())) > 1:
            raise SessionFileError(f"{path}: the columns of /{name} have different lengths "
                                   f"({', '.join(f'{c} {k}' for c, k in sorted(lengths.items()))})")
        return {c: self._column(g, name, c, ()) for c in names}

    def acknowledged_rows(self, name: str) -> int:
        """The rows of the extendable table ``name`` that its writer acknowledged (``n_rows``),
        checked against its columns' length (out-of-core readers take the table in slices)."""
        g = self.f[name]
        n = min((g[c].shape[0] for c in g if isinstance(g[c], h5py.Dataset) and g[c].ndim == 1), default=0)
        return _checked_n_rows(self.path, name, g, n)

    def _column(self, g: h5py.Group, name: str, col: str, sel) -> np.ndarray:
        try:
            return g[col][sel]
        except (OSError, RuntimeError, ValueError) as e:  # HDF5 reports damaged chunks this way
            raise SessionFileError(f"{self.path} is damaged: /{name}/{col} cannot be read "
                                   f"({_first_line(e)})") from None

    def extendable(self, name: str, columns: tuple[str, ...] | None = None, *, what: str = ""
                   ) -> dict[str, np.ndarray]:
        """An extendable table's columns (default: all of its schema's), optional columns the file
        lacks filled in (files written before they existed)."""
        wanted = columns or tuple(TABLES[name])
        optional = OPTIONAL_COLUMNS[name]
        present = tuple(c for c in wanted if c not in optional or (name in self.f and c in self.f[name]))
        out = self.table(name, present, what=what)
        n = len(next(iter(out.values()))) if out else 0
        for col in wanted:
            if col not in out:
                out[col] = np.full(n, optional[col])
        return out

    def header(self) -> dict[str, Any]:
        """technology, g_max_us and t0_s (checked), status and status_reason."""
        a, path = self.attrs, self.path
        for key in ("technology", "g_max_us", "t0_s"):
            if key not in a:
                raise SessionFileError(f"{path} is missing the attribute {key}")
        try:
            technology(str(a["technology"]))
        except UnknownNameError as e:
            raise SessionFileError(f"{path}: {e}") from None
        out = {"technology": str(a["technology"]), "status": str(a.get("status", "")),
               "status_reason": str(a.get("status_reason", ""))}
        for key in ("g_max_us", "t0_s"):
            try:
                value = float(a[key])
            except (TypeError, ValueError):
                value = float("nan")
            if not (np.isfinite(value) and value > 0):
                raise SessionFileError(f"{path}: {key} = {a[key]!r} is not a positive number")
            out[key] = value
        return out

    def ground_truth(self, devices: bool = True) -> dict | None:
        """The simulation's ground truth (None for a real chip): model name, parameters and, with
        ``devices``, the per-device arrays."""
        if "ground_truth" not in self.f:
            return None
        g = self.f["ground_truth"]
        return {"model": _decode(g.attrs.get("model", "")),
                "params": self.json_attr("ground_truth", "params_json", "{}"),
                "devices": {k: v[()] for k, v in g.items()} if devices else {}}

    def load(self, with_trace: bool = True) -> Session:
        """Everything the fitters use, checked against itself (see :func:`read_session`)."""
        try:
            session = self._load(with_trace)
        except SessionFileError:
            raise
        except KeyError as e:
            raise SessionFileError(f"{self.path} is missing {e.args[0]!s}") from None
        except (OSError, RuntimeError, ValueError, TypeError, AttributeError) as e:
            raise SessionFileError(f"{self.path} is damaged: {_first_line(e)}") from None
        _check_contents(session)
        return session

    def _load(self, with_trace: bool) -> Session:
        f = self.f
        h = self.header()
        reads = self.extendable("reads")
        trace = self.extendable("trace") if with_trace and "trace" in f else {}
        return Session(
            path=self.path, technology=h["technology"], g_max_us=h["g_max_us"], t0_s=h["t0_s"],
            status=h["status"], status_reason=h["status_reason"],
            levels_us=np.asarray(f["levels/target_us"][()], dtype=float) if "levels" in f else np.empty(0),
            devices=(self.table("devices", None, numeric=tuple(DEVICE_COLUMNS))
                     if "devices" in f else {}),
            reads=reads,
            bursts=self.table("bursts") if "bursts" in f else {},
            trace=trace,
            chip=self.json_attr("chip", "json"),
            config=self.json_attr("config", "json"),
            provenance={k: _decode(v) for k, v in f["provenance"].attrs.items()},
            ground_truth=self.ground_truth(),
            attrs=self.attrs,
        )


def read_session(path: str | Path, *, with_trace: bool = True) -> Session:
    """Load a session file, validating its schema and contents; errors name the file and what is wrong.

    A file that opens but is inconsistent (columns of different lengths, row counts beyond the data,
    device indices outside the device table, text where numbers belong, a non-finite g_max…) is
    refused with one sentence rather than left to fail later inside a fit.
    """
    with SessionFile(path) as sf:
        return sf.load(with_trace)


#: Index columns (integers) and columns that must hold finite numbers ≥ 0 (NaN allowed where the
#: schema gives it a meaning: an age the read was not taken for, a device with no verify reading).
_INDEX_COLUMNS = ("reads/device", "reads/burst", "trace/device", "bursts/device", "bursts/burst",
                  "devices/level", "devices/address")
_FINITE = {"reads/g_us": False, "reads/t_s": False, "trace/g_us": False, "trace/t_s": False,
           "devices/target_us": False, "reads/age_s": True}
_NON_NEGATIVE = ("reads/t_s", "trace/t_s", "devices/target_us", "reads/age_s")


def _check_values(s: Session) -> None:
    """Index columns hold integers; conductances, times and targets are finite; times, ages and
    targets are ≥ 0: the fits and replay compare with these, and NaN passes every comparison."""
    for name in ("chip", "config"):
        if not isinstance(getattr(s, name), dict):
            raise SessionFileError(f"{s.path}: the attribute /{name}@json is "
                                   f"{type(getattr(s, name)).__name__}, not a JSON object")
    for key in _INDEX_COLUMNS + tuple(_FINITE):
        table, col = key.split("/")
        v = getattr(s, table).get(col)
        if v is None or not v.size:
            continue
        if key in _INDEX_COLUMNS:
            if v.dtype.kind not in "iu":
                raise SessionFileError(f"{s.path}: /{key} holds {v.dtype} values; it indexes rows, so "
                                       "it must hold integers")
            continue
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(v) & ~(np.isnan(v) if _FINITE[key] else False)
            if bad.any():
                raise SessionFileError(f"{s.path}: /{key} holds {int(bad.sum())} non-finite value(s) "
                                       f"(first at row {int(np.flatnonzero(bad)[0])})")
            if key in _NON_NEGATIVE and (v < 0).any():
                raise SessionFileError(f"{s.path}: /{key} holds {float(v[v < 0][0]):g} at row "
                                       f"{int(np.flatnonzero(v < 0)[0])}; it must be ≥ 0")


def _check_contents(s: Session) -> None:
    """Cross-table consistency, once everything is loaded."""
    path = s.path
    _check_values(s)
    for col in DEVICE_COLUMNS:
        if s.devices and col not in s.devices:
            raise SessionFileError(f"{path} is missing the column /devices/{col}")
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


def _checked_n_rows(path, name: str, g, n: int) -> int:
    """The ``n_rows`` attribute of table ``name`` (default ``n``), a count no larger than its ``n``
    column rows, or one sentence naming it."""
    raw = g.attrs.get("n_rows", n)
    try:
        n_rows = int(raw)
    except (TypeError, ValueError):
        raise SessionFileError(f"{path}: /{name} attribute n_rows = {raw!r} is not a count") from None
    if not 0 <= n_rows <= n:
        raise SessionFileError(f"{path}: /{name} attribute n_rows = {n_rows} but its columns hold {n} rows")
    return n_rows
