"""ReRAM device model from a session (docs/physics.md, "ReRAM"; seed 000 supplement).

The short-term read noise comes from the back-to-back reads of the bursts (lag-1 differences / √2,
robust); without bursts it stays inside the fitted distributions and the card says so. Then, by the
``form`` option:

* ``law`` (default): at every level and read age, the quantiles of G − G_T (each device against its
  own target) at a fixed grid of probabilities, with standard errors from the order statistics
  (SE(q_p) = sqrt(p(1 − p)/n) / f(q_p), f from the quantile spacing); the read noise removed by
  shrinking each quantile's distance from the median by sqrt(1 − σ_read²/σ²). Each quantile is then
  a weighted least-squares polynomial in ln(t / 1 s) of the lowest degree (1 to 3) whose pooled χ²
  over the probabilities is consistent with those errors (p ≥ 0.01); its coefficients carry
  standard errors (the covariance scaled by the reduced χ² when that exceeds 1, as lmfit does). At
  a level where even degree 3 fails that test the card keeps the measured quantiles at the measured
  ages instead (knots, linear in ln t between them; ``time_form``), so the law never strays from
  data it was fitted on. Levels with fewer than two ages of ``min_devices`` devices are left out and counted.
* ``snapshots`` (Wan 2022): at each read age the error's spread σ(x) with the read noise removed in
  quadrature, fitted as a polynomial of ``degree`` (4, as the published table) with lmfit, and one
  mean shift per snapshot.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import special, stats

from devmodel.errors import DevmodelError
from devmodel.fit.data import FitData, burst_reads, require_levels
from devmodel.fit.lmfits import fit_poly
from devmodel.fit.stats import clipped_std, var_se
from devmodel.stats import robust_sigma
from devmodel.technologies.reram.card import RelaxationLaw, ReramModel, Snapshot
from devmodel.validation import Constrained, Interval, OneOf, OrNone

#: Probabilities of the law's quantile grid: the centre in steps of 0.1, the tails down to 0.2 %.
PROBABILITIES = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.16, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.84, 0.9,
                 0.95, 0.98, 0.99, 0.995, 0.998)


@dataclass(frozen=True)
class ReramFitOptions(Constrained):
    """Choices of the ReRAM fit (recorded in the card's fit_quality)."""

    form: str = "law"  # "law": the relaxation law; "snapshots": Wan 2022's σ(x) per read age
    degree: int = 4  # snapshots: degree of σ(x)
    time_degree: int | None = None  # law: degree in ln t (None: the lowest the data allow, ≤ 3)
    # law: "auto" — the polynomial where its χ² p ≥ 0.01, else the measured quantiles at the
    # measured ages (knots); "polynomial" or "knots" everywhere
    time_form: str = "auto"
    min_devices: int = 20  # law: devices per level and age
    snapshot_rel_tol: float = 0.1  # a read belongs to an age within ±10 % of it (no nominal ages)
    # measured ReRAM tails are real (docs/physics.md, "ReRAM relaxation on real chips"): no screening
    outlier_sigma: float | None = None

    WHERE: ClassVar[str] = "ReRAM fit"
    CONSTRAINTS: ClassVar[dict] = {"form": OneOf(("law", "snapshots")),
                                   "degree": Interval(0, 6, integer=True),
                                   "time_degree": OrNone(Interval(1, 3, integer=True)),
                                   "time_form": OneOf(("auto", "polynomial", "knots")),
                                   "min_devices": Interval(5, None, integer=True),
                                   "snapshot_rel_tol": Interval(0.0, 0.5, "right"),
                                   "outlier_sigma": OrNone(Interval(2.0, None))}


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


def fit_reram(data: FitData, opts: ReramFitOptions | None = None) -> ReramModel:
    """Fit the ReRAM card in the form the options ask for (module docstring)."""
    opts = opts or ReramFitOptions()
    opts.check()
    s = data.session
    rn, rn_se = read_noise_from_bursts(data)
    ages = data.schedule_ages()
    if opts.form == "law":
        law, quality = fit_law(data, ages, rn, opts)
        card = ReramModel(g_max_us=s.g_max_us, t0_s=float(ages[0]), relaxation=law,
                          read_noise_us=float(rn or 0.0), read_noise_stderr_us=rn_se)
    else:
        snapshots, quality = _snapshots(data, ages, rn, opts)
        card = ReramModel(g_max_us=s.g_max_us, t0_s=float(snapshots[0].t_s), snapshots=snapshots,
                          read_noise_us=float(rn or 0.0), read_noise_stderr_us=rn_se)
    card.fit_quality = {
        "options": opts.__dict__, "form": opts.form, **quality,
        "read_noise_source": "bursts (lag-1 differences)" if rn is not None
        else "none: no bursts in the session; the read noise stays inside the fitted distributions",
        "excluded_devices": data.excluded, "excluded_reads": data.losses(ages, opts.snapshot_rel_tol),
    }
    return card


def _snapshots(data: FitData, ages: np.ndarray, rn: float | None, opts: ReramFitOptions
               ) -> tuple[list[Snapshot], dict]:
    """Wan 2022's form: σ(x) with the read noise removed and the mean shift, at every age."""
    s = data.session
    require_levels(data, opts.degree, "σ(x)")
    snapshots, quality = [], {}
    x_all = data.levels_us / s.g_max_us
    for age in ages:
        g = data.at_age(age, opts.snapshot_rel_tol)
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
    return snapshots, {"snapshots": quality}


def harrell_davis(e: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Harrell–Davis quantiles: every order statistic weighted by the Beta(p(n+1), (1−p)(n+1))
    mass of its rank interval. Smooth in the data (a device resample moves it continuously, so
    bootstrap intervals of it cover as they should; the single order statistic's do not, its
    bootstrap variance converging only as n^−1/4) and more efficient than it for small n."""
    return _hd_weights(np.size(e), tuple(np.asarray(p, dtype=float))) @ np.sort(e)


@functools.lru_cache(maxsize=256)
def _hd_weights(n: int, p: tuple[float, ...]) -> np.ndarray:
    """(len(p), n) Harrell–Davis weights; they depend on n and p only (cached: a level has the same
    n at every age and in every bootstrap replicate)."""
    pa = np.asarray(p)
    edges = np.arange(n + 1) / n
    cdf = special.betainc(pa[:, None] * (n + 1), (1 - pa[:, None]) * (n + 1), edges[None, :])
    return np.diff(cdf, axis=1)


def quantiles_with_se(e: np.ndarray, p: np.ndarray, floor_us: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles of ``e`` at ``p`` (Harrell–Davis) and their standard errors from the order
    statistics: sqrt(p(1 − p)/n) / f(q_p), the density f from the quantile function's slope over
    ±h in p."""
    n = e.size
    q = harrell_davis(e, p)
    h = np.minimum(np.minimum(p, 1 - p) / 2, 0.5 / np.sqrt(n) + 0.01)
    dq = np.quantile(e, np.clip(p + h, 0, 1)) - np.quantile(e, np.clip(p - h, 0, 1))
    se = np.sqrt(p * (1 - p) / n) * np.maximum(dq, floor_us) / (2 * h)
    return q, np.maximum(se, floor_us)


def fit_law(data: FitData, ages: np.ndarray, rn: float | None, opts: ReramFitOptions
            ) -> tuple[RelaxationLaw, dict]:
    """The relaxation law (module docstring): per level, each quantile polynomial in ln t."""
    probs = np.asarray(PROBABILITIES)
    t_ref = 1.0
    levels, coeffs, coeff_se, spans, counts, per_level = [], [], [], [], [], []
    knot_ages, knot_q, age_se, fitted = [], [], [], []
    g_at = {float(a): data.at_age(a, opts.snapshot_rel_tol) for a in ages}
    skipped = 0
    for j in range(data.levels_us.size):
        in_lv = data.use & (data.level == j)
        cells = []
        for a, g in g_at.items():
            m = in_lv & np.isfinite(g)
            if m.sum() < opts.min_devices:
                continue
            e = (g - data.target_us)[m]
            q, se = quantiles_with_se(e, probs)
            if rn:  # the read noise of the single read, out of the device's state
                med = q[probs == 0.5][0]
                _, sd, _ = clipped_std(e)
                q = med + (q - med) * np.sqrt(max(1 - rn**2 / max(sd**2, 1e-12), 0.0))
            cells.append((np.log(a / t_ref), q, se, a))
        if len(cells) < 2:
            skipped += int(in_lv.any())
            continue
        lt = np.array([c[0] for c in cells])
        Q, SE = np.array([c[1] for c in cells]), np.array([c[2] for c in cells])
        c, c_se, pred_se, quality = _time_polynomials(lt, Q, SE, opts.time_degree)
        knots = opts.time_form == "knots" or (opts.time_form == "auto" and quality["chi2_p"] is not None
                                              and quality["chi2_p"] < 0.01)
        quality["time_form"] = "knots" if knots else "polynomial"
        levels.append(float(data.levels_us[j]))  # the session's level: stable under resampling
        coeffs.append(c.tolist())
        coeff_se.append(c_se.tolist())
        ages_j = [float(cc[3]) for cc in cells]
        spans.append([ages_j[0], ages_j[-1]])
        counts.append(int(in_lv.sum()))
        knot_ages.append(ages_j if knots else [])
        knot_q.append(np.sort(Q, axis=1).tolist() if knots else [])
        age_se.append((SE if knots else pred_se).tolist())
        fitted.append(ages_j)
        per_level.append(quality | {"level_us": levels[-1], "n_devices": counts[-1], "ages_s": ages_j})
    if len(levels) < 1:
        raise DevmodelError(f"{data.session.path}: no level has two read ages with ≥ {opts.min_devices} "
                            "devices; the relaxation law needs two (or fit --set form=snapshots)")
    law = RelaxationLaw(probabilities=probs.tolist(), levels_us=levels, coeffs_us=coeffs,
                        ages_s=spans, t_ref_s=t_ref, coeffs_stderr_us=coeff_se, n_devices=counts,
                        knot_ages_s=knot_ages, knot_quantiles_us=knot_q, age_stderr_us=age_se,
                        fitted_ages_s=fitted)
    return law, {"law_levels": per_level, "levels_without_two_ages": skipped}


def _time_polynomials(lt: np.ndarray, Q: np.ndarray, SE: np.ndarray, degree: int | None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Weighted least squares of every quantile (columns of ``Q``) on powers of ``lt``: (coefficients
    (P, d + 1), their standard errors, the standard errors of the fitted quantiles at the ages
    (ages, P), fit quality). ``degree`` None: the lowest of 1, 2, 3 whose χ² pooled over the
    quantiles has p ≥ 0.01 (degree d needs d + 2 ages)."""
    k = lt.size
    candidates = [degree] if degree else [d for d in (1, 2, 3) if k >= d + 2 or d == 1]
    for d in candidates:
        d = min(d, k - 1)
        X = lt[:, None] ** np.arange(d + 1)
        coef, covs, chi2 = [], [], 0.0
        for col in range(Q.shape[1]):
            w = 1 / SE[:, col] ** 2
            cov = np.linalg.pinv(X.T @ (w[:, None] * X))
            b = cov @ (X.T @ (w * Q[:, col]))
            chi2 += float(np.sum(w * (Q[:, col] - X @ b) ** 2))
            coef.append(b)
            covs.append(cov)
        dof = Q.shape[1] * (k - d - 1)
        p_value = float(stats.chi2.sf(chi2, dof)) if dof > 0 else None
        if p_value is None or p_value >= 0.01 or d == candidates[-1]:
            break
    redchi = chi2 / dof if dof > 0 else None
    scale = max(redchi or 1.0, 1.0)
    errs = np.array([np.sqrt(np.diag(c) * scale) for c in covs])
    pred_se = np.array([np.sqrt(np.einsum("ai,ij,aj->a", X, c, X) * scale) for c in covs]).T
    return np.array(coef), errs, pred_se, {"time_degree": int(d), "redchi": redchi, "chi2_p": p_value}


#: The technology's part interface (devmodel.technologies).
OPTIONS = ReramFitOptions
fit = fit_reram
