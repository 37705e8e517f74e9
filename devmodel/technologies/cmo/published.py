"""The published CMO/HfOx ReRAM model (docs/physics.md, "CMO/HfOx ReRAM"): the defaults of IBM
aihwkit 1.2's ``ReRamCMONoiseModel``, fitted by Falcone et al. on IBM Research Europe's devices.

* programming noise σ_prog(G) = c0 + c1·G (G in µS), for a program-and-verify acceptance range of
  2 % (or 0.2 %) of the target;
* relaxation, independent of the level: mean shift m·ln t, spread σ(t) = s0 + s1·ln t (t in s from
  programming);
* read noise σ_read(G, t) = K·log10(G)·sqrt(ln((t + t_read)/(2 t_read))) with t_read = 1 µs (1/f);
* conductances clamped to the window [g_min, g_max] = [9, 88.2] µS (aihwkit's single-device
  converter for these devices).
"""

from __future__ import annotations

#: Device window (µS).
CMO_G_MIN_US = 9.0
CMO_G_MAX_US = 88.199997
#: σ_prog = c0 + c1·G (µS) by acceptance range (fraction of the target).
CMO_PROG_COEFFS_US: dict[float, tuple[float, float]] = {
    0.002: (0.00081107, 0.00106879),
    0.02: (0.0112185391, 0.01129027418),
}
#: Relaxation: mean m·ln t (µS), spread s0 + s1·ln t (µS).
CMO_RELAX_MEAN_SLOPE_US = -0.08900206
CMO_RELAX_STD_US = (0.41183342, 0.04201137)  # (s0, s1)
#: Read noise K·log10(G)·sqrt(ln((t + t_read)/(2 t_read))).
CMO_READ_K = 0.0277316483
CMO_T_READ_S = 1e-6
