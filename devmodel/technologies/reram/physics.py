"""A simulated filamentary ReRAM test chip (docs/physics.md, "ReRAM").

Voltage pulses: a SET pulse above the device's SET threshold grows the filament towards the
compliance-limited conductance G_cc = I_cc / V_lrs, by a fraction that grows with the overdrive and
a lognormal cycle-to-cycle spread (10–30 %); a RESET pulse (magnitude above its threshold) lowers G
roughly exponentially in |V| (−1 to −2 V), down to the HRS floor.

After every pulse the conductance relaxes: a zero-mean random walk δ(t) whose variance grows in
ln t and saturates by about a day (no mean drift, as the NeuRRAM data show). Its variance is sized
so that, after write-verify with the default tolerance, the total error σ(x, t) reproduces the
published NeuRRAM curves at 1 s and 1 day (docs/physics.md table, 000):

    Var δ(x, t) = V_fast(x)·φ_fast(t) + V_slow(x)·φ_slow(t),
    V_fast = σ_1s(x)² − r², V_slow = σ_1d(x)² − σ_1s(x)²,

with r the write-verify residual the tables include, φ_fast rising linearly in ln t from 1 ms to 1 s
and φ_slow from 1 s to 1 day (saturated beyond). Reads add conductance-independent white noise of
1 % of g_max. ~2 % of devices are stuck at HRS or LRS.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from devmodel import __version__
from devmodel.array import ChipInfo, Limits, PulseKind
from devmodel.forms import poly_us
from devmodel.physics.base import (
    DEFECT_NONE,
    DEFECT_STUCK_HIGH,
    DEFECT_STUCK_LOW,
    SimulatedChip,
    Timing,
    draw_defects,
    lognormal,
    quantise,
)
from devmodel.technologies.reram.published import (
    RERAM_G_MAX_US,
    RERAM_READ_NOISE_REL,
    RERAM_WAN2022_COEFFS_US,
)


@dataclass(frozen=True)
class ReramPhysics:
    """Ground-truth parameters of the simulated ReRAM chip (all recorded in the session)."""

    g_max_us: float = RERAM_G_MAX_US
    sigma_1s_coeffs_us: tuple[float, ...] = RERAM_WAN2022_COEFFS_US[1.0]
    sigma_1d_coeffs_us: tuple[float, ...] = RERAM_WAN2022_COEFFS_US[86400.0]
    verify_residual_us: float = 0.25  # r: the write-verify residual included in the tables
    t_fast_start_s: float = 1e-3
    t_fast_end_s: float = 1.0
    t_slow_end_s: float = 86400.0
    read_noise_us: float = RERAM_READ_NOISE_REL * RERAM_G_MAX_US
    adc_lsb_us: float = 0.01
    v_lrs_v: float = 0.3  # G_cc = I_cc / v_lrs (µS = µA / V)
    g_hrs_us: float = 0.5
    g_hrs_spread: float = 0.3
    v_set_th_v: float = 0.9
    v_reset_th_v: float = 0.7
    threshold_spread: float = 0.08
    set_gain_per_v: float = 1.5  # fraction of the way to G_cc per volt of overdrive
    reset_rate_per_v: float = 2.5  # G ← G·exp(−rate·overdrive)
    c2c_spread: float = 0.2  # lognormal cycle-to-cycle spread of each pulse, 10–30 %
    stuck_low_frac: float = 0.01
    stuck_high_frac: float = 0.01

    timing: Timing = field(default_factory=Timing)  # controller time per read / pulse

    def to_dict(self) -> dict:
        return asdict(self)

    def relax_variance(self, x: np.ndarray, age_s: np.ndarray) -> np.ndarray:
        """Var δ at normalised conductance ``x`` and ``age_s`` after the last pulse (µS²)."""
        s1 = poly_us(self.sigma_1s_coeffs_us, np.clip(x, 0, 1.2))
        sd = poly_us(self.sigma_1d_coeffs_us, np.clip(x, 0, 1.2))
        v_fast = np.maximum(s1**2 - self.verify_residual_us**2, 0.0)
        v_slow = np.maximum(sd**2 - s1**2, 0.0)
        return v_fast * _ramp(age_s, self.t_fast_start_s, self.t_fast_end_s) + v_slow * _ramp(
            age_s, self.t_fast_end_s, self.t_slow_end_s
        )


def _ramp(t_s: np.ndarray, t_a: float, t_b: float) -> np.ndarray:
    """0 before t_a, linear in ln t up to 1 at t_b, 1 after."""
    t = np.maximum(np.asarray(t_s, dtype=float), 1e-30)
    return np.clip(np.log(t / t_a) / np.log(t_b / t_a), 0.0, 1.0)


class SimulatedReRAM(SimulatedChip):
    """Vectorised ReRAM chip implementing the device-array protocol (pulse amplitudes in V)."""

    _STATE_ARRAYS = ("g_prog", "t_pulse", "delta", "t_delta")

    def __init__(
        self,
        n_devices: int = 1 << 20,
        seed: int = 0,
        physics: ReramPhysics | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.physics = p = physics or ReramPhysics()
        timing = p.timing
        info = ChipInfo(
            technology="reram",
            n_devices=int(n_devices),
            g_max_us=p.g_max_us,
            pulse_unit="V",
            identity=f"devmodel,SIM-RERAM,{seed},{__version__}",
            limits=limits or Limits(max_amplitude=3.0, max_width_ns=10_000.0,
                                    max_compliance_ua=200.0),
            simulated=True,
            read_cycle_s=timing.read_cycle_s,
        )
        super().__init__(info, seed, timing)
        n, rng = info.n_devices, self.rng
        self.v_set_th = p.v_set_th_v * lognormal(rng, p.threshold_spread, n)
        self.v_reset_th = p.v_reset_th_v * lognormal(rng, p.threshold_spread, n)
        self.g_hrs = p.g_hrs_us * lognormal(rng, p.g_hrs_spread, n)
        self.defect = draw_defects(rng, n, p.stuck_low_frac, p.stuck_high_frac)
        # as formed: a random state between HRS and LRS; stuck-high devices far above g_max
        g0 = p.g_max_us * rng.random(n)
        self.g_prog = np.where(self.defect == DEFECT_STUCK_HIGH, 1.5 * p.g_max_us,
                               np.where(self.defect == DEFECT_STUCK_LOW, self.g_hrs, g0))
        self.t_pulse = np.zeros(n)
        self.delta = np.zeros(n)
        self.t_delta = np.zeros(n)  # chip time at which delta was last advanced

    def _advance_relaxation(self, a: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Advance the relaxation walk of ``a`` to times ``t`` (exact independent increments)."""
        p = self.physics
        x = self.g_prog[a] / p.g_max_us
        t_pulse = self.t_pulse[a]
        v_now = p.relax_variance(x, t - t_pulse)
        v_then = p.relax_variance(x, self.t_delta[a] - t_pulse)
        step = np.sqrt(np.maximum(v_now - v_then, 0.0))
        self.delta[a] += step * self.rng.standard_normal(a.size)
        self.t_delta[a] = t
        return self.delta[a]

    def _pulse(self, a, kind, amp, width_ns, compliance_ua, t_end) -> None:
        p, rng, m = self.physics, self.rng, a.size
        g_now = self.g_prog[a] + self._advance_relaxation(a, t_end)
        v = np.abs(amp)
        c2c = lognormal(rng, p.c2c_spread, m)
        comp = np.full(m, 1e6) if compliance_ua is None else compliance_ua  # no compliance: no cap
        g_cc = comp / p.v_lrs_v * c2c
        frac = np.clip(p.set_gain_per_v * (v - self.v_set_th[a]), 0.0, 1.0)
        g_set = np.where(g_cc > g_now, g_now + (g_cc - g_now) * frac * lognormal(rng, 0.1, m),
                         g_now)
        over = np.maximum(v - self.v_reset_th[a], 0.0)
        g_reset = np.maximum(g_now * np.exp(-p.reset_rate_per_v * over * c2c), self.g_hrs[a])
        new = np.where(kind == PulseKind.SET, np.minimum(g_set, np.maximum(g_cc, g_now)), g_reset)
        ok = self.defect[a] == DEFECT_NONE
        a, t_end = a[ok], t_end[ok]
        self.g_prog[a] = np.maximum(new[ok], 0.0)
        self.t_pulse[a] = t_end
        self.delta[a] = 0.0
        self.t_delta[a] = t_end

    def _read(self, a, t_first, n_reads, spacing_s) -> np.ndarray:
        p = self.physics
        t = t_first[:, None] + np.arange(n_reads) * spacing_s
        # relaxation moves on ms-to-day scales: one advance per batch, at the last read
        g_true = self.g_prog[a] + self._advance_relaxation(a, t[:, -1])
        g = g_true[:, None] + p.read_noise_us * self.rng.standard_normal(t.shape)
        return quantise(g, p.adc_lsb_us)

    def ground_truth(self) -> dict:
        return {
            "model": "devmodel.technologies.reram.physics.SimulatedReRAM",
            "params": self.physics.to_dict(),
            "devices": {
                "g_prog_us": self.g_prog, "delta_us": self.delta, "t_pulse_s": self.t_pulse,
                "defect": self.defect, "v_set_th_v": self.v_set_th,
                "v_reset_th_v": self.v_reset_th, "g_hrs_us": self.g_hrs,
            },
        }


#: The technology's part interface (devmodel.technologies): ground-truth parameters and the chip.
PHYSICS = ReramPhysics
CHIP = SimulatedReRAM
