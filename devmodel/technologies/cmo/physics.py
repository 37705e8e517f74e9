"""A simulated CMO/HfOx ReRAM test chip (docs/physics.md, "CMO/HfOx ReRAM").

Bilayer conductive-metal-oxide / HfOx cells switch gradually in both directions without a compliance
current: a SET pulse of V above the device's SET threshold moves G a fraction f = rate·(V − V_th)²
(times a lognormal cycle-to-cycle factor) of the way to its ceiling, a RESET pulse likewise towards
its floor; the soft quadratic onset lets write-verify reach a 2 % acceptance range with stepped
voltages. Floors, ceilings and thresholds vary device to device; ~1 % of devices are stuck.

After every pulse the conductance relaxes along the published law (aihwkit's ``ReRamCMONoiseModel``,
Falcone et al.): with one standard normal z drawn per device at its pulse,

    δ(a) = m·ln(a / 1 s) + (s0·r(a) + s1·ln(a / 1 s))·z   for a ≥ 1 s,

so the mean moves by m·ln a and the spread is s0 + s1·ln a at every age a ≥ 1 s; r(a) rises linearly
in ln a from 0 at ``t_onset_s`` to 1 at 1 s (the fast part of the relaxation, after the verify
reads of a program-and-verify pass, which come within a few hundred ms of their pulse). Reads add
1/f noise K·log10(G)·η(a) (η the 1/f process of :mod:`devmodel.physics.flicker`, Var η =
ln(a/(2 t_read)), t_read = 1 µs) and white noise, and are quantised by the ADC.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from devmodel import __version__
from devmodel.array import ChipInfo, Limits, PulseKind
from devmodel.physics.base import (
    DEFECT_NONE,
    DEFECT_STUCK_HIGH,
    DEFECT_STUCK_LOW,
    FlickerState,
    SimulatedChip,
    Timing,
    draw_defects,
    lognormal,
    quantise,
)
from devmodel.physics.flicker import FlickerBank
from devmodel.technologies.cmo.published import (
    CMO_G_MAX_US,
    CMO_READ_K,
    CMO_RELAX_MEAN_SLOPE_US,
    CMO_RELAX_STD_US,
    CMO_T_READ_S,
)


@dataclass(frozen=True)
class CmoPhysics:
    """Ground-truth parameters of the simulated CMO/HfOx chip (all recorded in the session)."""

    g_max_us: float = CMO_G_MAX_US  # the window the chip declares
    g_floor_us: float = 5.0  # median conductance after a full RESET
    g_ceil_us: float = 100.0  # median conductance after a full SET
    window_spread: float = 0.05  # device-to-device lognormal σ of floor and ceiling
    v_set_th_v: float = 0.9
    v_reset_th_v: float = 0.9  # magnitude
    threshold_spread: float = 0.03
    set_rate_per_v2: float = 5.0  # f = rate·(V − V_th)², clipped at 1
    reset_rate_per_v2: float = 5.0
    c2c_spread: float = 0.3  # lognormal cycle-to-cycle spread of each step
    relax_mean_slope_us: float = CMO_RELAX_MEAN_SLOPE_US  # m
    relax_std_s0_us: float = CMO_RELAX_STD_US[0]  # s0
    relax_std_s1_us: float = CMO_RELAX_STD_US[1]  # s1
    t_onset_s: float = 0.5  # the fast relaxation builds up between here and 1 s
    read_k: float = CMO_READ_K  # K of the 1/f read noise
    t_read_s: float = CMO_T_READ_S
    white_noise_us: float = 0.05
    adc_lsb_us: float = 0.01
    stuck_low_frac: float = 0.005
    stuck_high_frac: float = 0.005

    timing: Timing = field(default_factory=Timing)  # controller time per read / pulse

    def to_dict(self) -> dict:
        return asdict(self)

    def relaxation_us(self, age_s: np.ndarray, z: np.ndarray) -> np.ndarray:
        """δ(age) of devices with relaxation draws ``z`` (module docstring)."""
        a = np.maximum(np.asarray(age_s, dtype=float), 1e-30)
        ln_a = np.log(np.maximum(a, 1.0))
        ramp = np.clip(np.log(a / self.t_onset_s) / np.log(1.0 / self.t_onset_s), 0.0, 1.0)
        return self.relax_mean_slope_us * ln_a + (self.relax_std_s0_us * ramp
                                                  + self.relax_std_s1_us * ln_a) * z


class SimulatedCMO(FlickerState, SimulatedChip):
    """Vectorised CMO/HfOx chip implementing the device-array protocol (pulse amplitudes in V)."""

    _STATE_ARRAYS = ("g_prog", "t_pulse", "z")

    def __init__(self, n_devices: int = 1 << 20, seed: int = 0, physics: CmoPhysics | None = None,
                 limits: Limits | None = None) -> None:
        self.physics = p = physics or CmoPhysics()
        info = ChipInfo(
            technology="cmo", n_devices=int(n_devices), g_max_us=p.g_max_us, pulse_unit="V",
            identity=f"devmodel,SIM-CMO,{seed},{__version__}",
            limits=limits or Limits(max_amplitude=3.0, max_width_ns=10_000.0, max_compliance_ua=500.0),
            simulated=True, read_cycle_s=p.timing.read_cycle_s,
        )
        super().__init__(info, seed, p.timing)
        n, rng = info.n_devices, self.rng
        self.g_floor = p.g_floor_us * lognormal(rng, p.window_spread, n)
        self.g_ceil = p.g_ceil_us * lognormal(rng, p.window_spread, n)
        self.v_set_th = p.v_set_th_v * lognormal(rng, p.threshold_spread, n)
        self.v_reset_th = p.v_reset_th_v * lognormal(rng, p.threshold_spread, n)
        self.defect = draw_defects(rng, n, p.stuck_low_frac, p.stuck_high_frac)
        # as formed: a random state in the window; stuck devices at an end of it
        g0 = self.g_floor + (self.g_ceil - self.g_floor) * rng.random(n)
        self.g_prog = np.where(self.defect == DEFECT_STUCK_HIGH, self.g_ceil,
                               np.where(self.defect == DEFECT_STUCK_LOW, self.g_floor, g0))
        self.t_pulse = np.zeros(n)
        self.z = np.zeros(n)  # relaxation draw of the last pulse (none before the first)
        self.bank = FlickerBank(n, t_read_s=p.t_read_s)

    def _pulse(self, a, kind, amp, width_ns, compliance_ua, t_end) -> None:
        p, rng, m = self.physics, self.rng, a.size
        g_now = self.g_prog[a] + p.relaxation_us(t_end - self.t_pulse[a], self.z[a])
        v = np.abs(amp)
        c2c = lognormal(rng, p.c2c_spread, m)
        is_set = kind == PulseKind.SET
        over = np.maximum(v - np.where(is_set, self.v_set_th[a], self.v_reset_th[a]), 0.0)
        rate = np.where(is_set, p.set_rate_per_v2, p.reset_rate_per_v2)
        f = np.clip(rate * over**2 * c2c, 0.0, 1.0)
        target = np.where(is_set, self.g_ceil[a], self.g_floor[a])
        new = g_now + f * (target - g_now)
        ok = self.defect[a] == DEFECT_NONE
        a, t_end = a[ok], t_end[ok]
        self.g_prog[a] = new[ok]
        self.t_pulse[a] = t_end
        self.z[a] = rng.standard_normal(a.size)
        self.bank.reset(a, t_end)

    def _read(self, a, t_first, n_reads, spacing_s) -> np.ndarray:
        p = self.physics
        eta = self._eta(a, t_first, n_reads, spacing_s)
        t = t_first[:, None] + np.arange(n_reads) * spacing_s
        age = t - self.t_pulse[a][:, None]
        g = self.g_prog[a][:, None] + p.relaxation_us(age, self.z[a][:, None])
        g = g + p.read_k * np.log10(np.maximum(g, 1.0)) * eta
        g += p.white_noise_us * self.rng.standard_normal(g.shape)
        return quantise(np.maximum(g, 0.0), p.adc_lsb_us)

    def ground_truth(self) -> dict:
        return {
            "model": "devmodel.technologies.cmo.physics.SimulatedCMO",
            "params": self.physics.to_dict(),
            "devices": {"g_prog_us": self.g_prog, "z": self.z, "t_pulse_s": self.t_pulse,
                        "defect": self.defect, "g_floor_us": self.g_floor, "g_ceil_us": self.g_ceil,
                        "v_set_th_v": self.v_set_th, "v_reset_th_v": self.v_reset_th},
        }


#: The technology's part interface (devmodel.technologies).
PHYSICS = CmoPhysics
CHIP = SimulatedCMO
