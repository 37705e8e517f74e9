"""The ``devmodel`` command line: characterise chips, inspect sessions, run the demo.

Every error a user can cause ends in one sentence on stderr and exit status 2, never a traceback,
and nothing half-written.
"""

from __future__ import annotations

import functools
import shlex
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

from devmodel import __version__
from devmodel.errors import DevmodelError

EXIT_USER_ERROR = 2


def _friendly(fn):
    """Turn a DevmodelError into one line on stderr and exit status 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DevmodelError as e:
            click.echo(f"devmodel: error: {e}", err=True)
            sys.exit(EXIT_USER_ERROR)
        except KeyboardInterrupt:
            click.echo("devmodel: interrupted", err=True)
            sys.exit(130)

    return wrapper


def _floats(name: str, text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise DevmodelError(f"--{name}: expected comma-separated numbers, got {text!r}") from None


class _Bars:
    """One tqdm bar per phase of a session."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.phase = ""

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if phase != self.phase:
            self.close()
            unit = "devices" if phase == "program-verify" else "reads"
            self.bar = tqdm(total=total, desc=f"{phase:>15}", unit=f" {unit}", leave=False,
                            file=sys.stderr, disable=None, mininterval=0.5)
            self.phase = phase
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
              help="Devices per level read in a read-noise burst (0: none) [default 100].")
@click.option("--burst-reads", type=int, default=None, help="Reads per burst [PCM 256].")
@click.option("--burst-interval", type=float, default=None, help="Seconds between burst reads "
              "(0: back to back) [1].")
@click.option("--burst-age", type=float, default=None, help="Age of the burst in s [PCM 1000].")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the simulated chip (ignored if the URL sets one).")
@click.option("--station", type=click.Path(dir_okay=False), default=None,
              help="Station file (YAML) for visa:// chips: instruments, timeouts, safety limits.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Session file to write (HDF5).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--no-trace", is_flag=True, help="Do not record the pulse-level verify trace.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_friendly
def characterize(chip_url, devices, levels, schedule, burst_devices, burst_reads, burst_interval,
                 burst_age, seed, station, out, overwrite, no_trace, quiet) -> None:
    """Program devices to target levels and record drift and read noise into a session file."""
    from devmodel.chips import open_chip
    from devmodel.procedures.characterize import BurstConfig, SweepConfig
    from devmodel.report.summary import format_summary, summarize
    from devmodel.store.session import read_session

    levels_t, schedule_t = _floats("levels", levels), _floats("schedule", schedule)
    out_path = Path(out)
    if out_path.exists() and not overwrite:
        raise DevmodelError(f"{out_path} already exists; choose another --out or pass --overwrite")
    chip = open_chip(chip_url, seed, station)
    cfg = SweepConfig.default(chip.info.technology, devices, record_trace=not no_trace)
    b = cfg.bursts
    cfg = type(cfg)(
        levels_us=levels_t or cfg.levels_us,
        devices_per_level=devices,
        schedule_s=schedule_t or cfg.schedule_s,
        bursts=BurstConfig(
            devices_per_level=b.devices_per_level if burst_devices is None else burst_devices,
            n_reads=b.n_reads if burst_reads is None else burst_reads,
            interval_s=b.interval_s if burst_interval is None else burst_interval,
            age_s=b.age_s if burst_age is None else burst_age,
        ),
        record_trace=not no_trace,
    )
    try:
        cfg.validate(chip.info.g_max_us, chip.info.n_devices)
        summary = run_session(chip, chip_url, cfg, out_path, seed, overwrite, quiet)
    finally:
        chip.close()
    click.echo(format_summary(summarize(read_session(out_path, with_trace=False))))
    click.echo(f"chip time {summary.chip_time_s / 3600:.2f} h; written {out_path}")


def run_session(chip, chip_url, cfg, out_path: Path, seed, overwrite: bool, quiet: bool):
    """Create the session file and run the sweep into it (shared by characterize and demo)."""
    from devmodel.procedures.characterize import config_dict, run_sweep
    from devmodel.procedures.program_verify import PcmVerifyConfig, ReramVerifyConfig
    from devmodel.store.session import SessionWriter

    verify = PcmVerifyConfig() if chip.info.technology == "pcm" else ReramVerifyConfig()
    t0_s = 20.0 if chip.info.technology == "pcm" else 1.0
    chip_meta = dict(chip.info.to_dict(), url=chip_url)
    bars = _Bars(not quiet)
    with SessionWriter(out_path, technology=chip.info.technology, g_max_us=chip.info.g_max_us,
                       t0_s=t0_s, chip=chip_meta, config=config_dict(cfg, verify),
                       seed=getattr(chip, "seed", seed), command=shlex.join(sys.argv),
                       overwrite=overwrite) as w:
        try:
            summary = run_sweep(chip, cfg, w, verify, bars)
        finally:
            bars.close()
        w.finish("complete")
    return summary


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
@click.option("--devices", type=int, default=300, show_default=True,
              help="Devices per level in the demo session.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_friendly
def demo(out_dir, devices, quiet) -> None:
    """A complete small session on the built-in simulated PCM chip, then its summary."""
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
    gt = session.ground_truth["devices"]
    ok = gt["defect"] == 0
    click.echo(f"ground truth: mean ν above 5 µS = "
               f"{np.mean(gt['nu'][ok & (session.devices['target_us'] > 5)]):.4f}")
    click.echo(f"demo finished in {time.perf_counter() - start:.1f} s; files in {folder}")


# -- commands defined elsewhere (one line each) -------------------------------------------------
from instruments.cli import serve_chip; main.add_command(serve_chip)  # noqa: E402, E702, I001


if __name__ == "__main__":
    main()
