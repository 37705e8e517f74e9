"""Draw conductances from a device model card (NumPy; used by validation and reports).

The marginal distribution at one age, exactly as the card defines it; each technology's card class
implements :meth:`~devmodel.model.card.DeviceModel.sample`. The torch noise model
(:mod:`devmodel.model.noise`) implements the same card for training and inference; their equality
is a test.
"""

from __future__ import annotations

import numpy as np

from devmodel.model.card import DeviceModel


def sample_conductance(card: DeviceModel, g_target_us: np.ndarray, t_s: float,
                       rng: np.random.Generator, extrapolate: bool = False,
                       read_noise: bool = True) -> np.ndarray:
    """One read per target at age ``t_s`` (s after programming), drawn from the card."""
    return card.sample(np.asarray(g_target_us, dtype=float), t_s, rng, extrapolate, read_noise)
