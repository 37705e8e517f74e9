"""ReRAM report figures (``devmodel report``): σ(x) per snapshot with the per-level data."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from devmodel.fit.data import FitData  # noqa: E402
from devmodel.forms import poly_us  # noqa: E402
from devmodel.report.figures import save  # noqa: E402
from devmodel.technologies.reram.card import ReramModel  # noqa: E402


def figures(card: ReramModel, data: FitData, out) -> list[tuple[str, str]]:
    """The ReRAM figures, saved in ``out``: (file name, caption) each."""
    return [_snapshots(card, out)]


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
    return save(fig, out, "snapshots.png", "ReRAM error σ(x) per snapshot time.",
                "Error σ(x) per snapshot", ("snapshot.",), ("snapshots",))
