"""The published PCM statistical model the simulated chip defaults to and the fitter must recover.

Constants of docs/physics.md ("PCM: published statistical model"): the model used by IBM aihwkit's
``PCMLikeNoiseModel`` (Nandakumar et al.: programming polynomial, clipped-log drift-exponent
statistics, 1/f read noise). Units: conductance µS, time s; ``x = G / g_max``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from devmodel.forms import ClippedLog, PowerLawCap, poly_us, sqrt_log_term

#: g_max of the published model (µS).
PCM_G_MAX_US = 25.0
#: Reference time t0: every time is counted from the end of the last programming pulse (s).
PCM_T0_S = 20.0
#: Read integration time of the 1/f accumulation formula (s).
PCM_T_READ_S = 250e-9
#: Programming-noise polynomial σ_prog(x) = c0 + c1·x + c2·x² in µS (g_max = 25 µS).
PCM_PROG_COEFFS_US = (0.26348, 1.9650, -1.1731)


@dataclass(frozen=True)
class PcmStatModel:
    """The published PCM statistical model (docs/physics.md, first table); all fields configurable.

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
