"""``devmodel demo``: the whole loop on the built-in simulated PCM chip."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from devmodel import __version__
from devmodel.commands.common import one_line, write_atomically

DEMO_URL = "sim:pcm?devices=65536&seed=7"
#: the repository's shipped recordings (absent from a wheel install)
CALIBRATION_DATA = Path(__file__).resolve().parents[2] / "calibration_data"


@click.command()
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the demo's files [default: a new temporary folder].")
@click.option("--devices", type=click.IntRange(20, 5000), default=300, show_default=True,
              help="Devices per level in the demo session.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@one_line
def demo(out_dir, devices, quiet) -> None:
    """The whole loop on the built-in simulated PCM chip: session, fitted card vs ground truth,
    aihwkit export, a network's accuracy over a day, an offline replay of a shipped recording, and
    a fit validated on the shipped measured ReRAM chip."""
    from devmodel.chips import open_chip
    from devmodel.fit.session import fit_session
    from devmodel.model.summary import format_card
    from devmodel.procedures.characterize import BurstConfig, SweepConfig
    from devmodel.procedures.session import new_session
    from devmodel.progress import PhaseBars
    from devmodel.report.summary import format_summary, summarize
    from devmodel.store import read_session
    from devmodel.technologies import technology

    folder = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="devmodel-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    session_path = folder / "demo_pcm.h5"
    click.echo(f"devmodel {__version__} demo: characterising {DEMO_URL} "
               f"(13 levels × {devices} devices, drift to 1 day, read-noise bursts)")
    start = time.perf_counter()
    chip = open_chip(DEMO_URL)
    cfg = SweepConfig.default(chip.info.technology, devices,
                              bursts=BurstConfig(devices_per_level=min(50, devices)))
    bars = PhaseBars(not quiet, unit="reads", units={"program-verify": "devices"})
    try:
        new_session(chip, DEMO_URL, cfg, session_path, seed=7, overwrite=True, progress=bars)
    finally:
        bars.close()
        chip.close()
    session = read_session(session_path, with_trace=False)
    click.echo(format_summary(summarize(session)))
    card = fit_session(session)
    card_path = folder / "demo_pcm_model.json"
    write_atomically(card_path, card.to_json(), overwrite=True)
    click.echo("\n" + format_card(card))
    figures = technology(card.technology).part("figures")
    if hasattr(figures, "versus_ground_truth") and session.ground_truth is not None:
        click.echo("\n" + figures.versus_ground_truth(session, card))
    click.echo("\n" + _export_and_network(card, folder))
    _replay_shipped()
    _measured_chip(folder)
    click.echo(f"demo finished in {time.perf_counter() - start:.1f} s; files in {folder}")


def _export_and_network(card, folder: Path) -> str:
    """The end of the loop: the card as an aihwkit module, and what it means for a network (the
    digits MLP programmed onto this chip, standard crossbar with the card's own short-term read noise
    as `evaluate` uses, drift compensation, 5 trials)."""
    from devmodel.export.aihwkit import module_source
    from devmodel.sim import CrossbarConfig, accuracy, convert, evaluate_over_time
    from devmodel.sim.data import digits
    from devmodel.sim.networks import build, train_fp

    module = folder / "demo_pcm_aihwkit.py"
    write_atomically(module, module_source(card), overwrite=True)
    data = digits(seed=0)
    net = train_fp(build("digits-mlp", 0), data, epochs=40, seed=0)
    times_s = [1.0, 3600.0, 86400.0]
    cfg = CrossbarConfig.standard().with_(read_noise="card")
    acc = evaluate_over_time(convert(net, card, cfg), data.x_test, data.y_test,
                             times_s, 5, seed=0, calibration=data.x_train).mean(0)
    return (f"aihwkit noise models for this chip: {module}\n"
            f"digits MLP on this chip (standard crossbar, its read noise, drift compensation, 5 trials): "
            f"{100 * accuracy(net, data.x_test, data.y_test):.2f} % in floating point; "
            + ", ".join(f"{100 * a:.2f} % at {t:g} s" for a, t in zip(acc, times_s, strict=True))
            + "\nnext: devmodel evaluate / train-hwa --card " + str(folder / "demo_pcm_model.json"))


def _measured_chip(folder: Path) -> None:
    """The same loop on a real chip: fit the shipped measured ReRAM session (30 % of the devices
    held out) and validate the card on them — the simulated chip above is not the truth."""
    from devmodel.fit.session import fit_session
    from devmodel.fit.validate import validate

    session = CALIBRATION_DATA / "rram_techB" / "session.h5"
    if not session.exists():
        click.echo("\n(measured-chip fit skipped: calibration_data/ is not next to this installation)")
        return
    click.echo(f"\nmeasured ReRAM chip (tech B, {session.parent.name}/NOTICE.md): relaxation law "
               "fitted on 70 % of the devices, validated on the other 30 %")
    card = fit_session(session, holdout_fraction=0.3)
    write_atomically(folder / "measured_reram_model.json", card.to_json(), overwrite=True)
    report = validate(card, session)
    rows = [r for r in report.rows if r.age_s == max(r.age_s for r in report.rows)]
    click.echo(f"  at {rows[0].age_s:g} s, G − G(first read), mean and spread (µS), measured vs card:")
    for r in rows[:: max(1, len(rows) // 8)]:
        click.echo(f"  {r.g_us:7.1f} µS  mean {r.mean_dev_measured_us:+7.3f} vs "
                   f"{r.mean_dev_predicted_us:+7.3f}   spread {r.spread_measured_us:6.3f} vs "
                   f"{r.spread_predicted_us:6.3f}")
    w = report.worst()
    click.echo(f"  validation {'PASSED' if report.passed else 'FAILED'} over {len(report.rows)} "
               f"level × age comparisons (largest KS {w.ks:.3f}, p = {w.p_value:.2g}); "
               "full table: devmodel validate")


def _replay_shipped() -> None:
    """Offline: re-run the drift schedule and bursts of the shipped recording on ``replay:``."""
    from devmodel.commands.replay import replay_reads

    sample = CALIBRATION_DATA / "pcm_sample.h5"
    if not sample.exists():  # a wheel install does not carry the repository's calibration_data/
        click.echo("\n(offline replay skipped: calibration_data/ is not next to this installation)")
        return
    click.echo(f"\noffline, from the recording shipped in {sample.parent.name}/ "
               "(devmodel replay; no chip needed):")
    replay_reads(str(sample), ("drift", "bursts"))
