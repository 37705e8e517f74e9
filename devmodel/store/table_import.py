"""Import measurements made elsewhere (long-format CSV) into a session file.

One row per read, header required. Required columns: ``device`` (int), ``target_us`` (float),
``time_s`` (float, seconds since that device's last programming pulse), ``g_us`` (float). Optional:
``burst`` (int id; rows of one device sharing an id form one equally spaced read-noise burst; an
empty cell or −1 marks an ordinary schedule read) and ``converged`` (0/1). Other columns are kept
under ``/import/extra/<name>``, aligned with ``/reads``. The result has the same schema as a live
session (with ``t_last_pulse_s`` = 0 and ``t_s`` = ``time_s``), so everything downstream is
identical. Every error names the file, the column and the line; the output is written to a temporary
file and renamed only when complete.
"""

from __future__ import annotations

import csv
import difflib
import os
from pathlib import Path

import h5py
import numpy as np

from devmodel.errors import DevmodelError, UnknownNameError
from devmodel.store.schema import StopReason, sha256_of
from devmodel.store.writer import SessionWriter
from devmodel.technologies import technology as lookup_technology

REQUIRED = ("device", "target_us", "time_s", "g_us")
OPTIONAL = ("burst", "converged")


class TableImportError(DevmodelError):
    """A table that cannot be imported (one sentence naming file, column and line)."""


def import_table(csv_path: str | Path, out_path: str | Path, technology: str, g_max_us: float,
                 t0_s: float | None = None, overwrite: bool = False) -> Path:
    """Convert a long-format CSV of reads into a session file; returns the output path."""
    src, out = Path(csv_path), Path(out_path)
    try:
        tech = lookup_technology(technology)
    except UnknownNameError as e:
        raise TableImportError(f"--technology: {e}") from None
    if not (np.isfinite(g_max_us) and g_max_us > 0):
        raise TableImportError("--g-max-us must be a positive number of µS")
    if out.exists() and not overwrite:
        raise TableImportError(f"{out} already exists; choose another --out or pass --overwrite")
    cols, extra = _read_columns(src)
    table = _validate(src, cols, g_max_us)
    t0 = t0_s if t0_s is not None else tech.t0_s
    tmp = out.with_name(out.name + ".partial")
    try:
        _write(tmp, src, table, extra, technology, g_max_us, t0)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def _read_columns(src: Path) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    if not src.exists():
        raise TableImportError(f"{src} does not exist")
    try:
        with open(src, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise TableImportError(f"{src} is empty (a header line is required)")
            header = [h.strip() for h in header]
            rows = [r for r in reader if any(c.strip() for c in r)]
    except UnicodeDecodeError:
        raise TableImportError(f"{src} is not a UTF-8 text table") from None
    except csv.Error as e:
        raise TableImportError(f"{src} is not a readable CSV table ({e})") from None
    for name in REQUIRED:
        if name not in header:
            close = difflib.get_close_matches(name, header, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f" (found: {', '.join(header)})"
            raise TableImportError(f"{src}: missing column '{name}'{hint}")
    unnamed = [j + 1 for j, h in enumerate(header) if not h]
    if unnamed:
        raise TableImportError(f"{src}: header column {unnamed[0]} has no name (every column needs one)")
    dup = {h for h in header if header.count(h) > 1}
    if dup:
        raise TableImportError(f"{src}: column '{sorted(dup)[0]}' appears twice in the header")
    if not rows:
        raise TableImportError(f"{src} has a header but no data rows")
    width = len(header)
    for i, r in enumerate(rows):
        if len(r) != width:
            raise TableImportError(f"{src} line {i + 2}: {len(r)} cells where the header has {width}")
    cols = {h: [r[j].strip() for r in rows] for j, h in enumerate(header)}
    known = set(REQUIRED) | set(OPTIONAL)
    extra = {h: v for h, v in cols.items() if h not in known}
    return {h: v for h, v in cols.items() if h in known}, extra


def _numbers(src: Path, name: str, cells: list[str], kind: type, allow_empty: bool = False):
    """The column as numbers: converted whole; a column with any bad cell goes through the cell
    loop, which names the first bad cell's line."""
    try:
        u = np.asarray(cells, dtype=str)
        empty = u == ""
        f = np.where(empty, "-1", u).astype(float) if allow_empty else u.astype(float)
        if kind is float and np.isfinite(f).all():
            return f
        if (kind is int and np.isfinite(f).all() and (f == np.floor(f)).all()
                and f.min(initial=0) >= -(2.0**63) and f.max(initial=0) < 2.0**63):
            return f.astype(np.int64)
    except ValueError:
        pass
    return _numbers_by_cell(src, name, cells, kind, allow_empty)


def _numbers_by_cell(src: Path, name: str, cells: list[str], kind: type, allow_empty: bool):
    out = np.empty(len(cells), dtype=float if kind is float else np.int64)
    for i, c in enumerate(cells):
        if c == "" and allow_empty:
            out[i] = -1
            continue
        try:
            v = kind(float(c)) if kind is int else float(c)
            if kind is int and float(c) != int(float(c)):
                raise ValueError
        except (ValueError, OverflowError):  # OverflowError: int(float("inf"))
            what = "an integer" if kind is int else "a number"
            raise TableImportError(f"{src} line {i + 2}, column {name}: {c!r} is not {what}") from None
        if kind is float and not np.isfinite(v):
            raise TableImportError(f"{src} line {i + 2}, column {name}: {c} is not a finite number")
        if kind is int and not -(2**63) <= v < 2**63:
            raise TableImportError(f"{src} line {i + 2}, column {name}: {c} is beyond the 64-bit integers")
        out[i] = v
    return out


def _validate(src: Path, cols: dict[str, list[str]], g_max_us: float) -> dict[str, np.ndarray]:
    t = {
        "device": _numbers(src, "device", cols["device"], int),
        "target_us": _numbers(src, "target_us", cols["target_us"], float),
        "time_s": _numbers(src, "time_s", cols["time_s"], float),
        "g_us": _numbers(src, "g_us", cols["g_us"], float),
    }
    t["burst"] = (_numbers(src, "burst", cols["burst"], int, allow_empty=True) if "burst" in cols
                  else np.full(t["device"].size, -1))
    if "converged" in cols:
        conv = _numbers(src, "converged", cols["converged"], int)
        bad = np.flatnonzero((conv != 0) & (conv != 1))
        if bad.size:
            raise TableImportError(f"{src} line {bad[0] + 2}, column converged: must be 0 or 1")
        t["converged"] = conv
    line = lambda i: int(i) + 2  # noqa: E731  (header is line 1)
    for name, cond, what in (("device", t["device"] < 0, "must be ≥ 0"),
                             ("time_s", t["time_s"] <= 0, "must be > 0 (age since programming)"),
                             ("target_us", (t["target_us"] < 0) | (t["target_us"] > g_max_us),
                              f"must lie in [0, g_max = {g_max_us:g}]"),
                             ("burst", t["burst"] < -1, "must be an id ≥ 0, or −1/empty")):
        bad = np.flatnonzero(cond)
        if bad.size:
            raise TableImportError(f"{src} line {line(bad[0])}, column {name}: "
                               f"{cols[name][bad[0]]} {what}")
    dev = t["device"]
    order = np.argsort(dev, kind="stable")
    ds, tg = dev[order], t["target_us"][order]
    change = np.flatnonzero((ds[1:] == ds[:-1]) & (tg[1:] != tg[:-1]))
    if change.size:
        i = order[change[0] + 1]
        raise TableImportError(f"{src} line {line(i)}, column target_us: device {dev[i]} has two "
                           "different targets")
    if "converged" in t:
        cv = t["converged"][order]
        change = np.flatnonzero((ds[1:] == ds[:-1]) & (cv[1:] != cv[:-1]))
        if change.size:
            i = order[change[0] + 1]
            raise TableImportError(f"{src} line {line(i)}, column converged: device {dev[i]} is "
                               "marked both converged and not")
    sched = t["burst"] < 0
    # counted over the ids present, not by bincount up to the largest id (1e15 would not fit in memory)
    present, inverse = np.unique(dev, return_inverse=True)
    n_sched = np.bincount(inverse[sched], minlength=present.size)
    lonely = np.flatnonzero(n_sched < 2)
    if lonely.size:
        i = np.flatnonzero(dev == present[lonely[0]])[0]
        raise TableImportError(f"{src} line {line(i)}: device {present[lonely[0]]} has "
                           f"{n_sched[lonely[0]]} schedule read(s); drift needs at least two")
    _check_bursts(src, t)
    return t


def _check_bursts(src: Path, t: dict[str, np.ndarray], rel_tol: float = 0.05) -> None:
    """Every burst (device, burst id) has ≥ 2 reads, equally spaced in time within ``rel_tol`` of
    its mean interval: the variogram takes lags as multiples of one interval."""
    b = np.flatnonzero(t["burst"] >= 0)
    if b.size == 0:
        return
    order = b[np.lexsort((t["time_s"][b], t["burst"][b], t["device"][b]))]
    key = np.column_stack([t["device"][order], t["burst"][order]])
    new = np.concatenate([[True], np.any(key[1:] != key[:-1], axis=1)])
    start = np.flatnonzero(new)
    size = np.diff(np.append(start, order.size))
    if (size < 2).any():
        i = order[start[np.argmax(size < 2)]]
        raise TableImportError(f"{src} line {i + 2}, column burst: burst {t['burst'][i]} of device "
                               f"{t['device'][i]} has a single read; a burst needs at least two")
    dt = np.diff(t["time_s"][order])
    dt[start[1:] - 1] = np.nan  # across bursts
    grp = np.cumsum(new)[:-1] - 1
    mean_dt = np.bincount(grp, np.nan_to_num(dt), start.size) / (size - 1)
    off = np.abs(dt - mean_dt[grp]) > rel_tol * np.maximum(mean_dt[grp], 1e-12)
    if off.any():
        i = order[np.argmax(off) + 1]
        raise TableImportError(f"{src} line {i + 2}, column time_s: burst {t['burst'][i]} of device "
                               f"{t['device'][i]} is not equally spaced (a read {dt[np.argmax(off)]:g} s "
                               f"after the previous, the burst's mean interval is "
                               f"{mean_dt[grp[np.argmax(off)]]:g} s)")


def _write(tmp: Path, src: Path, t: dict, extra: dict, technology: str, g_max_us: float,
           t0_s: float) -> None:
    ids, row = np.unique(t["device"], return_inverse=True)
    n = ids.size
    target = np.zeros(n)
    target[row] = t["target_us"]
    conv = np.ones(n, np.int64)
    if "converged" in t:
        conv[row] = t["converged"]
    levels = np.unique(target[target > 0])
    cfg = {"import": {"source": str(src), "columns": list(REQUIRED) + [c for c in OPTIONAL
                                                                      if c in t]},
           "sweep": {"levels_us": levels.tolist()}}
    with SessionWriter(tmp, technology=technology, g_max_us=g_max_us, t0_s=t0_s,
                       chip={"identity": f"imported from {src.name}", "technology": technology},
                       config=cfg, seed=None, overwrite=True) as w:
        w.write_levels(levels)
        w.write_devices({"address": ids, "level": np.searchsorted(levels, target),
                         "target_us": target, "converged": conv, "iterations": np.zeros(n),
                         "pulses": np.zeros(n), "g_verify_us": np.full(n, np.nan),
                         "t_last_pulse_s": np.zeros(n),
                         "stop_reason": np.where(conv == 1, int(StopReason.CONVERGED),
                                                 int(StopReason.MAX_ITERATIONS))})
        burst = np.full(row.size, -1)
        b = t["burst"] >= 0
        if b.any():
            keys, bid = np.unique(np.column_stack([row[b], t["burst"][b]]), axis=0,
                                  return_inverse=True)
            burst[b] = bid
            tb = t["time_s"][b]
            n_reads = np.bincount(bid)
            t_start = np.full(keys.shape[0], np.inf)
            t_end = np.full(keys.shape[0], -np.inf)
            np.minimum.at(t_start, bid, tb)
            np.maximum.at(t_end, bid, tb)
            # bursts are equally spaced by definition
            interval = (t_end - t_start) / np.maximum(n_reads - 1, 1)
            w.write_bursts({"burst": np.arange(keys.shape[0]), "device": keys[:, 0],
                            "n_reads": n_reads, "interval_s": interval, "t_start_s": t_start})
        w.append("reads", {"device": row, "t_s": t["time_s"], "age_s": t["time_s"],
                           "g_us": t["g_us"], "burst": burst})
        g = w.f.create_group("import")
        g.attrs["source"] = str(src)
        g.attrs["source_sha256"] = sha256_of(src)
        ex = g.create_group("extra")
        for name, cells in extra.items():
            key = name.replace("/", "_")  # '/' would nest HDF5 groups; the header name is kept
            try:
                d = ex.create_dataset(key, data=np.asarray(cells, dtype=str).astype(float))
            except ValueError:  # text: UTF-8 strings, any script
                d = ex.create_dataset(key, data=np.array(cells, dtype=object),
                                      dtype=h5py.string_dtype("utf-8"))
            d.attrs["column"] = name
        w.finish()
