"""PCM report figures (``devmodel report``): σ_prog vs G_T with the fit and its ±1 standard-error
band, ln G vs ln age per level with the fitted ν(G), μ_ν/σ_ν per level with their clipped-log fits,
Q_s per level with its power law."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from devmodel.fit.data import FitData, read_near, typical_ages  # noqa: E402
from devmodel.forms import poly_us  # noqa: E402
from devmodel.report.figures import save  # noqa: E402
from devmodel.technologies.pcm.card import PcmModel  # noqa: E402


def figures(card: PcmModel, data: FitData, out) -> list[tuple[str, str]]:
    """The PCM figures, saved in ``out``: (file name, caption) each."""
    return [_sigma_prog(card, out), _drift(card, data, out), _nu(card, out), _q_s(card, out)]


def _sigma_prog(card, out):
    fq = card.fit_quality.get("sigma_prog", {})
    lev = card.fit_quality.get("levels", {})
    p = card.programming
    x = np.linspace(0, 1, 200)
    fig, ax = plt.subplots(figsize=(6, 4))
    g = x * p.g_ref_us
    ax.plot(g, p.sigma_us(g), "-", label="σ_prog fit")
    cov = fq.get("covar")
    if cov:
        draws = np.random.default_rng(1).multivariate_normal(p.poly_coeffs_us, cov, 400)
        band = poly_us(draws.T, x)
        ax.fill_between(g, np.percentile(band, 16, 0), np.percentile(band, 84, 0), alpha=0.3,
                        label="±1 SE band")
    if lev:
        ax.plot(lev["g_us"], lev["sigma_prog_us"], "o", label="per level (1/f at t0 removed)")
        ax.plot(lev["g_us"], lev["spread_t0_us"], "x", label="total spread at t0")
    ax.set_xlabel("target conductance G_T (µS)")
    ax.set_ylabel("σ (µS)")
    ax.legend(fontsize=8)
    return save(fig, out, "sigma_prog.png", "Programming noise vs target, with its fit.",
                "Programming noise σ_prog", ("programming.",), ("sigma_prog", "mean_offset"))


def _drift(card, data, out):
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    sel = data.use[data.dev]
    ages = typical_ages(data.age_s[sel], data.dev[sel])
    colors = plt.cm.viridis(np.linspace(0, 0.95, data.levels_us.size))
    g_at = [read_near(data.dev, data.age_s, data.g_us, data.n_devices, a) for a in ages]
    for j, lv in enumerate(data.levels_us):
        med = []
        for g in g_at:
            m = data.use & (data.level == j) & np.isfinite(g)
            med.append(np.median(g[m]) if m.sum() else np.nan)
        med = np.array(med)
        ax.plot(np.log(ages), np.log(np.maximum(med, 1e-3)), "o", ms=3, color=colors[j])
        nu = card.drift.nu_mean(lv / card.g_max_us)
        g0 = med[np.argmin(np.abs(ages - card.t0_s))]
        ax.plot(np.log(ages), np.log(max(g0, 1e-3)) - nu * np.log(ages / card.t0_s), "-", lw=0.8,
                color=colors[j])
    ax.set_xlabel("ln(age / s)")
    ax.set_ylabel("ln(median G / µS)")
    ax.set_title("drift: medians per level (dots) and slopes −μ_ν(G) of the card")
    return save(fig, out, "drift.png", "Median conductance vs age per level, with the fitted ν.",
                "Drift", ("drift.nu_mean.",), ("nu_mean",))


def _nu(card, out):
    lev = card.fit_quality.get("levels", {})
    x = np.logspace(-2.2, 0, 200)
    fig, axs = plt.subplots(1, 2, figsize=(9, 3.6))
    axs[0].plot(x * card.g_max_us, card.drift.nu_mean(x), "-", label="clipped-log fit")
    axs[1].plot(x * card.g_max_us, card.drift.nu_std(x), "-", label="clipped-log fit (intrinsic)")
    if lev:
        g = np.array(lev["g_us"])
        used = np.array(lev.get("nu_in_fit", [True] * g.size), bool)
        axs[0].plot(g[used], np.array(lev["nu_mean"])[used], "o", label="per level")
        axs[1].plot(g[used], np.array(lev["nu_std"])[used], "o", label="per level, intrinsic")
        axs[1].plot(g, lev["nu_std_apparent"], "x", label="per level, apparent")
        axs[1].plot(g, lev["nu_estimator_std"], "+", label="estimator noise")
    for ax, name in zip(axs, ("μ_ν", "σ_ν"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("target G_T (µS)")
        ax.set_ylabel(name)
        ax.legend(fontsize=7)
    return save(fig, out, "nu.png", "Drift-exponent mean and spread vs target conductance.",
                "Drift exponent ν", ("drift.",), ("nu_mean", "nu_std"))


def _q_s(card, out):
    fq = card.fit_quality.get("q_s", {})
    x = np.logspace(-2.2, 0, 200)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(x * card.g_max_us, card.read_noise.q_s(x), "-", label="Q_s fit")
    if fq.get("x"):
        ax.loglog(np.array(fq["x"]) * card.g_max_us, fq["y"], "o", label="per level (bursts)")
    ax.set_xlabel("programmed conductance (µS)")
    ax.set_ylabel("Q_s")
    ax.legend(fontsize=8)
    return save(fig, out, "q_s.png", "1/f amplitude Q_s vs conductance.", "Read noise", ("read_noise.",),
                ("q_s",))


def versus_ground_truth(session, card: PcmModel) -> str:
    """Per level: the simulated chip's true programming spread (of the noise-free G at t0), ν and
    Q_s statistics next to the fitted card's; then the white read noise (``devmodel demo``)."""
    gt = session.ground_truth["devices"]
    d = session.devices
    ok = (gt["defect"] == 0) & (d["converged"] == 1)
    lines = ["fitted card vs the simulated chip's ground truth (converged, non-defective devices):",
             "  target µS   σ_prog µS true/fit   ν mean true/fit    ν std true/fit     Q_s true/fit"]
    for lv in session.levels_us:
        m = ok & (d["target_us"] == lv)
        if m.sum() < 10:
            continue
        x = lv / card.g_max_us
        q_fit = card.read_noise.q_s(np.median(gt["g20_us"][m]) / card.g_max_us)
        lines.append(f"  {lv:9.2f}   {gt['g20_us'][m].std():.3f} / {float(card.programming.sigma_us(lv)):.3f}"
                     f"        {gt['nu'][m].mean():.4f} / {card.drift.nu_mean(x):.4f}   "
                     f"{gt['nu'][m].std():.4f} / {card.drift.nu_std(x):.4f}   "
                     f"{np.mean(gt['q_s'][m]):.4f} / {float(q_fit):.4f}")
    white = session.ground_truth.get("params", {}).get("white_noise_us")
    if white is not None:
        se = card.read_noise.stderr.get("white_noise_us")
        lines.append(f"  white read noise per read: true {white:g} µS, fitted "
                     f"{card.read_noise.white_noise_us:.3f}" + (f" ± {se:.3f}" if se else "") + " µS")
    return "\n".join(lines)
