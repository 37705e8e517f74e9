"""What the fitters take from a session: reads by device, device screening, levels, read ages.

Screening (docs/physics.md, "Fitting"): devices with a target of 0, devices whose verify loop did not
converge, and outliers at t0 (further than ``outlier_sigma`` robust σ from their level's median,
e.g. stuck devices) are excluded, and each exclusion is counted so the card can report it.

Levels are the session's own (``/levels`` and ``/devices/level``): a level may hold devices with
different targets (a table of per-device targets grouped on import); every deviation is taken from
the device's own target. The ages the fitters compare at are the schedule's nominal ages where the
file records them (``/reads/nominal_age_s``), else the clusters of ln(age) most devices share; reads
no age takes are counted by reason (:meth:`FitData.losses`), never dropped without a word.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from devmodel.errors import DevmodelError
from devmodel.stats import robust_sigma
from devmodel.store.reader import Session


@dataclass
class FitData:
    """Arrays the fitters use, all aligned with the session's /devices rows or /reads rows."""

    session: Session
    target_us: np.ndarray  # per device
    level: np.ndarray  # per device, index into levels_us
    levels_us: np.ndarray
    use: np.ndarray  # per device: used by the fits
    excluded: dict[str, int] = field(default_factory=dict)
    # schedule reads (burst < 0)
    dev: np.ndarray = None
    age_s: np.ndarray = None
    g_us: np.ndarray = None
    g_t0: np.ndarray = None  # per device, NaN if no read near t0
    nominal_s: np.ndarray = None  # per schedule read: the age it was taken for (NaN: not recorded)
    min_share: float = 0.5  # an age enters the fits when this share of the used devices has a read
    nominal_kind: str = "recorded"  # "recorded", "clusters" (from the ages), "none" (windows)

    @property
    def n_devices(self) -> int:
        return self.target_us.size

    @property
    def has_nominal(self) -> bool:
        """True when schedule reads carry the age they were taken for: recorded in the file, or
        assigned from the clusters of ln(age) the reads form (:func:`cluster_nominal`)."""
        return self.nominal_kind != "none"

    def schedule_ages(self, use: np.ndarray | None = None) -> np.ndarray:
        """The ages the fits compare at, for the devices in ``use`` (default: the used ones): the
        recorded nominal ages held by at least ``min_share`` of them, else the clusters of ln(age)
        that hold reads of at least that share."""
        use = self.use if use is None else use
        sel = use[self.dev]
        if not sel.any():
            return np.empty(0)
        if not self.has_nominal:  # at the schedule's named ages where the clusters sit near them
            measured = typical_ages(self.age_s[sel], self.dev[sel], min_share=self.min_share)
            return _nominal_ages(measured, _schedule(self.session.config), 0.05)
        ages, first = np.unique(self.nominal_s[sel], return_inverse=True)
        n_dev = np.array([np.unique(self.dev[sel][first == i]).size for i in range(ages.size)])
        keep = np.isfinite(ages) & (ages > 0) & (n_dev >= self.min_share * max(int(use.sum()), 1))
        return ages[keep]

    def at_age(self, age_s: float, rel_tol: float = 0.1) -> np.ndarray:
        """Per device its schedule read at ``age_s`` (NaN where none): the read taken for that
        nominal age, or without recorded nominal ages the one closest to it within ``rel_tol``."""
        if self.has_nominal:
            sel = self.nominal_s == age_s
            out = np.full(self.n_devices, np.nan)
            out[self.dev[sel]] = self.g_us[sel]
            return out
        return read_near(self.dev, self.age_s, self.g_us, self.n_devices, age_s, rel_tol)

    def losses(self, ages: np.ndarray, rel_tol: float = 0.1) -> dict[str, int]:
        """Schedule reads the fits at ``ages`` leave out, by reason: of devices not used, taken at an
        age too few devices share, a device's second read at one age, or (without nominal ages)
        outside every age's ±``rel_tol`` window."""
        used_dev = self.use[self.dev]
        if self.has_nominal:
            at = np.isin(self.nominal_s, ages)
            near = np.isfinite(self.nominal_s)  # NaN: a second read of the device at one age
        else:
            ln = np.log(np.maximum(self.age_s, 1e-300))
            near_any = np.zeros(self.age_s.size, bool)
            for a in ages:
                near_any |= np.abs(self.age_s - a) <= rel_tol * a
            at = near_any
            clusters = typical_ages(self.age_s[used_dev], self.dev[used_dev], min_share=0.0) \
                if used_dev.any() else np.empty(0)
            near = np.zeros_like(at)
            for a in clusters:
                near |= np.abs(ln - np.log(a)) <= 0.1
        other = ("second_reads_of_a_device_at_one_age" if self.has_nominal
                 else "reads_outside_every_age_window")
        return {"reads_of_excluded_devices": int(np.count_nonzero(~used_dev)),
                "reads_at_ages_too_few_devices_share": int(np.count_nonzero(used_dev & ~at & near)),
                other: int(np.count_nonzero(used_dev & ~at & ~near))}


@dataclass
class LevelSample:
    """What a technology's per-level stage reads (``fit_levels``, docs/scale.md): for every level
    the per-device values of its used devices with a read at t0, in device order (``g_t0`` and the
    technology's ``device_estimates``), the schedule ages each level shares, the screening counts,
    and the read-noise bursts with per-device arrays indexed by the bursts' device column.

    Made in memory from :class:`FitData` (:func:`level_sample`) or chunk by chunk from a session
    larger than memory (:mod:`devmodel.fit.streamed`): the same numbers either way, so both fits
    give the same card."""

    session: Session  # header; its reads hold at least the bursts
    levels_us: np.ndarray
    per_level: list[dict[str, np.ndarray]]
    ages: list[np.ndarray]  # per level (representative_ages)
    excluded: dict[str, int]
    burst_level: np.ndarray  # indexed by session.reads["device"] of the burst reads
    burst_use: np.ndarray
    burst_estimates: dict[str, np.ndarray]


def level_sample(data: FitData, estimates: dict[str, np.ndarray]) -> LevelSample:
    """The per-level stage's input from in-memory data; ``estimates`` are the technology's per-device
    arrays, ``estimates["ok"]`` the devices whose estimates are usable."""
    use = data.use & estimates["ok"]
    values = {"g_t0": data.g_t0} | {k: v for k, v in estimates.items() if k != "ok"}
    per_level = []
    for j in range(data.levels_us.size):
        sel = use & (data.level == j) & np.isfinite(data.g_t0)
        per_level.append({k: v[sel] for k, v in values.items()})
    return LevelSample(data.session, data.levels_us, per_level, representative_ages(data, use),
                       data.excluded, data.level, use, estimates)


def read_near(dev: np.ndarray, age_s: np.ndarray, g_us: np.ndarray, n_devices: int,
              age_ref_s: float, rel_tol: float = 0.1) -> np.ndarray:
    """Per device, its read closest to ``age_ref_s`` within ``rel_tol`` (NaN where none)."""
    sel = np.abs(age_s - age_ref_s) <= rel_tol * age_ref_s
    d, g, err = dev[sel], g_us[sel], np.abs(age_s[sel] - age_ref_s)
    out = np.full(n_devices, np.nan)
    if d.size and np.bincount(d, minlength=n_devices).max() > 1:
        order = np.lexsort((-err, d))  # per device, the closest read is written last
        d, g = d[order], g[order]
    out[d] = g
    return out


def prepare(session: Session, outlier_sigma: float | None = 6.0) -> FitData:
    """Screen devices and collect the schedule reads; ``outlier_sigma`` None keeps every device's
    t0 read (the technology's fit options say which, docs/physics.md "Fitting")."""
    d = session.devices
    if not d or "target_us" not in d:
        hint = (f"; devmodel characterize --resume {session.path} continues it"
                if session.status != "complete" else "")
        raise DevmodelError(f"{session.path} has no programmed devices to fit (status "
                            f"{session.status}){hint}")
    target = np.asarray(d["target_us"], float)
    levels = np.asarray(session.levels_us, float)
    level = np.asarray(d["level"], np.int64)
    r = session.reads
    sched = r["burst"] < 0
    dev, age, g = r["device"][sched].astype(np.int64), r["age_s"][sched], r["g_us"][sched]
    if dev.size == 0:
        raise DevmodelError(f"{session.path} has no schedule reads to fit")
    nominal = np.asarray(r["nominal_age_s"], float)[sched]
    kind = "recorded"
    if not np.isfinite(nominal).mean() > 0.99:
        nominal = cluster_nominal(dev, age, _schedule(session.config))
        kind = "clusters" if nominal is not None else "none"
        nominal = nominal if nominal is not None else np.full(age.size, np.nan)
    data = FitData(session=session, target_us=target, level=level, levels_us=levels,
                   use=np.ones(target.size, bool), dev=dev, age_s=age, g_us=g, nominal_s=nominal,
                   nominal_kind=kind)
    t0 = session.t0_s
    if data.has_nominal and not np.any(nominal == t0):  # a nominal age within 10 % stands for it
        ages = np.unique(nominal[np.isfinite(nominal)])
        near = ages[np.abs(np.log(ages / t0)) <= np.log(1.1)] if ages.size else ages
        t0 = float(near[np.argmin(np.abs(np.log(near / t0)))]) if near.size else t0
    g_t0 = data.at_age(t0)
    converged = d["converged"].astype(bool) if "converged" in d else np.ones(target.size, bool)
    use = (target > 0) & converged
    excluded = {"zero_target": int(np.sum(target == 0)),
                "not_converged": int(np.sum((target > 0) & ~converged))}
    no_t0 = use & ~np.isfinite(g_t0)
    outlier = np.zeros_like(use)
    for j in range(levels.size if outlier_sigma is not None else 0):
        m = use & (level == j) & np.isfinite(g_t0)
        if m.sum() < 5:
            continue
        med, s = np.median(g_t0[m]), robust_sigma(g_t0[m])
        outlier |= m & (np.abs(g_t0 - med) > outlier_sigma * max(s, 1e-6))
    excluded["outlier_t0"] = int(outlier.sum())
    excluded["no_read_at_t0"] = int(no_t0.sum())
    use &= ~outlier
    data.use, data.excluded, data.g_t0 = use, excluded, g_t0
    return data


#: Reads of one schedule age form a cluster in ln(age): gaps between clusters exceed this.
CLUSTER_GAP = 0.1
#: A cluster wider than this factor is not one age (reads spread continuously in time).
CLUSTER_MAX_SPAN = 1.6


def cluster_nominal(dev: np.ndarray, age_s: np.ndarray, schedule_s) -> np.ndarray | None:
    """Nominal ages for reads that record none: the clusters of ln(age) (gaps > CLUSTER_GAP), each
    named by its geometric mean or the schedule age within 5 % of it. A device's second read in one
    cluster gets NaN (the read closest to the cluster's age is kept). None when a cluster spans more
    than CLUSTER_MAX_SPAN (reads at scattered ages: the fits then use ±10 % windows)."""
    la = np.log(np.maximum(age_s, 1e-300))
    order = np.argsort(la, kind="stable")
    brk = np.concatenate([[0], np.cumsum(np.diff(la[order]) > CLUSTER_GAP)])
    cl = np.empty_like(brk)
    cl[order] = brk
    n_cl = int(brk[-1]) + 1
    count = np.bincount(cl, minlength=n_cl)
    lo = np.full(n_cl, np.inf)
    hi = np.full(n_cl, -np.inf)
    np.minimum.at(lo, cl, la)
    np.maximum.at(hi, cl, la)
    big = count >= 0.05 * max(np.unique(dev).size, 1)
    if np.any(big & (hi - lo > np.log(CLUSTER_MAX_SPAN))):
        return None
    rep = _nominal_ages(np.exp(np.bincount(cl, la, n_cl) / count), schedule_s, 0.05)
    nominal = rep[cl]
    key = dev.astype(np.int64) * n_cl + cl
    o = np.lexsort((np.abs(la - np.log(nominal)), key))
    repeat = np.concatenate([[False], key[o][1:] == key[o][:-1]])
    nominal[o[repeat]] = np.nan
    return nominal


def typical_ages(age_s: np.ndarray, dev: np.ndarray, gap: float = 0.1, min_share: float = 0.5
                 ) -> np.ndarray:
    """Ages most devices share: clusters of ln(age) separated by gaps > ``gap`` that hold reads of
    at least ``min_share`` of the devices; returns each cluster's mean age."""
    la = np.log(age_s)
    fine, inv, counts = np.unique(np.round(la * 1000).astype(np.int64), return_inverse=True,
                                  return_counts=True)
    cluster_of_fine = np.concatenate([[0], np.cumsum(np.diff(fine) > gap * 1000)])
    cl = cluster_of_fine[inv]
    n_cl = cluster_of_fine[-1] + 1
    n_reads = np.bincount(cl, minlength=n_cl)
    mean_age = np.bincount(cl, age_s, n_cl) / np.maximum(n_reads, 1)
    n_dev = max(np.unique(dev).size, 1)
    return np.sort(mean_age[n_reads >= min_share * n_dev])


def representative_ages(data: FitData, use: np.ndarray) -> list[np.ndarray]:
    """Per level (indexed like ``levels_us``), the typical drift-schedule ages of its used devices;
    empty for a level without any."""
    out = []
    for j in range(data.levels_us.size):
        in_level = use & (data.level == j)
        out.append(data.schedule_ages(in_level) if in_level.any() else np.empty(0))
    return out


def require_t0(data: FitData) -> None:
    """Fits anchored at t0 need reads there: one sentence naming t0 and the ages the file has."""
    if np.isfinite(data.g_t0[data.use]).any() or not data.use.any():
        return
    t0 = data.session.t0_s
    raise DevmodelError(f"{data.session.path}: no device has a read within ±10 % of t0 = {t0:g} s "
                        f"(its reads span {np.min(data.age_s):g}–{np.max(data.age_s):g} s); import "
                        "it again with --t0-s set to an age every device was read at")


def require_levels(data: FitData, degree: int, what: str) -> None:
    """A degree-``degree`` polynomial across levels needs at least degree + 2 of them."""
    if data.levels_us.size < degree + 2:
        raise DevmodelError(f"{data.session.path} has {data.levels_us.size} programmed levels; a "
                            f"degree-{degree} {what} polynomial needs at least {degree + 2}")


def burst_reads(session: Session) -> tuple[np.ndarray, ...] | None:
    """The read-noise burst reads (burst id, t_s, g_us, device, age_s), ordered by burst and time;
    None without bursts."""
    r = session.reads
    sel = r["burst"] >= 0
    if not sel.any():
        return None
    bid, t = r["burst"][sel], r["t_s"][sel]
    order = np.lexsort((t, bid))
    return (bid[order], t[order], r["g_us"][sel][order], r["device"][sel].astype(int)[order],
            r["age_s"][sel][order])


def _schedule(config: dict) -> list[float]:
    """The nominal drift-schedule ages a session's configuration names ([] if none or unusable)."""
    sweep = config.get("sweep") if isinstance(config, dict) else None
    ages = sweep.get("schedule_s") if isinstance(sweep, dict) else None
    ok = isinstance(ages, list) and all(isinstance(a, int | float) and a > 0 for a in ages)
    return [float(a) for a in ages] if ok else []


def _nominal_ages(measured_s: np.ndarray, schedule_s, rel_tol: float) -> np.ndarray:
    """The session's nominal schedule ages (1 s, 1 day, …) where a measured cluster's mean age is
    within ``rel_tol`` of one (reads come a few ms late), so a card fitted on a session answers at the
    times its schedule named; the measured means otherwise (tables without a schedule)."""
    nominal = np.asarray(schedule_s, dtype=float)
    if nominal.size == 0:
        return measured_s
    near = nominal[np.argmin(np.abs(np.log(measured_s[:, None] / nominal[None, :])), axis=1)]
    return np.where(np.abs(measured_s / near - 1) <= rel_tol, near, measured_s)
