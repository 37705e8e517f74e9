"""Statistical building blocks of the fitters (docs/physics.md, "Fitting: how it is done well").

* ``fit_drift_per_device``: ν and G(t0) of every device at once, by iteratively reweighted least
  squares (quasi-likelihood for multiplicative noise): each step is an ordinary least-squares fit of
  the relative residual G/m − 1 on (1, −ln(t/t0)). To first order it is the least squares of ln G on
  ln(age) that docs/physics.md asks for, but it stays unbiased when 1/f noise is tens of percent (low
  levels), where E[ln G] is not ln E[G], and it accepts raw negative reads (never clamped).
* ``drift_fit_noise_mc``: Var(ν̂) and bias of ν̂ from read noise alone for a read schedule, so
  that the intrinsic σ_ν² = apparent spread² − Var(ν̂) (docs/physics.md quotes 0.0065 at x = 1, 0.012
  at 0.4, 0.029 at 0.1 for 20 s … 1 day; this estimator gives ~0.67·Q_s, i.e. 0.0059, 0.011, 0.026).
* ``unfold``: (μ, σ) of N(μ, σ) from the mean and variance of |N(μ, σ)| (ν = |N(μ_ν, σ_ν)|).
* ``clipped_std``: a spread estimator that ignores gross outliers but keeps the efficiency of the
  standard deviation (iterative 4.5σ clipping from a MAD start).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from devmodel.stats import robust_sigma


@dataclass
class DeviceDrift:
    nu: np.ndarray  # per device (NaN if < 2 distinct ages)
    g_t0_us: np.ndarray  # fitted G at t0
    n_reads: np.ndarray
    rss_rel: np.ndarray  # Σ (G/m − 1)² at the solution


def fit_drift_per_device(dev: np.ndarray, age_s: np.ndarray, g_us: np.ndarray, n_devices: int,
                         t0_s: float, iterations: int = 12, tol: float = 1e-6) -> DeviceDrift:
    """Fit G = G(t0)·(age/t0)^−ν for every device, vectorised (no per-device optimiser): per-device
    sums over the reads in any order (``np.bincount``), starting from the closed-form log-space
    least squares; each iteration touches only the reads of devices that have not converged
    (|Δν| ≥ ``tol``), and steps are halved after four iterations so devices read at SNR ~ 1 settle."""
    x = np.log(age_s / t0_s)
    g = g_us

    def dsum(v, d=dev):
        return np.bincount(d, v, n_devices)

    n = dsum(np.ones_like(x))
    sx, sxx = dsum(x), dsum(x * x)
    det = n * sxx - sx * sx
    ok = det > 1e-12 * np.maximum(n * sxx, 1e-300)
    ln_a0 = np.log(np.maximum(dsum(np.maximum(g, 0.0)) / np.maximum(n, 1), 1e-6))
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.log(np.maximum(g, 0.01 * np.exp(ln_a0[dev])))  # floor at 1 % of the device mean
        sy, sxy = dsum(y), dsum(x * y)
        nu = np.where(ok, np.clip(-(n * sxy - sx * sy) / det, -1.0, 2.0), 0.05)
        ln_a = np.where(ok, (sy + nu * sx) / np.maximum(n, 1), ln_a0)
        # iterate on the devices still moving only, renumbered 0..m-1 with their reads
        act = np.flatnonzero(ok)
        rows = np.flatnonzero(ok[dev])
        pos = np.full(n_devices, -1)
        pos[act] = np.arange(act.size)
        dr = pos[dev[rows]]
        nu_a, la_a, la0_a = nu[act], ln_a[act], ln_a0[act]
        n_a, sx_a, sxx_a, det_a = n[act], sx[act], sxx[act], det[act]
        for it in range(iterations):
            xr = x[rows]
            r = g[rows] * np.exp(nu_a[dr] * xr - la_a[dr]) - 1.0
            m = act.size
            sr, srx = np.bincount(dr, r, m), np.bincount(dr, r * xr, m)
            # OLS of the relative residual on (1, −x): Δα, Δν
            step = 0.5 if it >= 4 else 1.0
            d_a = step * np.clip((sxx_a * sr - sx_a * srx) / det_a, -2.0, 2.0)
            d_nu = step * np.clip(-(n_a * srx - sx_a * sr) / det_a, -0.3, 0.3)
            la_a = np.clip(la_a + d_a, la0_a - 3.0, la0_a + 3.0)
            nu_a = np.clip(nu_a + d_nu, -1.0, 2.0)
            nu[act], ln_a[act] = nu_a, la_a
            keep = np.abs(d_nu) >= tol
            if not keep.any():
                break
            new_pos = np.cumsum(keep) - 1
            on = keep[dr]
            rows, dr = rows[on], new_pos[dr[on]]
            act = act[keep]
            nu_a, la_a, la0_a = nu_a[keep], la_a[keep], la0_a[keep]
            n_a, sx_a, sxx_a, det_a = n_a[keep], sx_a[keep], sxx_a[keep], det_a[keep]
        rss = dsum((g * np.exp(nu[dev] * x - ln_a[dev]) - 1.0) ** 2)
    return DeviceDrift(np.where(ok, nu, np.nan), np.where(ok, np.exp(ln_a), np.nan), n, rss)


@dataclass
class EstimatorNoise:
    """What read noise alone does to the drift fit, for one level and read schedule."""

    var_nu: float  # Var(ν̂ − ν)
    bias_nu: float  # E(ν̂ − ν)
    rss: float  # median Σ relative residual²
    cov_t0_nu: float  # Cov(relative noise of the t0 read, ν̂ − ν)


def drift_fit_noise_mc(ages_s: np.ndarray, t0_s: float, g_t0_us: np.ndarray | float, nu: float,
                       q_s, white_us: float, t_read_s: float, n: int = 4000, seed: int = 0,
                       g_max_us: float = 1.0) -> EstimatorNoise:
    """Noise of ``fit_drift_per_device`` from read noise alone, by Monte Carlo of the 1/f process
    (and white noise) on this read schedule (the first age is the t0 read). The 1/f values are drawn
    from the bank's exact Gaussian law at the schedule's ages (``FlickerBank.sample_fresh``), which
    the bank's per-read stepping approximates; docs/physics.md, "Drift-fit noise".

    A parametric simulation of the very estimator used, so the nonlinearity at tens-of-percent 1/f
    noise (low levels) is included. ``g_t0_us`` may be the level's G(t0) values: the simulated
    devices are drawn from them, so devices near the white-noise floor count as often as in the data.
    ``q_s`` is a number or a function of G/g_max (each simulated device gets its own Q_s).
    """
    from devmodel.physics.flicker import FlickerBank

    rng = np.random.default_rng(seed)
    g0 = np.asarray(g_t0_us, dtype=float).ravel()
    g0 = g0[np.isfinite(g0) & (g0 > 0)]
    g_t0_us = rng.choice(g0, n) if g0.size > 1 else np.full(n, float(g0[0]) if g0.size else 1.0)
    q = q_s(g_t0_us / g_max_us) if callable(q_s) else np.full(n, float(q_s))
    t = np.sort(np.asarray(ages_s, dtype=float))
    eta = FlickerBank(1, t_read_s=t_read_s).sample_fresh(n, t, rng)  # exact law of the bank
    drifted = g_t0_us[:, None] * (t / t0_s) ** (-nu)
    g = drifted * (1 + q[:, None] * eta) + white_us * rng.standard_normal((n, t.size))
    idx = np.arange(n)
    d = fit_drift_per_device(np.repeat(idx, t.size), np.tile(t, n), g.ravel(), n, t0_s)
    mean, var, _, keep = nu_moments(d.nu)
    rel0 = g[:, 0] / drifted[:, 0] - 1.0
    cov = float(np.cov(rel0[keep], d.nu[keep])[0, 1])
    return EstimatorNoise(var, mean - nu, float(np.median(d.rss_rel[keep])), cov)


def tobit(x: np.ndarray, floor: float = 0.0) -> tuple[float, float, float]:
    """(μ, σ, censored fraction) of a Gaussian left-censored at ``floor``, by maximum likelihood.

    docs/physics.md: G_prog is clamped at 0, so at the lowest levels a point mass sits at 0 and neither
    the mean nor the spread of the reads is that of the Gaussian; values ≤ floor count as censored.
    """
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    cens = x <= floor
    frac = float(cens.mean()) if x.size else float("nan")
    m0, s0, _ = clipped_std(x)
    if not cens.any():
        return m0, s0, 0.0
    obs, n_c = x[~cens], int(cens.sum())

    def nll(p):
        mu, ln_s = p
        sd = np.exp(ln_s)
        return -(np.sum(stats.norm.logpdf(obs, mu, sd)) + n_c * stats.norm.logcdf(floor, mu, sd))

    res = optimize.minimize(nll, [m0, np.log(max(s0, 1e-6))], method="Nelder-Mead",
                            options={"xatol": 1e-9, "fatol": 1e-9, "maxiter": 2000})
    return float(res.x[0]), float(np.exp(res.x[1])), frac


def nu_moments(nu: np.ndarray, k: float = 8.0) -> tuple[float, float, float, np.ndarray]:
    """(mean, variance, SE of the variance, kept mask) of ν̂ after k·σ clipping; applied alike to
    measured and simulated ν̂ so their variances can be subtracted."""
    nu = np.asarray(nu, dtype=float)
    c, sd, _ = clipped_std(nu, k=k)
    keep = np.isfinite(nu) & (np.abs(nu - c) <= k * sd)
    v = nu[keep]
    return float(v.mean()), float(v.var(ddof=1)), var_se(v), keep


def unfold(mean_abs: float, var_abs: float) -> tuple[float, float]:
    """(μ, σ) with E|N(μ,σ)| = mean_abs and Var|N(μ,σ)| = var_abs (μ ≥ 0)."""
    s2 = var_abs + mean_abs**2  # = μ² + σ²
    if not (np.isfinite(s2) and s2 > 0):
        return float("nan"), float("nan")
    root = np.sqrt(s2)
    if mean_abs <= root * np.sqrt(2 / np.pi):
        return 0.0, float(root)

    def folded_mean(mu: float) -> float:
        sig = np.sqrt(max(s2 - mu * mu, 1e-300))
        return (sig * np.sqrt(2 / np.pi) * np.exp(-mu * mu / (2 * sig * sig))
                + mu * special.erf(mu / (np.sqrt(2) * sig))) - mean_abs

    if folded_mean(root * (1 - 1e-12)) < 0:
        return float(mean_abs), float(np.sqrt(max(var_abs, 0.0)))
    mu = optimize.brentq(folded_mean, 0.0, root * (1 - 1e-12), xtol=1e-12)
    return float(mu), float(np.sqrt(max(s2 - mu * mu, 0.0)))


def clipped_std(x: np.ndarray, k: float = 4.5, iterations: int = 5) -> tuple[float, float, int]:
    """(mean, std, n kept) after iterative k·σ clipping from a robust start."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 3:
        return float("nan"), float("nan"), int(x.size)
    center, s = float(np.median(x)), float(robust_sigma(x))
    keep = np.ones(x.size, bool)
    for _ in range(iterations):
        keep = np.abs(x - center) <= k * max(s, 1e-12)
        center, s = float(x[keep].mean()), float(x[keep].std(ddof=1))
    return center, s, int(keep.sum())


def var_se(x: np.ndarray) -> float:
    """Standard error of the sample variance without assuming Gaussianity: sqrt((m4 − s⁴)/n)."""
    x = np.asarray(x, dtype=float)
    n = x.size
    if n < 4:
        return float("nan")
    d = x - x.mean()
    m4, v = np.mean(d**4), np.mean(d**2)
    return float(np.sqrt(max(m4 - v * v, 1e-300) / n))
