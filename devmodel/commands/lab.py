"""Lab commands: ``characterize`` (a session on a chip, or its resume), ``info``, ``import-table``
and ``serve-chip`` (a simulated chip behind the SCPI protocol)."""

from __future__ import annotations

import ipaddress
import shlex
import signal
import sys
from pathlib import Path

import click

from devmodel.commands.common import (
    Finite,
    continue_on_recorded_chip,
    explicit,
    fault_options,
    floats,
    one_line,
    report_faults,
    verify_settings,
    with_visa_options,
)
from devmodel.errors import DevmodelError, friendly
from devmodel.technologies import names as technology_names

#: What a resumed session takes from its file, so these flags cannot be given with --resume.
_FROM_THE_FILE = ("devices", "levels", "schedule", "burst_devices", "burst_reads", "burst_interval",
                  "burst_age", "seed", "no_trace", "verify_items")


@click.command()
@click.option("--chip", "chip_url", default="sim:pcm", show_default=True,
              help="Chip URL: sim:<technology>[?devices=N&seed=S&<physics parameter>=value], "
              "visa://<resource>, replay:<file>, emulate:<file>.")
@click.option("--devices", type=int, default=2000, show_default=True,
              help="Devices programmed per target level.")
@click.option("--levels", help="Target conductances in µS, comma-separated "
              "[default: the technology's, e.g. PCM's 13 levels incl. log-spaced low ones].")
@click.option("--schedule", help="Read ages in s after each device's last pulse, increasing "
              "[default: the technology's, e.g. PCM 20,60,200,600,3600,10800,86400].")
@click.option("--burst-devices", type=int, default=None,
              help="Devices per level read in a read-noise burst (0: none) [default 100, at most "
              "--devices].")
@click.option("--burst-reads", type=int, default=None, help="Reads per burst [PCM 256].")
@click.option("--burst-interval", type=Finite(0.0, 1e6), default=None, help="Seconds between burst reads "
              "(0: back to back) [1].")
@click.option("--burst-age", type=Finite(0.0, 1e9, min_open=True), default=None,
              help="Age of the burst in s, between two schedule ages [PCM 1000, ReRAM 300].")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Seed of the simulated chip (ignored if the URL sets one).")
@click.option("--station", type=click.Path(dir_okay=False), default=None,
              help="Station file (YAML) for visa:// chips: instruments, timeouts, safety limits.")
@click.option("--out", "out", type=click.Path(dir_okay=False),
              help="Session file to write (HDF5); required unless --resume.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option("--no-trace", is_flag=True, help="Do not record the pulse-level verify trace.")
@click.option("--verify", "verify_items", multiple=True, metavar="FIELD=VALUE", help="A program-and-verify "
              "setting of the chip's technology (e.g. tolerance_us=0.5; after the station file's verify:).")
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
@click.option("--checkpoint-interval", type=Finite(0.0, 3600.0), default=2.0,
              show_default=True, help="Least wall time between commits of the session file (s; also "
              "long enough that commits take ≤ 5 % of the time; 0: every safe point).")
@fault_options
@one_line
def characterize(chip_url, devices, levels, schedule, burst_devices, burst_reads, burst_interval,
                 burst_age, seed, station, out, overwrite, no_trace, verify_items, quiet, resume, downtime,
                 durability, checkpoint_interval, faults, retries) -> None:
    """Program devices to target levels and record drift and read noise into a session file.

    \b
    The file is committed atomically at safe points, at least --checkpoint-interval seconds apart
    (longer for large sessions, so commits stay under 5 % of the time); after a crash, a kill or a
    stop on an instrument fault, `devmodel characterize --resume session.h5` continues it with no
    record lost or repeated (docs/reliability.md).
    """
    from devmodel.chips import open_chip
    from devmodel.procedures.characterize import BurstConfig, SweepConfig
    from devmodel.procedures.session import new_session, resume_session
    from devmodel.progress import PhaseBars
    from devmodel.report.summary import format_summary, summarize
    from devmodel.store import read_session

    bars = PhaseBars(not quiet, unit="reads", units={"program-verify": "devices"})
    if resume is not None:
        path = Path(resume)
        _check_resume_flags(path, out, overwrite)
        run = continue_on_recorded_chip(
            path, chip_url, station, bars,
            lambda p, chip: resume_session(p, chip, downtime=downtime, durability=durability,
                                           checkpoint_interval_s=checkpoint_interval, progress=bars),
            lambda url: with_visa_options(url, faults, retries))
    else:
        chip_url = with_visa_options(chip_url, faults, retries)
        if out is None:
            raise DevmodelError("--out is required (the session file to write), or --resume FILE")
        levels_t, schedule_t = floats("levels", levels), floats("schedule", schedule)
        out_path = Path(out)
        if out_path.exists() and not overwrite:
            raise DevmodelError(f"{out_path} already exists; choose another --out or pass --overwrite"
                                + (" (or continue it with --resume)" if _has_sidecar(out_path) else ""))
        from devmodel.chips import input_file
        from devmodel.store.output import check_output

        check_output(out_path, overwrite, [station, input_file(chip_url)])
        chip = open_chip(chip_url, seed, station)
        try:
            cfg = SweepConfig.default(chip.info.technology, devices, record_trace=not no_trace)
            b = cfg.bursts
            cfg = type(cfg)(
                levels_us=levels_t or cfg.levels_us, devices_per_level=devices,
                schedule_s=schedule_t or cfg.schedule_s,
                bursts=BurstConfig(
                    devices_per_level=(min(b.devices_per_level, devices) if burst_devices is None
                                       else burst_devices),
                    n_reads=b.n_reads if burst_reads is None else burst_reads,
                    interval_s=b.interval_s if burst_interval is None else burst_interval,
                    age_s=b.age_s if burst_age is None else burst_age,
                ),
                age_tolerance=cfg.age_tolerance, record_trace=not no_trace,
            )
            cfg.validate(chip.info.g_max_us, chip.info.n_devices)
            run = new_session(chip, chip_url, cfg, out_path, seed=seed, overwrite=overwrite,
                              progress=bars, durability=durability, checkpoint_interval_s=checkpoint_interval,
                              command=shlex.join(sys.argv),
                              verify=verify_settings(verify_items, chip.info.technology, chip.info, station))
        finally:
            bars.close()
            chip.close()
    report_faults(run.faults)
    click.echo(format_summary(summarize(read_session(run.path, with_trace=False))))
    click.echo(f"chip time {run.summary.chip_time_s / 3600:.2f} h; written {run.path}")


def _check_resume_flags(path: Path, out, overwrite: bool) -> None:
    if out is not None and Path(out).resolve() != path.resolve():
        raise DevmodelError(f"--out {out} differs from --resume {path}; a resumed session stays in its file")
    if overwrite:
        raise DevmodelError("--overwrite and --resume contradict each other")
    for name in _FROM_THE_FILE:
        if explicit(name):
            raise DevmodelError(f"--{name.replace('_', '-')} cannot be given with --resume: the session "
                                f"continues with the configuration recorded in {path}")


def _has_sidecar(path: Path) -> bool:
    from devmodel.store import sidecar

    return sidecar(path).is_dir()


@click.command()
@click.argument("session", type=click.Path(dir_okay=False))
@one_line
def info(session) -> None:
    """Summarise a session file: convergence, per-level spread at t0, schedule (and a deployment's map)."""
    from devmodel.commands.deploy import describe

    click.echo(describe(session))


@click.command("import-table")
@click.argument("table", type=click.Path(dir_okay=False))
@click.option("--technology", type=click.Choice(technology_names()), required=True)
@click.option("--g-max-us", type=Finite(0.0, 1e6, min_open=True), required=True,
              help="Conductance range of the targets (µS).")
@click.option("--t0-s", type=Finite(0.0, 1e9, min_open=True), default=None,
              help="Reference age [the technology's: PCM 20 s, ReRAM 1 s].")
@click.option("--columns", default=None, metavar="NAME,NAME,…",
              help="Names of the columns of a file without a header line (- skips one): device, "
              "target_us, time_s, g_us, and optionally burst, converged, g_verify_us, nominal_time_s, "
              "level, or any other name (kept).")
@click.option("--conductance-unit", type=click.Choice(["S", "mS", "uS", "nS"]), default="uS",
              show_default=True, help="Unit of the conductance columns in the file.")
@click.option("--target-bins", type=click.IntRange(1, 10_000), default=None,
              help="Group per-device targets into this many equal-width levels over [0, g_max].")
@click.option("--levels", "levels_text", default=None, metavar="L1,L2,…",
              help="Group per-device targets into these levels (µS): each device to the nearest.")
@click.option("--beyond-g-max", type=click.Choice(["refuse", "drop"]), default="refuse", show_default=True,
              help="Devices whose target exceeds g_max: refuse the table, or leave them out (counted).")
@click.option("--dedupe", is_flag=True,
              help="Rows that repeat a read (same device, time_s, burst and g_us): keep the first and "
              "count the rest, instead of refusing the table.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Session file.")
@click.option("--overwrite", is_flag=True)
@one_line
def import_table_cmd(table, technology, g_max_us, t0_s, columns, conductance_unit, target_bins,
                     levels_text, beyond_g_max, dedupe, out, overwrite) -> None:
    """Import a long-format table of reads (device, target_us, time_s, g_us, …; CSV, TSV or blank
    separated, optionally gzipped) as a session file."""
    from devmodel.report.summary import format_summary, summarize
    from devmodel.store import read_session
    from devmodel.store.table_import import import_table

    names = tuple(c.strip() for c in columns.split(",")) if columns else None
    path = import_table(table, out, technology, g_max_us, t0_s, overwrite, columns=names,
                        conductance_unit=conductance_unit, target_bins=target_bins,
                        levels_us=floats("levels", levels_text), beyond_g_max=beyond_g_max,
                        dedupe=dedupe)
    session = read_session(path, with_trace=False)
    left_out = (session.config.get("import") or {}).get("left_out") or {}
    if left_out.get("duplicate_rows"):
        click.echo(f"devmodel: note: {left_out['duplicate_rows']} duplicate row(s) left out (--dedupe)",
                   err=True)
    click.echo(format_summary(summarize(session)))
    click.echo(f"written {path}")


@click.command("import-traces")
@click.argument("traces", type=click.Path(dir_okay=False))
@click.option("--technology", type=click.Choice(technology_names()), required=True)
@click.option("--g-max-us", type=Finite(0.0, 1e6, min_open=True), required=True,
              help="Conductance range of the devices (µS).")
@click.option("--sample-rate-hz", type=Finite(0.0, 1e9, min_open=True), required=True,
              help="Reads per second of every trace.")
@click.option("--conductance-unit", type=click.Choice(["S", "mS", "uS", "nS"]), default="uS",
              show_default=True, help="Unit of the samples in the file.")
@click.option("--skip-columns", type=click.IntRange(0, 100), default=1, show_default=True,
              help="Cells between a line's level label and its first sample.")
@click.option("--age-s", type=Finite(0.0, 1e9), default=1.0, show_default=True,
              help="Device age at the start of the traces (not in the file).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Session file.")
@click.option("--overwrite", is_flag=True)
@one_line
def import_traces_cmd(traces, technology, g_max_us, sample_rate_hz, conductance_unit, skip_columns, age_s,
                      out, overwrite) -> None:
    """Import continuous read traces (one per line: level label, skipped cells, samples; optionally
    gzipped) as a session of read-noise bursts, for `devmodel read-noise`."""
    from devmodel.store.trace_import import import_traces

    path = import_traces(traces, out, technology, g_max_us, sample_rate_hz, conductance_unit,
                         skip_columns, age_s, overwrite)
    click.echo(f"written {path}")


DEFAULT_SERVED_DEVICES = 1 << 20  # the size `sim:<technology>` opens by default: same seed, same chip


@click.command("serve-chip")
@click.option("--technology", type=click.Choice(technology_names()), default="pcm", show_default=True,
              help="Physics of the simulated chip.")
@click.option("--port", type=click.IntRange(0, 65535), default=5025, show_default=True,
              help="TCP port (0: let the system pick a free one; the bound port is printed).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Seed of the simulated chip.")
@click.option("--devices", type=click.IntRange(1, 1 << 26), default=DEFAULT_SERVED_DEVICES,
              show_default=True, help="Devices on the chip.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --allow-remote.")
@click.option("--allow-remote", is_flag=True,
              help="Allow binding to a non-loopback address (the chip is then reachable by others).")
@click.option("--max-clients", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Connections served at once (more are closed at once).")
@click.option("--station", type=click.Path(dir_okay=False), default=None,
              help="Station file whose chip limits (amplitude, width, compliance, pulses per device, "
              "reads per request, address range) the server declares and enforces itself.")
@friendly("serve-chip could not listen")  # the port is taken, the address cannot be bound
def serve_chip(technology, port, seed, devices, host, allow_remote, max_clients, station) -> None:
    """Serve a simulated chip over the SCPI test-chip protocol (docs/chip-protocol.md).

    \b
    Connect with: devmodel characterize --chip visa://TCPIP::127.0.0.1::PORT::SOCKET ...
    Stops cleanly on Ctrl-C or SIGTERM.
    """
    from devmodel.chips import open_chip
    from instruments.server import ChipServer

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise DevmodelError(f"--host {host!r} is not an IP address") from None
    if not loopback and not allow_remote:
        raise DevmodelError(f"--host {host} is not a loopback address; pass --allow-remote to "
                            f"expose the simulated chip on the network")
    chip = open_chip(f"sim:{technology}?devices={devices}", seed)
    address_range = None
    if station:
        from instruments.station import load_station

        lim = load_station(station).chip_limits
        chip.narrow_limits(lim.combine(chip.info.limits))
        address_range = lim.address_range
        click.echo(f"serve-chip: limits from {station}: {chip.info.limits.to_dict()}"
                   + (f", addresses {address_range[0]}..{address_range[1]}" if address_range else ""),
                   err=True)
    server = ChipServer(chip, host=host, port=port, max_clients=max_clients,
                        address_range=address_range)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.stop())
    click.echo(f"serve-chip: {chip.info.identity} ({chip.info.n_devices} devices) listening on "
               f"{server.host}:{server.port}  resource TCPIP::{server.host}::{server.port}::SOCKET")
    sys.stdout.flush()
    server.serve_forever()
    click.echo(f"serve-chip: stopped after {server.served} client connection(s)", err=True)
