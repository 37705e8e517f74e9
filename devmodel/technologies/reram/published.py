"""The published ReRAM error table the simulated chip reproduces (docs/physics.md, "ReRAM").

NeuRRAM chip (Wan et al. 2022) as fitted in the hardware-aware training supplement (seed 000):
total weight error σ(x) = Σ c_i x^i µS at 1 s, 1 day and 2 days, g_max 40 µS; short-term read noise
conductance independent, 1 % of g_max.
"""

from __future__ import annotations

#: g_max of the NeuRRAM table (µS).
RERAM_G_MAX_US = 40.0
#: Total weight error σ(x) = Σ c_i x^i µS at 1 s, 1 day and 2 days.
RERAM_WAN2022_COEFFS_US: dict[float, tuple[float, ...]] = {
    1.0: (0.348, 16.030, -43.853, 45.393, -16.815),
    86400.0: (0.701, 22.086, -50.773, 47.095, -16.458),
    172800.0: (0.782, 20.274, -43.507, 37.062, -11.934),
}
#: Short-term ReRAM read noise: conductance independent, 1 % of g_max.
RERAM_READ_NOISE_REL = 0.01
