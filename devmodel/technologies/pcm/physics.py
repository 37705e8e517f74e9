"""A simulated phase-change memory test chip (docs/physics.md, "PCM physics for a simulated chip").

State of each device is its conductance at the reference age t0 after its last pulse (``g20``), its
drift exponent ν and 1/f amplitude Q_s (drawn at every pulse from the published G-dependent
distributions), the time of its last pulse and its 1/f process. A read at age a returns

    G = g20 · (a / t0)^(−ν) · (1 + Q_s·η(a)) + white noise, quantised by the ADC,

with η the 1/f process of :mod:`devmodel.physics.flicker` (variance ln(a/(2 t_read))). The
programming response of one pulse of amplitude I (µA) has the three regimes of docs/physics.md:

* sub-melt (I < I_melt): cumulative, noisy crystal growth, mean ΔG ∝ (I/I_melt)^p, exponential
  spread (σ of ΔG equal to its mean);
* partial RESET (I_melt ≤ I < I_reset, RESET pulses): an amorphous plug u = f(I)·ε with
  f = (I − I_melt)/(I_reset − I_melt) and lognormal cycle-to-cycle ε; G = G_set·(1 − u)^γ; the
  melt-quench erases history (the outcome depends on the last amplitude only);
* full RESET (u ≥ 1): G ≈ g_reset (≤ 0.1 µS).

SET pulses (long, crystallising) at or above ``set_min_ua`` return the device to G_set. Thresholds
and the curve scale vary device to device; ~0.8 % of devices are stuck low or high (Joshi's 0.9 %
non-convergence, seed 001).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from devmodel import __version__
from devmodel.array import ChipInfo, Limits, PulseKind
from devmodel.physics.base import (
    DEFECT_NONE,
    DEFECT_STUCK_LOW,
    FlickerState,
    SimulatedChip,
    Timing,
    draw_defects,
    lognormal,
    quantise,
)
from devmodel.physics.flicker import FlickerBank
from devmodel.technologies.pcm.published import PcmStatModel


@dataclass(frozen=True)
class PcmPhysics:
    """Ground-truth parameters of the simulated PCM chip (all recorded in the session)."""

    stat: PcmStatModel = field(default_factory=PcmStatModel)  # ν(G), Q_s(G), t0, t_read, g_max
    g_set_us: float = 35.0  # median crystalline conductance at t0 after the SET staircase
    g_set_spread: float = 0.10  # device-to-device lognormal σ of the curve scale
    i_melt_ua: float = 90.0  # melting threshold, 80–100 µA
    i_reset_ua: float = 420.0  # full RESET, 400–450 µA
    threshold_spread: float = 0.05  # device-to-device lognormal σ of both thresholds (±10 % at 2σ)
    curve_exponent: float = 2.0  # γ in G = G_set·(1 − u)^γ
    c2c_spread: float = 0.05  # cycle-to-cycle lognormal σ of the plug: 10–20 % of G in mid/low range
    g_reset_us: float = 0.05  # full-RESET level, ≤ 0.1 µS
    g_reset_spread: float = 0.3
    creep_frac: float = 0.02  # mean ΔG of a 50 ns pulse at I_melt, as a fraction of G_set
    creep_power: float = 4.0
    set_min_ua: float = 50.0  # SET pulses at or above this crystallise fully
    set_spread: float = 0.03  # cycle-to-cycle lognormal σ of the SET level
    white_noise_us: float = 0.05  # short-term (white) read noise per read
    adc_lsb_us: float = 0.01
    stuck_low_frac: float = 0.004
    stuck_high_frac: float = 0.004
    t_onset_s: float = 1e-7  # ages below this read as this (drift law starts after the quench)

    timing: Timing = field(default_factory=Timing)  # controller time per read / pulse

    def to_dict(self) -> dict:
        d = asdict(self)
        return d


class SimulatedPCM(FlickerState, SimulatedChip):
    """Vectorised PCM chip implementing the device-array protocol (pulse amplitudes in µA)."""

    _STATE_ARRAYS = ("g20", "nu", "q_s", "t_pulse")

    def __init__(
        self,
        n_devices: int = 1 << 20,
        seed: int = 0,
        physics: PcmPhysics | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.physics = p = physics or PcmPhysics()
        timing = p.timing
        info = ChipInfo(
            technology="pcm",
            n_devices=int(n_devices),
            g_max_us=p.stat.g_max_us,
            pulse_unit="uA",
            identity=f"devmodel,SIM-PCM,{seed},{__version__}",
            limits=limits or Limits(max_amplitude=500.0, max_width_ns=10_000.0),
            simulated=True,
            read_cycle_s=timing.read_cycle_s,
        )
        super().__init__(info, seed, timing)
        n, rng = info.n_devices, self.rng
        self.i_melt = p.i_melt_ua * lognormal(rng, p.threshold_spread, n)
        self.i_reset = p.i_reset_ua * lognormal(rng, p.threshold_spread, n)
        self.g_set = p.g_set_us * lognormal(rng, p.g_set_spread, n)
        self.defect = draw_defects(rng, n, p.stuck_low_frac, p.stuck_high_frac)
        # as fabricated: crystalline, its drift and 1/f state starting at chip time 0
        self.g20 = np.where(
            self.defect == DEFECT_STUCK_LOW,
            p.g_reset_us * lognormal(rng, p.g_reset_spread, n),
            self.g_set,
        )
        self.t_pulse = np.zeros(n)
        self.nu = np.empty(n)
        self.q_s = np.empty(n)
        self._draw_drift(np.arange(n))
        self.bank = FlickerBank(n, t_read_s=p.stat.t_read_s)

    def _draw_drift(self, a: np.ndarray) -> None:
        """ν = |N(μ_ν(x), σ_ν(x))| and Q_s(x) at x = g20/g_max, redrawn at every pulse."""
        st = self.physics.stat
        x = self.g20[a] / st.g_max_us
        self.nu[a] = np.abs(st.nu_mean(x) + st.nu_std(x) * self.rng.standard_normal(a.size))
        self.q_s[a] = st.q_s(x)

    def _pulse(self, a, kind, amp, width_ns, compliance_ua, t_end) -> None:
        p, rng, m = self.physics, self.rng, a.size
        i_melt, g_set, g_old = self.i_melt[a], self.g_set[a], self.g20[a]
        f = np.maximum((amp - i_melt) / (self.i_reset[a] - i_melt), 0.0)
        plug = f * lognormal(rng, p.c2c_spread, m)
        g_reset = p.g_reset_us * lognormal(rng, p.g_reset_spread, m)
        g_partial = np.maximum(g_set * (1.0 - np.minimum(plug, 1.0)) ** p.curve_exponent, g_reset)
        creep = (
            p.creep_frac * g_set * (amp / i_melt) ** p.creep_power
            * np.sqrt(width_ns / 50.0) * rng.standard_exponential(m)
        )
        g_creep = np.minimum(g_old + creep, g_set)
        g_crystal = g_set * lognormal(rng, p.set_spread, m)
        is_set = kind == PulseKind.SET
        new = np.where(
            is_set,
            np.where(amp >= p.set_min_ua, g_crystal, g_creep),
            np.where(amp >= i_melt, g_partial, g_creep),
        )
        ok = self.defect[a] == DEFECT_NONE
        a, t_end = a[ok], t_end[ok]
        self.g20[a] = new[ok]
        self.t_pulse[a] = t_end
        self._draw_drift(a)
        self.bank.reset(a, t_end)

    def _read(self, a, t_first, n_reads, spacing_s) -> np.ndarray:
        p = self.physics
        eta = self._eta(a, t_first, n_reads, spacing_s)
        t = t_first[:, None] + np.arange(n_reads) * spacing_s
        age = np.maximum(t - self.t_pulse[a][:, None], p.t_onset_s)
        g_drift = self.g20[a][:, None] * (age / p.stat.t0_s) ** (-self.nu[a][:, None])
        g = g_drift * (1.0 + self.q_s[a][:, None] * eta)
        g += p.white_noise_us * self.rng.standard_normal(g.shape)
        return quantise(g, p.adc_lsb_us)

    def ground_truth(self) -> dict:
        return {
            "model": "devmodel.technologies.pcm.physics.SimulatedPCM",
            "params": self.physics.to_dict(),
            "devices": {
                "g20_us": self.g20, "nu": self.nu, "q_s": self.q_s, "t_pulse_s": self.t_pulse,
                "defect": self.defect, "g_set_us": self.g_set, "i_melt_ua": self.i_melt,
                "i_reset_ua": self.i_reset,
            },
        }

    def drift_free_g_us(self, a: np.ndarray, t_s: np.ndarray) -> np.ndarray:
        """Noise-free drifted conductance g20·(age/t0)^−ν (ground truth for tests)."""
        age = np.maximum(np.asarray(t_s) - self.t_pulse[a], self.physics.t_onset_s)
        return self.g20[a] * (age / self.physics.stat.t0_s) ** (-self.nu[a])


#: The technology's part interface (devmodel.technologies): ground-truth parameters and the chip.
PHYSICS = PcmPhysics
CHIP = SimulatedPCM
