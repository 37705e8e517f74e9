"""CMO/HfOx report figures (``devmodel report``): programming noise vs target with its linear fit,
the relaxation mean and spread vs ln t with their laws, and the 1/f amplitude per level."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from devmodel.fit.data import FitData  # noqa: E402
from devmodel.report.figures import save  # noqa: E402
from devmodel.technologies.cmo.card import CmoModel  # noqa: E402


def figures(card: CmoModel, data: FitData, out) -> list[tuple[str, str]]:
    """The CMO/HfOx figures, saved in ``out``: (file name, caption) each."""
    return [_programming(card, out), _relaxation(card, out)]


def _programming(card: CmoModel, out):
    q = card.fit_quality.get("programming", {})
    g = np.linspace(card.window_min_us, card.g_max_us, 100)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(g, card.programming.sigma_us(g), "-", label="σ_prog = c0 + c1·G fit")
    if q.get("x"):
        ax.plot(q["x"], q["y"], "o", label="per level (final verify readings)")
    ax.set_xlabel("target conductance G_T (µS)")
    ax.set_ylabel("σ_prog (µS)")
    ax.legend(fontsize=8)
    return save(fig, out, "programming.png", "Programming noise vs target, with its fit.",
                "Programming noise σ_prog", ("programming.",), ("programming",))


def _relaxation(card: CmoModel, out):
    r = card.relaxation
    t = np.logspace(0, np.log10(max(card.fitted_time_range()[1] or 86400.0, 10.0)), 100)
    fig, axs = plt.subplots(1, 2, figsize=(9, 3.6))
    axs[0].plot(np.log(t), r.mean_us(t), "-", label="d0 + m·ln t")
    axs[1].plot(np.log(t), r.std_us(t), "-", label="s0 + s1·ln t")
    qm, qs = card.fit_quality.get("relaxation_mean", {}), card.fit_quality.get("relaxation_std", {})
    if qm.get("x"):
        axs[0].plot(qm["x"], qm["y"], ".", ms=3, label="per level and age")
    if qs.get("x"):
        axs[1].plot(qs["x"], qs["y"], "o", label="per age (levels pooled)")
    for ax, name in zip(axs, ("mean of G − G_T (µS)", "σ_rel (µS)"), strict=True):
        ax.set_xlabel("ln(t / s)")
        ax.set_ylabel(name)
        ax.legend(fontsize=7)
    return save(fig, out, "relaxation.png", "Relaxation: mean shift and spread vs time, with their laws.",
                "Relaxation", ("relaxation.",), ("relaxation_mean", "relaxation_std"))
