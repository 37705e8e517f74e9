"""``devmodel report``: the figures a device engineer puts in a paper, and one HTML page.

PCM: per-level CDFs at t0 on a probit axis (measured vs card), σ_prog vs G_T with the fit and its
±1 standard-error band, ln G vs ln age per level with the fitted ν(G), μ_ν/σ_ν per level with their
clipped-log fits, Q_s per level with its power law; ReRAM: σ(x) per snapshot with the data. Plus the
validation table when a session is given. matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from devmodel.fit.data import prepare, read_near, typical_ages  # noqa: E402
from devmodel.fit.session import card_scalars  # noqa: E402
from devmodel.fit.validate import ValidationReport, format_report  # noqa: E402
from devmodel.model.card import DeviceModel  # noqa: E402
from devmodel.model.sample import sample_conductance  # noqa: E402
from devmodel.physics.published import poly_us
from devmodel.store.session import Session, read_session  # noqa: E402


def write_report(card: DeviceModel, session_path, out_dir, validation: ValidationReport | None = None,
                 seed: int = 0) -> Path:
    """Write PNG figures and ``index.html`` into ``out_dir``; returns the HTML path.
    ``session_path`` may be an already loaded Session."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    session = (session_path if isinstance(session_path, Session)
               else read_session(session_path, with_trace=False))
    data = prepare(session)
    rng = np.random.default_rng(seed)
    figs = [_cdf_t0(card, data, rng, out)]
    if card.technology == "pcm":
        figs += [_sigma_prog(card, out), _drift(card, data, out), _nu(card, out), _q_s(card, out)]
    else:
        figs += [_snapshots(card, out)]
    page = out / "index.html"
    page.write_text(_html(card, session_path, figs, validation), encoding="utf-8")
    return page


def _save(fig, out: Path, name: str, caption: str) -> tuple[str, str]:
    fig.tight_layout()
    fig.savefig(out / name, dpi=120)
    plt.close(fig)
    return name, caption


def _cdf_t0(card, data, rng, out):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.cm.viridis(np.linspace(0, 0.95, data.levels_us.size))
    for j, lv in enumerate(data.levels_us):
        g = np.sort(data.g_t0[data.use & (data.level == j) & np.isfinite(data.g_t0)])
        if g.size < 10:
            continue
        p = (np.arange(g.size) + 0.5) / g.size
        ax.plot(g, stats.norm.ppf(p), ".", ms=1.5, color=colors[j])
        sim = np.sort(sample_conductance(card, np.full(20000, lv), card.t0_s, rng))
        ax.plot(sim, stats.norm.ppf((np.arange(sim.size) + 0.5) / sim.size), "-", lw=0.8,
                color=colors[j])
    ax.set_xlabel(f"conductance at t0 = {card.t0_s:g} s (µS)")
    ax.set_ylabel("probit (σ)")
    ax.set_ylim(-3.5, 3.5)
    ax.set_title("per-level distributions at t0: measured (dots), card (lines)")
    return _save(fig, out, "cdf_t0.png", "Cumulative distributions at t0 on a probit axis.")


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
    return _save(fig, out, "sigma_prog.png", "Programming noise vs target, with its fit.")


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
    return _save(fig, out, "drift.png", "Median conductance vs age per level, with the fitted ν.")


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
    return _save(fig, out, "nu.png", "Drift-exponent mean and spread vs target conductance.")


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
    return _save(fig, out, "q_s.png", "1/f amplitude Q_s vs conductance.")


def _snapshots(card, out):
    fig, ax = plt.subplots(figsize=(6, 4))
    x = np.linspace(0, 1, 200)
    for s in card.snapshots:
        line, = ax.plot(x * card.g_max_us, poly_us(s.poly_coeffs_us, x),
                        label=f"t = {s.t_s:g} s")
        q = card.fit_quality.get("snapshots", {}).get(f"{s.t_s:g}")
        if q:
            ax.plot(np.array(q["x"]) * card.g_max_us, q["y"], "o", ms=3, color=line.get_color())
    ax.set_xlabel("target conductance (µS)")
    ax.set_ylabel("σ (µS), read noise removed")
    ax.legend(fontsize=7)
    return _save(fig, out, "snapshots.png", "ReRAM error σ(x) per snapshot time.")


def _html(card, session_path, figs, validation) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:.6g}</td></tr>"
                   for k, v in card_scalars(card).items())
    imgs = "".join(f'<figure><img src="{n}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}'
                   f"</figcaption></figure>" for n, c in figs)
    val = (f"<h2>Validation</h2><pre>{html.escape(format_report(validation))}</pre>"
           if validation else "")
    prov = html.escape(str(card.provenance))
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>devmodel report: {html.escape(str(session_path))}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:auto}}img{{max-width:100%}}
td{{padding:2px 10px}}</style></head><body>
<h1>Device model report ({card.technology})</h1>
<p>Session: {html.escape(str(session_path))}</p><p>Provenance: {prov}</p>
<h2>Parameters</h2><table>{rows}</table>{imgs}{val}</body></html>"""
