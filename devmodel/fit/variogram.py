"""Read noise from read-noise bursts (docs/physics.md, "Fitting"): what the technologies' fitters share.

A burst is M equally spaced reads of one device. Its variogram D(τ) = ⟨(G(t+τ) − G(t))²⟩ regressed on
ln τ has slope 2·A² for a 1/f process of amplitude A (Var of the increment over τ grows as
2·A²·ln(τ/(4 t_read)) for a read integrated over t_read) and intercept 2σ_w² − 2A²·ln(4 t_read) with
σ_w the white (short-term) read noise; lags 1, 2, 4, … reads, as Allan variance at short lags is
inflated by aliasing.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from devmodel.fit.data import burst_reads
from devmodel.store.reader import Session


def equal_bursts(session: Session, min_reads: int = 8
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """The session's bursts grouped by length: (g, t, age) matrices (bursts × reads) and each burst's
    device, one group per length of at least ``min_reads``."""
    b = burst_reads(session)
    if b is None:
        return
    bid, t, g, dev, age = b
    _, start, length = np.unique(bid, return_index=True, return_counts=True)
    for n_reads in np.unique(length):
        grp = (length == n_reads) & (n_reads >= min_reads)
        if grp.any():
            idx = start[grp][:, None] + np.arange(n_reads)
            yield g[idx], t[idx], age[idx], dev[idx[:, 0]]


def variogram_lines(h: np.ndarray, dt_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``h`` (bursts × reads, spaced ``dt_s``): slope and intercept of D(τ) on ln τ."""
    n_reads = h.shape[1]
    lags = 2 ** np.arange(int(np.log2(max(n_reads // 4, 1))) + 1)
    var = np.stack([np.mean((h[:, k:] - h[:, :-k]) ** 2, axis=1) for k in lags], 1)
    X = np.column_stack([np.log(lags * max(dt_s, 1e-12)), np.ones(lags.size)])
    coef = np.linalg.lstsq(X, var.T, rcond=None)[0]
    return coef[0], coef[1]


def white_variance(slope: np.ndarray, intercept: np.ndarray, t_read_s: float) -> np.ndarray:
    """σ_w² per burst from its variogram line: the 1/f part 2A²·ln(τ/(4 t_read)) removed (can be < 0)."""
    return (intercept + slope * np.log(4 * t_read_s)) / 2


def white_noise(var_us2: np.ndarray, var_se_us2: np.ndarray) -> tuple[float, float | None]:
    """White read noise and its standard error (µS) from per-level σ_w² estimates, combined by inverse
    variance.

    White noise is conductance-independent (docs/physics.md), but each level's estimate extrapolates
    the variogram from lags of seconds down to 4·t_read, about 14 e-folds, so a level's 1/f slope
    error is multiplied by 14: where the 1/f noise is large that error dwarfs σ_w² itself (per-level
    estimates of either sign), while the levels with little 1/f noise pin it down. Averaging with
    equal weights let the noisy levels dominate (0.093 µS for 0.05 µS true on the simulated PCM chip);
    inverse-variance weights use each level for what it resolves. Negative level estimates are kept
    (clamping them would bias upwards).
    """
    w2, se = np.asarray(var_us2, float), np.asarray(var_se_us2, float)
    ok = np.isfinite(w2) & (se > 0)
    if not ok.any():
        return 0.0, None
    wt = 1.0 / se[ok] ** 2
    var, var_se = np.sum(wt * w2[ok]) / wt.sum(), 1.0 / np.sqrt(wt.sum())
    sd = float(np.sqrt(max(var, 0.0)))
    # delta method; at an estimate of 0 the SE of σ is that of sqrt(var_se)
    return sd, float(var_se / (2 * sd) if sd > np.sqrt(var_se) else np.sqrt(var_se))
