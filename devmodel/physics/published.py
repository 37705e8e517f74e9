"""The published device models that the simulated chips default to and the fitters must recover.

Every constant here is quoted from ``physics.md`` (shared reference), which in turn cites the PCM
statistical model used by IBM aihwkit (Nandakumar et al., programming polynomial, clipped-log drift
exponent statistics, 1/f read noise) and the NeuRRAM ReRAM error table (Wan 2022, as fitted in seed
000_…). Units: conductance in µS, time in s; ``x = g / g_max`` is the normalised conductance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: PCM g_max of the published model (µS).
PCM_G_MAX_US = 25.0
#: Reference time t0: every time is counted from the end of the last programming pulse (s).
PCM_T0_S = 20.0
#: Read integration time of the 1/f accumulation formula (s).
PCM_T_READ_S = 250e-9
#: Programming-noise polynomial σ_prog(x) = c0 + c1·x + c2·x² in µS (g_max = 25 µS).
PCM_PROG_COEFFS_US = (0.26348, 1.9650, -1.1731)

#: ReRAM g_max of the NeuRRAM table (µS).
RERAM_G_MAX_US = 40.0
#: Total weight error σ(x) = Σ c_i x^i µS of the NeuRRAM chip at 1 s, 1 day and 2 days (000_…).
RERAM_WAN2022_COEFFS_US: dict[float, tuple[float, ...]] = {
    1.0: (0.348, 16.030, -43.853, 45.393, -16.815),
    86400.0: (0.701, 22.086, -50.773, 47.095, -16.458),
    172800.0: (0.782, 20.274, -43.507, 37.062, -11.934),
}
#: Short-term ReRAM read noise: conductance independent, 1 % of g_max.
RERAM_READ_NOISE_REL = 0.01


def poly_us(coeffs: tuple[float, ...] | np.ndarray, x: np.ndarray) -> np.ndarray:
    """Evaluate Σ c_i·x^i (c0 first), the convention of the model card and of aihwkit."""
    return np.polynomial.polynomial.polyval(np.asarray(x, dtype=float), np.asarray(coeffs, float))


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


@dataclass(frozen=True)
class PcmStatModel:
    """The published PCM statistical model (physics.md, first table); all fields configurable.

    ``nu_std`` is the intrinsic device-to-device spread (ν = |N(μ_ν, σ_ν)|), the convention the whole
    toolkit uses unless a number is explicitly labelled apparent.
    """

    g_max_us: float = PCM_G_MAX_US
    t0_s: float = PCM_T0_S
    t_read_s: float = PCM_T_READ_S
    prog_coeffs_us: tuple[float, ...] = PCM_PROG_COEFFS_US
    nu_mean: ClippedLog = field(default_factory=lambda: ClippedLog(-0.0155, 0.0244, 0.049, 0.1))
    nu_std: ClippedLog = field(default_factory=lambda: ClippedLog(-0.0125, -0.0059, 0.008, 0.045))
    q_s: PowerLawCap = field(default_factory=lambda: PowerLawCap(0.0088, 0.65, 0.2))

    def sigma_prog_us(self, g_target_us: np.ndarray) -> np.ndarray:
        """Programming noise σ_prog(G_T) in µS (excludes the 1/f noise accumulated until t0)."""
        return poly_us(self.prog_coeffs_us, np.asarray(g_target_us) / self.g_max_us)

    def sqrt_log_term(self, t_s: np.ndarray) -> np.ndarray:
        return sqrt_log_term(t_s, self.t_read_s)


def sqrt_log_term(t_s: np.ndarray, t_read_s: float) -> np.ndarray:
    """sqrt(ln((t + t_read)/(2 t_read))), the accumulated 1/f term: 4.18 at 20 s, 5.09 at 1 day,
    5.64 at 1 year (t_read = 250 ns)."""
    t_s = np.asarray(t_s, dtype=float)
    return np.sqrt(np.log((t_s + t_read_s) / (2.0 * t_read_s)))

    def total_sigma_t0_us(self, g_target_us: np.ndarray) -> np.ndarray:
        """Spread at t0 including the accumulated 1/f part: sqrt(σ_prog² + (G·Q_s·4.18)²)
        (physics.md's approximation with Q_s at the target)."""
        g = np.asarray(g_target_us, dtype=float)
        rn = g * self.q_s(g / self.g_max_us) * self.sqrt_log_term(self.t0_s)
        return np.hypot(self.sigma_prog_us(g), rn)

    def sample(
        self, g_target_us: np.ndarray, t_s: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Draw G(t) for each target at the read ages ``t_s`` (independent per age).

        This is the model's marginal distribution at each age (the aihwkit formulation); a process in
        time with correlated reads lives in :mod:`devmodel.physics.pcm`.
        """
        g = np.asarray(g_target_us, dtype=float)[:, None]
        t = np.atleast_1d(np.asarray(t_s, dtype=float))[None, :]
        x = g / self.g_max_us
        g_prog = np.maximum(g + self.sigma_prog_us(g) * rng.standard_normal(g.shape), 0.0)
        nu = np.abs(self.nu_mean(x) + self.nu_std(x) * rng.standard_normal(g.shape))
        g_drift = g_prog * (t / self.t0_s) ** (-nu)
        # Q_s at the programmed conductance, as aihwkit's PCMLikeNoiseModel does
        sig = g_drift * self.q_s(g_prog / self.g_max_us) * self.sqrt_log_term(t)
        return g_drift + sig * rng.standard_normal((g.shape[0], t.shape[1]))


def reram_sigma_us(t_s: float, x: np.ndarray) -> np.ndarray:
    """Published NeuRRAM total error σ(x) at one of the table's times (1 s, 1 day, 2 days)."""
    if t_s not in RERAM_WAN2022_COEFFS_US:
        raise KeyError(f"the published ReRAM table has no snapshot at t = {t_s} s")
    return poly_us(RERAM_WAN2022_COEFFS_US[t_s], x)
