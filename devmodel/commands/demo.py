"""``devmodel demo``: the whole loop on the built-in simulated PCM chip."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from devmodel import __version__
from devmodel.commands.common import one_line, write_atomically

DEMO_URL = "sim:pcm?devices=65536&seed=7"


@click.command()
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for the demo's files [default: a new temporary folder].")
@click.option("--devices", type=click.IntRange(20, 5000), default=300, show_default=True,
              help="Devices per level in the demo session.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@one_line
def demo(out_dir, devices, quiet) -> None:
    """The whole loop on the built-in simulated PCM chip: session, fitted card vs ground truth,
    aihwkit export, a network's accuracy over a day, and an offline replay of a shipped recording."""
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
    click.echo(f"demo finished in {time.perf_counter() - start:.1f} s; files in {folder}")


def _export_and_network(card, folder: Path) -> str:
    """The end of the loop: the card as an aihwkit module, and what it means for a network (the
    digits MLP programmed onto this chip, standard crossbar, drift compensation, 5 trials)."""
    from devmodel.export.aihwkit import module_source
    from devmodel.sim import CrossbarConfig, accuracy, convert, evaluate_over_time
    from devmodel.sim.data import digits
    from devmodel.sim.networks import build, train_fp

    module = folder / "demo_pcm_aihwkit.py"
    write_atomically(module, module_source(card), overwrite=True)
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


def _replay_shipped() -> None:
    """Offline: re-run the drift schedule and bursts of the shipped recording on ``replay:``."""
    from devmodel.commands.replay import replay_reads

    sample = Path(__file__).resolve().parents[2] / "calibration_data" / "pcm_sample.h5"
    if not sample.exists():  # a wheel install does not carry the repository's calibration_data/
        click.echo("\n(offline replay skipped: calibration_data/ is not next to this installation)")
        return
    click.echo(f"\noffline, from the recording shipped in {sample.parent.name}/ "
               "(devmodel replay; no chip needed):")
    replay_reads(str(sample), ("drift", "bursts"))
