"""Out-of-core fit of one session (docs/scale.md, "The memory model"): the session file is read in
chunks of devices, never whole, so the peak memory is set by ``memory_limit`` and not by the
session's size.

1. **Index** (one pass over ``/reads/device``, ``burst`` and ``nominal_age_s`` in blocks): where the
   schedule reads of every chunk of devices lie (runs of rows), where the bursts lie, the nominal
   ages the file records.
2. **Per-device stage**, chunk by chunk: each chunk's devices and schedule reads are read; its
   read at t0, its reads per nominal age, and the technology's ``device_estimates`` (PCM: ν̂ from
   the device's own reads) are computed and appended, level by level, to scratch files.
3. **Per-level stage**, level by level: the screening of :func:`devmodel.fit.data.prepare` (target
   0, not converged, t0 outliers at ``outlier_sigma`` robust σ of the level), the ages the level
   shares, the counts the card reports; then the technology's ``fit_levels`` on a
   :class:`~devmodel.fit.data.LevelSample` whose levels are loaded one at a time.

Every per-device value depends only on that device's reads and every per-level value on that
level's devices in device order, as in memory, so the card equals the in-memory fit's bit for bit
(``tests/test_scale.py``). Needs the nominal age of (nearly) every schedule read
(``/reads/nominal_age_s``, which every devmodel-written session records) and reads grouped by
device in runs (every devmodel writer's layout).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from devmodel import __version__
from devmodel.errors import DevmodelError, SessionFileError
from devmodel.fit.data import LevelSample
from devmodel.model.card import DeviceModel, created_utc
from devmodel.stats import robust_sigma
from devmodel.store.reader import Session, SessionFile
from devmodel.store.schema import sha256_of
from devmodel.technologies import technology

#: Default ``--memory-limit``: 2 GiB, a quarter of an 8 GB laptop (docs/scale.md).
DEFAULT_MEMORY_LIMIT = 2 << 30
#: Peak bytes per schedule read of the in-memory PCM fit: 1.47 GB for 7.33 M reads (10⁶ devices ×
#: 7 ages + bursts; docs/scale.md), rounded up. Sizes the chunks and estimates the in-memory fit.
BYTES_PER_READ = 210
#: Peak bytes per device of the per-level stage (its arrays and the temporaries of the level's
#: statistics; measured, docs/scale.md).
BYTES_PER_LEVEL_DEVICE = 160
#: Interpreter, NumPy, SciPy, lmfit and h5py loaded: what no chunk size changes (measured).
BASELINE_BYTES = 250 << 20
#: Peak bytes per row of the index pass (device, burst and nominal age with their masks and copies;
#: measured with tracemalloc: 65 B).
_INDEX_BYTES_PER_ROW = 70
#: More runs of rows than this per chunk means the reads are not grouped by device.
_MAX_RUNS_PER_CHUNK = 4096


def memory_bytes(text: str, option: str = "--memory-limit") -> int:
    """``"2GB"``, ``"512MiB"``, ``"1.5G"``, ``"4e9"`` as bytes (decimal k/M/G/T, binary Ki/Mi/Gi/Ti)."""
    m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([kmgt]?)(i?)b?\s*", str(text).lower())
    scale = {"": 1, "k": 1, "m": 2, "g": 3, "t": 4}
    try:
        value = float(m[1]) * (1024 if m[3] else 1000) ** scale[m[2]]
    except (TypeError, ValueError):
        raise DevmodelError(f"{option} {text!r}: expected a size such as 2GB or 512MiB") from None
    if not value >= 256 << 20:
        raise DevmodelError(f"{option} {text!r}: at least 256 MiB is needed (the interpreter and "
                            "libraries alone take ≈ 250 MB)")
    return int(value)


def in_memory_bytes(path: str | Path) -> int:
    """Estimated peak memory of the in-memory fit of the session at ``path``."""
    with SessionFile(path) as sf:
        g = sf.f["reads"] if "reads" in sf.f else None
        n = int(g.attrs.get("n_rows", g["g_us"].shape[0])) if g is not None and "g_us" in g else 0
    return BASELINE_BYTES + BYTES_PER_READ * n


def supports_streaming(technology_name: str) -> bool:
    """Whether the technology's fit has the per-device/per-level split the out-of-core fit needs."""
    part = technology(technology_name).part("fit")
    return hasattr(part, "device_estimates") and hasattr(part, "fit_levels")


@dataclass
class ReadIndex:
    """Where a chunk's reads lie: row ranges (start, stop) per chunk; chunk −1 holds the bursts."""

    n_rows: int
    chunk_devices: int
    runs: dict[int, np.ndarray] = field(default_factory=dict)  # chunk → (k, 2) row ranges
    nominal_ages: np.ndarray = None  # unique finite nominal ages of the schedule reads
    n_schedule: int = 0
    n_nominal: int = 0  # schedule reads recording a finite nominal age


def _plan(sf: SessionFile, n_devices: int, n_rows: int, memory_limit: int) -> tuple[int, int]:
    """(devices per chunk, rows per index block) for ``memory_limit``; one sentence when even a
    level's per-device values would not fit."""
    free = memory_limit - BASELINE_BYTES
    per_level = n_devices / max(sf.f["levels/target_us"].shape[0], 1)
    if per_level * BYTES_PER_LEVEL_DEVICE > free:
        need = BASELINE_BYTES + per_level * BYTES_PER_LEVEL_DEVICE
        raise DevmodelError(f"{sf.path}: a level of {per_level:.0f} devices needs ≈ {need / 1e9:.1f} GB "
                            f"in the per-level stage; raise --memory-limit to at least {need / 1e9:.1f}GB")
    reads_per_device = max(n_rows / max(n_devices, 1), 1.0)
    chunk = int(free / 2 / (BYTES_PER_READ * reads_per_device))
    return max(chunk, 1024), max(int(free / 2 / _INDEX_BYTES_PER_ROW), 1 << 16)


def index_reads(sf: SessionFile, n_devices: int, chunk_devices: int, block_rows: int) -> ReadIndex:
    """One pass over the read table's index columns, ``block_rows`` at a time."""
    g = sf.f["reads"]
    n_rows = int(g.attrs.get("n_rows", g["device"].shape[0]))
    if "nominal_age_s" not in g:
        raise DevmodelError(f"{sf.path} records no nominal read ages (/reads/nominal_age_s); the "
                            "out-of-core fit needs them: fit it in memory (--memory-limit above "
                            f"{in_memory_bytes(sf.path) / 1e9:.1f}GB)")
    idx = ReadIndex(n_rows, chunk_devices)
    keys, starts, stops, ages = [], [], [], []
    for a in range(0, n_rows, block_rows):
        b = min(a + block_rows, n_rows)
        dev = g["device"][a:b].astype(np.int64)
        burst = g["burst"][a:b]
        nominal = g["nominal_age_s"][a:b]
        bad = (dev < 0) | (dev >= n_devices)
        if bad.any():
            raise SessionFileError(f"{sf.path}: /reads/device holds {int(dev[bad][0])}, not a row of "
                                   f"the {n_devices}-device table")
        sched = burst < 0
        cid = np.where(sched, dev // chunk_devices, -1)
        brk = np.flatnonzero(np.diff(cid)) + 1
        lo = np.concatenate([[0], brk])
        keys.append(cid[lo])
        starts.append(lo + a)
        stops.append(np.concatenate([brk, [b - a]]) + a)
        ns = nominal[sched]
        fin = np.isfinite(ns)
        idx.n_schedule += int(sched.sum())
        idx.n_nominal += int(fin.sum())
        ages.append(np.unique(ns[fin]))
    key, start, stop = (np.concatenate(x) if x else np.empty(0, np.int64) for x in (keys, starts, stops))
    # runs continuing across block boundaries are one run
    new = np.concatenate([[True], (key[1:] != key[:-1]) | (start[1:] != stop[:-1])]) if key.size else key
    first = np.flatnonzero(new)
    last = np.concatenate([first[1:], [key.size]]) - 1
    key, start, stop = key[first], start[first], stop[last]
    n_chunks = -(-n_devices // chunk_devices)
    if key.size > _MAX_RUNS_PER_CHUNK * (n_chunks + 1):
        raise DevmodelError(f"{sf.path}: its reads are not grouped by device ({key.size} runs for "
                            f"{n_chunks} chunks of devices); the out-of-core fit reads a chunk's "
                            "devices from a few runs of rows: fit it in memory")
    order = np.argsort(key, kind="stable")
    bounds = np.searchsorted(key[order], np.arange(-1, n_chunks + 1))
    for c in range(-1, n_chunks):
        sel = order[bounds[c + 1]:bounds[c + 2]]
        idx.runs[c] = np.column_stack([start[sel], stop[sel]])
    idx.nominal_ages = np.unique(np.concatenate(ages)) if ages else np.empty(0)
    return idx


def _read_runs(sf: SessionFile, runs: np.ndarray, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The rows of ``runs`` (file order) of the read columns ``columns``."""
    g = sf.f["reads"]
    out = {}
    for col in columns:
        parts = [g[col][a:b] for a, b in runs]
        out[col] = np.concatenate(parts) if parts else np.empty(0, g[col].dtype)
    return out


def _effective_t0(t0_s: float, ages: np.ndarray) -> float:
    """t0, or the recorded nominal age within 10 % nearest to it (as :func:`prepare` takes it)."""
    if ages.size == 0 or np.any(ages == t0_s):
        return t0_s
    near = ages[np.abs(np.log(ages / t0_s)) <= np.log(1.1)]
    return float(near[np.argmin(np.abs(np.log(near / t0_s)))]) if near.size else t0_s


class _Scratch:
    """Per-level scratch files of per-device values, appended chunk by chunk, read level by level."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.dtypes: dict[str, tuple[np.dtype, int]] = {}

    def append(self, level: int, values: dict[str, np.ndarray]) -> None:
        for key, v in values.items():
            v = np.ascontiguousarray(v)
            self.dtypes[key] = (v.dtype, int(np.prod(v.shape[1:], dtype=np.int64)))
            with open(self.folder / f"{level}.{key}", "ab") as fh:
                v.tofile(fh)

    def load(self, level: int, key: str) -> np.ndarray:
        dtype, width = self.dtypes[key]
        p = self.folder / f"{level}.{key}"
        v = np.fromfile(p, dtype) if p.exists() else np.empty(0, dtype)
        return v.reshape(-1, width) if width != 1 else v


def _per_device(sf: SessionFile, idx: ReadIndex, c: int, n_devices: int, t0_eff: float, t0_s: float,
                part: Any) -> tuple[dict[str, np.ndarray], tuple[float, float]]:
    """Chunk ``c``'s per-device values (device order) and the age range of its schedule reads."""
    a, b = c * idx.chunk_devices, min((c + 1) * idx.chunk_devices, n_devices)
    n = b - a
    d = sf.f["devices"]
    values = {"row": np.arange(a, b), "level": d["level"][a:b].astype(np.int64),
              "target_us": d["target_us"][a:b].astype(float),
              "converged": (d["converged"][a:b].astype(bool) if "converged" in d else np.ones(n, bool))}
    r = _read_runs(sf, idx.runs[c], ("device", "age_s", "g_us", "nominal_age_s"))
    dev = r["device"].astype(np.int64) - a
    age, g, nominal = r["age_s"], r["g_us"], r["nominal_age_s"]
    if not (np.isfinite(g).all() and np.isfinite(age).all() and (age >= 0).all()):
        raise SessionFileError(f"{sf.path}: /reads/g_us or /reads/age_s holds non-finite or negative "
                               f"values (reads of devices {a}–{b - 1})")
    g_t0 = np.full(n, np.nan)
    at = nominal == t0_eff
    g_t0[dev[at]] = g[at]
    k = idx.nominal_ages.size
    fin = np.isfinite(nominal)
    col = np.searchsorted(idx.nominal_ages, nominal[fin])
    values["counts"] = np.bincount(dev[fin] * k + col, minlength=n * k).reshape(n, k).astype(np.int32)
    values["n_nan"] = np.bincount(dev[~fin], minlength=n).astype(np.int32)
    values["g_t0"] = g_t0
    values |= part.device_estimates(dev, age, g, n, t0_s)
    span = (float(age.min()), float(age.max())) if age.size else (np.inf, -np.inf)
    return values, span


@dataclass
class _Totals:
    """What the per-level stage adds up over levels (screening counts, age shares, read losses)."""

    n_ages: int
    excluded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("zero_target", "not_converged", "outlier_t0", "no_read_at_t0"), 0))
    n_used: int = 0
    any_t0: bool = False
    dev_with_read: np.ndarray = None
    used_counts: np.ndarray = None
    used_nan: int = 0
    excluded_reads: int = 0

    def __post_init__(self) -> None:
        self.dev_with_read = np.zeros(self.n_ages, np.int64)
        self.used_counts = np.zeros(self.n_ages, np.int64)


def _screen(load, outlier_sigma: float | None, tot: _Totals) -> np.ndarray:
    """One level's used devices, screened as :func:`devmodel.fit.data.prepare` screens them;
    ``load(key)`` reads one per-device column of the level (one at a time: memory)."""
    target, converged, g_t0 = load("target_us"), load("converged"), load("g_t0")
    use = (target > 0) & converged
    tot.excluded["zero_target"] += int(np.sum(target == 0))
    tot.excluded["not_converged"] += int(np.sum((target > 0) & ~converged))
    del target, converged
    finite = np.isfinite(g_t0)
    outlier = np.zeros_like(use)
    m = use & finite
    if outlier_sigma is not None and m.sum() >= 5:
        med, s = np.median(g_t0[m]), robust_sigma(g_t0[m])
        outlier = m & (np.abs(g_t0 - med) > outlier_sigma * max(s, 1e-6))
    tot.excluded["outlier_t0"] += int(outlier.sum())
    tot.excluded["no_read_at_t0"] += int(np.sum(use & ~finite))
    use &= ~outlier
    tot.n_used += int(use.sum())
    tot.any_t0 |= bool(np.any(use & finite))
    counts, n_nan = load("counts"), load("n_nan")
    for a in range(counts.shape[1]):  # column by column: no copy of the level's count matrix
        col = counts[:, a]
        tot.dev_with_read[a] += np.count_nonzero(col[use])
        tot.used_counts[a] += int(col[use].sum())
        tot.excluded_reads += int(col[~use].sum())
    tot.used_nan += int(n_nan[use].sum())
    tot.excluded_reads += int(n_nan[~use].sum())
    return use


def _ages_with_reads(counts: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Per nominal age, the devices in ``use`` with a read there (column by column)."""
    return np.array([np.count_nonzero(counts[:, a][use]) for a in range(counts.shape[1])], np.int64)


class _Levels(Sequence):
    """The per-level arrays of a LevelSample, loaded from scratch one level at a time."""

    def __init__(self, scratch: _Scratch, n_levels: int, keys: list[str]) -> None:
        self.scratch, self.n, self.keys = scratch, n_levels, keys

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, j):
        if not isinstance(j, int) or not 0 <= j < self.n:
            raise IndexError(j)
        return {k: self.scratch.load(j, f"fit.{k}") for k in self.keys}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return (self[j] for j in range(self.n))


def _shared_ages(ages: np.ndarray, n_dev: np.ndarray, n_used: int, min_share: float = 0.5) -> np.ndarray:
    """The nominal ages held by at least ``min_share`` of the used devices (FitData.schedule_ages)."""
    if n_used == 0:
        return np.empty(0)
    return ages[(ages > 0) & (n_dev > 0) & (n_dev >= min_share * max(n_used, 1))]


def fit_session_streamed(path: str | Path, options: Any = None, memory_limit: int = DEFAULT_MEMORY_LIMIT,
                         scratch_dir: str | Path | None = None, progress=None) -> DeviceModel:
    """Fit the session at ``path`` out of core (module docstring); the card of
    :func:`devmodel.fit.session.fit_session` without hold-out or bootstrap, with
    ``provenance.out_of_core`` saying how it was read. ``progress(phase, done, total)``."""
    from devmodel.fit.session import fit_options, guarded_fit_call

    step = progress or (lambda phase, done, total: None)
    with SessionFile(path) as sf:
        h = sf.header()
        if not supports_streaming(h["technology"]):
            raise DevmodelError(f"{sf.path}: the {h['technology']} fit has no out-of-core form; it "
                                f"needs ≈ {in_memory_bytes(sf.path) / 1e9:.1f} GB in memory")
        part = technology(h["technology"]).part("fit")
        opts = fit_options(h["technology"], options)
        for name in ("devices", "levels", "reads"):
            if name not in sf.f:
                raise SessionFileError(f"{sf.path} is missing the table /{name}")
        levels_us = np.asarray(sf.f["levels/target_us"][()], float)
        n_dev = int(sf.f["devices/address"].shape[0])
        n_rows = sf.acknowledged_rows("reads")
        chunk, block = _plan(sf, n_dev, n_rows, memory_limit)
        step("indexing reads", 0, 1)
        idx = index_reads(sf, n_dev, chunk, block)
        if idx.n_schedule == 0:
            raise DevmodelError(f"{sf.path} has no schedule reads to fit")
        if not idx.n_nominal / idx.n_schedule > 0.99:
            raise DevmodelError(f"{sf.path}: fewer than 99 % of its schedule reads record their nominal "
                                "age; the out-of-core fit needs them: fit it in memory")
        with tempfile.TemporaryDirectory(prefix="devmodel-fit-", dir=scratch_dir) as tmp:
            scratch = _Scratch(Path(tmp))
            span = _chunks(sf, idx, n_dev, h["t0_s"], part, scratch, levels_us.size, step)
            sample, tot = _levels(sf, h, levels_us, idx, scratch, opts, step)
            step(f"fitting {h['technology']}", 0, 1)
            card = guarded_fit_call(sf.path, h["technology"], lambda: part.fit_levels(sample, opts))
    card.fit_quality["excluded_devices"] = sample.excluded
    ages = _shared_ages(idx.nominal_ages, tot.dev_with_read, tot.n_used)
    at = np.isin(idx.nominal_ages, ages)
    card.fit_quality.setdefault("excluded_reads", {
        "reads_of_excluded_devices": tot.excluded_reads,
        "reads_at_ages_too_few_devices_share": int(tot.used_counts[~at].sum()),
        "second_reads_of_a_device_at_one_age": tot.used_nan})
    card.provenance = {
        "source": str(Path(path)), "source_sha256": sha256_of(path), "source_status": h["status"],
        "technology": h["technology"], "n_devices": n_dev, "n_devices_used": tot.n_used,
        "n_reads": n_rows, "age_range_s": list(span),
        "holdout": {"fraction": 0.0, "seed": 0, "split": "random", "n_held_out": 0},
        "toolkit_version": __version__, "created_utc": created_utc(),
        "out_of_core": {"memory_limit_bytes": int(memory_limit), "chunk_devices": chunk,
                        "n_chunks": -(-n_dev // chunk)},
    }
    return card


def _chunks(sf: SessionFile, idx: ReadIndex, n_dev: int, t0_s: float, part: Any, scratch: _Scratch,
            n_levels: int, step) -> tuple[float, float]:
    """The per-device stage over every chunk; returns the schedule reads' age range."""
    t0_eff = _effective_t0(t0_s, idx.nominal_ages)
    n_chunks = -(-n_dev // idx.chunk_devices)
    lo, hi = np.inf, -np.inf
    for c in range(n_chunks):
        step("fitting devices", c, n_chunks)
        values, (a, b) = _per_device(sf, idx, c, n_dev, t0_eff, t0_s, part)
        lo, hi = min(lo, a), max(hi, b)
        level = values["level"]
        if level.size and (level.min() < 0 or level.max() >= n_levels):
            raise SessionFileError(f"{sf.path}: /devices/level holds {int(level.max())}, beyond the "
                                   f"{n_levels} levels")
        order = np.argsort(level, kind="stable")
        bounds = np.searchsorted(level[order], np.arange(n_levels + 1))
        for j in range(n_levels):
            rows = order[bounds[j]:bounds[j + 1]]
            if rows.size:
                scratch.append(j, {k: v[rows] for k, v in values.items() if k != "level"})
    step("fitting devices", n_chunks, n_chunks)
    return lo, hi


def _levels(sf: SessionFile, h: dict, levels_us: np.ndarray, idx: ReadIndex, scratch: _Scratch,
            opts: Any, step) -> tuple[LevelSample, _Totals]:
    """The per-level stage: screening, shared ages, the fit arrays, the bursts' devices."""
    tot = _Totals(idx.nominal_ages.size)
    bursts = _read_runs(sf, idx.runs[-1], ("device", "t_s", "age_s", "g_us", "burst", "nominal_age_s"))
    b_dev, b_row = np.unique(bursts["device"].astype(np.int64), return_inverse=True)
    b_level = np.zeros(b_dev.size, np.int64)
    b_use = np.zeros(b_dev.size, bool)
    b_est: dict[str, np.ndarray] = {}
    level_ages, fit_keys = [], []
    estimates = [k for k in scratch.dtypes if k not in
                 ("row", "target_us", "converged", "counts", "n_nan", "ok", "g_t0")]
    fit_keys = ["g_t0", *estimates]
    for j in range(levels_us.size):
        step("level statistics", j, levels_us.size)

        def load(key: str, j: int = j) -> np.ndarray:
            return scratch.load(j, key)

        use = _screen(load, getattr(opts, "outlier_sigma", 6.0), tot) & load("ok")
        level_ages.append(_shared_ages(idx.nominal_ages, _ages_with_reads(load("counts"), use),
                                       int(use.sum())))
        sel = use & np.isfinite(load("g_t0"))
        row = load("row")
        hit = np.isin(row, b_dev)
        pos = np.searchsorted(b_dev, row[hit])
        del row
        b_level[pos], b_use[pos] = j, use[hit]
        for k in fit_keys:  # one column at a time
            v = load(k)
            scratch.append(j, {f"fit.{k}": v[sel]})
            if k != "g_t0":
                b_est.setdefault(k, np.full(b_dev.size, np.nan, v.dtype))[pos] = v[hit]
            del v
    if not tot.any_t0 and tot.n_used:
        raise DevmodelError(f"{sf.path}: no device has a read within ±10 % of t0 = {h['t0_s']:g} s; "
                            "import it again with --t0-s set to an age every device was read at")
    bursts["device"] = b_row.astype(np.int64)
    session = Session(path=sf.path, technology=h["technology"], g_max_us=h["g_max_us"], t0_s=h["t0_s"],
                      status=h["status"], status_reason=h["status_reason"], levels_us=levels_us,
                      devices={}, reads=bursts, bursts={}, trace={}, chip={}, config={}, provenance={},
                      ground_truth=None, attrs={})
    sample = LevelSample(session, levels_us, _Levels(scratch, levels_us.size, fit_keys), level_ages,
                         tot.excluded, b_level, b_use, b_est)
    return sample, tot
