"""Small robust statistics shared by the summary, the fitters and the tests (docs/physics.md, "Fitting")."""

from __future__ import annotations

import numpy as np

#: MAD → σ for a Gaussian.
MAD_TO_SIGMA = 1.4826


def robust_sigma(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """MAD × 1.4826: the robust per-level spread docs/physics.md asks for (outliers and stuck devices
    barely move it)."""
    x = np.asarray(x, dtype=float)
    med = np.nanmedian(x, axis=axis, keepdims=True)
    return MAD_TO_SIGMA * np.nanmedian(np.abs(x - med), axis=axis)
