"""``devmodel report``: the figures a device engineer puts in a paper, and one HTML page.

Every technology: per-level CDFs at t0 on a probit axis (measured vs card); then the figures of the
technology's ``figures`` part (PCM: σ_prog, drift, ν and Q_s; ReRAM: σ(x) per snapshot); the page
around them (header, parameters, validation table, what was left out) is :mod:`devmodel.report.html`.
matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from devmodel.fit.session import check_card_matches, screened  # noqa: E402
from devmodel.fit.validate import ValidationReport  # noqa: E402
from devmodel.model.card import DeviceModel  # noqa: E402
from devmodel.model.sample import sample_conductance  # noqa: E402
from devmodel.report.html import page as html_page  # noqa: E402
from devmodel.store.output import save_figure, write_text_atomically  # noqa: E402
from devmodel.store.reader import Session, read_session  # noqa: E402
from devmodel.technologies import technology  # noqa: E402


def write_report(card: DeviceModel, session_path, out_dir, validation: ValidationReport | None = None,
                 seed: int = 0) -> Path:
    """Write PNG figures and ``index.html`` into ``out_dir``; returns the HTML path.
    ``session_path`` may be an already loaded Session."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    session = (session_path if isinstance(session_path, Session)
               else read_session(session_path, with_trace=False))
    check_card_matches(card, session)
    data = screened(session, card.fit_quality.get("options") or {})
    rng = np.random.default_rng(seed)
    figs = [_cdf_t0(card, data, rng, out)]
    tech = technology(card.technology)
    if tech.has_part("figures"):
        figs += tech.part("figures").figures(card, data, out)
    path = out / "index.html"
    write_text_atomically(path, html_page(card, session, figs, validation), overwrite=True)
    return path


@dataclass(frozen=True)
class Figure:
    """A saved figure and what the report says beside it: its section heading, the prefixes of the
    card's fitted parameters it shows (``card.scalars()`` names) and the fit_quality curves it plots
    (docs/report.md). Each technology's ``figures`` part says these for its own figures."""

    name: str
    caption: str
    heading: str = ""
    parameters: tuple[str, ...] = ()
    curves: tuple[str, ...] = ()


def save(fig, out: Path, name: str, caption: str, heading: str = "", parameters: tuple[str, ...] = (),
         curves: tuple[str, ...] = ()) -> Figure:
    """Save ``fig`` as ``out/name`` and close it; the :class:`Figure` for the page."""
    fig.tight_layout()
    save_figure(fig, out / name)
    return Figure(name, caption, heading or caption, parameters, curves)


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
    return save(fig, out, "cdf_t0.png", "Cumulative distributions at t0 on a probit axis.",
                "Distributions at t0")


def spectra_figure(rows, path: Path) -> Path:
    """Per level the measured spectrum of ε = G/Ḡ − 1 (points) with the fitted Q²/f^α + W (line) and
    its 1/f part at α = 1 (dashed), one panel; written to a temporary file and renamed."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(rows)))
    for r, c in zip(rows, colours, strict=True):
        sp, ff = r.spectrum, r.fit_free
        ax.loglog(sp.f_hz, sp.s_per_hz, "o", ms=3, color=c, label=f"{r.level_us:.3g} µS "
                  f"(α = {ff.alpha:.2f}, Q = {r.fit_1f.q:.3g})")
        white = (ff.white_us / sp.mean_us) ** 2 * 2 / sp.fs_hz
        ax.loglog(sp.f_hz, ff.q**2 / sp.f_hz**ff.alpha + white, "-", color=c, lw=1)
        ax.loglog(sp.f_hz, r.fit_1f.q**2 / sp.f_hz, "--", color=c, lw=0.8)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("one-sided PSD of G/Ḡ − 1 (1/Hz)")
    ax.set_title("read-noise spectra: fit Q²/f^α + W (line), 1/f part at α = 1 (dashed)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    save_figure(fig, path)
    return path
