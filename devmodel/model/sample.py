"""Draw conductances from a device model card (NumPy; used by validation and reports).

The marginal distribution at one age, exactly as the card defines it (``devmodel.model.card``):
PCM G(t) = G_prog·(t/t0)^−ν·(1 + Q_s(G_prog)·sqrt(ln((t + t_read)/(2 t_read)))·z) + white noise,
with G_prog = max(μ_prog(G_T) + σ_prog(G_T)·z, 0) (coupled to ν when the card has a verify age) and
ν = |N(μ_ν, σ_ν)|; ReRAM G(t) = G_T + shift(t) +
σ(x, t)·z + read noise. The torch noise model of ``devmodel.export`` implements the same card for
training and inference; their equality is a test.
"""

from __future__ import annotations

import numpy as np

from devmodel.model.card import DeviceModel, ModelCardError
from devmodel.physics.published import poly_us


def sample_conductance(card: DeviceModel, g_target_us: np.ndarray, t_s: float,
                       rng: np.random.Generator, extrapolate: bool = False,
                       read_noise: bool = True) -> np.ndarray:
    """One read per target at age ``t_s`` (s after programming), drawn from the card."""
    g = np.asarray(g_target_us, dtype=float)
    if card.technology == "pcm":
        return _sample_pcm(card, g, t_s, rng, read_noise)
    if card.technology == "reram":
        c, shift = card.snapshot_coeffs(t_s, extrapolate)
        sigma = np.maximum(poly_us(c, g / card.g_max_us), 0.0)
        out = g + shift + sigma * rng.standard_normal(g.shape)
        if read_noise and card.read_noise_us:
            out += card.read_noise_us * rng.standard_normal(g.shape)
        return out
    raise ModelCardError(f"unknown technology {card.technology!r}")


def programmed(card: DeviceModel, g_target_us: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(G_prog at t0, ν) per target: programming noise, drift exponent and their coupling."""
    p, d = card.programming, card.drift
    g = np.asarray(g_target_us, dtype=float)
    x = g / card.g_max_us
    mu_nu, sd_nu = d.nu_mean(x), d.nu_std(x)
    nu = mu_nu + sd_nu * rng.standard_normal(g.shape)
    if d.nu_distribution == "folded_normal":
        nu = np.abs(nu)
    mean, sigma = p.mean_us(g), p.sigma_us(g)
    if not p.verify_age_s:
        return np.maximum(mean + sigma * rng.standard_normal(g.shape), 0.0), nu
    # G_prog = G_base·K, K = (τ_v/t0)^(ν − μ_ν) = e^(−L(ν − μ_ν)); mean and spread kept
    L = np.log(card.t0_s / p.verify_age_s)
    k1, k2 = np.exp((L * sd_nu) ** 2 / 2), np.exp(2 * (L * sd_nu) ** 2)
    base_mean = mean / k1
    base_sd = np.sqrt(np.maximum((sigma**2 + mean**2) / k2 - base_mean**2, 0.0))
    base = np.maximum(base_mean + base_sd * rng.standard_normal(g.shape), 0.0)
    return base * np.exp(-L * (nu - mu_nu)), nu


def _sample_pcm(card: DeviceModel, g: np.ndarray, t_s: float, rng, read_noise: bool) -> np.ndarray:
    rn = card.read_noise
    g_prog, nu = programmed(card, g, rng)
    g_t = g_prog * (t_s / card.t0_s) ** (-nu)
    q = rn.q_s(g_prog / card.g_max_us)
    out = g_t * (1.0 + q * rn.sqrt_log_term(t_s) * rng.standard_normal(g.shape))
    if read_noise and rn.white_noise_us:
        out += rn.white_noise_us * rng.standard_normal(g.shape)
    return out
