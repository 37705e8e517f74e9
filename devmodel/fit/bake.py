"""Retention against temperature from before/after-bake read pairs (docs/physics.md, "Temperature").

Each device is read, baked for a fixed time at one temperature T, and read again. Per temperature
and level band (equal bands of the read before the bake over [0, g_max]) the change ΔG = G_after −
G_before has a median and a robust spread σ (1.4826·MAD, standard error 1.166·σ/sqrt(2n) for a
near-Gaussian ΔG — an approximation for heavy tails, stated). If relaxation during the bake is one
thermally activated process, σ² = A·exp(−E_a / k_B T): a weighted straight line of ln σ² on 1/(k_B T)
gives E_a with its standard error, and its χ² says whether the data support the Arrhenius law at all
(p < 0.001: they do not, and the per-temperature table shows what they do instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from devmodel.errors import DevmodelError

K_B_EV_PER_K = 8.617333262e-5


@dataclass
class BakeBand:
    band: tuple[float, float]  # µS, by the read before the bake
    temperature_c: np.ndarray
    n: np.ndarray
    median_us: np.ndarray
    sigma_us: np.ndarray
    sigma_se_us: np.ndarray
    ea_ev: float
    ea_se_ev: float
    redchi: float
    chi2_p: float

    @property
    def arrhenius(self) -> bool:
        return self.chi2_p >= 1e-3


def bake_pairs(device: np.ndarray, time_s: np.ndarray, g_us: np.ndarray, temperature_c: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (device, temperature): the first and the last read (before, after) and the temperature;
    devices with a single read at a temperature are left out."""
    order = np.lexsort((time_s, temperature_c, device))
    d, g, temp = device[order], g_us[order], temperature_c[order]
    key = np.r_[True, (d[1:] != d[:-1]) | (temp[1:] != temp[:-1])]
    start = np.flatnonzero(key)
    end = np.r_[start[1:], d.size] - 1
    two = end > start
    return g[start[two]], g[end[two]], temp[start[two]]


def fit_bake(before_us: np.ndarray, after_us: np.ndarray, temperature_c: np.ndarray, g_max_us: float,
             bands: int = 4, min_devices: int = 50) -> list[BakeBand]:
    """Per level band: the spread of ΔG at every temperature and its Arrhenius fit."""
    temps = np.unique(temperature_c)
    if temps.size < 3:
        raise DevmodelError(f"an Arrhenius fit needs bakes at three temperatures or more, not {temps.size}")
    dg = after_us - before_us
    edges = np.linspace(0, g_max_us, bands + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        rows = []
        for temp in temps:
            x = dg[(before_us >= lo) & (before_us < hi) & (temperature_c == temp)]
            if x.size < min_devices:
                continue
            med = np.median(x)
            s = 1.4826 * np.median(np.abs(x - med))
            rows.append((temp, x.size, med, s, 1.166 * s / np.sqrt(2 * x.size)))
        if len(rows) < 3:
            continue
        temp, n, med, s, se = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
        out.append(_arrhenius((float(lo), float(hi)), temp, n, med, s, se))
    if not out:
        raise DevmodelError(f"no level band has {min_devices} devices at three temperatures")
    return out


def _arrhenius(band, temp_c, n, med, s, se) -> BakeBand:
    inv_kt = 1 / (K_B_EV_PER_K * (temp_c + 273.15))
    y, y_se = np.log(s**2), 2 * se / s  # ln σ² and its standard error
    w = 1 / y_se**2
    X = np.column_stack([np.ones_like(inv_kt), inv_kt])
    cov = np.linalg.inv(X.T @ (w[:, None] * X))
    b = cov @ (X.T @ (w * y))
    chi2 = float(np.sum(w * (y - X @ b) ** 2))
    dof = max(y.size - 2, 1)
    scale = max(chi2 / dof, 1.0)
    return BakeBand(band, temp_c, n.astype(int), med, s, se, ea_ev=float(-b[1]),
                    ea_se_ev=float(np.sqrt(cov[1, 1] * scale)), redchi=chi2 / dof,
                    chi2_p=float(stats.chi2.sf(chi2, dof)))


def format_bake(rows: list[BakeBand]) -> str:
    lines = ["retention against temperature: ΔG = G(after bake) − G(before), robust spread σ; "
             "Arrhenius σ² ∝ exp(−E_a / k_B T)"]
    for r in rows:
        verdict = ("Arrhenius holds" if r.arrhenius else
                   f"not Arrhenius (χ² p = {r.chi2_p:.2g}): the spread does not grow as one activated "
                   "process — see the table")
        lines.append(f"  band {r.band[0]:g}–{r.band[1]:g} µS: E_a = {r.ea_ev:.3f} ± {r.ea_se_ev:.3f} eV "
                     f"(χ²/dof = {r.redchi:.2f}); {verdict}")
        for t, n, m, s, e in zip(r.temperature_c, r.n, r.median_us, r.sigma_us, r.sigma_se_us,
                                 strict=True):
            lines.append(f"    {t:5.0f} °C  n {n:6d}  median ΔG {m:+8.3f} µS  σ {s:7.3f} ± {e:.3f} µS")
    return "\n".join(lines)
