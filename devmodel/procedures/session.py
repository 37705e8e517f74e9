"""A characterisation session end to end: the session file, the sweep, the instrument's journal,
resuming after a stop (``devmodel characterize``, ``devmodel demo``; docs/reliability.md).

:func:`new_session` creates the file (crash-safe and resumable unless ``durability="off"``) and runs
the sweep into it; :func:`resume_session` continues one from its last commit. A chip that keeps its
own state (an instrument) runs through a journal of its answers, so a resume repeats exactly what
the lost window did; a simulated chip is snapshotted with every commit instead.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from devmodel.array import DeviceArray, ReportsFaults, Seeded, Snapshots
from devmodel.errors import DevmodelError
from devmodel.procedures.characterize import (
    DevicePlan,
    Progress,
    SessionSummary,
    SweepConfig,
    config_dict,
    run_sweep,
)
from devmodel.procedures.program_verify import VerifyConfig, verify_parts
from devmodel.procedures.resume import attach_journal, configs_from_file, restore_chip
from devmodel.store.durable import DurableSessionWriter, inspect_resumable
from devmodel.store.output import write_error
from devmodel.store.writer import SessionSink, SessionWriter
from devmodel.technologies import technology

DURABILITY = ("full", "process", "off")


@dataclass
class SessionRun:
    """What a (new or resumed) session did, and the instrument faults it met on the way."""

    path: Path
    summary: SessionSummary
    faults: dict = field(default_factory=dict)


def new_session(chip: DeviceArray, chip_url: str, cfg: SweepConfig, out_path: str | Path, *,
                seed: int | None, overwrite: bool = False, progress: Progress | None = None,
                durability: str = "full", checkpoint_interval_s: float = 2.0,
                command: str = "", verify: VerifyConfig | None = None) -> SessionRun:
    """Create the session file for ``chip`` and run the sweep into it (the technology's reference
    age t0; ``verify`` or the technology's default program-and-verify).

    ``durability`` "full" or "process" writes a crash-safe, resumable file (commits every
    ``checkpoint_interval_s``, fsynced for "full"); "off" the plain incremental file.
    """
    if durability not in DURABILITY:
        raise DevmodelError(f"--durability must be one of {', '.join(DURABILITY)}, not {durability!r}")
    tech = technology(chip.info.technology)
    verify_cls, _ = verify_parts(tech.name)
    verify = verify or verify_cls()
    kw = dict(technology=tech.name, g_max_us=chip.info.g_max_us, t0_s=tech.t0_s,
              chip=dict(chip.info.to_dict(), url=chip_url), config=config_dict(cfg, verify),
              seed=chip.seed if isinstance(chip, Seeded) else seed, command=command,
              overwrite=overwrite)
    with storage_errors(out_path, resumable=durability != "off"):
        with open_writer(out_path, durability, checkpoint_interval_s, **kw) as w:
            return sweep_into(chip, w, cfg, verify, progress, journal=durability != "off")


def open_writer(out_path: str | Path, durability: str, checkpoint_interval_s: float, **kw) -> SessionSink:
    """The session file's writer: crash-safe and resumable (``durability`` "full": fsynced commits,
    "process") or the plain incremental one ("off"); ``kw`` are the writers' file attributes."""
    if durability == "off":
        return SessionWriter(out_path, **kw)
    return DurableSessionWriter(out_path, commit_interval_s=checkpoint_interval_s,
                                fsync=durability == "full", **kw)


@contextlib.contextmanager
def storage_errors(path: Path, resumable: bool):
    """A session file that cannot be written (disk full, read-only) is one sentence; a resumable
    one keeps its last commit, so the sentence says how to go on once there is space."""
    try:
        yield
    except (OSError, RuntimeError) as e:
        message = write_error(e, path)
        if message is None:
            raise
        if resumable and Path(path).exists():
            message += (f"; the session stopped at its last commit: make room, then continue it with "
                        f"devmodel characterize --resume {path}")
        raise DevmodelError(message) from None


def sweep_into(chip: DeviceArray, writer: SessionSink, cfg: SweepConfig, verify: VerifyConfig,
               progress: Progress | None = None, state=None, downtime: str = "wall",
               journal: bool = True, plan: DevicePlan | None = None) -> SessionRun:
    """Run the sweep (new or resumed from ``state``) into ``writer``, through an instrument's
    journal when the file is resumable, record the faults met, and mark the session complete
    (``plan``: explicit per-device targets instead of the sweep's levels, as a deployment's)."""
    run_chip = chip
    if journal and not isinstance(chip, Snapshots):
        run_chip = attach_journal(chip, writer, state, downtime)
    try:
        summary = run_sweep(run_chip, cfg, writer, verify, progress, state, plan)
    finally:
        if run_chip is not chip:
            run_chip.close_journal()
    faults = chip.fault_record() if isinstance(chip, ReportsFaults) else {}
    for key, value in faults.items():
        if key == "faults_injected":
            if value:
                writer.set_attr(key, json.dumps(value, sort_keys=True))
        else:
            writer.set_attr(key, int(value))
    writer.finish("complete")
    return SessionRun(Path(writer.path), summary, faults)


def resume_session(path: str | Path, chip: DeviceArray, *, downtime: str = "wall",
                   durability: str = "full", checkpoint_interval_s: float = 2.0,
                   progress: Progress | None = None, plan: DevicePlan | None = None) -> SessionRun:
    """Continue the session in ``path`` on ``chip`` (opened from the recorded or a given URL) from
    its last commit, noting the gap in ``/gaps`` (``plan``: a deployment's, read from its file)."""
    path = Path(path)
    if durability == "off":
        raise DevmodelError("--durability off cannot resume a session (it writes no resume data)")
    info = inspect_resumable(path)
    cfg, verify = configs_from_file(info)
    recorded = info["chip"]
    for key in ("technology", "n_devices"):
        if key in recorded and recorded[key] != getattr(chip.info, key):
            raise DevmodelError(f"--resume {path}: the chip has {key} {getattr(chip.info, key)!r} but "
                                f"the session was recorded on one with {recorded[key]!r}")
    check_continuity(path, recorded, chip, info)
    with storage_errors(path, resumable=True):
        return _resume(path, chip, info, cfg, verify, downtime, durability, checkpoint_interval_s, progress,
                       plan)


def _resume(path: Path, chip: DeviceArray, info: dict, cfg, verify, downtime: str, durability: str,
            checkpoint_interval_s: float, progress: Progress | None,
            plan: DevicePlan | None = None) -> SessionRun:
    writer, state = DurableSessionWriter.reopen(path, commit_interval_s=checkpoint_interval_s,
                                                fsync=durability == "full")
    reason = info["status_reason"] if info["status"] == "failed" and info["status_reason"] else (
        "the session process stopped without closing the file (killed, crashed or lost power)")
    reason = reason.split(_RESUME_FAILED)[0]  # the gap is for why the session first stopped
    with writer:
        try:
            if state is not None:
                t_stop, t_resume, down_s = restore_chip(chip, state, downtime)
            else:  # stopped before its first commit: start again from the header
                t_stop, t_resume, down_s = float("nan"), chip.now_s(), float("nan")
        except (KeyError, ValueError, IndexError, TypeError) as e:
            # a state that does not fit the chip (damaged, or written by another version)
            _keep_reason(writer, reason, f"{path}'s resume state does not fit the chip ({type(e).__name__}: "
                                         f"{e})")
            raise DevmodelError(f"--resume {path}: its resume state does not fit the chip "
                                f"({type(e).__name__}: {e}); the session cannot be continued") from None
        except BaseException as e:
            _keep_reason(writer, reason, str(e) or type(e).__name__)
            raise
        writer.record_gap(reason, t_stop, t_resume, down_s, info["commit_utc"])
        writer.set_attr("status", "running")
        writer.set_attr("status_reason", "")
        writer.commit_now()
        return sweep_into(chip, writer, cfg, verify, progress, state, downtime, plan=plan)


_RESUME_FAILED = " (a resume failed too: "


def _keep_reason(writer, reason: str, failure: str) -> None:
    """A resume that failed before the session ran again: the file keeps the reason the session
    first stopped for (the gap a later resume records), with this failure after it."""
    writer.fail(f"{reason}{_RESUME_FAILED}{failure})")
    writer.close()


def check_continuity(path: Path, recorded: dict, chip: DeviceArray, info: dict) -> None:
    """A session continues only on the chip it was recorded on, in the same boot, with a clock that
    did not go back (docs/reliability.md, "A chip that lost its state"); a chip that keeps no state
    of its own (a simulated chip restored from the file's snapshot) is exempt."""
    if isinstance(chip, Snapshots):
        return
    before, now = str(recorded.get("boot_id") or ""), chip.info.boot_id
    if before and now != before:
        raise DevmodelError(f"--resume {path}: the chip was restarted since the session stopped (boot id "
                            f"{before} → {now or 'none'}): its programmed states are gone and a resumed "
                            "session would mix two chips; start a new session")
    t_last = info.get("commit_chip_s")
    if t_last is not None and np.isfinite(t_last) and chip.now_s() < t_last:
        raise DevmodelError(f"--resume {path}: the chip's clock ({chip.now_s():.6g} s) is behind the "
                            f"session's last commit ({t_last:.6g} s): it does not continue the record")


def recorded_chip(path: str | Path) -> tuple[str, int | None]:
    """The chip URL and seed a resumable session was recorded with."""
    info = inspect_resumable(path)
    return info["chip"].get("url", ""), (info["seed"] if info["seed"] >= 0 else None)
