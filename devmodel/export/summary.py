"""``devmodel export --to summary``: the scalars simpler simulators take (MemTorch, NeuroSim style)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from devmodel.model.card import DeviceModel
from devmodel.physics.published import poly_us


def summary(card: DeviceModel) -> dict[str, float | str]:
    """Mean programming noise relative to g_max, mean drift exponent, on/off ratio (and for ReRAM
    the error at each snapshot), each averaged uniformly over x = G_T/g_max ∈ (0, 1]."""
    x = np.linspace(0.01, 1.0, 100)
    g = x * card.g_max_us
    out: dict[str, float | str] = {"technology": card.technology, "g_max_us": card.g_max_us}
    if card.technology == "pcm":
        p = card.programming
        out["sigma_prog_rel_g_max"] = float(np.mean(p.sigma_us(g)) / card.g_max_us)
        out["nu_mean"] = float(np.mean(card.drift.nu_mean(x)))
        # the unused device of a pair: programmed to 0, clamped at 0 (half-normal mean)
        s0 = max(float(p.sigma_us(np.array([0.0]))[0]), 1e-9)
        m0 = float(p.mean_us(np.array([0.0]))[0])
        g_off = m0 * stats.norm.cdf(m0 / s0) + s0 * stats.norm.pdf(m0 / s0)  # E[max(N(m0, s0), 0)]
        out["on_off_ratio"] = float(card.g_max_us / max(g_off, 1e-6))
        out["q_s_at_g_max"] = float(card.read_noise.q_s(np.array([1.0]))[0])
        out["t0_s"] = card.t0_s
    else:
        for s in card.snapshots:
            sig = poly_us(s.poly_coeffs_us, x)
            out[f"sigma_rel_g_max_at_{s.t_s:g}s"] = float(np.mean(sig) / card.g_max_us)
        sig0 = poly_us(card.snapshots[0].poly_coeffs_us, 0.0)
        out["on_off_ratio"] = float(card.g_max_us / max(sig0 * np.sqrt(2 / np.pi), 1e-6))
        out["read_noise_rel_g_max"] = float((card.read_noise_us or 0.0) / card.g_max_us)
    return out
