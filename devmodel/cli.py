"""The ``devmodel`` command line: characterise chips, inspect sessions, run the demo.

Every error a user can cause ends in one sentence on stderr and exit status 2, never a traceback,
and nothing half-written.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from devmodel import __version__
from devmodel.errors import DevmodelError, friendly
from devmodel.progress import PhaseBars

_friendly = friendly()  # one sentence and exit status 2 for a user error (devmodel.errors)


def _floats(name: str, text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise DevmodelError(f"--{name}: expected comma-separated numbers, got {text!r}") from None


class OneLineErrors(click.Group):
    """click's usage errors (a wrong type, a missing argument, an unknown command) as one line on
    stderr and exit status 2, like every other devmodel error, instead of usage + blank + error."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as e:
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `devmodel`: the help is the answer
                e.show()
                sys.exit(e.exit_code)
            path = e.ctx.command_path if e.ctx is not None else "devmodel"
            msg = e.format_message().rstrip(".")
            click.echo(f"devmodel: error: {msg[:1].lower() + msg[1:]} (see '{path} --help').",
                       err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("devmodel: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="devmodel")
def main() -> None:
    """devmodel: characterise PCM/ReRAM chips, fit device models, export them to simulators.

    \b
    Start with `devmodel demo` (a complete session on the built-in simulated chip), then
    `devmodel characterize --chip sim:pcm --out session.h5` and `devmodel info session.h5`.
    Chips are named by URL: sim:pcm, sim:reram (options: sim:pcm?devices=1000000&seed=3).
    """


@main.command()
@click.option("--chip", "chip_url", default="sim:pcm", show_default=True,
              help="Chip URL: sim:pcm, sim:reram[?devices=N&seed=S&<physics parameter>=value].")
@click.option("--devices", type=int, default=2000, show_default=True,
              help="Devices programmed per target level.")
@click.option("--levels", help="Target conductances in µS, comma-separated "
              "[default: 13 levels incl. log-spaced low ones].")
@click.option("--schedule", help="Read ages in s after each device's last pulse, increasing "
              "[default PCM: 20,60,200,600,3600,10800,86400].")
@click.option("--burst-devices", type=int, default=None,
              help="Devices per level read in a read-noise burst (0: none) [default 100, at most "
              "--devices].")
@click.option("--burst-reads", type=int, default=None, help="Reads per burst [PCM 256].")
@click.option("--burst-interval", type=float, default=None, help="Seconds between burst reads "
              "(0: back to back) [1].")
@click.option("--burst-age", type=float, default=None,
              help="Age of the burst in s, between two schedule ages [PCM 1000, ReRAM 300].")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Seed of the simulated chip (ignored if the URL sets one).")
@click.option("--station", type=click.Path(dir_okay=False), default=None,
              help="Station file (YAML) for visa:// chips: instruments, timeouts, safety limits.")
@click.option("--out", "out", type=click.Path(dir_okay=False),
              help="Session file to write (HDF5); required unless --resume.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--no-trace", is_flag=True, help="Do not record the pulse-level verify trace.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--resume", "resume", type=click.Path(dir_okay=False), default=None,
              help="Continue the session in this file where its last commit left it (after a crash, "
              "a kill or a stop on an instrument fault); its configuration is taken from the file.")
@click.option("--downtime", type=click.Choice(["wall", "paused"]), default="wall", show_default=True,
              help="On --resume of a simulated chip: advance its clock by the wall time it was down "
              "(wall), or not at all (paused: the resumed session equals an uninterrupted one).")
@click.option("--durability", type=click.Choice(["full", "process", "off"]), default="full",
              show_default=True, help="full: commits survive power loss (fsync); process: they survive "
              "the death of the process; off: a plain file that cannot be resumed.")
@click.option("--checkpoint-interval", type=click.FloatRange(0.0, 3600.0), default=2.0,
              show_default=True, help="Least wall time between commits of the session file (s; also "
              "long enough that commits take ≤ 5 % of the time; 0: every safe point).")
@click.option("--faults", default=None,
              help="Rehearse instrument faults on a visa:// chip, e.g. "
              "timeout=0.01,drop=0.005,garble=0.002,short=0.002,slow=0.01,seed=1 (fractions of commands).")
@click.option("--retries", type=click.IntRange(0, 100), default=None,
              help="Attempts after a failed instrument command (visa:// chips) [station file, or 0].")
@_friendly
def characterize(chip_url, devices, levels, schedule, burst_devices, burst_reads, burst_interval,
                 burst_age, seed, station, out, overwrite, no_trace, quiet, resume, downtime, durability,
                 checkpoint_interval, faults, retries) -> None:
    """Program devices to target levels and record drift and read noise into a session file.

    \b
    The file is committed atomically at safe points, at least --checkpoint-interval seconds apart
    (longer for large sessions, so commits stay under 5 % of the time); after a crash, a kill or a
    stop on an instrument fault, `devmodel characterize --resume session.h5` continues it with no
    record lost or repeated (docs/reliability.md).
    """
    from devmodel.chips import open_chip
    from devmodel.procedures.characterize import BurstConfig, SweepConfig
    from devmodel.report.summary import format_summary, summarize
    from devmodel.store.session import read_session

    if resume is not None:
        out_path, summary = _resume(resume, out, chip_url, station, downtime, durability,
                                    checkpoint_interval, quiet, overwrite, faults, retries)
    else:
        chip_url = _with_visa_options(chip_url, faults, retries)
        if out is None:
            raise DevmodelError("--out is required (the session file to write), or --resume FILE")
        levels_t, schedule_t = _floats("levels", levels), _floats("schedule", schedule)
        out_path = Path(out)
        if out_path.exists() and not overwrite:
            raise DevmodelError(f"{out_path} already exists; choose another --out or pass --overwrite"
                                + (" (or continue it with --resume)" if _has_sidecar(out_path) else ""))
        chip = open_chip(chip_url, seed, station)
        cfg = SweepConfig.default(chip.info.technology, devices, record_trace=not no_trace)
        b = cfg.bursts
        cfg = type(cfg)(
            levels_us=levels_t or cfg.levels_us,
            devices_per_level=devices,
            schedule_s=schedule_t or cfg.schedule_s,
            bursts=BurstConfig(
                devices_per_level=(min(b.devices_per_level, devices) if burst_devices is None
                                   else burst_devices),
                n_reads=b.n_reads if burst_reads is None else burst_reads,
                interval_s=b.interval_s if burst_interval is None else burst_interval,
                age_s=b.age_s if burst_age is None else burst_age,
            ),
            record_trace=not no_trace,
        )
        try:
            cfg.validate(chip.info.g_max_us, chip.info.n_devices)
            summary = run_session(chip, chip_url, cfg, out_path, seed, overwrite, quiet, durability,
                                  checkpoint_interval)
        finally:
            chip.close()
    click.echo(format_summary(summarize(read_session(out_path, with_trace=False))))
    click.echo(f"chip time {summary.chip_time_s / 3600:.2f} h; written {out_path}")


def _has_sidecar(path: Path) -> bool:
    from devmodel.store.durable import sidecar

    return sidecar(path).is_dir()


def _with_visa_options(url: str, faults: str | None, retries: int | None) -> str:
    """``--faults``/``--retries`` travel in a visa:// URL's options (so a resume repeats them)."""
    if faults is None and retries is None:
        return url
    if not url.lower().startswith("visa:"):
        raise DevmodelError("--faults and --retries apply to visa:// chips (start `devmodel serve-chip` "
                            "to rehearse faults with a simulated chip)")
    from urllib.parse import urlencode

    opts = {k: v for k, v in (("faults", faults), ("retries", retries)) if v is not None}
    return url + ("&" if "?" in url else "?") + urlencode(opts)


def _explicit(name: str) -> bool:
    src = click.get_current_context().get_parameter_source(name)
    return src is not None and src.name not in ("DEFAULT", "DEFAULT_MAP")


def _resume(path, out, chip_url, station, downtime, durability, checkpoint_interval, quiet, overwrite,
            faults, retries):
    """Continue a session from its last commit (``characterize --resume``)."""
    from devmodel.chips import open_chip
    from devmodel.procedures.resume import configs_from_file, restore_chip
    from devmodel.store.durable import DurableSessionWriter, inspect_resumable

    path = Path(path)
    if out is not None and Path(out).resolve() != path.resolve():
        raise DevmodelError(f"--out {out} differs from --resume {path}; a resumed session stays in its file")
    if overwrite:
        raise DevmodelError("--overwrite and --resume contradict each other")
    if durability == "off":
        raise DevmodelError("--durability off cannot resume a session (it writes no resume data)")
    for name in ("devices", "levels", "schedule", "burst_devices", "burst_reads", "burst_interval",
                 "burst_age", "seed", "no_trace"):
        if _explicit(name):
            raise DevmodelError(f"--{name.replace('_', '-')} cannot be given with --resume: the session "
                                f"continues with the configuration recorded in {path}")
    info = inspect_resumable(path)
    cfg, verify = configs_from_file(info)
    url = chip_url if _explicit("chip_url") else info["chip"].get("url", "")
    if not url:
        raise DevmodelError(f"{path} records no chip URL; name the chip with --chip")
    url = _with_visa_options(url, faults, retries)
    chip = open_chip(url, info["seed"] if info["seed"] >= 0 else None, station)
    try:
        recorded = info["chip"]
        for key in ("technology", "n_devices"):
            if key in recorded and recorded[key] != getattr(chip.info, key):
                raise DevmodelError(f"--resume {path}: the chip has {key} {getattr(chip.info, key)!r} but "
                                    f"the session was recorded on one with {recorded[key]!r}")
        writer, state = DurableSessionWriter.reopen(path, commit_interval_s=checkpoint_interval,
                                                    fsync=durability == "full")
        with writer:
            if state is not None:
                t_stop, t_resume, down_s = restore_chip(chip, state, downtime)
            else:  # stopped before its first commit: start again from the header
                t_stop, t_resume, down_s = float("nan"), chip.now_s(), float("nan")
            reason = info["status_reason"] if info["status"] == "failed" and info["status_reason"] else (
                "the session process stopped without closing the file (killed, crashed or lost power)")
            writer.record_gap(reason, t_stop, t_resume, down_s, info["commit_utc"])
            writer.set_attr("status", "running")
            writer.set_attr("status_reason", "")
            writer.commit_now()
            summary = _sweep_into(chip, writer, cfg, verify, quiet, state, downtime)
    finally:
        chip.close()
    return path, summary


def _instrument_record(writer, chip) -> None:
    """Faults met and recovered on an instrument: into the session's attributes and one stderr line."""
    retries = getattr(chip, "n_retries", None)
    if retries is None:
        return
    injected = dict(getattr(chip.transport, "injected", {}) or {})
    stats = {"instrument_retries": int(retries), "instrument_reconnects": int(chip.n_reconnects),
             "instrument_recovered": int(chip.n_recovered)}
    for key, value in stats.items():
        writer.set_attr(key, value)
    if injected:
        writer.set_attr("faults_injected", json.dumps(injected, sort_keys=True))
    if retries or injected:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(injected.items())) or "none injected"
        click.echo(f"instrument: {retries} operations retried after faults ({kinds}); "
                   f"{chip.n_reconnects} reconnects; {chip.n_recovered} commands found by the chip "
                   f"clock to have run although their answer was lost", err=True)


def run_session(chip, chip_url, cfg, out_path: Path, seed, overwrite: bool, quiet: bool,
                durability: str = "full", checkpoint_interval_s: float = 2.0):
    """Create the session file and run the sweep into it (shared by characterize and demo).

    ``durability`` "full" or "process" writes a crash-safe, resumable file (commits every
    ``checkpoint_interval_s``, fsynced for "full"); "off" the plain incremental file.
    """
    from devmodel.procedures.characterize import config_dict
    from devmodel.procedures.program_verify import PcmVerifyConfig, ReramVerifyConfig
    from devmodel.store.durable import DurableSessionWriter
    from devmodel.store.session import SessionWriter

    verify = PcmVerifyConfig() if chip.info.technology == "pcm" else ReramVerifyConfig()
    t0_s = 20.0 if chip.info.technology == "pcm" else 1.0
    chip_meta = dict(chip.info.to_dict(), url=chip_url)
    kw = dict(technology=chip.info.technology, g_max_us=chip.info.g_max_us, t0_s=t0_s, chip=chip_meta,
              config=config_dict(cfg, verify), seed=getattr(chip, "seed", seed),
              command=shlex.join(sys.argv), overwrite=overwrite)
    if durability == "off":
        writer = SessionWriter(out_path, **kw)
    else:
        writer = DurableSessionWriter(out_path, commit_interval_s=checkpoint_interval_s,
                                      fsync=durability == "full", **kw)
    with writer as w:
        return _sweep_into(chip, w, cfg, verify, quiet, journal=durability != "off")


def _sweep_into(chip, writer, cfg, verify, quiet: bool, state=None, downtime: str = "wall",
                journal: bool = True):
    """Run the sweep (new or resumed from ``state``) into ``writer`` with progress bars, through
    an instrument's journal when the file is resumable, and mark the session complete."""
    from devmodel.procedures.characterize import run_sweep

    run_chip = _journaled(chip, writer, state, downtime) if journal else chip
    bars = PhaseBars(not quiet, unit="reads", units={"program-verify": "devices"})
    try:
        summary = run_sweep(run_chip, cfg, writer, verify, bars, state)
    finally:
        bars.close()
        if run_chip is not chip:
            run_chip.close_journal()
    _instrument_record(writer, chip)
    writer.finish("complete")
    return summary


def _journaled(chip, writer, state, downtime: str):
    """A chip that keeps its own state (an instrument) runs through a journal of its answers, so a
    resume repeats exactly what the lost window did; a simulated chip is snapshotted instead."""
    if callable(getattr(chip, "save_state", None)):
        return chip
    from devmodel.procedures.resume import attach_journal

    return attach_journal(chip, writer, state, downtime)


@main.command()
@click.argument("session", type=click.Path(dir_okay=False))
@_friendly
def info(session) -> None:
    """Summarise a session file: convergence, per-level spread at t0, schedule."""
    from devmodel.report.summary import format_summary, summarize
    from devmodel.store.session import read_session

    click.echo(format_summary(summarize(read_session(session, with_trace=False))))


@main.command()
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the demo's files [default: a new temporary folder].")
@click.option("--devices", type=click.IntRange(20, 5000), default=300, show_default=True,
              help="Devices per level in the demo session.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_friendly
def demo(out_dir, devices, quiet) -> None:
    """The whole loop on the built-in simulated PCM chip: session, fitted card vs ground truth,
    aihwkit export, a network's accuracy over a day, and an offline replay of a shipped recording."""
    from devmodel.chips import open_chip
    from devmodel.procedures.characterize import BurstConfig, SweepConfig
    from devmodel.report.summary import format_summary, summarize
    from devmodel.store.session import read_session

    folder = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="devmodel-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    session_path = folder / "demo_pcm.h5"
    url = "sim:pcm?devices=65536&seed=7"
    click.echo(f"devmodel {__version__} demo: characterising {url} "
               f"(13 levels × {devices} devices, drift to 1 day, read-noise bursts)")
    start = time.perf_counter()
    chip = open_chip(url)
    cfg = SweepConfig.default("pcm", devices, bursts=BurstConfig(devices_per_level=min(50, devices)))
    run_session(chip, url, cfg, session_path, 7, overwrite=True, quiet=quiet)
    session = read_session(session_path, with_trace=False)
    click.echo(format_summary(summarize(session)))
    from devmodel.fit.session import fit_session

    card = fit_session(session)
    card_path = folder / "demo_pcm_model.json"
    _write_atomically(card_path, card.to_json(), overwrite=True)
    click.echo("\n" + format_card(card))
    click.echo("\n" + _versus_ground_truth(session, card))
    click.echo("\n" + _demo_export_and_network(card, folder))
    _demo_replay()
    click.echo(f"demo finished in {time.perf_counter() - start:.1f} s; files in {folder}")


def _demo_export_and_network(card, folder: Path) -> str:
    """The end of the loop: the card as an aihwkit module, and what it means for a network (the
    digits MLP programmed onto this chip, standard crossbar, drift compensation, 5 trials)."""
    from devmodel.export.aihwkit import module_source
    from devmodel.sim import CrossbarConfig, accuracy, convert, evaluate_over_time
    from devmodel.sim.data import digits
    from devmodel.sim.networks import build, train_fp

    module = folder / "demo_pcm_aihwkit.py"
    _write_atomically(module, module_source(card), overwrite=True)
    data = digits(seed=0)
    net = train_fp(build("digits-mlp", 0), data, epochs=40, seed=0)
    times_s = [1.0, 3600.0, 86400.0]
    acc = evaluate_over_time(convert(net, card, CrossbarConfig.standard()), data.x_test, data.y_test,
                             times_s, 5, seed=0, calibration=data.x_train).mean(0)
    return (f"aihwkit noise models for this chip: {module}\n"
            f"digits MLP on this chip (standard crossbar, drift compensation, 5 programming trials): "
            f"{100 * accuracy(net, data.x_test, data.y_test):.2f} % in floating point; "
            + ", ".join(f"{100 * a:.2f} % at {t:g} s" for a, t in zip(acc, times_s, strict=True))
            + "\nnext: devmodel evaluate / train-hwa --card " + str(folder / "demo_pcm_model.json"))


def _demo_replay() -> None:
    """Offline: re-run the drift schedule and bursts of the shipped recording on ``replay:``."""
    from devmodel.replay.cli import replay_reads

    sample = Path(__file__).resolve().parents[1] / "calibration_data" / "pcm_sample.h5"
    if not sample.exists():  # a wheel install does not carry the repository's calibration_data/
        click.echo("\n(offline replay skipped: calibration_data/ is not next to this installation)")
        return
    click.echo(f"\noffline, from the recording shipped in {sample.parent.name}/ "
               "(devmodel replay; no chip needed):")
    replay_reads(str(sample), ("drift", "bursts"))


def _write_atomically(path: Path, text: str, overwrite: bool) -> None:
    """Write ``text`` to ``path`` via a temporary file, so no half-written file is ever left."""
    if path.exists() and not overwrite:
        raise DevmodelError(f"{path} already exists; choose another --out or pass --overwrite")
    if not path.parent.exists():
        raise DevmodelError(f"the folder of {path} does not exist")
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def format_card(card) -> str:
    """Fitted parameters with standard errors, as a scientist reads them."""
    from devmodel.fit.session import card_scalars

    boot = card.fit_quality.get("bootstrap", {}).get("intervals_95", {})
    lines = [f"device model ({card.technology}, g_max {card.g_max_us:g} µS, t0 {card.t0_s:g} s) "
             f"from {card.provenance.get('n_devices_used', '?')} devices"]
    err = {}
    if card.programming:
        for i, e in enumerate(card.programming.poly_coeffs_stderr_us):
            err[f"programming.c{i}"] = e
        err["programming.verify_age_s"] = card.programming.verify_age_stderr_s
    if card.drift:
        for name in ("nu_mean", "nu_std"):
            f = getattr(card.drift, name)
            for k in ("a", "b", "lo", "hi"):
                err[f"drift.{name}.{k}"] = f.stderr.get(k)
    if card.read_noise:
        for k, v in card.read_noise.stderr.items():
            err[f"read_noise.{k}"] = v
    for s in card.snapshots:
        for i, e in enumerate(s.poly_coeffs_stderr_us):
            err[f"snapshot.{s.t_s:g}.c{i}"] = e
        err[f"snapshot.{s.t_s:g}.mean_shift_us"] = s.mean_shift_stderr_us
    err["read_noise_us"] = card.read_noise_stderr_us
    for k, v in card_scalars(card).items():
        e = err.get(k)
        b = boot.get(k)
        lines.append(f"  {k:28s} {v:12.6g}" + (f" ± {e:.3g}" if e else "")
                     + (f"   95 % bootstrap [{b[0]:.4g}, {b[1]:.4g}]" if b else ""))
    if card.drift:
        fixed = card.drift.nu_mean.fixed + [f"σ_ν.{k}" for k in card.drift.nu_std.fixed]
        if fixed:
            lines.append(f"  held at the published value (not identifiable here): {fixed}")
    excl = card.fit_quality.get("excluded_devices")
    if excl:
        lines.append(f"  excluded devices: {excl}")
    return "\n".join(lines)


@main.command()
@click.argument("session", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False),
              help="Model card (JSON) [default: the session's name with .json, in the current directory].")
@click.option("--prog-degree", type=int, default=2, show_default=True,
              help="Degree of the PCM σ_prog polynomial.")
@click.option("--reram-degree", type=int, default=4, show_default=True,
              help="Degree of the ReRAM σ(x) polynomials.")
@click.option("--holdout-fraction", type=float, default=0.0, show_default=True,
              help="Fraction of devices left out of the fit, for `devmodel validate`.")
@click.option("--holdout-seed", type=int, default=0, show_default=True)
@click.option("--bootstrap", type=int, default=0, show_default=True,
              help="Device-resampled refits for 95 % percentile intervals (0: none).")
@click.option("--overwrite", is_flag=True, help="Replace an existing card.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_friendly
def fit(session, out, prog_degree, reram_degree, holdout_fraction, holdout_seed, bootstrap,
        overwrite, quiet) -> None:
    """Fit a device model (model card JSON) to a session file."""
    from devmodel.fit.pcm import PcmFitOptions
    from devmodel.fit.reram import ReramFitOptions
    from devmodel.fit.session import fit_session

    out_path = Path(out) if out else Path(Path(session).with_suffix(".json").name)
    if out_path.exists() and not overwrite:
        raise DevmodelError(f"{out_path} already exists; choose another --out or pass --overwrite")
    if not 0 <= holdout_fraction < 1:
        raise DevmodelError("--holdout-fraction must be in [0, 1)")
    if prog_degree < 0 or reram_degree < 0 or bootstrap < 0:
        raise DevmodelError("--prog-degree, --reram-degree and --bootstrap must be ≥ 0")
    bar = tqdm(total=bootstrap, desc="bootstrap", disable=quiet or not bootstrap or None,
               file=sys.stderr, leave=False)
    card = fit_session(session, PcmFitOptions(prog_degree=prog_degree),
                       ReramFitOptions(degree=reram_degree), holdout_fraction, holdout_seed,
                       bootstrap, progress=lambda i, n: bar.update(1))
    bar.close()
    _write_atomically(out_path, card.to_json(), overwrite)
    click.echo(format_card(card))
    click.echo(f"written {out_path}")


@main.command()
@click.argument("card", type=click.Path(dir_okay=False))
@click.argument("session", type=click.Path(dir_okay=False))
@click.option("--holdout-fraction", type=float, default=0.3, show_default=True,
              help="Held-out fraction when the card was fitted on all devices of this session.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Seed of the split.")
@click.option("--max-ks", type=float, default=0.05, show_default=True,
              help="Fail when a gated Kolmogorov–Smirnov statistic reaches this.")
@click.option("--gate-ages", default=None,
              help="Ages (s, comma-separated) whose KS decides pass/fail [default: all].")
@click.option("--alpha", type=float, default=0.05, show_default=True,
              help="A failing KS must also be significant at this family-wise level (Bonferroni "
              "over the gated comparisons), so sampling noise of small sessions does not fail; "
              "1: the KS threshold alone decides.")
@_friendly
def validate(card, session, holdout_fraction, seed, max_ks, gate_ages, alpha) -> None:
    """Compare a card's predictions with held-out data; exit 1 if a threshold fails."""
    from devmodel.fit.validate import format_report
    from devmodel.fit.validate import validate as run_validation
    from devmodel.model.card import DeviceModel

    if not 0 < holdout_fraction < 1:
        raise DevmodelError("--holdout-fraction must be in (0, 1)")
    if not 0 < alpha <= 1:
        raise DevmodelError("--alpha must be in (0, 1]")
    report = run_validation(DeviceModel.load(card), session, holdout_fraction, seed, max_ks,
                            list(_floats("gate-ages", gate_ages)) if gate_ages else None,
                            alpha=alpha)
    click.echo(format_report(report))
    if not report.passed:
        sys.exit(1)


@main.command()
@click.argument("card", type=click.Path(dir_okay=False))
@click.argument("session", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for the PNG figures and index.html.")
@click.option("--no-validation", is_flag=True, help="Skip the validation table.")
@_friendly
def report(card, session, out, no_validation) -> None:
    """Figures (PNG) and one HTML page for a card and its session."""
    from devmodel.fit.validate import validate as run_validation
    from devmodel.model.card import DeviceModel
    from devmodel.report.figures import write_report
    from devmodel.store.session import read_session

    model = DeviceModel.load(card)
    record = read_session(session, with_trace=False)  # loaded once for the table and the figures
    val = None if no_validation else run_validation(model, record)
    page = write_report(model, record, out, val)
    click.echo(f"written {page}")


@main.command("import-table")
@click.argument("table", type=click.Path(dir_okay=False))
@click.option("--technology", type=click.Choice(["pcm", "reram"]), required=True)
@click.option("--g-max-us", type=float, required=True, help="Conductance range of the targets.")
@click.option("--t0-s", type=float, default=None, help="Reference age [PCM 20 s, ReRAM 1 s].")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Session file.")
@click.option("--overwrite", is_flag=True)
@_friendly
def import_table_cmd(table, technology, g_max_us, t0_s, out, overwrite) -> None:
    """Import a long-format CSV (device, target_us, time_s, g_us[, burst, converged])."""
    from devmodel.report.summary import format_summary, summarize
    from devmodel.store.session import read_session
    from devmodel.store.table_import import import_table

    path = import_table(table, out, technology, g_max_us, t0_s, overwrite)
    click.echo(format_summary(summarize(read_session(path, with_trace=False))))
    click.echo(f"written {path}")


@main.command()
@click.argument("card", type=click.Path(dir_okay=False))
@click.option("--to", "target", type=click.Choice(["aihwkit", "json", "summary"]), required=True,
              help="aihwkit: a Python module building aihwkit noise models; json: the normalised "
              "card; summary: the scalars simpler simulators take.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file [default: standard output].")
@click.option("--g-max-us", type=float, default=None,
              help="Conductance range of the target simulator (must match the card's).")
@click.option("--overwrite", is_flag=True)
@_friendly
def export(card, target, out, g_max_us, overwrite) -> None:
    """Export a model card to aihwkit, normalised JSON, or a scalar summary."""
    import json

    from devmodel.export.aihwkit import check_exportable, module_source
    from devmodel.export.summary import summary
    from devmodel.model.card import DeviceModel

    model = DeviceModel.load(card)
    check_exportable(model, g_max_us)
    if target == "aihwkit":
        text = module_source(model)
    elif target == "json":
        text = model.to_json() + "\n"
    else:
        text = json.dumps(summary(model), indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        _write_atomically(Path(out), text, overwrite)
        click.echo(f"written {out}")


def _times(text: str) -> list[float]:
    """--times: positive inference times in seconds, comma-separated."""
    times_s = list(_floats("times", text) or ())
    if not times_s or any(not t > 0 for t in times_s):
        raise DevmodelError("--times: inference times must be positive seconds")
    return times_s


def _sem(acc: np.ndarray) -> np.ndarray:
    """Standard error of the mean over programming trials (axis 0); 0 for a single trial."""
    n = acc.shape[0]
    return acc.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros(acc.shape[1:])


def _check_times(model, times_s: list[float], extrapolate: bool) -> list[bool]:
    """Which inference times lie outside the card's fitted ages, found before any training starts.
    Refused without ``extrapolate``; otherwise one note on stderr (the rows are marked '*') and the
    native model's per-call warnings are silenced by the caller (``_quiet_extrapolation``)."""
    from devmodel.export.native import NativeNoiseModel
    from devmodel.sim.analog import inference_age_s

    native = NativeNoiseModel(model)
    outside = [native.outside_fitted_ages(inference_age_s(model, t)) for t in times_s]
    if any(outside):
        lo, hi = native.fitted_time_range()
        shown = ", ".join(f"{t:g}" for t, o in zip(times_s, outside, strict=True) if o)
        age = f" (age t0 + t, t0 = {model.t0_s:g} s)" if model.technology == "pcm" else ""
        where = f"t = {shown} s{age} lies outside the ages this card was fitted on ({lo:g}–{hi:g} s)"
        if not extrapolate:
            raise DevmodelError(f"{where}; drop --no-extrapolate to extrapolate")
        how = ("drift and 1/f noise follow their fitted laws" if model.technology == "pcm"
               else "the nearest fitted snapshot is used")
        click.echo(f"devmodel: note: {where}; {how} there (rows marked *)", err=True)
    return outside


@contextlib.contextmanager
def _quiet_extrapolation():
    """The note of ``_check_times`` replaces the native model's per-call warnings."""
    import warnings

    from devmodel.export.native import ExtrapolationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExtrapolationWarning)
        yield


def _load_network(name: str, epochs: int, seed: int, quiet: bool):
    """A digits network trained in floating point here, or a saved torch module (path.pt)."""
    import torch

    from devmodel.sim.data import digits
    from devmodel.sim.networks import NETWORKS, build, train_fp

    data = digits(seed=seed, image=True)
    if name in NETWORKS:
        net = train_fp(build(name, seed), data, epochs=epochs, seed=seed, progress=not quiet)
        return net, data
    path = Path(name)
    if not path.exists():
        raise DevmodelError(f"--network: {name!r} is neither {', '.join(NETWORKS)} nor a file")
    try:
        net = torch.load(path, weights_only=False)  # a whole module saved with torch.save
    except Exception as e:  # noqa: BLE001 - any unpickling failure is the user's file
        raise DevmodelError(f"--network: {path} is not a saved torch module ({e})") from None
    if not isinstance(net, torch.nn.Module):
        raise DevmodelError(f"--network: {path} holds a {type(net).__name__}, not a torch module")
    return net.eval(), data


@main.command()
@click.option("--card", required=True, type=click.Path(dir_okay=False), help="Model card (JSON).")
@click.option("--network", default="digits-cnn", show_default=True,
              help="digits-mlp, digits-cnn (trained here on scikit-learn's digits), or path.pt "
              "(a torch module saved with torch.save, evaluated on digits).")
@click.option("--times", default="1,3600,86400,31536000", show_default=True,
              help="Inference times (s, after t0 for PCM), comma-separated.")
@click.option("--trials", type=click.IntRange(1, 100_000), default=25, show_default=True,
              help="Programming trials (each programs every device anew).")
@click.option("--crossbar", type=click.Choice(["standard", "ideal-periphery", "ideal"]),
              default="standard", show_default=True,
              help="standard: the seed's crossbar model; ideal-periphery: device noise only; "
              "ideal: no non-ideality.")
@click.option("--scales", type=click.Choice(["column", "tile", "learned"]), default="column",
              show_default=True, help="Digital output scales: abs-max per column or per tile, or the "
              "ones a hardware-aware training learned (a --network saved by train-hwa --method device-000).")
@click.option("--no-drift-compensation", is_flag=True, help="Turn global drift compensation off.")
@click.option("--bit-serial", is_flag=True,
              help="Read each input bit separately with its own read noise (seed 004_…; needs the "
              "DAC of --crossbar standard); prints the reads per matrix-vector product.")
@click.option("--extrapolate/--no-extrapolate", default=True, show_default=True,
              help="Times outside the ages the card was fitted on: use the fitted laws there (a note "
              "on stderr, rows marked *) or refuse.")
@click.option("--epochs", type=click.IntRange(1, 100_000), default=30, show_default=True,
              help="Floating-point training epochs for the digits networks.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Save accuracy vs time as a PNG.")
@click.option("--quiet", is_flag=True)
@_friendly
def evaluate(card, network, times, trials, crossbar, scales, no_drift_compensation, bit_serial,
             extrapolate, epochs, seed, plot, quiet) -> None:
    """Accuracy of a network programmed onto the characterised chip, over time (mean ± SEM)."""
    from devmodel.export.native import ExtrapolationError
    from devmodel.model.card import DeviceModel
    from devmodel.sim import CrossbarConfig, accuracy, convert, evaluate_over_time

    model = DeviceModel.load(card)
    times_s = _times(times)
    cfg = {"standard": CrossbarConfig.standard(), "ideal-periphery": CrossbarConfig(),
           "ideal": CrossbarConfig.ideal()}[crossbar]
    cfg = cfg.with_(scales=scales, drift_compensation=cfg.drift_compensation
                    and not no_drift_compensation)
    if bit_serial:
        if not cfg.dac_bits:
            raise DevmodelError(f"--bit-serial needs an input DAC; --crossbar {crossbar} has none "
                                "(use --crossbar standard)")
        cfg = cfg.with_(bit_serial=True)
    outside = _check_times(model, times_s, extrapolate)
    net, data = _load_network(network, epochs, seed, quiet)
    fp = accuracy(net, data.x_test, data.y_test)
    anet = convert(net, model, cfg, extrapolate)
    bar = tqdm(total=trials, desc="trials", disable=quiet or None, file=sys.stderr, leave=False)
    try:
        with _quiet_extrapolation():
            acc = evaluate_over_time(anet, data.x_test, data.y_test, times_s, trials, seed,
                                     calibration=data.x_train, progress=lambda i, n: bar.update(1))
    except ExtrapolationError as e:
        raise DevmodelError(f"{e} (drop --no-extrapolate)") from None
    finally:
        bar.close()
    mean, sem = acc.mean(0), _sem(acc)
    click.echo(f"network {network} on {card} ({model.technology}), crossbar {crossbar}, "
               f"{scales} scales, drift compensation {'on' if cfg.drift_compensation else 'off'}, "
               f"{trials} trials; floating point {100 * fp:.2f} %")
    if bit_serial:
        click.echo(f"bit-serial inputs: {anet.layers[0].reads_per_mvm} reads per matrix-vector product, "
                   f"{anet.reads_per_inference():,} device reads per inference")
    click.echo("        time s   accuracy %    ± SEM")
    for t, m, e, o in zip(times_s, mean, sem, outside, strict=True):
        click.echo(f"  {t:12g}   {100 * m:10.2f}   {100 * e:6.2f}" + ("  *" if o else ""))
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.errorbar(times_s, 100 * mean, 100 * sem, marker="o", capsize=3)
        ax.axhline(100 * fp, ls="--", color="gray", label="floating point")
        ax.set_xscale("log")
        ax.set_xlabel("time after programming (s)")
        ax.set_ylabel("accuracy (%)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(plot, dpi=120)
        click.echo(f"written {plot}")


@main.command("train-hwa")
@click.option("--card", required=True, type=click.Path(dir_okay=False), help="Model card (JSON).")
@click.option("--network", default="digits-cnn-small", show_default=True,
              help="digits-mlp, digits-cnn, digits-mlp-small, digits-cnn-small, or path.pt.")
@click.option("--method", required=True,
              type=click.Choice(["noise-001", "device-000", "hasgd-002", "tile-003", "fluct-004"]),
              help="Training method, named after the seed it comes from (docs/hwa-training.md).")
@click.option("--epochs", type=click.IntRange(1, 100_000), default=60, show_default=True,
              help="Hardware-aware epochs (per pipeline level for tile-003).")
@click.option("--fp-epochs", type=click.IntRange(1, 100_000), default=40, show_default=True,
              help="Floating-point epochs for a digits network trained here first.")
@click.option("--lr", type=click.FloatRange(0, 10, min_open=True), default=1e-3, show_default=True)
@click.option("--noise-scale", type=click.FloatRange(0, 100), default=None,
              help="Injected noise × the card's spread at t0 [noise-001: 2, device-000: 3, hasgd-002: 2].")
@click.option("--perturbations", type=click.IntRange(1, 1000), default=4, show_default=True,
              help="hasgd-002: L.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--times", default="1,3600,86400", show_default=True,
              help="Inference times (s) of the evaluation after training.")
@click.option("--trials", type=click.IntRange(1, 100_000), default=25, show_default=True)
@click.option("--extrapolate/--no-extrapolate", default=True, show_default=True,
              help="Times outside the card's fitted ages: use the fitted laws (rows marked *) or refuse.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Save the trained network (torch.save) here.")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None,
              help="Write a checkpoint after every epoch here (checkpoint.pt, replaced whole).")
@click.option("--resume", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Continue from a checkpoint.pt written with the same method and options (--epochs "
              "may be larger); the result equals an uninterrupted run.")
@click.option("--quiet", is_flag=True)
@_friendly
def train_hwa_cmd(card, network, method, epochs, fp_epochs, lr, noise_scale, perturbations, seed,
                  times, trials, extrapolate, out, checkpoint_dir, resume, quiet) -> None:
    """Hardware-aware training with a seed's method, then accuracy over time vs the FP network."""
    import torch

    from devmodel.export.native import ExtrapolationError
    from devmodel.model.card import DeviceModel
    from devmodel.sim import accuracy
    from devmodel.train import HWAOptions, evaluate_hwa, train_hwa

    model = DeviceModel.load(card)
    times_s = _times(times)
    if out and Path(out).exists():
        raise DevmodelError(f"{out} already exists; choose another --out")
    outside = _check_times(model, times_s, extrapolate)
    fp_net, data = _load_network(network, fp_epochs, seed, quiet)
    opts = HWAOptions(epochs=epochs, lr=lr, seed=seed, noise_scale=noise_scale,
                      n_perturb=perturbations)
    result = train_hwa(fp_net, model, method, data, opts, progress=not quiet,
                       checkpoint_dir=checkpoint_dir, resume=resume)
    try:
        with _quiet_extrapolation():
            fp_acc = evaluate_hwa(fp_net, model, data, times_s, trials, seed,
                                  config=result.method.eval_config(), extrapolate=extrapolate)
            hwa_acc = evaluate_hwa(result, model, data, times_s, trials, seed, extrapolate=extrapolate)
    except ExtrapolationError as e:
        raise DevmodelError(f"{e} (drop --no-extrapolate)") from None
    fp_digital = accuracy(fp_net, data.x_test, data.y_test)
    hwa_digital = accuracy(result.net, data.x_test, data.y_test)
    click.echo(f"{method} ({result.method.seed}) on {network}, {epochs} epochs in {result.seconds:.1f} s; "
               f"digital accuracy FP {100 * fp_digital:.2f} %, HWA {100 * hwa_digital:.2f} %")
    click.echo(f"  {', '.join(f'{k} = {v}' for k, v in result.report.items())}")
    click.echo("        time s    FP mapped %     HWA %   (mean ± SEM over trials; HWA median, top-25 %)")
    fp_sem, hwa_sem = _sem(fp_acc), _sem(hwa_acc)
    for j, t in enumerate(times_s):
        a, b = fp_acc[:, j], hwa_acc[:, j]
        click.echo(f"  {t:12g}   {100 * a.mean():6.2f} ± {100 * fp_sem[j]:4.2f}   "
                   f"{100 * b.mean():6.2f} ± {100 * hwa_sem[j]:4.2f}   "
                   f"({100 * np.median(b):.2f}, {100 * np.percentile(b, 75):.2f})"
                   + ("  *" if outside[j] else ""))
    if out:
        tmp = Path(out).with_name(Path(out).name + ".part")
        torch.save(result.net, tmp)  # a whole module, as --network path.pt expects
        tmp.replace(out)  # never a half-written network under the final name
        click.echo(f"written {out}")


# -- commands defined elsewhere (one line each) -------------------------------------------------
from instruments.cli import serve_chip; main.add_command(serve_chip)  # noqa: E402, E702, I001
from devmodel.replay.cli import replay; main.add_command(replay)  # noqa: E402, E702, I001


def _versus_ground_truth(session, card) -> str:
    """Per level: the chip's true programming spread (of the noise-free G at t0), ν and Q_s
    statistics next to the fitted card's; then the white read noise."""
    gt = session.ground_truth["devices"]
    d = session.devices
    ok = (gt["defect"] == 0) & (d["converged"] == 1)
    lines = ["fitted card vs the simulated chip's ground truth (converged, non-defective devices):",
             "  target µS   σ_prog µS true/fit   ν mean true/fit    ν std true/fit     Q_s true/fit"]
    for lv in session.levels_us:
        m = ok & (d["target_us"] == lv)
        if m.sum() < 10:
            continue
        x = lv / card.g_max_us
        q_fit = card.read_noise.q_s(np.median(gt["g20_us"][m]) / card.g_max_us)
        lines.append(f"  {lv:9.2f}   {gt['g20_us'][m].std():.3f} / {float(card.programming.sigma_us(lv)):.3f}"
                     f"        {gt['nu'][m].mean():.4f} / {card.drift.nu_mean(x):.4f}   "
                     f"{gt['nu'][m].std():.4f} / {card.drift.nu_std(x):.4f}   "
                     f"{np.mean(gt['q_s'][m]):.4f} / {float(q_fit):.4f}")
    white = session.ground_truth.get("params", {}).get("white_noise_us")
    if white is not None:
        se = card.read_noise.stderr.get("white_noise_us")
        lines.append(f"  white read noise per read: true {white:g} µS, fitted "
                     f"{card.read_noise.white_noise_us:.3f}" + (f" ± {se:.3f}" if se else "") + " µS")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
