"""Procedures re-run offline: the drift schedule and bursts against ``replay:``, program-and-verify
against ``emulate:``.

:func:`replay_schedule` drives the very :class:`~devmodel.procedures.characterize.Scheduler` of a
live session. The scheduler learns when each device finished programming in the groups the verify
loop reported them (devices that converged in the same iteration, then those stopped by a limit in
that iteration; reconstructed from the recorded iteration counts and stop reasons), so its cohorts,
events and read requests are those of the recording, and the new session's reads table equals the
recorded one row for row (and the fitted model is bit-for-bit the same).

:func:`emulate_program_verify` runs the recorded program-and-verify algorithm — or a retuned one —
on the recorded devices and targets of ``emulate:``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from devmodel.array import DeviceArray
from devmodel.errors import DevmodelError, SessionFileError
from devmodel.procedures.characterize import Scheduler, SweepConfig, sweep_from_dict
from devmodel.procedures.program_verify import VerifyConfig, VerifyResult, program_verify, verify_parts
from devmodel.store.reader import Session
from devmodel.store.schema import StopReason
from devmodel.store.writer import SessionSink

SCHEDULE_PROCEDURES = ("drift", "bursts")


def finish_groups(iterations: np.ndarray, stop_reason: np.ndarray) -> list[np.ndarray]:
    """Device rows in the groups and order the verify loop handed them to its host: per iteration,
    first the devices that converged (or, at iteration 0, got their single RESET), then those stopped
    by the iteration or a pulse/time limit."""
    limited = ~np.isin(stop_reason, (StopReason.CONVERGED, StopReason.RESET_ONLY))
    rows = np.arange(iterations.size)
    order = np.lexsort((rows, limited, iterations))
    key = iterations[order] * 2 + limited[order]
    cuts = np.flatnonzero(np.diff(key)) + 1
    return np.split(order, cuts)


def sweep_config(session: Session) -> SweepConfig:
    """The recorded level sweep (schedule, bursts, age tolerance) from the session's /config."""
    sweep = (session.config or {}).get("sweep")
    if not isinstance(sweep, dict) or "schedule_s" not in sweep:
        raise SessionFileError(f"{session.path} records no sweep configuration (/config 'sweep')")
    try:
        return sweep_from_dict({"levels_us": session.levels_us.tolist(), "devices_per_level": 1,
                                **sweep})
    except (TypeError, ValueError) as e:
        raise SessionFileError(f"{session.path} has an unreadable sweep configuration "
                               f"({type(e).__name__}: {e})") from None


@dataclass
class ReplaySummary:
    """What a replayed schedule did."""

    n_reads: int
    n_bursts: int
    late_reads: int
    chip_time_s: float


def replay_schedule(chip: DeviceArray, session: Session, writer: SessionSink,
                    procedures: tuple[str, ...] = SCHEDULE_PROCEDURES,
                    schedule_s: tuple[float, ...] | None = None,
                    progress: Callable[[str, int, int], None] | None = None) -> ReplaySummary:
    """Re-run the recorded drift schedule and/or bursts of ``session`` on ``chip`` (usually
    ``replay:`` of the same file) into ``writer``; the programming part (devices, trace, ground
    truth) is copied from the record. ``schedule_s`` replaces the recorded ages (then reads the
    record does not hold need an interpolation policy).

    With the recorded schedule both procedures run, as they did in the recording, so the chip is busy
    when it was busy (a schedule read the recording took late because a burst was running is asked
    for late again); only the reads of the chosen procedures are written. With a new schedule only
    the chosen procedures run.
    """
    unknown = set(procedures) - set(SCHEDULE_PROCEDURES)
    if unknown or not procedures:
        raise DevmodelError(f"--procedure: replay runs {' and '.join(SCHEDULE_PROCEDURES)}, not "
                            f"{', '.join(sorted(unknown)) or 'nothing'}")
    has_bursts = bool(session.bursts) and session.bursts["device"].size > 0
    if procedures == ("bursts",) and not has_bursts:
        raise DevmodelError(f"{session.path} records no read-noise bursts to replay")
    cfg = sweep_config(session)
    if schedule_s is not None:  # a new schedule is a new procedure: nothing else runs beside it
        cfg = dataclasses.replace(cfg, schedule_s=tuple(schedule_s) if "drift" in procedures else ())
        has_bursts = has_bursts and "bursts" in procedures
    d = session.devices
    copy_programming(session, writer)
    out = _Selected(writer, "drift" in procedures, "bursts" in procedures)
    sched = Scheduler(chip, out, np.asarray(d["address"], np.int64), cfg, progress)
    t_last = np.asarray(d["t_last_pulse_s"], float)
    if cfg.schedule_s:
        for rows in finish_groups(np.asarray(d["iterations"]), np.asarray(d["stop_reason"])):
            sched.finished(rows, t_last[rows])
    else:
        sched.t_last[:] = t_last
    if has_bursts:
        sched.add_burst(np.asarray(session.bursts["device"], np.int64)[np.argsort(session.bursts["burst"])])
    sched.run_all()
    late = sched.late if out.keep_drift else 0  # the scheduler counts late schedule reads only
    writer.set_attr("late_reads", late)
    return ReplaySummary(out.n_reads, out.n_bursts, late, chip.now_s())


class _Selected:
    """The session writer, passing on only the reads of the chosen procedures."""

    def __init__(self, writer: SessionSink, keep_drift: bool, keep_bursts: bool) -> None:
        self.writer, self.keep_drift, self.keep_bursts = writer, keep_drift, keep_bursts
        self.n_reads = self.n_bursts = 0

    def append(self, table: str, columns: dict[str, np.ndarray]) -> None:
        burst = np.asarray(columns["burst"])
        keep = self.keep_bursts if burst.size and burst[0] >= 0 else self.keep_drift
        if keep:
            self.writer.append(table, columns)
            self.n_reads += burst.size

    def write_bursts(self, columns: dict[str, np.ndarray]) -> None:
        if self.keep_bursts:
            self.writer.write_bursts(columns)
            self.n_bursts += int(np.asarray(columns["burst"]).size)

    def __getattr__(self, name: str):
        return getattr(self.writer, name)


def copy_programming(session: Session, writer: SessionSink) -> None:
    """Levels, devices, verify trace and ground truth of ``session`` into ``writer`` unchanged (the
    verify configuration travels in the new file's /config)."""
    writer.write_levels(session.levels_us)
    d = session.devices
    writer.write_devices({k: d[k] for k in d})
    if session.trace and session.trace.get("device") is not None and session.trace["device"].size:
        writer.append("trace", session.trace)
    if session.ground_truth is not None:
        gt = session.ground_truth
        writer.write_ground_truth({"model": gt["model"], "params": gt["params"],
                                   "devices": gt["devices"]}, np.arange(session.n_devices))


def verify_config_of(session: Session, overrides: dict[str, str] | None = None) -> VerifyConfig:
    """The recorded program-and-verify configuration, with ``overrides`` (field → text) applied."""
    cls, _ = verify_parts(session.technology)
    rec = session.verify_config
    if rec is None:
        raise SessionFileError(f"{session.path} records no verify configuration, which "
                               "program-and-verify needs")
    names = {f.name: f for f in dataclasses.fields(cls)}
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in rec.items() if k in names}
    for key, text in (overrides or {}).items():
        if key not in names:
            raise DevmodelError(f"--set: {cls.__name__} has no field {key!r}; known: "
                                f"{', '.join(sorted(names))}")
        default = getattr(cls(), key)
        try:
            if isinstance(default, tuple):
                kw[key] = tuple(float(v) for v in text.split(",") if v.strip())
            elif isinstance(default, int):
                kw[key] = int(text)
            else:
                kw[key] = float(text)
        except ValueError:
            raise DevmodelError(f"--set {key}={text!r}: expected a number") from None
    cfg = cls(**kw)
    cfg.validate()
    return cfg


def emulate_program_verify(chip: DeviceArray, addresses: np.ndarray, targets_us: np.ndarray,
                           config: VerifyConfig, record_trace: bool = False) -> VerifyResult:
    """Run program-and-verify with ``config`` on ``chip`` (an ``emulate:`` chip, or any chip)."""
    return program_verify(chip, np.asarray(addresses, np.int64), np.asarray(targets_us, float), config,
                          None, record_trace)


@dataclass
class ConvergenceStats:
    """Convergence statistics of a program-and-verify run (devices with a non-zero target)."""

    n_devices: int
    converged_fraction: float
    median_iterations: float
    mean_iterations: float
    p90_iterations: float
    mean_pulses: float

    @classmethod
    def of(cls, target_us: np.ndarray, converged: np.ndarray, iterations: np.ndarray,
           pulses: np.ndarray) -> ConvergenceStats:
        sel = np.asarray(target_us) > 0
        it = np.asarray(iterations)[sel]
        return cls(int(sel.sum()), float(np.asarray(converged, bool)[sel].mean()),
                   float(np.median(it)), float(it.mean()), float(np.percentile(it, 90)),
                   float(np.asarray(pulses)[sel].mean()))


def recorded_stats(session: Session) -> ConvergenceStats:
    """Convergence statistics of the session's own program-and-verify."""
    d = session.devices
    return ConvergenceStats.of(d["target_us"], d["converged"], d["iterations"], d["pulses"])
