"""What the fitters take from a session: reads by device, device screening, levels.

Screening (docs/physics.md, "Fitting"): devices with a target of 0, devices whose verify loop did not
converge, and outliers at t0 (further than ``outlier_sigma`` robust σ from their level's median,
e.g. stuck devices) are excluded, and each exclusion is counted so the card can report it.
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

    @property
    def n_devices(self) -> int:
        return self.target_us.size


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


def prepare(session: Session, outlier_sigma: float = 6.0) -> FitData:
    """Screen devices and collect the schedule reads."""
    d = session.devices
    if not d or "target_us" not in d:
        raise DevmodelError(f"{session.path} has no device table to fit")
    target = np.asarray(d["target_us"], float)
    levels = np.unique(target[target > 0])
    level = np.searchsorted(levels, target)
    r = session.reads
    sched = r["burst"] < 0
    dev, age, g = r["device"][sched].astype(np.int64), r["age_s"][sched], r["g_us"][sched]
    if dev.size == 0:
        raise DevmodelError(f"{session.path} has no schedule reads to fit")
    g_t0 = read_near(dev, age, g, target.size, session.t0_s)
    converged = d["converged"].astype(bool) if "converged" in d else np.ones(target.size, bool)
    use = (target > 0) & converged
    excluded = {"zero_target": int(np.sum(target == 0)),
                "not_converged": int(np.sum((target > 0) & ~converged))}
    no_t0 = use & ~np.isfinite(g_t0)
    outlier = np.zeros_like(use)
    for j in range(levels.size):
        m = use & (level == j) & np.isfinite(g_t0)
        if m.sum() < 5:
            continue
        med, s = np.median(g_t0[m]), robust_sigma(g_t0[m])
        outlier |= m & (np.abs(g_t0 - med) > outlier_sigma * max(s, 1e-6))
    excluded["outlier_t0"] = int(outlier.sum())
    excluded["no_read_at_t0"] = int(no_t0.sum())
    use &= ~outlier
    return FitData(session=session, target_us=target, level=level, levels_us=levels, use=use,
                   excluded=excluded, dev=dev, age_s=age, g_us=g, g_t0=g_t0)


def typical_ages(age_s: np.ndarray, dev: np.ndarray, gap: float = 0.1) -> np.ndarray:
    """Ages most devices share: clusters of ln(age) separated by gaps > ``gap`` that hold reads of
    at least half of the devices; returns each cluster's mean age."""
    la = np.log(age_s)
    fine, inv, counts = np.unique(np.round(la * 1000).astype(np.int64), return_inverse=True,
                                  return_counts=True)
    cluster_of_fine = np.concatenate([[0], np.cumsum(np.diff(fine) > gap * 1000)])
    cl = cluster_of_fine[inv]
    n_cl = cluster_of_fine[-1] + 1
    n_reads = np.bincount(cl, minlength=n_cl)
    mean_age = np.bincount(cl, age_s, n_cl) / np.maximum(n_reads, 1)
    n_dev = max(np.unique(dev).size, 1)
    return np.sort(mean_age[n_reads >= 0.5 * n_dev])


def representative_ages(data: FitData, use: np.ndarray) -> list[np.ndarray]:
    """Per level (indexed like ``levels_us``), the typical drift-schedule ages of its used devices;
    empty for a level without any."""
    out = []
    for j in range(data.levels_us.size):
        sel = use[data.dev] & (data.level[data.dev] == j)
        out.append(typical_ages(data.age_s[sel], data.dev[sel]) if sel.any() else np.empty(0))
    return out


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
