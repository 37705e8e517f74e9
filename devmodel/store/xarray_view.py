"""A session as an :class:`xarray.Dataset` (docs/session-format.md, "As xarray"): the device table,
the drift-schedule reads as a (device, read) matrix and the read-noise bursts as a (burst,
burst_read) matrix, every variable with ``units`` and ``long_name`` attributes, so a session can be
sliced, grouped by level and plotted without devmodel's API, and written to netCDF (h5netcdf).

xarray (and h5netcdf, for writing) are optional: they are imported inside the functions, and their
absence is one sentence. The session is loaded through :func:`devmodel.store.read_session`, so an
invalid file is refused as everywhere else.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from devmodel import __version__
from devmodel.errors import DevmodelError
from devmodel.store.reader import Session, read_session
from devmodel.store.schema import DEVICE_COLUMNS, SCHEMA, SCHEMA_VERSION, STOP_REASONS, to_json

if TYPE_CHECKING:
    import xarray

#: units and long names of the variables and coordinates (units: "uS", "s", "1" for none)
META: dict[str, tuple[str, str]] = {
    "device": ("1", "row of /devices"),
    "address": ("1", "chip address"),
    "level": ("1", "index of the device's target level (row of /levels/target_us)"),
    "target_us": ("uS", "target conductance"),
    "converged": ("1", "1 if the verify loop converged"),
    "iterations": ("1", "verify iterations"),
    "pulses": ("1", "programming pulses (including initialisation)"),
    "g_verify_us": ("uS", "final verify reading"),
    "t_last_pulse_s": ("s", "chip time at the end of the last pulse"),
    "stop_reason": ("1", "why the device's programming loop ended"),
    "n_reads": ("1", "drift-schedule reads of the device"),
    "target_level": ("1", "target level index"),
    "level_target_us": ("uS", "target conductance of the level"),
    "read": ("1", "drift-schedule read of the device, in time order"),
    "g_us": ("uS", "conductance reading"),
    "t_s": ("s", "chip time of the read"),
    "age_s": ("s", "age of the device at the read (time since its last pulse)"),
    "nominal_age_s": ("s", "schedule age the read was taken for"),
    "burst": ("1", "burst id (row of /bursts)"),
    "burst_read": ("1", "read of the burst, in time order"),
    "burst_device": ("1", "row of /devices the burst read"),
    "burst_address": ("1", "chip address of the burst's device"),
    "burst_level": ("1", "target level index of the burst's device"),
    "burst_n_reads": ("1", "reads of the burst"),
    "burst_interval_s": ("s", "interval between the burst's reads (0: back to back)"),
    "burst_t_start_s": ("s", "chip time at the start of the burst"),
    "burst_g_us": ("uS", "conductance reading of the burst"),
    "burst_t_s": ("s", "chip time of the burst read"),
    "burst_age_s": ("s", "age of the device at the burst read (time since its last pulse)"),
}

_SUFFIX_UNITS = (("_us", "uS"), ("_ua", "uA"), ("_ns", "ns"), ("_s", "s"))


def _xarray():
    try:
        import xarray
    except ImportError:
        raise DevmodelError("sessions as xarray need the packages xarray and h5netcdf: "
                            "pip install xarray h5netcdf") from None
    return xarray


def _attrs(name: str) -> dict[str, str]:
    """``units`` and ``long_name`` of a variable; columns the table has beyond the schema's get their
    unit from their name's suffix (units in names: ``_us`` µS, ``_s`` s…)."""
    if name in META:
        units, long_name = META[name]
    else:
        units = next((u for suffix, u in _SUFFIX_UNITS if name.endswith(suffix)), "1")
        long_name = name.replace("_", " ")
    return {"units": units, "long_name": long_name}


def _column(values: np.ndarray) -> np.ndarray:
    """A column as a netCDF-safe array: bytes decoded to text."""
    values = np.asarray(values)
    if values.dtype.kind in "SO":
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=str)
    return values


def _devices(s: Session) -> dict[str, np.ndarray]:
    """The /devices columns (zero rows when the session has no device table yet)."""
    if s.devices:
        return {k: _column(v) for k, v in s.devices.items()}
    return {k: np.empty(0, dtype=dtype) for k, (dtype, _) in DEVICE_COLUMNS.items()}


def _matrix(group: np.ndarray, t_s: np.ndarray, n_groups: int,
            columns: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rows of a read table as (group, rank) matrices, each group's reads in time order (ties keep
    the file's order), padded with NaN; returns the reads per group and the matrices."""
    order = np.lexsort((t_s, group))
    g = group[order]
    counts = np.bincount(g, minlength=n_groups) if g.size else np.zeros(n_groups, dtype=np.int64)
    first = np.concatenate(([0], np.cumsum(counts)[:-1])) if n_groups else np.zeros(0, dtype=np.int64)
    rank = np.arange(g.size) - first[g]
    width = int(counts.max()) if counts.size else 0
    out = {}
    for name, v in columns.items():
        m = np.full((n_groups, width), np.nan)
        m[g, rank] = v[order]
        out[name] = m
    return counts, out


def _schedule_reads(s: Session, n_dev: int) -> dict[str, Any]:
    """The drift-schedule reads (burst < 0) as (device, read) matrices."""
    r = s.reads
    sel = r["burst"] < 0
    columns = {"g_us": r["g_us"][sel], "t_s": r["t_s"][sel], "age_s": r["age_s"][sel]}
    nominal = r["nominal_age_s"][sel]
    if np.isfinite(nominal).any():  # files written before the column existed have none
        columns["nominal_age_s"] = nominal
    counts, mats = _matrix(r["device"][sel].astype(np.int64), r["t_s"][sel], n_dev, columns)
    return {"n_reads": counts, **mats}


def _bursts(s: Session, devices: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """The burst reads (burst ≥ 0) as (burst, burst_read) matrices with each burst's device, level
    and /bursts record (interval, start; NaN where /bursts has no row of that id)."""
    r = s.reads
    sel = r["burst"] >= 0
    if not sel.any():
        return None
    ids, idx = np.unique(r["burst"][sel], return_inverse=True)
    t_s, dev = r["t_s"][sel], r["device"][sel].astype(np.int64)
    counts, mats = _matrix(idx.astype(np.int64), t_s, ids.size,
                           {"burst_g_us": r["g_us"][sel], "burst_t_s": t_s, "burst_age_s": r["age_s"][sel]})
    device = dev[np.unique(idx, return_index=True)[1]]  # device of each burst's first read
    out = {"burst": ids, "burst_device": device, "burst_n_reads": counts, **mats}
    if devices["address"].size:
        out["burst_address"] = devices["address"][device]
        out["burst_level"] = devices["level"][device]
    b = s.bursts
    for col in ("interval_s", "t_start_s"):
        values = np.full(ids.size, np.nan)
        if b and "burst" in b and col in b and b["burst"].size:
            sorter = np.argsort(b["burst"], kind="stable")
            pos = np.clip(np.searchsorted(b["burst"], ids, sorter=sorter), 0, b["burst"].size - 1)
            found = b["burst"][sorter[pos]] == ids
            values[found] = np.asarray(b[col], dtype=float)[sorter[pos[found]]]
        out[f"burst_{col}"] = values
    return out


def _dataset_attrs(s: Session) -> dict[str, Any]:
    """Global attributes: numbers and text only (records JSON-encoded), so netCDF can hold them."""
    attrs: dict[str, Any] = {
        "title": f"devmodel session {s.path.name}",
        "source": s.path.name,
        "technology": s.technology,
        "g_max_us": float(s.g_max_us),
        "t0_s": float(s.t0_s),
        "status": s.status,
        "status_reason": s.status_reason,
        "session_schema": SCHEMA,
        "session_schema_version": int(s.attrs.get("schema_version", SCHEMA_VERSION)),
        "devmodel_version": __version__,
        "history": f"devmodel {__version__} store.open_xarray of {s.path.name}",
    }
    if isinstance(s.chip, dict) and s.chip.get("identity"):
        attrs["chip_identity"] = str(s.chip["identity"])
    if "late_reads" in s.attrs:
        attrs["late_reads"] = int(s.attrs["late_reads"])
    attrs["chip_json"] = to_json(s.chip)
    attrs["config_json"] = to_json(s.config)
    if isinstance(s.config, dict) and "verify" not in s.config and s.verify_config is not None:
        attrs["verify_config_json"] = to_json(s.verify_config)  # files before devmodel 0.1
    attrs["provenance_json"] = to_json(s.provenance)
    return attrs


def open_xarray(path_or_session: str | Path | Session) -> xarray.Dataset:
    """A session file (or a loaded :class:`~devmodel.store.Session`) as an :class:`xarray.Dataset`.

    Layout (docs/session-format.md, "As xarray"): dimension ``device`` (rows of /devices) with
    coordinates ``address``, ``level``, ``target_us`` and a variable for every other /devices column
    plus ``n_reads``; dimension ``target_level`` with ``level_target_us``; the drift-schedule reads
    as ``g_us``, ``t_s``, ``age_s`` (and ``nominal_age_s`` when recorded) of dimensions
    (device, read), each device's reads in time order and padded with NaN; burst reads, if any, as
    ``burst_g_us``, ``burst_t_s``, ``burst_age_s`` of dimensions (burst, burst_read). Every variable
    and coordinate has ``units`` ("uS", "s", "1") and ``long_name``. Errors in the file are one
    sentence (:class:`~devmodel.errors.SessionFileError`).
    """
    xr = _xarray()
    s = path_or_session if isinstance(path_or_session, Session) else read_session(path_or_session,
                                                                                  with_trace=False)
    devices = _devices(s)
    n_dev = int(devices["address"].size)
    reads = _schedule_reads(s, n_dev)
    coords: dict[str, Any] = {
        "device": ("device", np.arange(n_dev)),
        "address": ("device", devices["address"]),
        "level": ("device", devices["level"]),
        "target_us": ("device", devices["target_us"]),
        "target_level": ("target_level", np.arange(s.levels_us.size)),
        "level_target_us": ("target_level", np.asarray(s.levels_us, dtype=float)),
        "read": ("read", np.arange(reads["g_us"].shape[1])),
    }
    data: dict[str, Any] = {k: ("device", v) for k, v in devices.items() if k not in coords}
    data["n_reads"] = ("device", reads.pop("n_reads"))
    data.update({k: (("device", "read"), v) for k, v in reads.items()})
    bursts = _bursts(s, devices)
    if bursts is not None:
        coords["burst"] = ("burst", bursts.pop("burst"))
        coords["burst_read"] = ("burst_read", np.arange(bursts["burst_g_us"].shape[1]))
        for k in ("burst_device", "burst_address", "burst_level"):
            if k in bursts:
                coords[k] = ("burst", bursts.pop(k))
        for k, v in bursts.items():
            data[k] = (("burst", "burst_read") if v.ndim == 2 else "burst", v)
    ds = xr.Dataset(data, coords=coords, attrs=_dataset_attrs(s))
    for name in list(ds.variables):
        ds[name].attrs.update(_attrs(str(name)))
    if "stop_reason" in ds:
        codes = sorted(STOP_REASONS)
        ds["stop_reason"].attrs.update(flag_values=np.array(codes, dtype=ds["stop_reason"].dtype),
                                       flag_meanings=" ".join(STOP_REASONS[c] for c in codes))
    return ds


def summary(ds: xarray.Dataset) -> str:
    """One line: devices × reads, schedule reads, levels and bursts of a dataset of :func:`open_xarray`."""
    n_sched = int(ds["n_reads"].sum()) if "n_reads" in ds else 0
    text = (f"{ds.sizes.get('device', 0)} devices × {ds.sizes.get('read', 0)} reads "
            f"({n_sched} schedule reads), {ds.sizes.get('target_level', 0)} levels")
    if "burst" in ds.sizes:
        text += f", {ds.sizes['burst']} bursts × {ds.sizes['burst_read']} reads"
    return text


def save_netcdf(ds: xarray.Dataset, out_path: str | Path, overwrite: bool = False,
                inputs: Iterable[str | Path] = ()) -> Path:
    """Write a dataset of :func:`open_xarray` to netCDF-4 (engine h5netcdf, the 2-D read matrices
    gzip-compressed) through :func:`devmodel.store.output.atomic_output`: nothing half-written, no
    existing file replaced without ``overwrite``, never one of ``inputs``."""
    from devmodel.store.output import atomic_output

    try:
        import h5netcdf  # noqa: F401  (the engine; absent, xarray's message would be a traceback)
    except ImportError:
        raise DevmodelError("writing netCDF needs the package h5netcdf: pip install h5netcdf") from None
    encoding = {name: {"zlib": True, "complevel": 4} for name, v in ds.data_vars.items()
                if v.ndim == 2 and v.size}
    out_path = Path(out_path)
    with atomic_output(out_path, overwrite, inputs=inputs) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
    return out_path


def write_netcdf(session_path: str | Path, out_path: str | Path, overwrite: bool = False) -> Path:
    """A session file as a netCDF-4 file readable by ``xarray.open_dataset(path, engine="h5netcdf")``
    (layout: :func:`open_xarray`, docs/session-format.md "As xarray"); returns ``out_path``. The
    output is checked before the session is read (exists without ``overwrite``, is the session)."""
    from devmodel.store.output import check_output

    check_output(Path(out_path), overwrite, [session_path])
    return save_netcdf(open_xarray(session_path), out_path, overwrite, inputs=[session_path])
