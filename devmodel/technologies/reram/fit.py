"""ReRAM device model from a session (docs/physics.md, "ReRAM"; seed 000 supplement).

At each snapshot time (the drift-schedule ages) the error G − G_T of every level has a spread
σ(x, t) and a mean; the short-term read noise, measured from the back-to-back reads of the bursts
(lag-1 differences / √2, robust), is removed in quadrature, and σ(x) is fitted as a polynomial of
configurable degree (default 4, as the published table) with lmfit. The mean shift is one number per
snapshot. Between snapshots the card is interpolated linearly in ln t (``DeviceModel.snapshot_coeffs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from devmodel.errors import DevmodelError
from devmodel.fit.data import FitData, burst_reads, read_near, require_levels, typical_ages
from devmodel.fit.lmfits import fit_poly
from devmodel.fit.stats import clipped_std, var_se
from devmodel.stats import robust_sigma
from devmodel.technologies.reram.card import ReramModel, Snapshot
from devmodel.validation import Constrained, Interval


@dataclass(frozen=True)
class ReramFitOptions(Constrained):
    """Choices of the ReRAM fit (recorded in the card's fit_quality)."""

    degree: int = 4
    snapshot_rel_tol: float = 0.1  # a read belongs to a snapshot within ±10 % of its age

    WHERE: ClassVar[str] = "ReRAM fit"
    CONSTRAINTS: ClassVar[dict] = {"degree": Interval(0, 6, integer=True),
                                   "snapshot_rel_tol": Interval(0.0, 0.5, "right")}


def read_noise_from_bursts(data: FitData) -> tuple[float | None, float | None]:
    """Robust σ of lag-1 differences of burst reads / √2, and its standard error from the spread
    of the bursts' own estimates (consecutive differences share a read, so bursts, not
    differences, are the independent units); (None, None) without bursts."""
    b = burst_reads(data.session)
    if b is None:
        return None, None
    bid, _, g, dev, _ = b
    same = (bid[1:] == bid[:-1]) & data.use[dev[1:]]
    diffs = np.diff(g)[same]
    if diffs.size <= 10:
        return None, None
    _, grp, n = np.unique(bid[1:][same], return_inverse=True, return_counts=True)
    per_burst = np.sqrt(np.bincount(grp, diffs**2) / n / 2)  # RMS σ of each burst
    se = float(per_burst.std(ddof=1) / np.sqrt(per_burst.size)) if per_burst.size > 1 else None
    return float(robust_sigma(diffs) / np.sqrt(2)), se


def _schedule(config: dict) -> list[float]:
    """The nominal drift-schedule ages a session's configuration names ([] if none or unusable)."""
    sweep = config.get("sweep") if isinstance(config, dict) else None
    ages = sweep.get("schedule_s") if isinstance(sweep, dict) else None
    ok = isinstance(ages, list) and all(isinstance(a, int | float) and a > 0 for a in ages)
    return [float(a) for a in ages] if ok else []


def _nominal_ages(measured_s: np.ndarray, schedule_s, rel_tol: float) -> np.ndarray:
    """Snapshot times at the session's nominal schedule ages (1 s, 1 day, …) where a measured
    cluster's mean age is within ``rel_tol`` of one (reads come a few ms late), so a card fitted on
    a session answers at the times its schedule named; measured means otherwise (imported tables)."""
    nominal = np.asarray(schedule_s, dtype=float)
    if nominal.size == 0:
        return measured_s
    near = nominal[np.argmin(np.abs(np.log(measured_s[:, None] / nominal[None, :])), axis=1)]
    return np.where(np.abs(measured_s / near - 1) <= rel_tol, near, measured_s)


def fit_reram(data: FitData, opts: ReramFitOptions | None = None) -> ReramModel:
    """Fit the ReRAM card: snapshots of σ(x) and mean shift, read noise."""
    opts = opts or ReramFitOptions()
    opts.check()
    s = data.session
    require_levels(data, opts.degree, "σ(x)")
    rn, rn_se = read_noise_from_bursts(data)
    ages = _nominal_ages(typical_ages(data.age_s[data.use[data.dev]], data.dev[data.use[data.dev]]),
                         _schedule(s.config), opts.snapshot_rel_tol / 2)
    snapshots, quality = [], {}
    x_all = data.levels_us / s.g_max_us
    for age in ages:
        g = read_near(data.dev, data.age_s, data.g_us, data.n_devices, age, opts.snapshot_rel_tol)
        sig, se, mean, n, sd_err = (np.full(data.levels_us.size, np.nan) for _ in range(5))
        for j in range(data.levels_us.size):
            err = (g - data.target_us)[data.use & (data.level == j) & np.isfinite(g)]
            if err.size < 10:
                continue
            m, sd, _ = clipped_std(err)
            kept = err[np.abs(err - m) <= 4.5 * sd]
            var = sd**2 - (rn or 0.0) ** 2
            sig[j] = np.sqrt(max(var, 0.0))
            se[j] = var_se(kept) / (2 * max(sig[j], 0.05))
            mean[j], n[j], sd_err[j] = m, err.size, sd
        ok = np.isfinite(sig) & (sig > 0)
        if ok.sum() < opts.degree + 2:
            continue
        fit = fit_poly(x_all[ok], sig[ok], se[ok], opts.degree)
        shift = float(np.nansum(mean * n) / np.nansum(n))
        shift_se = float(np.sqrt(np.nansum(n * sd_err**2)) / np.nansum(n))  # levels independent
        snapshots.append(Snapshot(
            t_s=float(age), poly_coeffs_us=[fit.values[f"c{i}"] for i in range(opts.degree + 1)],
            mean_shift_us=shift, mean_shift_stderr_us=shift_se,
            poly_coeffs_stderr_us=[fit.stderr[f"c{i}"] for i in range(opts.degree + 1)]))
        quality[f"{age:g}"] = fit.quality | {"mean_by_level_us": mean.tolist(), "n": n.tolist()}
    if not snapshots:
        raise DevmodelError(f"{s.path}: no read age has enough devices per level for a snapshot")
    card = ReramModel(g_max_us=s.g_max_us, t0_s=float(snapshots[0].t_s),
                       snapshots=snapshots, read_noise_us=float(rn or 0.0), read_noise_stderr_us=rn_se)
    card.fit_quality = {
        "options": opts.__dict__, "snapshots": quality,
        "read_noise_source": "bursts (lag-1 differences)" if rn is not None
        else "none: no bursts in the session, read noise not removed",
        "excluded_devices": data.excluded,
    }
    return card


#: The technology's part interface (devmodel.technologies).
OPTIONS = ReramFitOptions
fit = fit_reram
