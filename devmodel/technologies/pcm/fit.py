"""PCM device model from a session (docs/physics.md, "Fitting: how it is done well, and the traps").

1. ν and G(t0) of every device from its drift-schedule reads (vectorised IRLS, ``stats``).
2. 1/f amplitude per level from the read-noise bursts: the variogram D(τ) = ⟨(G(t+τ) − G(t))²⟩ of
   drift-detrended bursts regressed on ln τ has slope 2·Q_s²·E[G²] (``burst_noise``); its intercept
   gives the white read noise once the 1/f part 2·Q_s²·ln(τ/(4 t_read)) is removed. Q_s(x) =
   min(amp/x^exp, max) by lmfit, with x the level's programmed conductance / g_max (aihwkit evaluates
   Q_s at the programmed conductance). Cross-checked against the drift-fit residuals.
3. Per level: the spread of ν̂ minus the estimator's own variance from read noise (simulated for the
   fitted noise and this read schedule, each simulated device with its own Q_s, and scaled by
   measured/simulated drift residuals) is the intrinsic σ_ν²; the mean of ν̂ minus the estimator's
   bias; both unfolded from |N(μ, σ)|. Levels where the estimator noise leaves less than
   ``min_intrinsic_fraction`` of the spread intrinsic are reported but not fitted. μ_ν(x), σ_ν(x)
   (x = G_T/g_max) in clipped-log form by lmfit, and kept as a table.
4. σ_prog per level from the spread at t0 (a Gaussian left-censored at 0 by maximum likelihood, so
   the devices the model clamps at 0 do not distort the lowest levels) with the 1/f noise accumulated
   until t0 and the white noise removed (exact for G_t0 = G_prog·(1 + Q_s·η)); weighted polynomial
   by lmfit. The mean at t0 is kept as a polynomial offset from the target, of the lowest degree
   (≥ the σ_prog degree) whose χ² is consistent with the level means' errors (``fit_poly_auto``).
5. Drift–programming coupling: a device's ν acts between its last verify read and t0, so G(t0) and ν
   are correlated. Cov(G(t0)/mean − 1, ν̂) minus the estimator's own covariance, divided by the
   intrinsic Var ν, is −ln(t0/τ_v) with τ_v the effective verify age; it is kept in the card when
   significant (≥ 3 standard errors and ≥ 0.5) and omitted otherwise (the published model is
   uncoupled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from devmodel.errors import DevmodelError
from devmodel.fit.data import FitData, LevelSample, level_sample, require_levels, require_t0
from devmodel.fit.lmfits import (
    FitResult,
    fit_clipped_log,
    fit_poly,
    fit_poly_auto,
    fit_power_law_cap_levels,
)
from devmodel.fit.stats import (
    clipped_std,
    drift_fit_noise_mc,
    fit_drift_per_device,
    nu_moments,
    tobit,
    unfold,
    var_se,
)
from devmodel.fit.variogram import equal_bursts, variogram_lines, white_noise, white_variance
from devmodel.forms import PowerLawCap
from devmodel.technologies.pcm.card import (
    ClippedLogForm,
    Drift,
    DriftTable,
    PcmModel,
    Programming,
    ReadNoise,
)
from devmodel.technologies.pcm.published import PCM_T_READ_S, PcmStatModel
from devmodel.validation import Constrained, Interval, OrNone


@dataclass(frozen=True)
class PcmFitOptions(Constrained):
    """Choices of the PCM fit (recorded in the card's fit_quality)."""

    prog_degree: int = 2
    t_read_s: float = PCM_T_READ_S  # integration time assumed by the 1/f accumulation formula
    n_mc: int = 4000  # devices simulated per level for the ν-estimator noise
    min_intrinsic_fraction: float = 0.2  # of the ν̂ variance, for a level to enter the ν fits
    seed: int = 0
    outlier_sigma: float | None = 6.0  # t0 outliers (stuck devices) screened out; None: keep all

    WHERE: ClassVar[str] = "PCM fit"
    CONSTRAINTS: ClassVar[dict] = {
        "prog_degree": Interval(0, 6, integer=True), "t_read_s": Interval(0.0, 1.0, "right"),
        "n_mc": Interval(100, 1_000_000, integer=True), "min_intrinsic_fraction": Interval(0.0, 1.0),
        "seed": Interval(0, 2**63 - 1, integer=True),
        "outlier_sigma": OrNone(Interval(2.0, None)),
    }


@dataclass
class LevelStats:
    """Per-level quantities the population fits use (arrays over levels)."""

    g_us: np.ndarray  # targets
    n: np.ndarray
    mean_t0: np.ndarray  # mean of the (uncensored) Gaussian at t0
    var_t0: np.ndarray
    var_t0_se: np.ndarray
    censored: np.ndarray  # fraction of t0 reads at or below 0
    nu_mean_hat: np.ndarray
    nu_var_hat: np.ndarray
    nu_var_se: np.ndarray
    rss_rel: np.ndarray
    cov_t0_nu: np.ndarray
    cov_t0_nu_se: np.ndarray


def fit_pcm(data: FitData, opts: PcmFitOptions | None = None) -> PcmModel:
    """Fit the PCM card from prepared session data (see the module docstring): the per-device
    stage (:func:`device_estimates`), then the per-level stage (:func:`fit_levels`), which the
    out-of-core fit (docs/scale.md) feeds chunk by chunk."""
    opts = opts or PcmFitOptions()
    opts.check()
    require_levels(data, opts.prog_degree, "σ_prog")
    require_t0(data)
    est = device_estimates(data.dev, data.age_s, data.g_us, data.n_devices, data.session.t0_s)
    return fit_levels(level_sample(data, est), opts)


def device_estimates(dev: np.ndarray, age_s: np.ndarray, g_us: np.ndarray, n_devices: int,
                     t0_s: float) -> dict[str, np.ndarray]:
    """Per device from its own schedule reads only (so any partition of the devices into chunks
    gives the same values): ν̂, the relative residual of its drift fit, and ``ok`` where ν̂ exists."""
    d = fit_drift_per_device(dev, age_s, g_us, n_devices, t0_s)
    return {"nu": d.nu, "rss_rel": d.rss_rel, "ok": np.isfinite(d.nu)}


def fit_levels(sample: LevelSample, opts: PcmFitOptions | None = None) -> PcmModel:
    """The card from the per-level stage's input (steps 2–5 of the module docstring)."""
    opts = opts or PcmFitOptions()
    opts.check()
    require_levels(sample, opts.prog_degree, "σ_prog")
    lv = level_stats(sample)
    bursts = burst_noise(sample, opts.t_read_s)
    return _assemble(sample, lv, bursts, opts)


def level_stats(sample: LevelSample) -> LevelStats:
    """Per-level spreads at t0 and moments of ν̂ over the used devices."""
    rows = []
    for target, v in zip(sample.levels_us, sample.per_level, strict=True):
        g_t0, nu_all, rss_all = v["g_t0"], v["nu"], v["rss_rel"]
        if g_t0.size < 10:
            continue
        g0 = g_t0
        mean, sd, cens = tobit(g0)
        _, sd_c, _ = clipped_std(g0)
        kept = g0[np.abs(g0 - np.median(g0)) <= 4.5 * sd_c]
        # devices read at or below 0 (clamped, or at the noise floor) carry no drift information
        pos = g0 > 0
        nu_mean, nu_var, nu_var_se, keep = nu_moments(nu_all[pos])
        nu_k = nu_all[pos][keep]
        rel = g_t0[pos][keep] / mean - 1.0
        cov = float(np.cov(rel, nu_k)[0, 1])
        cov_se = float(np.sqrt(np.var(rel) * np.var(nu_k) / max(nu_k.size - 1, 1)))
        rows.append((target, g0.size, mean, sd**2, var_se(kept) / max(1 - cens, 0.05), cens,
                     nu_mean, nu_var, nu_var_se, float(np.median(rss_all[pos][keep])), cov,
                     cov_se))
    if len(rows) < 2:
        raise DevmodelError(f"{sample.session.path}: fewer than two levels have ≥ 10 usable devices")
    return LevelStats(*(np.asarray(c, float) for c in zip(*rows, strict=True)))


def _assemble(sample: LevelSample, lv: LevelStats, bursts, opts: PcmFitOptions) -> PcmModel:
    s = sample.session
    published = PcmStatModel(g_max_us=s.g_max_us, t0_s=s.t0_s, t_read_s=opts.t_read_s)
    x_t = lv.g_us / s.g_max_us  # target: the axis of σ_prog and ν (aihwkit)
    ages = [sample.ages[int(np.searchsorted(sample.levels_us, g))] for g in lv.g_us]
    v_t0 = np.log((s.t0_s + opts.t_read_s) / (2 * opts.t_read_s))
    # Q_s depends on each device's programmed conductance; per level those are not known device by
    # device (their estimates carry the 1/f noise) but their distribution is: draw it, and refine it
    # once the 1/f part of the spread at t0 is known
    rng = np.random.default_rng(opts.seed)
    z = rng.standard_normal(opts.n_mc)
    sd_prog = np.sqrt(lv.var_t0)
    for _ in range(2):
        prog = [np.maximum(m + sd * z, 0.0) for m, sd in zip(lv.mean_t0, sd_prog, strict=True)]
        q_fit, (white_us, white_se), q_levels, q_source = _fit_read_noise(lv, prog, bursts, ages,
                                                                          opts, published)
        q_law = PowerLawCap(q_fit.values["amp"], q_fit.values["exp"], q_fit.values["cap"])
        flicker_t0 = np.array([np.mean((g * q_law(g / s.g_max_us)) ** 2) for g in prog]) * v_t0
        var_prog = lv.var_t0 - flicker_t0 - white_us**2
        sd_prog = np.sqrt(np.maximum(var_prog, 0.25 * lv.var_t0))

    # ν: remove the estimator's noise (simulated for the fitted noise and schedule), then unfold
    mc = [drift_fit_noise_mc(ages[j], s.t0_s, prog[j], lv.nu_mean_hat[j], q_law, white_us,
                             opts.t_read_s, opts.n_mc, opts.seed + j, s.g_max_us)
          for j in range(lv.g_us.size)]
    noise_ratio = lv.rss_rel / np.array([m.rss for m in mc])
    var_est = np.array([m.var_nu for m in mc]) * noise_ratio
    var_int = lv.nu_var_hat - var_est
    mu, sig = _unfold_levels(lv.nu_mean_hat - np.array([m.bias_nu for m in mc]), var_int)
    mu_se = np.sqrt(lv.nu_var_hat / lv.n)
    sig_se = lv.nu_var_se / (2 * np.maximum(sig, 1e-3))
    nu_ok = (var_int > opts.min_intrinsic_fraction * lv.nu_var_hat) & (mu > 0)
    if nu_ok.sum() < 3:
        raise DevmodelError(f"{s.path}: fewer than three levels resolve the drift-exponent spread")
    fit_mu = fit_clipped_log(x_t[nu_ok], mu[nu_ok], mu_se[nu_ok], published.nu_mean)
    fit_sig = fit_clipped_log(x_t[nu_ok], sig[nu_ok], sig_se[nu_ok], published.nu_std)

    # drift–programming coupling (effective verify age)
    cov_true = lv.cov_t0_nu - np.array([m.cov_t0_nu for m in mc]) * np.sqrt(noise_ratio)
    coupling = _coupling(cov_true, lv.cov_t0_nu_se, var_int, nu_ok)
    tau_v = s.t0_s * np.exp(-coupling["L"]) if coupling["significant"] else None

    # σ_prog: spread at t0 minus accumulated 1/f and white noise (Var[G_p(1 + Q_s η)] =
    # Var G_p + E[G_p² Q_s(G_p)²]·V for the 1/f process η of variance V at t0)
    ok = var_prog > 0
    if ok.sum() < opts.prog_degree + 2:
        raise DevmodelError(f"{s.path}: only {int(ok.sum())} levels have a positive programming "
                            f"spread left for a degree-{opts.prog_degree} polynomial")
    sig_prog = np.sqrt(np.maximum(var_prog, 0))
    sig_prog_se = lv.var_t0_se / (2 * np.maximum(sig_prog, 1e-6))
    fit_prog = fit_poly(x_t[ok], sig_prog[ok], sig_prog_se[ok], opts.prog_degree)
    fit_off = fit_poly_auto(x_t, lv.mean_t0 - lv.g_us, np.sqrt(lv.var_t0 / lv.n), opts.prog_degree)

    deg = range(opts.prog_degree + 1)
    card = PcmModel(
        g_max_us=s.g_max_us, t0_s=s.t0_s,
        programming=Programming(
            poly_coeffs_us=[fit_prog.values[f"c{i}"] for i in deg], g_ref_us=s.g_max_us,
            poly_coeffs_stderr_us=[fit_prog.stderr[f"c{i}"] for i in deg],
            mean_offset_coeffs_us=list(fit_off.values.values()),
            mean_offset_stderr_us=list(fit_off.stderr.values()),
            censored_levels_us=lv.g_us[lv.censored > 0.005].tolist(),
            verify_age_s=tau_v,
            verify_age_stderr_s=tau_v * coupling["L_stderr"] if tau_v else None,  # τ_v = t0·e^−L
            level_offsets_g_us=lv.g_us.tolist(), level_offsets_us=(lv.mean_t0 - lv.g_us).tolist(),
            level_offsets_stderr_us=np.sqrt(lv.var_t0 / lv.n).tolist(),
        ),
        drift=Drift(
            nu_mean=_form(fit_mu), nu_std=_form(fit_sig),
            table=DriftTable(lv.g_us[nu_ok].tolist(), mu[nu_ok].tolist(), sig[nu_ok].tolist(),
                             np.sqrt(lv.nu_var_hat[nu_ok]).tolist(),
                             lv.n[nu_ok].astype(int).tolist()),
        ),
        read_noise=ReadNoise(
            q_s_amp=q_law.amp, q_s_exp=q_law.exp, q_s_max=q_law.cap, t_read_s=opts.t_read_s,
            white_noise_us=white_us,
            stderr={"q_s_amp": q_fit.stderr["amp"], "q_s_exp": q_fit.stderr["exp"],
                    "q_s_max": q_fit.stderr["cap"], "white_noise_us": white_se},
            fixed=[{"amp": "q_s_amp", "exp": "q_s_exp", "cap": "q_s_max"}[k] for k in q_fit.fixed],
        ),
    )
    card.fit_quality = {
        "options": opts.__dict__,
        "sigma_prog": fit_prog.quality, "mean_offset": fit_off.quality,
        "nu_mean": fit_mu.quality, "nu_std": fit_sig.quality, "q_s": q_fit.quality,
        "q_s_source": q_source, "drift_programming_coupling": coupling,
        "levels": {
            "g_us": lv.g_us.tolist(), "n_devices": lv.n.astype(int).tolist(),
            "spread_t0_us": np.sqrt(lv.var_t0).tolist(), "sigma_prog_us": sig_prog.tolist(),
            "mean_t0_us": lv.mean_t0.tolist(), "censored_fraction_t0": lv.censored.tolist(),
            "nu_mean": mu.tolist(), "nu_std": sig.tolist(),
            "nu_std_apparent": np.sqrt(lv.nu_var_hat).tolist(),
            "nu_estimator_std": np.sqrt(var_est).tolist(),
            "nu_in_fit": nu_ok.tolist(), "q_s_levels": q_levels.tolist(),
            "q_s_drift_residuals_ratio": np.sqrt(noise_ratio).tolist(),
        },
        "excluded_devices": sample.excluded,
        "white_noise_us": white_us,
    }
    return card


def _coupling(cov_true, cov_se, var_int, ok) -> dict:
    """Pooled L = ln(t0/τ_v) from Cov(G(t0)/mean, ν) = −L·Var ν over the resolved levels."""
    m = ok & (var_int > 0) & np.isfinite(cov_true) & (cov_se > 0)
    if m.sum() < 2:
        return {"L": 0.0, "L_stderr": None, "significant": False}
    w = (var_int[m] / cov_se[m]) ** 2
    L_lv = -cov_true[m] / var_int[m]
    L = float(np.sum(w * L_lv) / np.sum(w))
    se = float(1 / np.sqrt(np.sum(w)))
    # on uncoupled synthetic data L comes out 0.1–0.3 (the estimator's own small bias), so a
    # coupling is kept only when it is both significant and at least 0.5 (τ_v ≤ 0.6·t0)
    return {"L": L, "L_stderr": se, "significant": bool(L > max(3 * se, 0.5)),
            "L_by_level": L_lv.tolist()}


def _form(f: FitResult) -> ClippedLogForm:
    return ClippedLogForm(**f.values, stderr=f.stderr, fixed=f.fixed)


def _unfold_levels(mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pairs = [unfold(m, max(v, 1e-12)) for m, v in zip(mean, var, strict=True)]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


@dataclass
class BurstNoise:
    g_us: np.ndarray  # level targets with bursts
    q2: np.ndarray
    q2_se: np.ndarray
    white_var_us2: np.ndarray
    white_var_se_us2: np.ndarray


def burst_noise(sample: LevelSample, t_read_s: float) -> BurstNoise | None:
    """Per-level 1/f amplitude² and white noise from the bursts' variograms (None: no bursts).

    Each burst is detrended by its device's own drift, H = G·(t/t_mid)^ν̂. In absolute units the
    variogram is D(τ) = 2·Q_s²·E[G_d²]·ln(τ/(4 t_read)) + 2σ_w² (G_d the noise-free drifted
    conductance); with E[H²] = E[G_d²]·(1 + Q_s²·V), V = ln(age/(2 t_read)), the pooled slope s gives
    Q_s² = s / (2 E[H²] − s V) without dividing any device by its own noisy mean.
    """
    per_level: dict[int, list] = {}
    nu, level = sample.burst_estimates["nu"], sample.burst_level
    for G, T, A, D in equal_bursts(sample.session):  # bursts of one length form one matrix
        ok = sample.burst_use[D] & np.isfinite(nu[D])
        G, T, D, A = G[ok], T[ok], D[ok], A[ok]
        if D.size == 0:
            continue
        dt = float(np.median(np.diff(T, axis=1)))
        H = G * (T / T.mean(1, keepdims=True)) ** nu[D][:, None]
        slope, icpt = variogram_lines(H, dt)  # per device
        for j in np.unique(level[D]):
            m = level[D] == j
            per_level.setdefault(int(j), []).append(
                (slope[m], icpt[m], np.mean(H[m] ** 2, axis=1), A[m].mean()))
    res = {k: [] for k in BurstNoise.__dataclass_fields__}
    for j, parts in sorted(per_level.items()):
        slope, icpt, h2 = (np.concatenate([p[i] for p in parts]) for i in (0, 1, 2))
        white2 = white_variance(slope, icpt, t_read_s)  # per device, can be < 0
        if slope.size < 3:
            continue
        v = np.log(np.mean([p[3] for p in parts]) / (2 * t_read_s))
        sl, e_h2 = slope.mean(), h2.mean()
        denom = 2 * e_h2 - sl * v
        if not (sl > 0 and denom > 0):
            continue
        res["g_us"].append(sample.levels_us[j])
        res["q2"].append(sl / denom)
        res["q2_se"].append(slope.std(ddof=1) / np.sqrt(slope.size) / denom)
        res["white_var_us2"].append(white2.mean())
        res["white_var_se_us2"].append(white2.std(ddof=1) / np.sqrt(white2.size))
    out = BurstNoise(**{k: np.asarray(v, float) for k, v in res.items()})
    return out if out.q2.size >= 2 else None


def _fit_read_noise(lv: LevelStats, prog: list, bursts: BurstNoise | None, ages, opts, published):
    """Q_s(x) power law and white noise; from bursts, else from the drift residuals. ``prog`` holds
    per level draws of the programmed conductance (µS)."""
    g_max = published.g_max_us
    if bursts is not None:
        ok = bursts.q2 > 0
        q = np.sqrt(bursts.q2[ok])
        q_se = np.maximum(bursts.q2_se[ok] / (2 * q), 1e-4 * q)
        lv_of = [int(np.searchsorted(lv.g_us, g)) for g in bursts.g_us[ok]]
        fit = fit_power_law_cap_levels([prog[j] / g_max for j in lv_of], q, q_se, published.q_s)
        white = white_noise(bursts.white_var_us2, bursts.white_var_se_us2)
        return fit, white, np.sqrt(np.maximum(bursts.q2, 0)), "bursts (variogram slope)"
    # no bursts: scale a trial Q_s until the simulated drift residuals match the measured ones
    x_p = np.array([max(np.median(p), 1e-3) for p in prog]) / g_max
    q_lv = published.q_s(x_p)
    for _ in range(2):
        rss = np.array([drift_fit_noise_mc(ages[j], published.t0_s, prog[j],
                                           lv.nu_mean_hat[j], q_lv[j], 0.0, opts.t_read_s,
                                           opts.n_mc // 4, opts.seed + 100 + j).rss
                        for j in range(lv.g_us.size)])
        q_lv = q_lv * np.sqrt(lv.rss_rel / rss)
    fit = fit_power_law_cap_levels([p / g_max for p in prog], q_lv, 0.05 * q_lv, published.q_s)
    # without bursts the white noise is not separable from the 1/f part: recorded as 0, no error
    return fit, (0.0, None), q_lv, "drift residuals (no bursts in the session)"


#: The technology's part interface (devmodel.technologies).
OPTIONS = PcmFitOptions
fit = fit_pcm
