"""``devmodel replay``: re-run procedures offline against a recorded session (docs/replay.md).

Imports only click at module level, so ``devmodel --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
import tempfile
from pathlib import Path

import click

from devmodel.commands.common import Finite, floats, key_values, one_line
from devmodel.progress import PhaseBars

PROCEDURES = ("drift", "bursts", "program-verify")


@click.command("replay")
@click.argument("session", type=click.Path(dir_okay=False))
@click.option("--procedure", "procedure", default="drift,bursts", show_default=True,
              help="What to re-run: drift and/or bursts (comma-separated) against replay:SESSION, or "
                   "program-verify against emulate:SESSION.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Session file for the replayed drift/bursts (default: a temporary file, compared "
                   "with the record and removed).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--policy", type=click.Choice(["exact", "nearest", "loglinear"]), default="exact",
              show_default=True, help="Reads the record does not hold: error, nearest in ln(age), or "
                                      "interpolated in ln(age).")
@click.option("--window", type=Finite(0.0, 1.0, min_open=True), default=0.05, show_default=True,
              help="Match window of a recorded read, as a fraction of its age.")
@click.option("--schedule", default=None, help="Read ages in s instead of the recorded ones "
                                                "(comma-separated; ages not recorded need --policy).")
@click.option("--tolerance", type=Finite(0.0, 1e6, min_open=True), default=None,
              help="program-verify: verify tolerance in µS instead of the recorded one.")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE",
              help="program-verify: change a field of the recorded verify configuration "
                   "(e.g. --set max_iterations=30 --set gain_ua_per_us=3); repeatable.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="program-verify: emulator seed.")
@click.option("--compare-live", "live_url", default=None, metavar="CHIP_URL",
              help="program-verify: also run the algorithm on this chip (e.g. the simulated chip the "
                   "session was recorded on) and print both.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@one_line
def replay(session, procedure, out, overwrite, policy, window, schedule, tolerance, overrides, seed,
           live_url, quiet) -> None:
    """Re-run the drift schedule, read-noise bursts or program-and-verify of a recorded session.

    \b
    devmodel replay session.h5                                  drift + bursts, checked against the record
    devmodel replay session.h5 --procedure drift --out new.h5   a new session file from the record
    devmodel replay session.h5 --procedure drift --schedule 20,100,1000 --policy loglinear
    devmodel replay session.h5 --procedure program-verify --tolerance 0.4
    """
    from devmodel.errors import DevmodelError

    names = tuple(p.strip() for p in procedure.split(",") if p.strip())
    unknown = [p for p in names if p not in PROCEDURES]
    if unknown or not names:
        raise DevmodelError(f"--procedure: unknown {', '.join(unknown) or 'nothing'}; choose "
                            f"drift, bursts (or both) or program-verify")
    if "program-verify" in names:
        if len(names) > 1:
            raise DevmodelError("--procedure program-verify runs on its own (it emulates programming, "
                                "drift and bursts replay reads)")
        if out is not None:
            raise DevmodelError("--out applies to drift and bursts; program-verify prints its statistics")
        _program_verify(session, tolerance, overrides, seed, live_url)
        return
    if tolerance is not None or overrides or live_url:
        raise DevmodelError("--tolerance, --set and --compare-live apply to --procedure program-verify")
    replay_reads(session, names, out, overwrite, policy, window, schedule, quiet)


def replay_reads(session, names, out=None, overwrite=False, policy="exact", window=0.05,
                 schedule=None, quiet=True) -> None:
    """Re-run the drift schedule and/or bursts of ``session`` on ``replay:`` and print whether the
    replayed reads equal the record (also the demo's last step)."""
    import numpy as np

    from devmodel.errors import DevmodelError
    from devmodel.replay.backend import ReplayChip
    from devmodel.store import read_session
    from devmodel.store.output import atomic_output, check_output

    ages = floats("schedule", schedule)
    if ages is not None and (not ages or any(not (a > 0) for a in ages) or any(np.diff(ages) <= 0)):
        raise DevmodelError("--schedule: ages must be positive and strictly increasing")
    out_path = Path(out) if out else None
    if out_path is not None:
        check_output(out_path, overwrite, [session])
    record = read_session(session)
    chip = ReplayChip(session, policy, window)
    url = f"replay:{session}" + (f"?policy={policy}" if policy != "exact" else "")
    with contextlib.ExitStack() as stack:
        if out_path is None:
            target = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="devmodel-replay-"))) \
                / "replayed.h5"
        else:
            target = stack.enter_context(atomic_output(out_path, overwrite, [session]))
        _replay_into(target, record, chip, url, names, policy, window, ages, quiet)
    if out_path is not None:
        click.echo(f"written {out_path}")


def _replay_into(target: Path, record, chip, url: str, names, policy, window, ages, quiet) -> None:
    from devmodel.replay.procedures import replay_schedule
    from devmodel.store import SessionWriter, read_session

    bars = PhaseBars(not quiet)
    try:
        config = dict(record.config, replay={"source": str(record.path), "procedures": list(names),
                                             "policy": policy, "window": window,
                                             "schedule_s": list(ages) if ages else None})
        with SessionWriter(target, technology=record.technology, g_max_us=record.g_max_us,
                           t0_s=record.t0_s, chip=dict(record.chip, url=url), config=config,
                           seed=int(record.provenance.get("seed", -1)), command=shlex.join(sys.argv),
                           overwrite=True) as w:  # target: a fresh temporary file (or folder)
            summary = replay_schedule(chip, record, w, names, ages, bars)
            w.finish("complete")
        bars.close()
        new = read_session(target, with_trace=False)
        click.echo(f"replayed {' and '.join(names)} of {record.path} on {url}: {summary.n_reads:,} reads"
                   + (f", {summary.n_bursts:,} bursts" if summary.n_bursts else "")
                   + f", chip time {summary.chip_time_s / 3600:.2f} h")
        click.echo(_compare_reads(record, new, names, ages))
    finally:
        bars.close()
        chip.close()


def _compare_reads(record, new, names, ages) -> str:
    """Whether the replayed reads equal the recorded ones (those the procedures re-ran)."""
    import numpy as np

    r, n = record.reads, new.reads
    keep = np.zeros(r["burst"].size, bool)
    if "drift" in names:
        keep |= r["burst"] < 0
    if "bursts" in names:
        keep |= r["burst"] >= 0
    if ages is not None:
        return (f"reads at the requested ages: {n['g_us'].size:,} (the record holds "
                f"{int(np.count_nonzero(keep)):,} for its own schedule)")
    same = n["g_us"].size == int(keep.sum()) and all(
        np.array_equal(r[k][keep], n[k]) for k in ("device", "t_s", "age_s", "g_us", "burst"))
    return ("replayed reads identical to the record (device, time, age, value): yes" if same else
            "replayed reads identical to the record: NO (the record's request order could not be "
            "reproduced; values still come from the record)")


def _program_verify(session, tolerance, overrides, seed, live_url) -> None:
    from devmodel.chips import open_chip
    from devmodel.replay.emulator import EmulatedChip
    from devmodel.replay.procedures import (
        ConvergenceStats,
        emulate_program_verify,
        recorded_stats,
        verify_config_of,
    )
    from devmodel.store import read_session

    sets = key_values("--set", overrides)
    if tolerance is not None:
        sets["tolerance_us"] = str(tolerance)
    record = read_session(session, with_trace=False)  # the emulator reads the trace itself
    d = record.devices
    cfg = verify_config_of(record, sets)
    chip = EmulatedChip(session, seed)
    res = emulate_program_verify(chip, d["address"], d["target_us"], cfg)
    rows = [("recorded session", recorded_stats(record))]
    if sets:
        rows[0] = (f"recorded session ({_recorded_setting(record, sets)})", rows[0][1])
    rows.append((f"emulate:{Path(session).name}", ConvergenceStats.of(res.target_us, res.converged,
                                                                      res.iterations, res.pulses)))
    if live_url:
        live_chip = open_chip(live_url)
        try:
            live = emulate_program_verify(live_chip, d["address"], d["target_us"], cfg)
        finally:
            live_chip.close()
        rows.append((live_url, ConvergenceStats.of(live.target_us, live.converged, live.iterations,
                                                   live.pulses)))
    changed = ", ".join(f"{k}={v}" for k, v in sets.items()) or "as recorded"
    click.echo(f"program-and-verify of {rows[1][1].n_devices:,} devices ({record.technology}, "
               f"{len(record.levels_us)} levels), configuration {changed}")
    click.echo(f"  {'chip':44s} {'converged':>10s} {'median it':>10s} {'mean it':>8s} {'p90 it':>7s} "
               f"{'pulses':>7s}")
    for name, st in rows:
        click.echo(f"  {name:44s} {100 * st.converged_fraction:9.2f}% {st.median_iterations:10.1f} "
                   f"{st.mean_iterations:8.2f} {st.p90_iterations:7.1f} {st.mean_pulses:7.2f}")
    model = chip.model
    n_stuck = int(model.unresponsive.sum()) if model.unresponsive is not None else 0
    n_pulses = sum(g.n_pulses for g in model.groups)
    click.echo(f"  emulator: {len(model.groups)} pulse kind(s) from {n_pulses:,} recorded pulses, "
               f"{n_stuck} unresponsive device(s); see docs/replay.md for its limits")


def _recorded_setting(record, sets) -> str:
    rec = record.verify_config or {}
    return ", ".join(f"{k}={rec.get(k)}" for k in sets)

