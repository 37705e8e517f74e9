"""Functional forms the published device models use, shared by technologies (docs/physics.md).

Units: conductance µS, time s; ``x = G / g_max`` is a normalised conductance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def poly_us(coeffs, x) -> np.ndarray:
    """Evaluate Σ c_i·x^i (c0 first), the convention of the model card and of aihwkit."""
    return np.polynomial.polynomial.polyval(np.asarray(x, dtype=float), np.asarray(coeffs, float))


def level_residual(g, levels, residuals, xp=np):
    """Piecewise-linear interpolation of per-level ``residuals`` at ``g`` (held at the end values
    beyond the levels): the part of a per-level measured quantity a smooth form across levels
    leaves (docs/physics.md, "Mean offset at t0"). ``xp`` is numpy or torch, arrays of that kind."""
    n = levels.shape[0]
    if n == 1:
        return residuals[0] + 0 * g
    if xp is np:
        return np.interp(g, levels, residuals)
    j = xp.searchsorted(levels, g.contiguous()).clamp(1, n - 1)
    g0, g1 = levels[j - 1], levels[j]
    w = ((g - g0) / (g1 - g0)).clamp(0.0, 1.0)
    return residuals[j - 1] * (1 - w) + residuals[j] * w


@dataclass(frozen=True)
class ClippedLog:
    """``clip(a·ln x + b, lo, hi)``: the form of μ_ν(x) and σ_ν(x) in the published PCM model."""

    a: float
    b: float
    lo: float
    hi: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.maximum(np.asarray(x, dtype=float), 1e-12)
        return np.clip(self.a * np.log(x) + self.b, self.lo, self.hi)


@dataclass(frozen=True)
class PowerLawCap:
    """``min(amp / x^exp, cap)``: the form of Q_s(x) in the published PCM model."""

    amp: float
    exp: float
    cap: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.maximum(np.asarray(x, dtype=float), 1e-12)
        return np.minimum(self.amp / x**self.exp, self.cap)


def sqrt_log_term(t_s, t_read_s: float) -> np.ndarray:
    """sqrt(ln((t + t_read)/(2 t_read))), the accumulated 1/f term of a read integrated over
    t_read: 4.18 at 20 s, 5.09 at 1 day, 5.64 at 1 year for t_read = 250 ns (docs/physics.md)."""
    t_s = np.asarray(t_s, dtype=float)
    return np.sqrt(np.log((t_s + t_read_s) / (2.0 * t_read_s)))
