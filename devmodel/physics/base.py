"""What the simulated chips share: clock, timing of pulse and read batches, limits, seeding.

Timing model (a test-chip controller that addresses devices one at a time, as in the seed's
experimental platform, 001_… section IV): a batch command costs ``command_overhead_s``; each pulse
costs its width plus ``pulse_overhead_s``; each read costs ``read_cycle_s``. ``n_reads`` consecutive
reads of one device follow each other before the next device is read. Reads with an
``interval_s`` are taken in passes over all addressed devices, one pass every ``interval_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devmodel.array import ChipInfo, PulseCounter, PulseKind, ReadBatch, as_addresses, check_pulses
from devmodel.errors import DevmodelError
from devmodel.physics.clock import VirtualClock


@dataclass(frozen=True)
class Timing:
    """Chip-time cost of operations (s)."""

    read_cycle_s: float = 2e-6
    pulse_overhead_s: float = 2e-6
    command_overhead_s: float = 10e-6


class SimulatedChip:
    """Base of the simulated chips; subclasses implement the physics hooks ``_pulse`` and ``_read``."""

    info: ChipInfo

    def __init__(self, info: ChipInfo, seed: int, timing: Timing) -> None:
        self.info = info
        self.seed = seed
        self.timing = timing
        self.clock = VirtualClock()
        self.rng = np.random.default_rng(seed)
        self.pulse_counter = PulseCounter(info.n_devices, info.limits.max_pulses_per_device)

    # -- DeviceArray protocol ------------------------------------------------------------------
    def now_s(self) -> float:
        return self.clock.now_s()

    def wait(self, dt_s: float) -> None:
        if not np.isfinite(dt_s) or dt_s < 0:
            raise DevmodelError(f"wait time must be a finite number of seconds ≥ 0, got {dt_s}")
        self.clock.advance(dt_s)

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
        start = self.clock.advance(self.timing.command_overhead_s)
        t_end = start + np.cumsum(width * 1e-9 + self.timing.pulse_overhead_s)
        self._pulse(a, kind, amp, width, comp, t_end)
        self.clock.advance(t_end[-1] - start)
        return t_end

    def read(self, addresses: np.ndarray, n_reads: int = 1, interval_s: float = 0.0) -> ReadBatch:
        a = as_addresses(addresses, self.info.n_devices)
        n_reads = int(n_reads)
        if not 1 <= n_reads <= self.info.limits.max_reads_per_request:
            raise DevmodelError(
                f"n_reads must be in 1..{self.info.limits.max_reads_per_request}, got {n_reads}"
            )
        m, cyc = a.size, self.timing.read_cycle_s
        start = self.clock.advance(self.timing.command_overhead_s)
        if not np.isfinite(interval_s) or interval_s < 0:
            raise DevmodelError(f"read interval must be a finite number ≥ 0 s, got {interval_s}")
        if interval_s and n_reads > 1:
            if m * cyc > interval_s:
                raise DevmodelError(
                    f"a read interval of {interval_s:g} s is shorter than one pass over {m} devices "
                    f"({m * cyc:g} s)"
                )
            t = start + np.arange(m)[:, None] * cyc + np.arange(n_reads)[None, :] * interval_s
            g = np.empty((m, n_reads))
            for j in range(n_reads):
                g[:, j] = self._read(a, t[:, j], 1, 0.0)[:, 0]
        else:
            t = start + (np.arange(m)[:, None] * n_reads + np.arange(n_reads)[None, :]) * cyc
            g = self._read(a, t[:, 0], n_reads, cyc) if m else np.empty((0, n_reads))
        self.clock.advance((t[-1, -1] + cyc - start) if m else 0.0)
        return ReadBatch(g_us=g, t_s=t)

    # -- physics hooks -------------------------------------------------------------------------
    def _pulse(self, a, kind, amp, width_ns, compliance_ua, t_end) -> None:
        raise NotImplementedError

    def _read(self, a, t_first, n_reads, spacing_s) -> np.ndarray:
        raise NotImplementedError

    def ground_truth(self) -> dict:
        """Parameters and per-device state of the simulation (recorded in sessions)."""
        raise NotImplementedError


def lognormal(rng: np.random.Generator, sigma: float, size) -> np.ndarray:
    """Median-1 lognormal factors exp(N(0, σ))."""
    return np.exp(sigma * rng.standard_normal(size))


def quantise(g_us: np.ndarray, lsb_us: float) -> np.ndarray:
    """ADC quantisation to ``lsb_us`` steps (0 disables)."""
    return np.round(g_us / lsb_us) * lsb_us if lsb_us > 0 else g_us
