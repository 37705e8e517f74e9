"""Characterisation session: level sweep with program-and-verify, drift schedule, read-noise bursts.

The procedure knows the chip only through the device-array protocol, so it runs unchanged on the
simulated chips, a VISA instrument or a replayed record.

* **Level sweep**: K target levels × N devices (each technology's defaults; PCM's 13 levels include
  log-spaced low ones, since μ_ν(G) and σ_ν(G) only have a slope below x ≈ 0.2–0.33: docs/physics.md,
  "Identifiability").
* **Drift schedule**: every device is read at log-spaced ages counted from the end of its own last
  pulse (20 s … 1 day for PCM, docs/physics.md "Fitting"). Devices are grouped into cohorts whose last
  pulses lie within ``age_tolerance`` of the first age, and each cohort is read when it reaches
  each age, so every level is read at the same age (t0) as the σ_prog fit requires.
* **Read-noise bursts**: M equally spaced reads of the first B devices of every level at a fixed
  age (default 256 reads, 1 s apart, at 1000 s: the variogram estimator of Q_s).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from devmodel.array import CountsPulses, DeviceArray, HasGroundTruth, Journaled, Snapshots
from devmodel.errors import DevmodelError
from devmodel.procedures.program_verify import VerifyConfig, VerifyResult, verify_parts
from devmodel.store.writer import Checkpointing, SessionSink
from devmodel.technologies import technology


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
    def default(cls, technology_name: str, devices_per_level: int = 2000, **kw) -> SweepConfig:
        """The technology's default sweep (its declaration's SweepDefaults), ``kw`` replacing fields."""
        d = technology(technology_name).sweep
        kw.setdefault("bursts", BurstConfig(d.burst_devices_per_level, d.burst_reads,
                                            d.burst_interval_s, d.burst_age_s))
        kw.setdefault("age_tolerance", d.age_tolerance)
        return cls(d.levels_us, devices_per_level, d.schedule_s, **kw)

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
        if b.devices_per_level and not (b.n_reads >= 2 and np.isfinite(b.interval_s) and b.interval_s >= 0
                                        and np.isfinite(b.age_s) and b.age_s > 0):
            raise DevmodelError("bursts need ≥ 2 reads, a finite interval ≥ 0 s and a finite age > 0 s")
        end_s = b.age_s + (b.n_reads - 1) * b.interval_s
        hit = sch[(sch >= b.age_s) & (sch <= end_s)] if b.devices_per_level else sch[:0]
        if hit.size:
            raise DevmodelError(
                f"--burst-age: the read-noise burst at {b.age_s:g} s runs until {end_s:g} s and would "
                f"delay the schedule read at {hit[0]:g} s for every device; move the burst between "
                f"two schedule ages")
        if not 0 < self.age_tolerance < 1:
            raise DevmodelError("age tolerance must be a fraction in (0, 1)")


@dataclass(frozen=True)
class DevicePlan:
    """Which devices a session programs and to what: per device its chip address, target conductance
    and level (row of ``levels_us``). A characterisation sweep's plan is levels × devices
    (:meth:`of_sweep`); a deployment's has one target per device (devmodel.deploy)."""

    levels_us: np.ndarray
    address: np.ndarray
    target_us: np.ndarray
    level: np.ndarray

    @classmethod
    def interleaved(cls, levels_us, devices_per_level: int, first_address: int = 0) -> DevicePlan:
        """K levels × N devices, interleaved so every level spans the array."""
        levels = np.asarray(levels_us, dtype=float)
        rows = np.arange(levels.size * devices_per_level)
        level = rows % levels.size
        return cls(levels, first_address + rows, levels[level], level)

    @classmethod
    def of_sweep(cls, cfg: SweepConfig) -> DevicePlan:
        """A characterisation sweep's plan: its levels × devices from its first address."""
        return cls.interleaved(cfg.levels_us, cfg.devices_per_level, cfg.first_address)


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
    writer: SessionSink,
    verify: VerifyConfig | None = None,
    progress: Progress | None = None,
    state: dict[str, np.ndarray] | None = None,
    plan: DevicePlan | None = None,
) -> SessionSummary:
    """Run a whole characterisation session on ``chip``, writing it to ``writer`` as it goes.

    Devices that finish programming early are read at their schedule ages while the others are
    still being programmed (the verify loop hands its idle time to the scheduler). With a durable
    writer the session commits at safe points; ``state`` (from such a commit) continues it.
    ``plan`` replaces the sweep's levels × devices by explicit per-device targets (a deployment).
    """
    runner = SweepRunner(chip, cfg, writer, verify, progress, plan)
    if state is not None:
        runner.load_state(state)
    return runner.run()


class SweepRunner:
    """A session as a resumable state machine: start → program (P&V with the schedule running in its
    idle time) → schedule (the remaining reads and bursts) → done.

    Safe points (where a durable writer may commit rows together with :meth:`state_dict`): the top of
    every verify iteration and every schedule event. Everything the session does between two safe
    points depends only on the state at the first and the chip's answers, so a resumed run repeats it.
    """

    PHASES = ("start", "program", "schedule", "done")

    def __init__(self, chip: DeviceArray, cfg: SweepConfig, writer: SessionSink,
                 verify: VerifyConfig | None = None, progress: Progress | None = None,
                 plan: DevicePlan | None = None) -> None:
        info = chip.info
        if plan is None:  # a deployment's plan is checked by its maker (devmodel.deploy)
            cfg.validate(info.g_max_us, info.n_devices)
            plan = DevicePlan.of_sweep(cfg)
        self.chip, self.cfg, self.writer, self.progress = chip, cfg, writer, progress
        self.levels = np.asarray(plan.levels_us, dtype=float)
        self.rows = np.arange(plan.address.size)
        self.level = np.asarray(plan.level)
        self.addr = np.asarray(plan.address, dtype=np.int64)
        self.target = np.asarray(plan.target_us, dtype=float)
        self.sched = Scheduler(chip, writer, self.addr, cfg, progress)
        verify_cls, verify_run = verify_parts(info.technology)
        self.pv = verify_run(chip, self.addr, self.target, verify or verify_cls(), self._pv_progress,
                             cfg.record_trace, self.sched)
        self.phase = "start"
        self.converged_fraction = float("nan")
        self.n_bursts = 0

    def _pv_progress(self, it: int, active: int, done: int) -> None:
        if self.progress:
            self.progress("program-verify", self.rows.size - active, self.rows.size)

    def run(self) -> SessionSummary:
        if self.phase == "start":
            self.writer.write_levels(self.levels)
            self.phase = "program"
        if self.phase == "program":
            res = self.pv.run(checkpoint=self.safe_point)
            _write_programming(self.writer, res, self.level)
            if isinstance(self.chip, HasGroundTruth):
                self.writer.write_ground_truth(self.chip.ground_truth(), self.addr)
            burst_rows = burst_rows_of(self.level, self.levels.size, self.cfg.bursts.devices_per_level)
            if burst_rows.size:
                self.sched.add_burst(burst_rows)
            self.converged_fraction = res.converged_fraction()
            self.n_bursts = int(burst_rows.size)
            self.phase = "schedule"
        if self.phase == "schedule":
            self.sched.run_all(checkpoint=self.safe_point)
            self.writer.set_attr("late_reads", self.sched.late)
            self.phase = "done"
        return SessionSummary(
            n_devices=self.rows.size,
            converged_fraction=self.converged_fraction,
            n_reads=self.sched.n_reads,
            n_bursts=self.n_bursts,
            late_reads=self.sched.late,
            chip_time_s=self.chip.now_s(),
        )

    def safe_point(self) -> None:
        """Let a durable writer commit here (it decides whether a commit is due)."""
        if isinstance(self.chip, Journaled) and self.chip.replaying:
            # still repeating a journal: a commit now would start a new journal while the rest of
            # the old one is still to be replayed, and the two would no longer meet
            return
        if isinstance(self.writer, Checkpointing):
            self.writer.checkpoint(self.state_dict)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to continue from here: sweep, verify loop, scheduler and, for a simulated
        chip, the chip itself (its programmed states live on the chip)."""
        # a journaled chip knows the time without asking: a query here would put a call into the
        # journal that depends on when commits fall due, and a replay would not repeat it
        t_chip = self.chip.last_known_time if isinstance(self.chip, Journaled) else self.chip.now_s()
        out = {"sweep/phase": np.array(self.PHASES.index(self.phase)),
               "sweep/converged_fraction": np.array(self.converged_fraction),
               "sweep/n_bursts": np.array(self.n_bursts),
               "sweep/t_chip_s": np.array(t_chip),
               "sweep/wall_s": np.array(time.time())}
        if self.phase == "program":  # the loop's state (with its trace) is only needed until it ends
            out.update({f"pv/{k}": v for k, v in self.pv.state_dict().items()})
        out.update({f"sched/{k}": v for k, v in self.sched.state_dict().items()})
        if isinstance(self.chip, Snapshots):
            out.update({f"chip/{k}": v for k, v in self.chip.save_state(self.addr).items()})
        elif (count := _pulse_count(self.chip)) is not None:
            # a chip that keeps its own state: the host's count of pulses against the limits
            out["host/pulse_count"] = count[self.addr].copy()
        return out

    def load_state(self, d: dict[str, np.ndarray]) -> None:
        """Continue from a :meth:`state_dict` (the chip is restored separately, see
        :func:`devmodel.procedures.resume.restore_chip`)."""
        self.phase = self.PHASES[int(d["sweep/phase"])]
        self.converged_fraction = float(d["sweep/converged_fraction"])
        self.n_bursts = int(d["sweep/n_bursts"])
        if self.phase == "program":
            self.pv.load_state({k[3:]: v for k, v in d.items() if k.startswith("pv/")})
        self.sched.load_state({k[6:]: v for k, v in d.items() if k.startswith("sched/")})
        count = _pulse_count(self.chip)
        if count is not None and "host/pulse_count" in d:
            count[self.addr] = d["host/pulse_count"]


def _pulse_count(chip: DeviceArray) -> np.ndarray | None:
    """The host's per-device pulse count of a chip that declares a pulse limit (else None)."""
    return chip.pulse_counter.count if isinstance(chip, CountsPulses) else None


class Scheduler:
    """Reads each finished device at its schedule ages; runs bursts; fills the verify loop's idle
    time.

    Finished devices are grouped into cohorts whose last pulses lie within ``age_tolerance × first
    age``; a cohort is read when its latest device reaches each age, so every read is at ≥ the
    nominal age and at most the cohort width (plus any time the chip was busy) later.
    """

    def __init__(self, chip: DeviceArray, writer: SessionSink, addresses: np.ndarray,
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

    def run_all(self, checkpoint: Callable[[], None] | None = None) -> None:
        while self._heap:
            if checkpoint is not None:
                checkpoint()
            self._run(heapq.heappop(self._heap))

    _KINDS = ("read", "burst")

    def state_dict(self) -> dict[str, np.ndarray]:
        """Pending events (time, order, kind, rows, age), counters and each device's last pulse."""
        h = self._heap
        return {
            "t": np.array([e[0] for e in h], float), "seq": np.array([e[1] for e in h], np.int64),
            "kind": np.array([self._KINDS.index(e[2]) for e in h], np.int8),
            "age": np.array([e[4] for e in h], float),
            "n_rows": np.array([e[3].size for e in h], np.int64),
            "rows": np.concatenate([e[3] for e in h]).astype(np.int64) if h else np.empty(0, np.int64),
            "counters": np.array([self._seq, self.late, self.n_reads, self.n_events, self.n_done], np.int64),
            "t_last": self.t_last.copy(),
        }

    def load_state(self, d: dict[str, np.ndarray]) -> None:
        rows = np.split(d["rows"], np.cumsum(d["n_rows"])[:-1]) if d["n_rows"].size else []
        self._heap = [(float(t), int(q), self._KINDS[int(k)], r, float(a))
                      for t, q, k, r, a in zip(d["t"], d["seq"], d["kind"], rows, d["age"], strict=True)]
        heapq.heapify(self._heap)  # (time, seq) is unique: the pop order does not depend on the layout
        self._seq, self.late, self.n_reads, self.n_events, self.n_done = (int(v) for v in d["counters"])
        self.t_last[:] = d["t_last"]

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
                                     "g_us": rb.g_us[:, 0], "burst": np.full(rows.size, -1),
                                     "nominal_age_s": np.full(rows.size, float(age))})
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


def _write_programming(writer: SessionSink, res: VerifyResult, level: np.ndarray) -> None:
    """The devices table and the pulse trace (the verify configuration is in /config already)."""
    writer.write_devices({
        "address": res.addresses, "level": level, "target_us": res.target_us,
        "converged": res.converged, "iterations": res.iterations, "pulses": res.pulses,
        "g_verify_us": res.g_verify_us, "t_last_pulse_s": res.t_last_pulse_s,
        "stop_reason": res.stop_reason,
    })
    tr = res.trace
    if len(tr):
        writer.append("trace", {
            "device": tr.row, "iteration": tr.iteration, "g_before_us": tr.g_before_us,
            "kind": tr.kind, "amplitude": tr.amplitude, "width_ns": tr.width_ns,
            "compliance_ua": tr.compliance_ua, "t_s": tr.t_s, "g_after_us": tr.g_after_us,
        })


def burst_rows_of(level: np.ndarray, k: int, per_level: int) -> np.ndarray:
    """Rows of the first ``per_level`` devices of each of the ``k`` levels (the burst devices)."""
    if per_level <= 0:
        return np.empty(0, np.int64)
    return np.concatenate([np.flatnonzero(level == j)[:per_level] for j in range(k)])


def config_dict(cfg: SweepConfig, verify) -> dict:
    """The session's configuration as recorded in the file."""
    return {"sweep": asdict(cfg), "verify": asdict(verify) if verify else None}


def sweep_from_dict(sweep: dict) -> SweepConfig:
    """The inverse of ``config_dict(...)["sweep"]``: levels, devices and schedule are required (a
    missing one raises KeyError), the rest default; unknown burst fields are ignored."""
    known = {f.name for f in fields(BurstConfig)}
    b = sweep.get("bursts") or {}
    d = SweepConfig.__dataclass_fields__
    return SweepConfig(
        levels_us=tuple(float(v) for v in sweep["levels_us"]),
        devices_per_level=int(sweep["devices_per_level"]),
        schedule_s=tuple(float(a) for a in sweep["schedule_s"]),
        bursts=BurstConfig(**{k: v for k, v in b.items() if k in known}),
        first_address=int(sweep.get("first_address", d["first_address"].default)),
        age_tolerance=float(sweep.get("age_tolerance", d["age_tolerance"].default)),
        record_trace=bool(sweep.get("record_trace", d["record_trace"].default)),
    )
