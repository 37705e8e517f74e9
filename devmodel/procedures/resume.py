"""Continuing a session after a crash, a kill or a stop on an instrument fault (docs/reliability.md).

The session file's last commit holds everything up to a safe point of the procedure, and its sidecar
the state at that point (:class:`devmodel.procedures.characterize.SweepRunner`). What happened on
the chip between that commit and the stop is handled by the kind of chip:

* a **simulated chip** runs inside the session's process, so it stopped with it: it is rebuilt from
  its seed and put back into its saved state (clock, generator, per-device programming and 1/f
  state), then its virtual clock is moved by the *downtime rule*: ``wall`` advances it by the wall
  time between the last commit and now (programmed states drift on while nobody runs the chip, as
  on hardware); ``paused`` does not (the simulated chip stood still with the process: a resumed
  session is then value for value the session that was never interrupted);
* a **chip behind an instrument** kept its state and, with a real clock, its time. Its answers since
  the last commit are in the session's journal (:mod:`devmodel.procedures.journal`): the procedure
  replays them from the commit's state and so arrives where the crash left it, with the records of
  that window; then the chip is live again. Schedule reads whose time passed during the downtime are
  taken at once and counted as late; their ages are measured from each device's last pulse as
  always. A virtual-clock controller (``serve-chip``) is advanced under the ``wall`` rule by the wall
  time since the journal's last answer (``paused``: not at all).
"""

from __future__ import annotations

import time

import numpy as np

from devmodel.array import DeviceArray, Snapshots
from devmodel.errors import DevmodelError
from devmodel.procedures.characterize import SweepConfig, sweep_from_dict
from devmodel.procedures.program_verify import VerifyConfig, verify_config_from_dict

DOWNTIME_RULES = ("wall", "paused")


def configs_from_file(info: dict) -> tuple[SweepConfig, VerifyConfig]:
    """The sweep and verify configurations recorded in a session file's ``/config``."""
    try:
        return (sweep_from_dict(info["config"]["sweep"]),
                verify_config_from_dict(info["technology"], dict(info["config"]["verify"] or {})))
    except (KeyError, TypeError, ValueError) as e:
        raise DevmodelError(f"the session's /config cannot be read back ({type(e).__name__}: {e})") from None


def restore_chip(chip: DeviceArray, state: dict[str, np.ndarray], rule: str = "wall"
                 ) -> tuple[float, float, float]:
    """Bring ``chip`` to where the session's last commit left it; returns (chip time at the commit,
    chip time now, wall seconds since the commit)."""
    if rule not in DOWNTIME_RULES:
        raise DevmodelError(f"--downtime must be one of {', '.join(DOWNTIME_RULES)}, not {rule!r}")
    # a chip that keeps its state (an instrument) is brought forward by its journal instead
    downtime_s = max(0.0, time.time() - float(state["sweep/wall_s"]))
    t_stop = float(state["sweep/t_chip_s"])
    chip_state = {k[5:]: v for k, v in state.items() if k.startswith("chip/")}
    if isinstance(chip, Snapshots) and chip_state:
        chip.restore_state(chip_state)
        if rule == "wall":
            chip.wait(downtime_s)
    return t_stop, chip.now_s(), downtime_s


def attach_journal(chip, writer, state: dict[str, np.ndarray] | None = None, rule: str = "wall"):
    """Wrap a chip that keeps its own state in a :class:`JournalChip` tied to ``writer``'s commits;
    when resuming (``state`` from the last commit) its journal is replayed first and the downtime
    rule applied when the chip goes live again."""
    from devmodel.procedures.journal import JournalChip, read_journal

    if rule not in DOWNTIME_RULES:
        raise DevmodelError(f"--downtime must be one of {', '.join(DOWNTIME_RULES)}, not {rule!r}")
    path = writer.journal_path()
    records = read_journal(path) if state is not None or path.exists() else []
    wall0 = float(state["sweep/wall_s"]) if state is not None else time.time()
    t0 = float(state["sweep/t_chip_s"]) if state is not None else float("nan")

    def on_live(j) -> None:
        if rule != "wall" or not j.info.simulated:
            return  # a real clock went on by itself; "paused" leaves a virtual one where it is
        last_wall = j.last_wall if np.isfinite(j.last_wall) else wall0
        base = j.last_known_time if np.isfinite(j.last_known_time) else t0
        now = j.inner.now_s()
        if np.isfinite(base) and base + (time.time() - last_wall) > now:
            j.inner.wait(base + (time.time() - last_wall) - now)

    journal = JournalChip(chip, path, records, on_live if records or state is not None else None)
    writer.on_commit = lambda seq: journal.rotate(writer.journal_path(seq))
    return journal
