"""The device-array protocol: the only thing procedures know about hardware (docs/architecture.md,
seam 1).

A device array has integer addresses ``0 … n_devices-1``; it applies programming pulses to many
addresses at once, reads many addresses (optionally ``n_reads`` consecutive reads each), keeps a
clock (virtual for simulation, wall time for hardware, recorded for replay) and declares its
capabilities and safety limits. Implementations: the simulated chips of each technology
(``devmodel.technologies.<name>.physics``), the VISA driver in ``instruments``, and the replay
backends. Optional capabilities are declared as protocols (:class:`Snapshots`, :class:`CountsPulses`,
:class:`Seeded`, :class:`HasGroundTruth`, :class:`ReportsFaults`, :class:`Journaled`) and asked with
``isinstance``, never probed attribute by attribute.

Units: conductance µS, time s, pulse width ns, compliance µA. A pulse amplitude is a current in µA
for current-mode chips (PCM) and a voltage magnitude in V for voltage-mode chips (ReRAM); the chip
says which in :attr:`ChipInfo.pulse_unit`. Pulse polarity is carried by :class:`PulseKind`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Protocol, runtime_checkable

import numpy as np

from devmodel.errors import DevmodelError, LimitError


class PulseKind(IntEnum):
    """Programming pulse kinds. SET raises conductance (crystallise / grow filament), RESET lowers it."""

    SET = 0
    RESET = 1


@dataclass(frozen=True)
class Limits:
    """Safety limits a chip declares; every implementation refuses requests beyond them.

    ``max_amplitude`` is in the chip's pulse unit (µA or V). ``None`` means no limit declared.
    """

    max_amplitude: float
    max_width_ns: float
    max_compliance_ua: float | None = None
    max_pulses_per_device: int | None = None
    max_reads_per_request: int = 100_000  # consecutive reads of one device in one request

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ChipInfo:
    """Identity, geometry, capabilities and limits of a device array."""

    technology: str  # a registered technology (devmodel.technologies)
    n_devices: int
    g_max_us: float
    pulse_unit: str  # "uA" (current mode) | "V" (voltage mode)
    identity: str
    limits: Limits
    simulated: bool = False
    read_cycle_s: float = 1e-6  # time one read of one device takes
    # changes whenever the chip loses its programmed states and clock (controller restart, power
    # cycle); "" when the chip does not say. A session never continues across a change.
    boot_id: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["limits"] = self.limits.to_dict()
        return d


@dataclass
class ReadBatch:
    """Result of a batch read: ``g_us[i, j]`` is read ``j`` of address ``i``, taken at ``t_s[i, j]``."""

    g_us: np.ndarray
    t_s: np.ndarray


@runtime_checkable
class DeviceArray(Protocol):
    """What every chip backend implements (simulated, VISA, replay)."""

    info: ChipInfo

    def pulse(
        self,
        addresses: np.ndarray,
        kind: PulseKind | np.ndarray,
        amplitude: np.ndarray | float,
        width_ns: np.ndarray | float,
        compliance_ua: np.ndarray | float | None = None,
    ) -> np.ndarray:
        """Apply one programming pulse to each address (per-address or scalar parameters); return
        the chip time at which each address's pulse ended (ages count from there)."""

    def read(self, addresses: np.ndarray, n_reads: int = 1, interval_s: float = 0.0) -> ReadBatch:
        """Read each address ``n_reads`` times; consecutive reads are ``interval_s`` apart (0: as fast
        as the hardware reads)."""

    def now_s(self) -> float:
        """Current chip time in seconds."""

    def wait(self, dt_s: float) -> None:
        """Let ``dt_s`` seconds pass (a virtual clock jumps, a real one sleeps)."""

    def close(self) -> None:
        """Release the chip."""


def as_addresses(addresses: np.ndarray, n_devices: int) -> np.ndarray:
    """Validate an address array (integers in range) and return it as int64."""
    a = np.asarray(addresses)
    if a.ndim != 1:
        raise LimitError(f"addresses must be a 1-D array, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise LimitError("addresses must be integers")
    a = a.astype(np.int64, copy=False)
    if a.size and (a.min() < 0 or a.max() >= n_devices):
        bad = a[(a < 0) | (a >= n_devices)][0]
        raise LimitError(f"address {bad} is outside the chip's range 0..{n_devices - 1}")
    return a


def estimate_pulse_ends(t_before: float, t_now: float, width_ns, m: int, overhead_s: float) -> np.ndarray:
    """End times of a pulse batch that ran but whose answer was lost: the clock stands at the end of its
    last pulse; the others are spread by each pulse's width plus a per-pulse overhead (the read cycle),
    exact on the last pulse, off by µs at most on the others."""
    cost = np.broadcast_to(np.asarray(width_ns, dtype=float), (m,)) * 1e-9 + overhead_s
    return t_before + (t_now - t_before) * np.cumsum(cost) / cost.sum()


def check_wait(dt_s: float) -> None:
    """Refuse a wait that is not a finite number of seconds ≥ 0."""
    if not np.isfinite(dt_s) or dt_s < 0:
        raise DevmodelError(f"wait time must be a finite number of seconds ≥ 0, got {dt_s}")


def check_reads(info: ChipInfo, n_reads: int, interval_s: float, label: str = "") -> int:
    """Refuse a read request outside the chip's declared read limits; returns ``n_reads`` as int.
    ``label`` (e.g. "probe station") prefixes the message so the user knows which chip refused."""
    prefix = f"{label}: " if label else ""
    n, most = int(n_reads), info.limits.max_reads_per_request
    if not 1 <= n <= most:
        raise DevmodelError(f"{prefix}n_reads must be in 1..{most}, got {n}")
    if not np.isfinite(interval_s) or interval_s < 0:
        raise DevmodelError(f"{prefix}read interval must be a finite number ≥ 0 s, got {interval_s}")
    return n


def check_pulses(
    info: ChipInfo,
    addresses: np.ndarray,
    amplitude: np.ndarray | float,
    width_ns: np.ndarray | float,
    compliance_ua: np.ndarray | float | None,
) -> np.ndarray:
    """Refuse a pulse batch that exceeds any declared limit; returns the validated addresses.

    Called by every implementation before anything reaches the device (or the wire), and again by
    the simulated server, so a limit is data checked in one place.
    """
    lim = info.limits
    a = as_addresses(addresses, info.n_devices)
    amp = np.abs(np.asarray(amplitude, dtype=float))
    w = np.asarray(width_ns, dtype=float)
    if not (np.all(np.isfinite(amp)) and np.all(np.isfinite(w))):
        raise LimitError("pulse amplitude and width must be finite numbers")
    if amp.size and amp.max() > lim.max_amplitude:
        raise LimitError(
            f"pulse amplitude {amp.max():g} {info.pulse_unit} exceeds the chip limit "
            f"{lim.max_amplitude:g} {info.pulse_unit}"
        )
    if w.size and (w.max() > lim.max_width_ns or w.min() <= 0):
        raise LimitError(
            f"pulse width {w.max() if w.max() > lim.max_width_ns else w.min():g} ns is outside "
            f"(0, {lim.max_width_ns:g}] ns"
        )
    if compliance_ua is not None:
        c = np.asarray(compliance_ua, dtype=float)
        if not np.all(np.isfinite(c)) or (c.size and c.min() <= 0):
            raise LimitError("compliance current must be a positive number of µA")
        if lim.max_compliance_ua is not None and c.size and c.max() > lim.max_compliance_ua:
            raise LimitError(
                f"compliance {c.max():g} µA exceeds the chip limit {lim.max_compliance_ua:g} µA"
            )
    return a


class PulseCounter:
    """Counts pulses per device and refuses a batch that would exceed ``max_pulses_per_device``."""

    def __init__(self, n_devices: int, limit: int | None) -> None:
        self.limit = limit
        self.count = np.zeros(n_devices, dtype=np.int32) if limit is not None else None

    def charge(self, addresses: np.ndarray) -> None:
        if self.count is None:
            return
        uniq, counts = np.unique(addresses, return_counts=True)
        new = self.count[uniq] + counts
        if new.size and new.max() > self.limit:
            raise LimitError(
                f"device {uniq[np.argmax(new)]} would exceed the limit of {self.limit} pulses per device"
            )
        self.count[uniq] = new

    def reset(self, addresses: np.ndarray | None = None) -> None:
        if self.count is not None:
            if addresses is None:
                self.count[:] = 0
            else:
                self.count[addresses] = 0


# -- optional capabilities -------------------------------------------------------------------------
@runtime_checkable
class Snapshots(Protocol):
    """A chip whose whole state lives in this process (a simulated chip): a resumable session saves
    that state with every commit and rebuilds the chip from it (docs/reliability.md)."""

    def save_state(self, addresses: np.ndarray) -> dict[str, np.ndarray]:
        """Everything that evolves on the chip, for ``addresses``."""

    def restore_state(self, state: dict[str, np.ndarray]) -> None:
        """Put the chip back into a state from :meth:`save_state`."""


@runtime_checkable
class CountsPulses(Protocol):
    """A chip whose host counts pulses per device against ``max_pulses_per_device``."""

    pulse_counter: PulseCounter


@runtime_checkable
class Seeded(Protocol):
    """A chip drawn from a seed (simulated, emulated): the seed is recorded with the session."""

    seed: int


@runtime_checkable
class HasGroundTruth(Protocol):
    """A chip that knows its true parameters and per-device state (recorded with the session)."""

    def ground_truth(self) -> dict:
        """``{"model": name, "params": {...}, "devices": {column: per-address array}}``."""


@runtime_checkable
class ReportsFaults(Protocol):
    """An instrument driver that recovers from transport faults and counts what it recovered."""

    def fault_record(self) -> dict[str, int | dict[str, int]]:
        """Retries, reconnects, recovered commands and injected faults so far."""


@runtime_checkable
class Journaled(Protocol):
    """A chip whose answers are journaled (procedures.journal): while ``replaying`` it answers
    from the journal, and ``last_known_time`` is the latest chip time it has seen."""

    replaying: bool
    last_known_time: float
