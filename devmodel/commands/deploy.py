"""``deploy`` (a trained network programmed onto a chip and read back over time) and the
``evaluate --deployment`` report (measured vs predicted accuracy); docs/deployment.md."""

from __future__ import annotations

import shlex
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
from devmodel.errors import DevmodelError

#: What a resumed deployment takes from its file.
_FROM_THE_FILE = ("network", "card", "schedule", "first_address", "verify", "seed", "epochs", "no_trace")


@click.command()
@click.option("--chip", "chip_url", default="sim:pcm", show_default=True,
              help="Chip URL: sim:<technology>[?devices=N&seed=S&<parameter>=value], visa://<resource>, "
              "emulate:<session.h5>.")
@click.option("--network", default="digits-cnn", show_default=True,
              help="digits-mlp, digits-cnn, digits-mlp-small, digits-cnn-small (trained here) or path.pt "
              "(a torch module, e.g. from train-hwa --out).")
@click.option("--out", type=click.Path(dir_okay=False), help="Deployment file to write (HDF5).")
@click.option("--card", type=click.Path(dir_okay=False), default=None,
              help="Model card whose g_min the weights are mapped above (as evaluate does) [g_min 0].")
@click.option("--schedule", help="Read ages in s after each device's last pulse, increasing "
              "[the technology's characterisation schedule].")
@click.option("--first-address", type=click.IntRange(0, None), default=0, show_default=True,
              help="Chip address of the first device; layers follow each other from here.")
@click.option("--verify", "verify_items", multiple=True, metavar="FIELD=VALUE",
              help="A program-and-verify setting of the chip's technology (e.g. tolerance_us=0.5, "
              "n_verify_reads=8, max_iterations=30); repeatable; recorded in the file.")
@click.option("--epochs", type=click.IntRange(1, 100_000), default=30, show_default=True,
              help="Floating-point training epochs for the digits networks.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Seed of the network's training, the digits split and the simulated chip.")
@click.option("--station", type=click.Path(dir_okay=False), default=None, help="Station file (visa://).")
@click.option("--overwrite", is_flag=True)
@click.option("--no-trace", is_flag=True, help="Do not record the pulse-level verify trace.")
@click.option("--resume", type=click.Path(dir_okay=False), default=None,
              help="Continue the deployment in this file from its last commit.")
@click.option("--downtime", type=click.Choice(["wall", "paused"]), default="wall", show_default=True)
@click.option("--durability", type=click.Choice(["full", "process", "off"]), default="full",
              show_default=True)
@click.option("--checkpoint-interval", type=Finite(0.0, 3600.0), default=2.0, show_default=True)
@click.option("--quiet", is_flag=True)
@fault_options
@one_line
def deploy(chip_url, network, out, card, schedule, first_address, verify_items, epochs, seed, station,
           overwrite, no_trace, resume, downtime, durability, checkpoint_interval, quiet, faults,
           retries) -> None:
    """Program a network onto a chip (differential pairs, program-and-verify) and read it back on a
    drift schedule, into a resumable deployment file."""
    from devmodel.deploy.session import resume_deployment
    from devmodel.progress import PhaseBars

    bars = PhaseBars(not quiet, unit="reads", units={"program-verify": "devices"})
    if resume is not None:
        for name in (*_FROM_THE_FILE, "overwrite"):
            if explicit(name):
                raise DevmodelError(f"--{name.replace('_', '-')} cannot be given with --resume: the "
                                    f"deployment continues as recorded in {resume}")
        if out is not None and Path(out).resolve() != Path(resume).resolve():
            raise DevmodelError(f"--out {out} differs from --resume {resume}")
        run = continue_on_recorded_chip(
            resume, chip_url, station, bars,
            lambda path, chip: resume_deployment(path, chip, downtime=downtime, durability=durability,
                                                 checkpoint_interval_s=checkpoint_interval, progress=bars),
            lambda url: with_visa_options(url, faults, retries))
    else:
        run = _new(with_visa_options(chip_url, faults, retries), network, out, card, schedule,
                   first_address, verify_items, epochs, seed, station, overwrite, no_trace, durability,
                   checkpoint_interval, quiet, bars)
    report_faults(run.faults)
    _summary(run)


def _new(chip_url, network, out, card, schedule, first_address, verify_items, epochs, seed, station,
         overwrite, no_trace, durability, checkpoint_interval, quiet, bars):
    from devmodel.chips import input_file, open_chip
    from devmodel.commands.common import load_network
    from devmodel.deploy.mapping import check_fits, map_network, mapping_config
    from devmodel.deploy.session import NetworkRecord, new_deployment
    from devmodel.store.output import check_output

    if out is None:
        raise DevmodelError("--out is required (the deployment file to write), or --resume FILE")
    out_path = Path(out)
    if out_path.exists() and not overwrite:
        raise DevmodelError(f"{out_path} already exists; choose another --out or pass --overwrite")
    check_output(out_path, overwrite, [station, input_file(chip_url), card, network])
    schedule_t = floats("schedule", schedule)
    g_min = 0.0
    if card is not None:
        from devmodel.model.card import DeviceModel

        g_min = DeviceModel.load(card).g_min_us
    chip = open_chip(chip_url, seed, station)
    try:
        verify = verify_settings(verify_items, chip.info.technology, chip.info, station)
        net, _ = load_network(network, epochs, seed, quiet)
        cfg = mapping_config(net)
        _, mapping = map_network(net, cfg, chip.info.g_max_us, g_min)
        check_fits(mapping, network, chip.info.n_devices, first_address)
        from devmodel.sim.networks import NETWORKS

        arch = network if network in NETWORKS else f"{type(net).__module__}.{type(net).__qualname__}"
        record = NetworkRecord(network, arch, seed, {k: getattr(cfg, k) for k in (
            "tile_rows", "tile_cols", "scales", "scale_levels", "input_range", "differential")})
        return new_deployment(chip, chip_url, net, mapping, record, out_path, schedule_s=schedule_t,
                              first_address=first_address, verify=verify, seed=seed, overwrite=overwrite,
                              progress=bars, durability=durability, checkpoint_interval_s=checkpoint_interval,
                              record_trace=not no_trace, command=shlex.join(sys.argv))
    finally:
        bars.close()
        chip.close()


def _summary(run) -> None:
    click.echo(describe(run.path))
    click.echo(f"chip time {run.summary.chip_time_s / 3600:.2f} h; written {run.path}")


def describe(path) -> str:
    """``devmodel info``: the session summary and, for a deployment, its network and device map."""
    import json

    import h5py

    from devmodel.report.summary import format_summary, summarize
    from devmodel.store import read_session
    from devmodel.store.schema import DEPLOYMENT_GROUP as GROUP

    session = read_session(path, with_trace=False)
    text = format_summary(summarize(session))
    with h5py.File(path, "r", locking=False) as f:
        if GROUP not in f:
            return text
        a = dict(f[GROUP].attrs)
        layers, first = json.loads(a["layers_json"]), int(a["first_address"])
        xbar = json.loads(a["crossbar_json"])
    lines = [text, f"deployment: network {a['network']} ({a['architecture']}), {xbar['scales']} scales, "
             f"{xbar['input_range']} input ranges, tiles {xbar['tile_rows']}×{xbar['tile_cols']}, "
             f"g {float(a['g_min_us']):g}–{float(a['g_max_us']):g} µS; verify "
             + ", ".join(f"{k}={v}" for k, v in sorted((session.verify_config or {}).items())),
             f"  {'layer':<16} {'weights shape':<18} {'tiles':>5} {'devices':>9}   addresses"]
    for lm in layers:
        lo = first + lm["first_row"]
        lines.append(f"  {lm['name']:<16} {'×'.join(map(str, lm['shape'])):<18} {lm['n_tiles']:5d} "
                     f"{lm['n_rows']:9,d}   {lo}–{lo + lm['n_rows'] - 1}")
    return "\n".join(lines)


#: evaluate's options that a deployment file fixes (network, mapping, read ages) or that model a
#: crossbar the measured pass does not have
_CARD_ONLY = ("network", "times_text", "crossbar", "scales", "input_range", "management", "read_noise",
              "read_window", "bit_serial", "scale_levels", "exempt_fraction", "energy", "epochs", "plot",
              "extrapolate")


def refuse_card_only_options(ctx: click.Context) -> None:
    """Refuse, naming it, an option of ``evaluate --card`` given with ``--deployment``."""
    for name in _CARD_ONLY:
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
            opt = next(p for p in ctx.command.params if p.name == name).opts[0]
            raise DevmodelError(f"{opt} does not apply with --deployment: the deployment file fixes the "
                                "network, its mapping and the read ages")


def evaluate_deployment(path: str, card: str | None, trials: int, drift_compensation: bool | None,
                        seed: int, quiet: bool) -> None:
    """``evaluate --deployment``: measured accuracy at each read age, the card's prediction beside it
    (mean ± SEM, 95 % prediction interval, inside or not) and the per-layer weight error."""

    from devmodel.commands.common import quiet_extrapolation, sem
    from devmodel.deploy.measured import (
        inference_times,
        layer_rms,
        measured_accuracy,
        predicted_accuracy,
        predicted_layer_rms,
        prediction_interval,
        read_deployment,
    )
    from devmodel.sim import accuracy
    from devmodel.sim.data import digits
    from devmodel.technologies import technology

    dep = read_deployment(path)
    model = None
    if card is not None:
        from devmodel.model.card import DeviceModel

        model = DeviceModel.load(card)
        if model.technology != dep.technology:
            raise DevmodelError(f"--card {card} is a {model.technology} card but {path} was deployed on a "
                                f"{dep.technology} chip")
    comp = drift_compensation
    if comp is None:
        comp = bool(technology(dep.technology).part("card").CARD.MEAN_DRIFT)
    net, data = dep.net(), digits(seed=dep.data_seed, image=True)
    measured = measured_accuracy(dep, net, data, comp, seed)
    conv = dep.converged[dep.target_us > 0].mean()
    click.echo(f"deployment {path}: {dep.network} on {dep.chip_url or dep.technology}, "
               f"{dep.target_us.size:,} devices in {len(dep.layers)} layers, {100 * conv:.2f} % "
               f"converged; drift compensation {'on' if comp else 'off'}; floating point "
               f"{100 * accuracy(net, data.x_test, data.y_test):.2f} %")
    if model is None:
        click.echo("         age s   measured %")
        for a, m in zip(dep.ages_s, measured, strict=True):
            click.echo(f"  {a:12g}   {100 * m:10.2f}")
        rms = layer_rms(dep)
        click.echo("layer RMS of G − G_target (µS) at each age: " + "; ".join(
            f"{lm['name']} " + " ".join(f"{v:.3g}" for v in row)
            for lm, row in zip(dep.layers, rms, strict=True)))
        return
    with quiet_extrapolation():
        pred = predicted_accuracy(dep, net, data, model, comp, trials, seed)
        rms_p = predicted_layer_rms(dep, model, trials, seed)
    lo, hi = prediction_interval(pred)
    inside = (measured >= lo) & (measured <= hi)
    click.echo(f"card {card}, {trials} trials; 95 % prediction interval of one chip: mean ± t·SD·√(1 + 1/n)")
    click.echo("         age s       time s   measured %   predicted % ± SEM     95 % interval   inside")
    for a, t, m, p, e, lo_j, hi_j, ok in zip(dep.ages_s, inference_times(model, dep.ages_s), measured,
                                             pred.mean(0), sem(pred), lo, hi, inside, strict=True):
        click.echo(f"  {a:12g} {t:12g}   {100 * m:10.2f}   {100 * p:8.2f} ± {100 * e:4.2f}   "
                   f"[{100 * lo_j:6.2f}, {100 * hi_j:6.2f}]   {'yes' if ok else 'NO'}")
    click.echo(f"measured inside the interval at {int(inside.sum())} of {inside.size} ages")
    _layer_table(dep, layer_rms(dep), rms_p)



def _layer_table(dep, rms_m, rms_p) -> None:
    from devmodel.deploy.measured import verified_rows

    click.echo("per-layer RMS of G − G_target (µS) over verified devices (target > 0, converged), "
               "measured / predicted, at each age (s):")
    click.echo(f"  {'layer':<16} {'devices':>9} {'verified':>9}" + "".join(f" {a:>15g}" for a in dep.ages_s))
    for i, (lm, m, p) in enumerate(zip(dep.layers, rms_m, rms_p, strict=True)):
        click.echo(f"  {lm['name']:<16} {lm['n_rows']:9,d} {verified_rows(dep, i).size:9,d}" + "".join(
            f" {a:7.3f}/{b:<7.3f}" for a, b in zip(m, p, strict=True)))
