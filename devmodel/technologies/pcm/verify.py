"""The seed's PCM iterative program-and-verify (001, section IV; docs/physics.md, "PCM: hardware
measurements")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from devmodel.array import PulseKind
from devmodel.errors import ConfigError
from devmodel.procedures.program_verify import VerifyConfig, VerifyRun
from devmodel.store.schema import StopReason
from devmodel.validation import Each, Interval

_POS = Interval(0.0, None, "neither")


@dataclass(frozen=True)
class PcmVerifyConfig(VerifyConfig):
    """Initialise with a 450 µA / 50 ns RESET and six 1000 ns SET pulses stepping 160 → 60 µA; verify
    on the mean of 5 reads; tolerance ±0.25 µS; if outside, one RESET-type pulse whose amplitude
    moves proportionally to (G_mean − G_T), bounded to 80–400 µA; at most 55 iterations. A target of
    0 gets one 450 µA RESET (the unused device of the differential pair) and one verify reading,
    converged if within the tolerance of 0.

    The seed is silent on timing; ``verify_delay_s`` (lab practice) lets every pulse pass age that
    long before its verify reads, so a device finishing in a short late pass is not verified within
    milliseconds of its pulse, when drift is fastest. 0 verifies at once.
    """

    tolerance_us: float = 0.25
    n_verify_reads: int = 5
    max_iterations: int = 55
    gain_ua_per_us: float = 4.0
    start_amplitude_ua: float = 80.0
    amplitude_min_ua: float = 80.0
    amplitude_max_ua: float = 400.0
    pulse_width_ns: float = 50.0
    init_reset_ua: float = 450.0
    init_reset_width_ns: float = 50.0
    init_set_ua: tuple[float, ...] = (160.0, 140.0, 120.0, 100.0, 80.0, 60.0)
    init_set_width_ns: float = 1000.0
    verify_delay_s: float = 1.0

    CONSTRAINTS: ClassVar[dict] = VerifyConfig.CONSTRAINTS | {
        "gain_ua_per_us": Interval(0.0, None), "start_amplitude_ua": Interval(0.0, None),
        "amplitude_min_ua": _POS, "amplitude_max_ua": _POS, "pulse_width_ns": _POS,
        "init_reset_ua": _POS, "init_reset_width_ns": _POS, "init_set_ua": Each(_POS),
        "init_set_width_ns": _POS,
    }

    def check_more(self) -> None:
        if self.amplitude_min_ua > self.amplitude_max_ua:
            raise ConfigError(f"{self.WHERE}: amplitude_min_ua must not exceed amplitude_max_ua")
        if 1 + len(self.init_set_ua) > self.max_pulses_per_device:
            raise ConfigError(f"{self.WHERE}: max_pulses_per_device = {self.max_pulses_per_device} "
                              f"leaves no room for the {1 + len(self.init_set_ua)} initialisation pulses")

    def planned_pulses(self) -> list[tuple[str, float, float, float | None]]:
        return [("init_reset_ua", self.init_reset_ua, self.init_reset_width_ns, None),
                ("init_set_ua", max(self.init_set_ua, default=0.0), self.init_set_width_ns, None),
                ("amplitude_max_ua", self.amplitude_max_ua, self.pulse_width_ns, None)]

    def init_pulses(self) -> list[tuple[int, float, float]]:
        return ([(int(PulseKind.RESET), float(self.init_reset_ua), float(self.init_reset_width_ns))]
                + [(int(PulseKind.SET), float(a), float(self.init_set_width_ns)) for a in self.init_set_ua])


class PcmVerify(VerifyRun):
    """The seed's PCM iterative programming (see PcmVerifyConfig), resumable."""

    config_cls = PcmVerifyConfig

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.amp = np.full(self.lp.addr.size, self.cfg.start_amplitude_ua)

    def _extra_state(self) -> dict[str, np.ndarray]:
        return {"amp": self.amp.copy()}

    def _load_extra(self, d: dict[str, np.ndarray]) -> None:
        self.amp[:] = d["amp"]

    def _initialise(self) -> None:
        lp, cfg = self.lp, self.cfg
        rows = np.arange(lp.addr.size)
        zero = lp.target == 0
        no_room = self.budget < np.where(zero, 1, 1 + len(cfg.init_set_ua))
        if no_room.any():  # a lifetime limit nearly used up: not one pulse rather than too many
            lp.done(rows[no_room], StopReason.PULSE_LIMIT)
        zero &= ~no_room
        if zero.any():
            lp.pulse(rows[zero], PulseKind.RESET, cfg.init_reset_ua, cfg.init_reset_width_ns)
            self._reset_only(rows[zero])
        self.act = rows[~zero & ~no_room]
        if self.act.size:
            lp.pulse(self.act, PulseKind.RESET, cfg.init_reset_ua, cfg.init_reset_width_ns)
            for amp in cfg.init_set_ua:
                lp.pulse(self.act, PulseKind.SET, amp, cfg.init_set_width_ns)

    def _iteration(self) -> bool:
        lp, cfg = self.lp, self.cfg
        if self.act.size == 0 or self.it > cfg.max_iterations:
            return False
        lp.settle(cfg.verify_delay_s)
        step = self._verify(self._verify_reads(self.act))
        if step is None:
            return False
        act, err, g = step
        new_amp = np.clip(self.amp[act] + cfg.gain_ua_per_us * err, cfg.amplitude_min_ua,
                          cfg.amplitude_max_ua)
        self.amp[act] = new_amp
        lp.pulse(act, PulseKind.RESET, new_amp, cfg.pulse_width_ns, trace_g=g, iteration=self.it)
        self.act = act
        self.it += 1
        return True


#: The technology's part interface (devmodel.technologies).
CONFIG = PcmVerifyConfig
RUN = PcmVerify
