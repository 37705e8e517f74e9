"""Import measurements made elsewhere (a long-format table of reads) into a session file.

One row per read. With a header line the columns are named by it; a file without one (as measured
data often come: tab-separated, SI units) is named by ``columns`` (``-`` skips a column). Commas,
tabs or blanks separate the cells; a ``.gz`` file is read as it is.

Required columns: ``device`` (int), ``target_us`` (float), ``time_s`` (float, seconds since that
device's last programming pulse), ``g_us`` (float). Optional:

* ``burst`` — an int id; rows of one device sharing an id form one equally spaced read-noise burst
  (an empty cell or −1 marks an ordinary read);
* ``converged`` — 0/1 from the lab's verify loop;
* ``g_verify_us`` — the final verify reading of the device; rows with ``time_s`` = 0 are taken as
  the verify reading too (the first read right after programming), not as schedule reads;
* ``nominal_time_s`` — the schedule age a read was taken for: the fit compares reads at these ages
  (no window around measured ages);
* ``level`` — a level label: devices sharing it form one level.

Conductances are in µS unless ``conductance_unit`` says otherwise (S, mS, nS). Per-device targets
(each device programmed to its own value) are grouped into levels by the ``level`` column, by
``levels_us`` (the nearest of the given values) or by ``target_bins`` (equal-width bins over
[0, g_max]); every deviation is still taken from each device's own target. Targets beyond g_max are
refused, or with ``beyond_g_max="drop"`` left out and counted. What the file did not have is not
claimed: ``/config`` lists the columns it had, and verify information it lacked is recorded as not
recorded (iterations −1). Other columns are kept under ``/import/extra/<name>``, aligned with
``/reads``. The result has the schema of a live session (``t_last_pulse_s`` = 0, ``t_s`` = ``time_s``),
so everything downstream is identical. Every error names the file, the column and the line; the
output is written to a temporary file and renamed only when complete.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import io
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import h5py
import numpy as np

from devmodel.errors import DevmodelError, UnknownNameError
from devmodel.store.output import atomic_output, check_output
from devmodel.store.schema import StopReason, sha256_of
from devmodel.store.writer import SessionWriter
from devmodel.technologies import technology as lookup_technology
from devmodel.validation import Constrained, Each, Interval, OneOf, OrNone

REQUIRED = ("device", "target_us", "time_s", "g_us")
OPTIONAL = ("burst", "converged", "g_verify_us", "nominal_time_s", "level")
UNITS_TO_US = {"S": 1e6, "mS": 1e3, "uS": 1.0, "µS": 1.0, "nS": 1e-3}
CONDUCTANCES = ("target_us", "g_us", "g_verify_us")


class TableImportError(DevmodelError):
    """A table that cannot be imported (one sentence naming file, column and line)."""


@dataclass(frozen=True)
class ImportOptions(Constrained):
    """How a table is read and grouped (recorded in the session's ``/config``)."""

    technology: str
    g_max_us: float
    t0_s: float | None = None  # reference age [the technology's]
    columns: tuple[str, ...] | None = None  # names of a header-less file's columns ("-": skip)
    conductance_unit: str = "uS"
    target_bins: int | None = None
    levels_us: tuple[float, ...] | None = None
    beyond_g_max: str = "refuse"
    dedupe: bool = False  # rows repeating a read: keep the first (counted) instead of refusing

    WHERE: ClassVar[str] = "import-table"
    CONSTRAINTS: ClassVar[dict] = {
        "g_max_us": Interval(0.0, None, "neither"), "t0_s": OrNone(Interval(0.0, None, "neither")),
        "conductance_unit": OneOf(tuple(UNITS_TO_US)),
        "target_bins": OrNone(Interval(1, 10_000, integer=True)),
        "levels_us": OrNone(Each(Interval(0.0, None, "neither"), min_len=1)),
        "beyond_g_max": OneOf(("refuse", "drop")),
    }

    def check_more(self) -> None:
        if self.target_bins is not None and self.levels_us is not None:
            raise TableImportError("--target-bins and --levels both group targets into levels: give one")


def import_table(csv_path: str | Path, out_path: str | Path, technology: str, g_max_us: float,
                 t0_s: float | None = None, overwrite: bool = False, **options) -> Path:
    """Convert a long-format table of reads into a session file; returns the output path.
    ``options`` are the other fields of :class:`ImportOptions`."""
    src, out = Path(csv_path), Path(out_path)
    try:
        tech = lookup_technology(technology)
    except UnknownNameError as e:
        raise TableImportError(f"--technology: {e}") from None
    opts = ImportOptions(technology, float(g_max_us), t0_s, **options)
    try:
        opts.check()
    except DevmodelError as e:
        raise TableImportError(str(e)) from None
    check_output(out, overwrite, [src])
    cols, extra, first_line = _read_columns(src, opts.columns)
    table, dropped = _validate(src, cols, opts, first_line)
    table["level_of_device"], levels = _group_levels(src, table, cols, opts)
    t0 = opts.t0_s if opts.t0_s is not None else tech.t0_s
    with atomic_output(out, overwrite, [src]) as tmp:
        _write(tmp, src, table, extra, opts, t0, levels, dropped)
    return out


def _open_text(src: Path):
    if src.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(src, "rb"), encoding="utf-8-sig", newline="")
    return open(src, newline="", encoding="utf-8-sig")


def _read_columns(src: Path, names: tuple[str, ...] | None
                  ) -> tuple[dict[str, list[str]], dict[str, list[str]], int]:
    """The table's known columns and its other ones, as text; and the line number of its first row."""
    if not src.exists():
        raise TableImportError(f"{src} does not exist")
    try:
        with _open_text(src) as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise TableImportError(f"{src} is not a UTF-8 text table") from None
    except (OSError, EOFError) as e:
        raise TableImportError(f"{src} cannot be read ({type(e).__name__}: {e})") from None
    lines = text.splitlines()
    first = next((ln for ln in lines if ln.strip()), None)
    if first is None:
        raise TableImportError(f"{src} is empty (a header line, or --columns, is required)")
    delimiter = "\t" if "\t" in first else "," if "," in first else None
    try:
        if delimiter is None:
            rows = [ln.split() for ln in lines]
        else:
            rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as e:
        raise TableImportError(f"{src} is not a readable table ({e})") from None
    if names is None:
        header = [h.strip() for h in rows[0]]
        body, first_line = rows[1:], 2
    else:
        header = [h.strip() for h in names]
        body, first_line = rows, 1
    for name in REQUIRED:
        if name not in header:
            close = difflib.get_close_matches(name, header, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else f" (found: {', '.join(header)})"
            where = "missing column" if names is None else "--columns names no column"
            raise TableImportError(f"{src}: {where} '{name}'{hint}")
    unnamed = [j + 1 for j, h in enumerate(header) if not h]
    if unnamed:
        raise TableImportError(f"{src}: header column {unnamed[0]} has no name (every column needs one)")
    dup = {h for h, n in Counter(header).items() if n > 1 and h != "-"}  # linear in the columns
    if dup:
        raise TableImportError(f"{src}: column '{sorted(dup)[0]}' appears twice in the header")
    keep = [(i, r) for i, r in enumerate(body) if any(c.strip() for c in r)]
    if not keep:
        raise TableImportError(f"{src} has a header but no data rows")
    width = len(header)
    for i, r in keep:
        if len(r) != width:
            raise TableImportError(f"{src} line {i + first_line}: {len(r)} cells where the "
                                   f"{'header' if names is None else '--columns list'} has {width}")
    line_of = np.array([i + first_line for i, _ in keep])  # blank lines skipped, numbers kept
    cols = {h: [r[j].strip() for _, r in keep] for j, h in enumerate(header) if h != "-"}
    known = set(REQUIRED) | set(OPTIONAL)
    extra = {h: v for h, v in cols.items() if h not in known}
    cols = {h: v for h, v in cols.items() if h in known}
    cols["_line"] = line_of  # type: ignore[assignment]
    return cols, extra, int(line_of[0])


def _numbers(src: Path, name: str, cells: list[str], kind: type, line_of: np.ndarray,
             allow_empty: bool = False):
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
    return _numbers_by_cell(src, name, cells, kind, line_of, allow_empty)


def _numbers_by_cell(src: Path, name: str, cells: list[str], kind: type, line_of: np.ndarray,
                     allow_empty: bool):
    out = np.empty(len(cells), dtype=float if kind is float else np.int64)
    for i, c in enumerate(cells):
        if c == "" and allow_empty:
            out[i] = -1
            continue
        where = f"{src} line {line_of[i]}, column {name}"
        try:
            v = kind(float(c)) if kind is int else float(c)
            if kind is int and float(c) != int(float(c)):
                raise ValueError
        except (ValueError, OverflowError):  # OverflowError: int(float("inf"))
            what = "an integer" if kind is int else "a number"
            raise TableImportError(f"{where}: {c!r} is not {what}") from None
        if kind is float and not np.isfinite(v):
            raise TableImportError(f"{where}: {c} is not a finite number")
        if kind is int and not -(2**63) <= v < 2**63:
            raise TableImportError(f"{where}: {c} is beyond the 64-bit integers")
        out[i] = v
    return out


def _validate(src: Path, cols: dict, opts: ImportOptions, first_line: int
              ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The columns as numbers in µS, checked row by row and device by device; and what was left out."""
    line_of = cols["_line"]
    scale = UNITS_TO_US[opts.conductance_unit]
    t = {"device": _numbers(src, "device", cols["device"], int, line_of),
         "time_s": _numbers(src, "time_s", cols["time_s"], float, line_of),
         "_row": np.arange(line_of.size)}  # the table row, followed through every filter
    for name in CONDUCTANCES:
        if name in cols:
            t[name] = _numbers(src, name, cols[name], float, line_of) * scale
    t["burst"] = (_numbers(src, "burst", cols["burst"], int, line_of, allow_empty=True) if "burst" in cols
                  else np.full(t["device"].size, -1))
    t["nominal_time_s"] = (_numbers(src, "nominal_time_s", cols["nominal_time_s"], float, line_of)
                           if "nominal_time_s" in cols else np.full(t["device"].size, np.nan))
    if "converged" in cols:
        conv = _numbers(src, "converged", cols["converged"], int, line_of)
        bad = np.flatnonzero((conv != 0) & (conv != 1))
        if bad.size:
            raise TableImportError(f"{src} line {line_of[bad[0]]}, column converged: must be 0 or 1")
        t["converged"] = conv
    g_max = opts.g_max_us
    for name, cond, what in (
            ("device", t["device"] < 0, "must be ≥ 0"),
            ("time_s", t["time_s"] < 0, "must be ≥ 0 (age since programming; 0 is the verify read)"),
            ("nominal_time_s", t["nominal_time_s"] < 0, "must be ≥ 0"),
            ("target_us", t["target_us"] < 0, "must be ≥ 0"),
            ("burst", t["burst"] < -1, "must be an id ≥ 0, or −1/empty")):
        bad = np.flatnonzero(cond)
        if bad.size:
            raise TableImportError(f"{src} line {line_of[bad[0]]}, column {name}: "
                                   f"{cols[name][bad[0]]} {what}")
    _same_per_device(src, t, "target_us", line_of, "has two different targets")
    _nominal_near_time(src, t, line_of)
    if "g_verify_us" in t:
        _same_per_device(src, t, "g_verify_us", line_of, "has two different verify readings")
    if "converged" in t:
        _same_per_device(src, t, "converged", line_of, "is marked both converged and not")
    if "level" in cols:
        t["level"] = np.asarray(cols["level"], dtype=str)
        _same_per_device(src, t, "level", line_of, "has two different level labels")
    dropped = {}
    t, line_of = _duplicates(src, t, line_of, opts.dedupe, dropped)
    beyond = t["target_us"] > g_max * (1 + 1e-12)
    if beyond.any():
        if opts.beyond_g_max == "refuse":
            i = int(np.flatnonzero(beyond)[0])
            n_dev = np.unique(t["device"][beyond]).size
            who = "1 device does" if n_dev == 1 else f"{n_dev} devices do"
            raise TableImportError(f"{src} line {line_of[i]}, column target_us: {t['target_us'][i]:g} µS "
                                   f"lies beyond g_max = {g_max:g} µS ({who}); raise --g-max-us or "
                                   "leave them out with --beyond-g-max drop")
        dropped["devices_beyond_g_max"] = int(np.unique(t["device"][beyond]).size)
        dropped["reads_of_devices_beyond_g_max"] = int(beyond.sum())
        t = {k: v[~beyond] for k, v in t.items()}
        line_of = line_of[~beyond]
    t["_line"] = line_of
    _verify_reads(src, t, line_of)
    sched = (t["burst"] < 0) & (t["time_s"] > 0)
    # counted over the ids present, not by bincount up to the largest id (1e15 would not fit in memory)
    present, inverse = np.unique(t["device"], return_inverse=True)
    n_sched = np.bincount(inverse[sched], minlength=present.size)
    lonely = np.flatnonzero(n_sched < 2)
    if lonely.size:
        i = np.flatnonzero(t["device"] == present[lonely[0]])[0]
        raise TableImportError(f"{src} line {line_of[i]}: device {present[lonely[0]]} has "
                               f"{n_sched[lonely[0]]} read(s) after programming; drift needs at least two")
    _check_bursts(src, t, line_of)
    return t, dropped


#: A read's nominal age and its measured age differ by less than this factor (the measured data we
#: know keep within ±20 %, docs/session-format.md); more is a column mix-up, not a late read.
NOMINAL_FACTOR = 2.0


def _nominal_near_time(src, t: dict, line_of) -> None:
    nom, time = t["nominal_time_s"], t["time_s"]
    both = np.isfinite(nom) & (nom > 0) & (time > 0)
    far = np.flatnonzero(both & (np.abs(np.log(np.where(both, time / np.where(nom > 0, nom, 1), 1)))
                                 > np.log(NOMINAL_FACTOR)))
    if far.size:
        i = far[0]
        raise TableImportError(f"{src} line {line_of[i]}, column nominal_time_s: {nom[i]:g} s is more "
                               f"than a factor {NOMINAL_FACTOR:g} from the read's time_s {time[i]:g} s")


def _same_per_device(src: Path, t: dict, name: str, line_of: np.ndarray, what: str) -> None:
    dev = t["device"]
    order = np.argsort(dev, kind="stable")
    ds, v = dev[order], t[name][order]
    change = np.flatnonzero((ds[1:] == ds[:-1]) & (v[1:] != v[:-1]))
    if change.size:
        i = order[change[0] + 1]
        raise TableImportError(f"{src} line {line_of[i]}, column {name}: device {dev[i]} {what}")


def _verify_reads(src: Path, t: dict, line_of: np.ndarray) -> None:
    """Rows at time 0 are each device's verify reading (at most one a device)."""
    zero = t["time_s"] == 0
    if not zero.any():
        return
    dev0 = t["device"][zero]
    u, c = np.unique(dev0, return_counts=True)
    if (c > 1).any():
        i = np.flatnonzero(zero & (t["device"] == u[np.argmax(c > 1)]))[1]
        raise TableImportError(f"{src} line {line_of[i]}, column time_s: device {t['device'][i]} has two "
                               "reads at time 0 (the verify reading is one)")
    if (t["burst"][zero] >= 0).any():
        i = np.flatnonzero(zero & (t["burst"] >= 0))[0]
        raise TableImportError(f"{src} line {line_of[i]}, column time_s: a burst read at time 0 (time 0 "
                               "is the verify reading)")


def _group_levels(src: Path, t: dict, cols: dict, opts: ImportOptions) -> tuple[np.ndarray, np.ndarray]:
    """Per device row of the table its level index, and the levels' target values (µS): by the level
    column, the given levels, equal-width bins, or one level per distinct target."""
    ids, first = np.unique(t["device"], return_index=True)
    target = t["target_us"][first]
    if "level" in t:
        _, level = np.unique(t["level"][first], return_inverse=True)
    elif opts.levels_us is not None:
        lv = np.sort(np.asarray(opts.levels_us, dtype=float))
        level = np.argmin(np.abs(target[:, None] - lv[None, :]), axis=1)
    elif opts.target_bins is not None:
        edges = np.linspace(0.0, opts.g_max_us, opts.target_bins + 1)
        level = np.clip(np.searchsorted(edges, target, side="right") - 1, 0, opts.target_bins - 1)
    else:
        _, level = np.unique(target, return_inverse=True)
    zero = target == 0  # unused devices of a pair: no level of their own
    used, level = np.unique(level[~zero], return_inverse=True) if (~zero).any() else (np.empty(0), level)
    full = np.zeros(ids.size, np.int64)
    full[~zero] = level
    n_lv = int(used.size)
    counts = np.bincount(level, minlength=n_lv) if n_lv else np.zeros(0, int)
    if n_lv > 1 and np.median(counts) < 2:
        raise TableImportError(
            f"{src}: the targets form {n_lv} levels with a median of {np.median(counts):g} device "
            f"each (per-device targets); group them with --target-bins N, --levels L1,L2,… or a "
            f"level column")
    levels = np.array([target[~zero][level == j].mean() for j in range(n_lv)])
    order = np.argsort(levels, kind="stable")  # levels ascending, as a live session's
    rank = np.empty(n_lv, np.int64)
    rank[order] = np.arange(n_lv)
    full[~zero] = rank[level]
    return full, levels[order]


def _check_bursts(src: Path, t: dict[str, np.ndarray], line_of: np.ndarray, rel_tol: float = 0.05) -> None:
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
        raise TableImportError(f"{src} line {line_of[i]}, column burst: burst {t['burst'][i]} of device "
                               f"{t['device'][i]} has a single read; a burst needs at least two")
    dt = np.diff(t["time_s"][order])
    dt[start[1:] - 1] = np.nan  # across bursts
    grp = np.cumsum(new)[:-1] - 1
    mean_dt = np.bincount(grp, np.nan_to_num(dt), start.size) / (size - 1)
    off = np.abs(dt - mean_dt[grp]) > rel_tol * np.maximum(mean_dt[grp], 1e-12)
    if off.any():
        i = order[np.argmax(off) + 1]
        raise TableImportError(f"{src} line {line_of[i]}, column time_s: burst {t['burst'][i]} of device "
                               f"{t['device'][i]} is not equally spaced (a read {dt[np.argmax(off)]:g} s "
                               f"after the previous, the burst's mean interval is "
                               f"{mean_dt[grp[np.argmax(off)]]:g} s)")


def _write(tmp: Path, src: Path, t: dict, extra: dict, opts: ImportOptions, t0_s: float,
           levels: np.ndarray, dropped: dict[str, int]) -> None:
    ids, row = np.unique(t["device"], return_inverse=True)
    n = ids.size
    target = np.zeros(n)
    target[row] = t["target_us"]
    conv = np.ones(n, np.int64)
    if "converged" in t:
        conv[row] = t["converged"]
    verify = np.full(n, np.nan)
    zero = t["time_s"] == 0
    verify[row[zero]] = t["g_us"][zero]
    if "g_verify_us" in t:
        verify[row] = np.where(np.isfinite(verify[row]), verify[row], t["g_verify_us"])
    has_verify = bool(zero.any() or "g_verify_us" in t)
    present = [c for c in REQUIRED + OPTIONAL if c in t and (c != "burst" or (t["burst"] >= 0).any())
               and (c != "nominal_time_s" or np.isfinite(t["nominal_time_s"]).any())]
    if zero.any() and "g_verify_us" not in present:
        present.append("g_verify_us (the reads at time 0)")
    cfg = {"import": {"source": str(src), "columns": present,
                      "options": {k: v for k, v in asdict(opts).items() if v is not None},
                      "left_out": dropped, "verify_recorded": has_verify,
                      "convergence_recorded": "converged" in t},
           "sweep": {"levels_us": levels.tolist()}}
    if np.isfinite(t["nominal_time_s"]).any():
        cfg["sweep"]["schedule_s"] = sorted({float(a) for a in t["nominal_time_s"][~zero]
                                             if np.isfinite(a) and a > 0})
    with SessionWriter(tmp, technology=opts.technology, g_max_us=opts.g_max_us, t0_s=t0_s,
                       chip={"identity": f"imported from {src.name}", "technology": opts.technology},
                       config=cfg, seed=None, overwrite=True) as w:
        w.write_levels(levels)
        w.write_devices({"address": ids, "level": t["level_of_device"], "target_us": target,
                         "converged": conv, "iterations": np.full(n, -1), "pulses": np.full(n, -1),
                         "g_verify_us": verify, "t_last_pulse_s": np.zeros(n),
                         "stop_reason": np.where(conv == 1, int(StopReason.CONVERGED),
                                                 int(StopReason.MAX_ITERATIONS))})
        keep = ~zero  # time-0 rows are the verify readings, now in /devices
        row, tk = row[keep], {k: v[keep] for k, v in t.items() if k != "level_of_device"}
        burst = _write_bursts(w, row, tk)
        w.append("reads", {"device": row, "t_s": tk["time_s"], "age_s": tk["time_s"], "g_us": tk["g_us"],
                           "burst": burst, "nominal_age_s": tk["nominal_time_s"]})
        g = w.f.create_group("import")
        g.attrs["source"] = str(src)
        g.attrs["source_sha256"] = sha256_of(src)
        ex = g.create_group("extra")
        for key, (name, cells) in zip(dataset_names(extra), extra.items(), strict=True):
            cells = list(np.asarray(cells, dtype=object)[tk["_row"]])  # rows left out stay out
            try:
                d = ex.create_dataset(key, data=np.asarray(cells, dtype=str).astype(float))
            except ValueError:  # text: UTF-8 strings, any script
                d = ex.create_dataset(key, data=np.array(cells, dtype=object),
                                      dtype=h5py.string_dtype("utf-8"))
            d.attrs["column"] = name
        w.finish()


def _duplicates(src: Path, t: dict, line_of: np.ndarray, dedupe: bool, dropped: dict
                ) -> tuple[dict, np.ndarray]:
    """Rows that repeat a read (same device, time_s, burst and g_us: a file concatenated twice, a
    logger that wrote a line again) would count one measurement twice in every statistic: refused,
    or with ``dedupe`` the first kept and the rest counted in ``dropped``."""
    key = np.stack([t["device"].astype(float), t["time_s"], t["burst"].astype(float), t["g_us"]], axis=1)
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    repeat = first[inverse] != np.arange(inverse.size)
    if not repeat.any():
        return t, line_of
    i = int(np.flatnonzero(repeat)[0])
    if not dedupe:
        raise TableImportError(f"{src} line {line_of[i]} repeats line {line_of[first[inverse[i]]]} (device "
                               f"{t['device'][i]}, time_s {t['time_s'][i]:g}, g_us {t['g_us'][i]:g}; "
                               f"{int(repeat.sum())} repeated row(s) in all); pass --dedupe to keep the "
                               "first of each")
    dropped["duplicate_rows"] = int(repeat.sum())
    return {k: v[~repeat] for k, v in t.items()}, line_of[~repeat]


def dataset_names(columns) -> list[str]:
    """HDF5 names for the extra columns: '/' (it would nest groups) and the names '.' and '..'
    replaced by '_', and a name that collides with an earlier one suffixed ~2, ~3, … (the header
    name itself is kept in the dataset's ``column`` attribute)."""
    used: set[str] = set()
    out = []
    for name in columns:
        base = name.replace("/", "_")
        base = "_" if base in (".", "..") else base
        key, k = base, 1
        while key in used:
            k += 1
            key = f"{base}~{k}"
        used.add(key)
        out.append(key)
    return out


def _write_bursts(w: SessionWriter, row: np.ndarray, t: dict) -> np.ndarray:
    """The bursts table; returns each read's burst id (−1 for a schedule read)."""
    burst = np.full(row.size, -1)
    b = t["burst"] >= 0
    if not b.any():
        return burst
    keys, bid = np.unique(np.column_stack([row[b], t["burst"][b]]), axis=0, return_inverse=True)
    burst[b] = bid
    tb = t["time_s"][b]
    n_reads = np.bincount(bid)
    t_start = np.full(keys.shape[0], np.inf)
    t_end = np.full(keys.shape[0], -np.inf)
    np.minimum.at(t_start, bid, tb)
    np.maximum.at(t_end, bid, tb)
    interval = (t_end - t_start) / np.maximum(n_reads - 1, 1)  # bursts are equally spaced
    w.write_bursts({"burst": np.arange(keys.shape[0]), "device": keys[:, 0],
                    "n_reads": n_reads, "interval_s": interval, "t_start_s": t_start})
    return burst


def read_numeric_table(path: str | Path, names: tuple[str, ...], required: tuple[str, ...],
                       conductance_unit: str = "uS") -> dict[str, np.ndarray]:
    """A header-less numeric table (tab, comma or blank separated, optionally gzipped) as named
    float columns (``-`` skips one; conductance columns scaled to µS); one sentence naming the
    file, line and column for a missing column, a short line or a bad cell."""
    src = Path(path)
    missing = [n for n in required if n not in names]
    if missing:
        raise TableImportError(f"{src}: --columns names no column '{missing[0]}'")
    if conductance_unit not in UNITS_TO_US:
        raise TableImportError(f"--conductance-unit must be one of {', '.join(UNITS_TO_US)}")
    if not src.exists():
        raise TableImportError(f"{src} does not exist")
    try:
        with _open_text(src) as fh:
            lines = [ln for ln in fh.read().splitlines() if ln.strip()]
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise TableImportError(f"{src} cannot be read as a text table ({type(e).__name__})") from None
    if not lines:
        raise TableImportError(f"{src} is empty")
    rows = [ln.replace(",", " ").split() for ln in lines]
    short = next((i for i, r in enumerate(rows) if len(r) != len(names)), None)
    if short is not None:
        raise TableImportError(f"{src} line {short + 1}: {len(rows[short])} cells where --columns has "
                               f"{len(names)}")
    out = {}
    for j, name in enumerate(names):
        if name == "-":
            continue
        cells = [r[j] for r in rows]
        try:
            v = np.array(cells, dtype=float)
        except ValueError:
            i = next(k for k, c in enumerate(cells) if not is_number(c))
            raise TableImportError(f"{src} line {i + 1}, column {name}: {cells[i]!r} is not a "
                                   "number") from None
        if not np.isfinite(v).all():
            i = int(np.argmin(np.isfinite(v)))
            raise TableImportError(f"{src} line {i + 1}, column {name}: {cells[i]!r} is not a finite number")
        out[name] = v * UNITS_TO_US[conductance_unit] if name in CONDUCTANCES else v
    return out


def is_number(text: str) -> bool:
    """True when ``float(text)`` parses (the cell check behind every "is not a number" message)."""
    try:
        float(text)
    except ValueError:
        return False
    return True
