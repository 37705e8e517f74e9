"""Characterisation session: level sweep with program-and-verify, drift schedule, read-noise bursts.

The procedure knows the chip only through the device-array protocol, so it runs unchanged on the
simulated chips, a VISA instrument or a replayed record.

* **Level sweep**: K target levels × N devices (default 13 levels including log-spaced low ones,
  since μ_ν(G) and σ_ν(G) only have a slope below x ≈ 0.2–0.33: physics.md, "Identifiability").
* **Drift schedule**: every device is read at log-spaced ages counted from the end of its own last
  pulse (20 s … 1 day for PCM, physics.md "Fitting"). Devices are grouped into cohorts whose last
  pulses lie within ``age_tolerance`` of the first age, and each cohort is read when it reaches
  each age, so every level is read at the same age (t0) as the σ_prog fit requires.
* **Read-noise bursts**: M equally spaced reads of the first B devices of every level at a fixed
  age (default 256 reads, 1 s apart, at 1000 s: the variogram estimator of Q_s).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from devmodel.array import DeviceArray
from devmodel.errors import DevmodelError
from devmodel.procedures.program_verify import (
    PcmVerifyConfig,
    ReramVerifyConfig,
    StopReason,
    VerifyResult,
    program_verify_pcm,
    program_verify_reram,
)
from devmodel.store.session import SessionWriter

#: 13 levels: log-spaced low ones (ν(G) identifiability) plus linear ones up to g_max = 25 µS.
PCM_DEFAULT_LEVELS_US = (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 12.5, 15.0, 17.5, 20.0, 22.5, 25.0)
#: physics.md "Fitting": 20, 60, 200, 600 s, 1 h, 3 h, 1 day.
PCM_DEFAULT_SCHEDULE_S = (20.0, 60.0, 200.0, 600.0, 3600.0, 10800.0, 86400.0)
#: 13 levels over x ∈ [0.025, 1] of g_max = 40 µS (the NeuRRAM range).
RERAM_DEFAULT_LEVELS_US = (1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 20.0, 24.0, 28.0, 32.0, 36.0, 40.0)
#: includes the published snapshots (1 s, 1 day, 2 days).
RERAM_DEFAULT_SCHEDULE_S = (1.0, 10.0, 100.0, 1000.0, 3600.0, 86400.0, 172800.0)


@dataclass(frozen=True)
class BurstConfig:
    """Read-noise bursts; ``devices_per_level`` 0 disables them."""

    devices_per_level: int = 100
    n_reads: int = 256
    interval_s: float = 1.0
    age_s: float = 1000.0


@dataclass(frozen=True)
class SweepConfig:
    """Everything a characterisation session does, recorded in the session file."""

    levels_us: tuple[float, ...]
    devices_per_level: int
    schedule_s: tuple[float, ...]
    bursts: BurstConfig = field(default_factory=BurstConfig)
    first_address: int = 0
    age_tolerance: float = 0.01  # cohort width as a fraction of the first schedule age
    record_trace: bool = True

    @classmethod
    def default(cls, technology: str, devices_per_level: int = 2000, **kw) -> SweepConfig:
        if technology == "pcm":
            return cls(PCM_DEFAULT_LEVELS_US, devices_per_level, PCM_DEFAULT_SCHEDULE_S, **kw)
        burst = kw.pop("bursts", BurstConfig(devices_per_level=100, n_reads=64, interval_s=1.0,
                                             age_s=100.0))
        kw.setdefault("age_tolerance", 0.05)  # t0 = 1 s: a 10 ms cohort would be needlessly thin
        return cls(RERAM_DEFAULT_LEVELS_US, devices_per_level, RERAM_DEFAULT_SCHEDULE_S,
                   bursts=burst, **kw)

    def validate(self, g_max_us: float, n_devices: int) -> None:
        """Refuse a configuration the chip cannot run (one sentence naming the field)."""
        lv = np.asarray(self.levels_us, dtype=float)
        if lv.size == 0:
            raise DevmodelError("--levels: at least one target level is needed")
        if np.any(~np.isfinite(lv)) or np.any(lv <= 0) or np.any(lv > g_max_us):
            bad = lv[~((lv > 0) & (lv <= g_max_us))][0]
            raise DevmodelError(f"--levels: {bad:g} µS is outside (0, g_max = {g_max_us:g} µS]")
        if self.devices_per_level < 1:
            raise DevmodelError("--devices must be at least 1 per level")
        need = self.first_address + lv.size * self.devices_per_level
        if need > n_devices:
            raise DevmodelError(
                f"--devices: {lv.size} levels × {self.devices_per_level} devices need {need} "
                f"devices but the chip has {n_devices}"
            )
        sch = np.asarray(self.schedule_s, dtype=float)
        if sch.size == 0 or np.any(~np.isfinite(sch)) or np.any(sch <= 0):
            raise DevmodelError("--schedule: ages must be positive numbers of seconds")
        if np.any(np.diff(sch) <= 0):
            raise DevmodelError("--schedule: ages must be strictly increasing")
        b = self.bursts
        if b.devices_per_level < 0 or b.devices_per_level > self.devices_per_level:
            raise DevmodelError("--burst-devices must be between 0 and --devices")
        if b.devices_per_level and (b.n_reads < 2 or b.interval_s < 0 or b.age_s <= 0):
            raise DevmodelError("bursts need ≥ 2 reads, an interval ≥ 0 s and an age > 0 s")
        if not 0 < self.age_tolerance < 1:
            raise DevmodelError("age tolerance must be a fraction in (0, 1)")


@dataclass
class SessionSummary:
    """What a finished session did (also printed by the CLI)."""

    n_devices: int
    converged_fraction: float
    n_reads: int
    n_bursts: int
    late_reads: int
    chip_time_s: float


Progress = Callable[[str, int, int], None]  # (phase, done, total)


def run_sweep(
    chip: DeviceArray,
    cfg: SweepConfig,
    writer: SessionWriter,
    verify: PcmVerifyConfig | ReramVerifyConfig | None = None,
    progress: Progress | None = None,
) -> SessionSummary:
    """Run a whole characterisation session on ``chip``, writing it to ``writer`` as it goes.

    Devices that finish programming early are read at their schedule ages while the others are
    still being programmed (the verify loop hands its idle time to the scheduler).
    """
    info = chip.info
    cfg.validate(info.g_max_us, info.n_devices)
    levels = np.asarray(cfg.levels_us, dtype=float)
    k, n = levels.size, cfg.devices_per_level
    rows = np.arange(k * n)
    level = rows % k  # interleaved, so every level spans the array
    addr = cfg.first_address + rows
    target = levels[level]
    writer.write_levels(levels)
    sched = Scheduler(chip, writer, addr, cfg, progress)

    def pv_progress(it: int, active: int, done: int) -> None:
        if progress:
            progress("program-verify", rows.size - active, rows.size)

    program = program_verify_pcm if info.technology == "pcm" else program_verify_reram
    res = program(chip, addr, target, verify, pv_progress, cfg.record_trace, sched)
    _write_programming(writer, res, level)
    truth = getattr(chip, "ground_truth", None)
    if callable(truth):
        writer.write_ground_truth(truth(), addr)
    burst_rows = _burst_rows(level, k, cfg.bursts.devices_per_level)
    if burst_rows.size:
        sched.add_burst(burst_rows)
    sched.run_all()
    writer.set_attr("late_reads", sched.late)
    return SessionSummary(
        n_devices=rows.size,
        converged_fraction=res.converged_fraction(),
        n_reads=sched.n_reads,
        n_bursts=int(burst_rows.size),
        late_reads=sched.late,
        chip_time_s=chip.now_s(),
    )


class Scheduler:
    """Reads each finished device at its schedule ages; runs bursts; fills the verify loop's idle
    time.

    Finished devices are grouped into cohorts whose last pulses lie within ``age_tolerance × first
    age``; a cohort is read when its latest device reaches each age, so every read is at ≥ the
    nominal age and at most the cohort width (plus any time the chip was busy) later.
    """

    def __init__(self, chip: DeviceArray, writer: SessionWriter, addresses: np.ndarray,
                 cfg: SweepConfig, progress: Progress | None) -> None:
        self.chip, self.writer, self.addr, self.cfg = chip, writer, addresses, cfg
        self.progress = progress
        self.t_last = np.full(addresses.size, np.nan)
        self._heap: list[tuple[float, int, str, np.ndarray, float]] = []
        self._seq = 0
        self.late = 0
        self.n_reads = 0
        self.n_events = 0
        self.n_done = 0

    # -- Host protocol (called by the verify loop) --------------------------------------------
    def finished(self, rows: np.ndarray, t_last_pulse_s: np.ndarray) -> None:
        ok = np.isfinite(t_last_pulse_s)
        rows, t = rows[ok], t_last_pulse_s[ok]
        if rows.size == 0:
            return
        self.t_last[rows] = t
        width = self.cfg.age_tolerance * self.cfg.schedule_s[0]
        order = np.argsort(t, kind="stable")
        rows, t = rows[order], t[order]
        cohort = np.floor((t - t[0]) / width).astype(np.int64)
        edges = np.flatnonzero(np.r_[True, cohort[1:] != cohort[:-1], True])
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            sel = np.sort(rows[a:b])
            for age in self.cfg.schedule_s:
                self._push(t[b - 1] + age, "read", sel, age)

    def idle_until(self, t_s: float) -> None:
        while self._heap and self._heap[0][0] <= t_s:
            self._run(heapq.heappop(self._heap))
        now = self.chip.now_s()
        if t_s > now:
            self.chip.wait(t_s - now)

    # -- after programming -----------------------------------------------------------------------
    def add_burst(self, rows: np.ndarray) -> None:
        t = np.nanmedian(self.t_last[rows]) + self.cfg.bursts.age_s
        self._push(t, "burst", rows, self.cfg.bursts.age_s)

    def run_all(self) -> None:
        while self._heap:
            self._run(heapq.heappop(self._heap))

    # -- internals -----------------------------------------------------------------------------
    def _push(self, t: float, kind: str, rows: np.ndarray, age: float) -> None:
        heapq.heappush(self._heap, (float(t), self._seq, kind, rows, age))
        self._seq += 1
        self.n_events += 1

    def _run(self, event) -> None:
        t_event, _, kind, rows, age = event
        now = self.chip.now_s()
        if t_event > now:
            self.chip.wait(t_event - now)
        if kind == "read":
            self._read(rows, age)
        else:
            self._burst(rows)
        self.n_done += 1
        if self.progress:
            self.progress("schedule", self.n_done, self.n_events)

    def _read(self, rows: np.ndarray, age: float) -> None:
        rb = self.chip.read(self.addr[rows], 1)
        t = rb.t_s[:, 0]
        ages = t - self.t_last[rows]
        self.writer.append("reads", {"device": rows, "t_s": t, "age_s": ages,
                                     "g_us": rb.g_us[:, 0], "burst": np.full(rows.size, -1)})
        self.late += int(np.count_nonzero(ages > age * (1 + 2 * self.cfg.age_tolerance)))
        self.n_reads += rows.size

    def _burst(self, rows: np.ndarray) -> None:
        b = self.cfg.bursts
        rb = self.chip.read(self.addr[rows], b.n_reads, b.interval_s)
        burst_id = np.arange(rows.size, dtype=np.int32)
        self.writer.write_bursts({
            "burst": burst_id, "device": rows, "n_reads": np.full(rows.size, b.n_reads),
            "interval_s": np.full(rows.size, b.interval_s), "t_start_s": rb.t_s[:, 0],
        })
        self.writer.append("reads", {
            "device": np.repeat(rows, b.n_reads), "t_s": rb.t_s.ravel(),
            "age_s": (rb.t_s - self.t_last[rows, None]).ravel(), "g_us": rb.g_us.ravel(),
            "burst": np.repeat(burst_id, b.n_reads),
        })
        self.n_reads += rows.size * b.n_reads


def _write_programming(writer: SessionWriter, res: VerifyResult, level: np.ndarray) -> None:
    writer.write_devices(
        {
            "address": res.addresses, "level": level, "target_us": res.target_us,
            "converged": res.converged, "iterations": res.iterations, "pulses": res.pulses,
            "g_verify_us": res.g_verify_us, "t_last_pulse_s": res.t_last_pulse_s,
            "stop_reason": res.stop_reason,
        },
        {int(r): r.name.lower() for r in StopReason},
    )
    writer.set_attr("verify_config", json.dumps(res.config, default=list))
    tr = res.trace
    if len(tr):
        writer.append("trace", {
            "device": tr.row, "iteration": tr.iteration, "g_before_us": tr.g_before_us,
            "kind": tr.kind, "amplitude": tr.amplitude, "width_ns": tr.width_ns,
            "compliance_ua": tr.compliance_ua, "t_s": tr.t_s, "g_after_us": tr.g_after_us,
        })


def _burst_rows(level: np.ndarray, k: int, per_level: int) -> np.ndarray:
    if per_level <= 0:
        return np.empty(0, np.int64)
    return np.concatenate([np.flatnonzero(level == j)[:per_level] for j in range(k)])


def config_dict(cfg: SweepConfig, verify) -> dict:
    """The session's configuration as recorded in the file."""
    return {"sweep": asdict(cfg), "verify": asdict(verify) if verify else None}
