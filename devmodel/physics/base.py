"""What the simulated chips share: clock, timing of pulse and read batches, limits, seeding.

Timing model (a test-chip controller that addresses devices one at a time, as in the seed's
experimental platform, 001 section IV): a batch command costs ``command_overhead_s``; each pulse
costs its width plus ``pulse_overhead_s``; each read costs ``read_cycle_s``. ``n_reads`` consecutive
reads of one device follow each other before the next device is read. Reads with an
``interval_s`` are taken in passes over all addressed devices, one pass every ``interval_s``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np

from devmodel.array import (
    ChipInfo,
    Limits,
    PulseCounter,
    PulseKind,
    ReadBatch,
    as_addresses,
    check_pulses,
    check_reads,
)
from devmodel.errors import DevmodelError
from devmodel.physics.clock import ClockedArray, VirtualClock
from devmodel.physics.flicker import FlickerBank


@dataclass(frozen=True)
class Timing:
    """Chip-time cost of operations (s)."""

    read_cycle_s: float = 2e-6
    pulse_overhead_s: float = 2e-6
    command_overhead_s: float = 10e-6


def pulse_end_times(start_s: float, width_ns: np.ndarray, overhead_s: float) -> np.ndarray:
    """End times of a pulse batch: the pulses run one after another, each its width plus a fixed
    overhead (the simulated chips, and the replay and emulator chips that stand in for them)."""
    return start_s + np.cumsum(np.asarray(width_ns, dtype=float) * 1e-9 + overhead_s)


def read_times(start_s: float, m: int, n: int, cycle_s: float, interval_s: float) -> np.ndarray:
    """(m, n) times of a read batch: with an interval, each of the n passes over the m devices starts
    ``interval_s`` after the previous; without, every device's n reads come back to back."""
    if interval_s and n > 1:
        return start_s + np.arange(m)[:, None] * cycle_s + np.arange(n)[None, :] * interval_s
    return start_s + (np.arange(m)[:, None] * n + np.arange(n)[None, :]) * cycle_s


class SimulatedChip(ClockedArray):
    """Base of the simulated chips; subclasses implement the physics hooks ``_pulse`` and ``_read``."""

    info: ChipInfo
    physics = None  # the technology's ground-truth parameters (a dataclass with to_dict), set first

    def __init__(self, info: ChipInfo, seed: int, timing: Timing) -> None:
        self.info = info
        self.seed = seed
        self.timing = timing
        self.clock = VirtualClock()
        self.rng = np.random.default_rng(seed)
        self.pulse_counter = PulseCounter(info.n_devices, info.limits.max_pulses_per_device)

    def narrow_limits(self, limits: Limits) -> None:
        """Declare (and enforce) these limits instead, e.g. a station file's narrower ones behind
        ``serve-chip --station``; only before the first pulse (the pulse counter starts afresh)."""
        self.info = replace(self.info, limits=limits)
        self.pulse_counter = PulseCounter(self.info.n_devices, limits.max_pulses_per_device)

    # -- DeviceArray protocol ------------------------------------------------------------------
    def close(self) -> None:
        pass

    def pulse(
        self,
        addresses: np.ndarray,
        kind: PulseKind | np.ndarray,
        amplitude: np.ndarray | float,
        width_ns: np.ndarray | float,
        compliance_ua: np.ndarray | float | None = None,
    ) -> np.ndarray:
        a = check_pulses(self.info, addresses, amplitude, width_ns, compliance_ua)
        if a.size == 0:
            return np.empty(0)
        self.pulse_counter.charge(a)
        m = a.size
        kind = np.broadcast_to(np.asarray(kind, dtype=np.int8), (m,))
        amp = np.broadcast_to(np.asarray(amplitude, dtype=float), (m,))
        width = np.broadcast_to(np.asarray(width_ns, dtype=float), (m,))
        comp = None if compliance_ua is None else np.broadcast_to(
            np.asarray(compliance_ua, dtype=float), (m,))
        start = self.clock.now_s() + self.timing.command_overhead_s
        t_end = pulse_end_times(start, width, self.timing.pulse_overhead_s)
        self.clock.check_until(t_end[-1])  # refused before the clock or any device moves
        start = self.clock.advance(self.timing.command_overhead_s)
        self._pulse(a, kind, amp, width, comp, t_end)
        self.clock.advance(t_end[-1] - start)
        return t_end

    def read(self, addresses: np.ndarray, n_reads: int = 1, interval_s: float = 0.0) -> ReadBatch:
        a = as_addresses(addresses, self.info.n_devices)
        n_reads = check_reads(self.info, n_reads, interval_s)
        m, cyc = a.size, self.timing.read_cycle_s
        # refused before the clock or any device moves
        self.clock.check_until(self.clock.now_s() + self.timing.command_overhead_s
                               + (n_reads - 1) * max(interval_s, m * cyc) + n_reads * m * cyc)
        start = self.clock.advance(self.timing.command_overhead_s)
        if interval_s and n_reads > 1:
            if m * cyc > interval_s:
                raise DevmodelError(
                    f"a read interval of {interval_s:g} s is shorter than one pass over {m} devices "
                    f"({m * cyc:g} s)"
                )
            t = read_times(start, m, n_reads, cyc, interval_s)
            g = np.empty((m, n_reads))
            for j in range(n_reads):
                g[:, j] = self._read(a, t[:, j], 1, 0.0)[:, 0]
        else:
            t = read_times(start, m, n_reads, cyc, 0.0)
            g = self._read(a, t[:, 0], n_reads, cyc) if m else np.empty((0, n_reads))
        self.clock.advance((t[-1, -1] + cyc - start) if m else 0.0)
        return ReadBatch(g_us=g, t_s=t)

    # -- persistence (resumable sessions, docs/reliability.md) ------------------------------------
    #: Per-device arrays that pulses or reads change (the rest is drawn from the seed at construction).
    _STATE_ARRAYS: tuple[str, ...] = ()

    def fingerprint(self) -> str:
        """Identity, size, limits and physics parameters: a saved state only fits the chip it came from."""
        params = self.physics.to_dict() if self.physics is not None else {}
        return json.dumps({"identity": self.info.identity, "n_devices": self.info.n_devices,
                           "limits": self.info.limits.to_dict(), "params": params},
                          sort_keys=True, default=list)

    def save_state(self, addresses: np.ndarray) -> dict[str, np.ndarray]:
        """Everything that evolves on the chip, for ``addresses`` (the devices a session touches).

        The clock, the generator state and the per-device dynamic arrays; what the constructor draws
        from the seed (thresholds, defects, curve scales) is rebuilt by constructing the same chip, so
        a snapshot costs bytes per session device rather than per chip device.
        """
        a = as_addresses(addresses, self.info.n_devices)
        out = {
            "fingerprint": np.array(self.fingerprint()),
            "clock_s": np.array(self.clock.now_s()),
            "rng": np.array(json.dumps(self.rng.bit_generator.state)),
            "addresses": a,
        }
        for name in self._STATE_ARRAYS:
            out[f"dev/{name}"] = getattr(self, name)[a]
        if self.pulse_counter.count is not None:
            out["pulse_count"] = self.pulse_counter.count[a]
        out.update(self._save_extra(a))
        return out

    def restore_state(self, state: dict[str, np.ndarray]) -> None:
        """Put the chip back into a state from :meth:`save_state` (same seed, size and physics)."""
        if str(state["fingerprint"][()]) != self.fingerprint():
            raise DevmodelError(f"the saved chip state belongs to another chip than {self.info.identity} "
                                f"(seed, size, limits or physics parameters differ)")
        a = as_addresses(state["addresses"], self.info.n_devices)
        self.clock.t_s = float(state["clock_s"][()])
        self.rng.bit_generator.state = json.loads(str(state["rng"][()]))
        for name in self._STATE_ARRAYS:
            getattr(self, name)[a] = state[f"dev/{name}"]
        if self.pulse_counter.count is not None and "pulse_count" in state:
            self.pulse_counter.count[a] = state["pulse_count"]
        self._restore_extra(a, state)

    def _save_extra(self, a: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def _restore_extra(self, a: np.ndarray, state: dict[str, np.ndarray]) -> None:
        pass

    # -- physics hooks -------------------------------------------------------------------------
    def _pulse(self, a, kind, amp, width_ns, compliance_ua, t_end) -> None:
        raise NotImplementedError

    def _read(self, a, t_first, n_reads, spacing_s) -> np.ndarray:
        raise NotImplementedError

    def ground_truth(self) -> dict:
        """Parameters and per-device state of the simulation (recorded in sessions)."""
        raise NotImplementedError


#: Device defect codes of the simulated chips (ground truth ``defect``).
DEFECT_NONE, DEFECT_STUCK_LOW, DEFECT_STUCK_HIGH = 0, 1, 2


def draw_defects(rng: np.random.Generator, n: int, stuck_low: float, stuck_high: float) -> np.ndarray:
    """Per device DEFECT_NONE, or stuck low / high with the given probabilities (int8)."""
    u = rng.random(n)
    return np.where(u < stuck_low, DEFECT_STUCK_LOW,
                    np.where(u < stuck_low + stuck_high, DEFECT_STUCK_HIGH, DEFECT_NONE)).astype(np.int8)


class FlickerState:
    """Mixin for chips with a 1/f process per device (``self.bank``): its rows travel with the chip's
    saved state, and reads draw η from it."""

    bank: FlickerBank
    rng: np.random.Generator

    def _eta(self, a: np.ndarray, t_first: np.ndarray, n_reads: int, spacing_s: float) -> np.ndarray:
        """η of ``n_reads`` consecutive reads of devices ``a`` (m, n_reads)."""
        if n_reads == 1:
            return self.bank.sample(a, t_first, self.rng)[:, None]
        return self.bank.sample_run(a, t_first, n_reads, spacing_s, self.rng)

    def _save_extra(self, a: np.ndarray) -> dict[str, np.ndarray]:
        return {f"bank/{k}": v for k, v in self.bank.save_rows(a).items()}

    def _restore_extra(self, a: np.ndarray, state: dict[str, np.ndarray]) -> None:
        self.bank.restore_rows(a, {k[5:]: v for k, v in state.items() if k.startswith("bank/")})


def lognormal(rng: np.random.Generator, sigma: float, size) -> np.ndarray:
    """Median-1 lognormal factors exp(N(0, σ))."""
    return np.exp(sigma * rng.standard_normal(size))


def quantise(g_us: np.ndarray, lsb_us: float) -> np.ndarray:
    """ADC quantisation to ``lsb_us`` steps (0 disables)."""
    return np.round(g_us / lsb_us) * lsb_us if lsb_us > 0 else g_us
