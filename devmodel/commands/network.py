"""Network commands: ``evaluate`` a network programmed onto the characterised chip over time, and
``train-hwa`` (hardware-aware training with the seeds' methods)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from devmodel.commands.common import (
    Finite,
    check_times,
    key_values,
    load_network,
    one_line,
    quiet_extrapolation,
    sem,
    times,
    typed_values,
)
from devmodel.errors import DevmodelError
from devmodel.train.registry import METHODS


@click.command()
@click.option("--card", type=click.Path(dir_okay=False), help="Model card (JSON); required unless "
              "--deployment (then optional: the prediction beside the measurement).")
@click.option("--deployment", type=click.Path(dir_okay=False), default=None,
              help="A deployment file (devmodel deploy): accuracy from the measured conductances at each "
              "read age, beside the --card's prediction (docs/deployment.md).")
@click.option("--network", default="digits-cnn", show_default=True,
              help="digits-mlp, digits-cnn (trained here on scikit-learn's digits), or path.pt "
              "(a torch module saved with torch.save, evaluated on digits).")
@click.option("--times", "times_text", default="1,3600,86400,31536000", show_default=True,
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
@click.option("--input-range", type=click.Choice(["calibrated", "learned"]), default="calibrated",
              show_default=True, help="Static input ranges: calibrated on the training data, or the "
              "ones a hardware-aware training learned (a --network saved by train-hwa --method device-000).")
@click.option("--management", type=click.Choice(["none", "noise", "bound", "both"]), default="none",
              show_default=True, help="Seed 000's dynamic managements (B.1; off in its standard model): "
              "noise: each input vector scaled by its own abs-max; bound: a product whose outputs clip "
              "re-run with the input halved (up to 10 times, aihwkit's bound factor 1000).")
@click.option("--drift-compensation/--no-drift-compensation", default=None,
              help="Global drift compensation (seed 001). Default: on for a technology that drifts on "
              "average (PCM, CMO), off for ReRAM (seed 000, B.2).")
@click.option("--read-noise", type=click.Choice(["card", "constant"]), default="card", show_default=True,
              help="Short-term read noise at every matrix-vector product: each device's own from the "
              "card (its 1/f law faster than 1/--read-window, and white noise) or the seed's constant "
              "w_noise 0.0175 of --crossbar standard.")
@click.option("--read-window", type=Finite(1e-9, 1e10), default=1.0, show_default=True,
              help="τ (s): the 1/f fluctuations faster than 1/τ are re-drawn at every read, the slower "
              "ones are frozen at each inference time (--read-noise card).")
@click.option("--bit-serial", is_flag=True,
              help="Read each input bit separately with its own read noise (seed 004; needs the "
              "DAC of --crossbar standard); prints the reads per matrix-vector product.")
@click.option("--extrapolate/--no-extrapolate", default=True, show_default=True,
              help="Times outside the ages the card was fitted on: use the fitted laws there (a note "
              "on stderr, rows marked *) or refuse.")
@click.option("--scale-levels", type=click.IntRange(1, 1 << 16), default=None,
              help="Output scales as N integers × one scale per tile (seed 000, Eq. 1; 1: the tile scale).")
@click.option("--exempt-fraction", type=Finite(0, 1), default=0.0, show_default=True,
              help="Fraction of all columns read noise-free, those with the largest mean |gradient| "
              "(seed 000, B.4).")
@click.option("--energy", is_flag=True, help="Print the read energy, cells and array reads per "
              "inference, inputs at once vs bit-serial (seed 004; needs the DAC of --crossbar standard).")
@click.option("--epochs", type=click.IntRange(1, 100_000), default=30, show_default=True,
              help="Floating-point training epochs for the digits networks.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Save accuracy vs time as a PNG.")
@click.option("--quiet", is_flag=True)
@one_line
def evaluate(card, deployment, network, times_text, trials, crossbar, scales, input_range, management,
             drift_compensation,
             read_noise, read_window, bit_serial, extrapolate, scale_levels, exempt_fraction, energy,
             epochs, seed, plot, quiet) -> None:
    """Accuracy of a network programmed onto the characterised chip, over time (mean ± SEM)."""
    from tqdm import tqdm

    from devmodel.model.card import DeviceModel
    from devmodel.model.noise import ExtrapolationError
    from devmodel.sim import CrossbarConfig, accuracy, convert, evaluate_over_time

    if deployment is not None:
        from devmodel.commands.deploy import evaluate_deployment, refuse_card_only_options

        refuse_card_only_options(click.get_current_context())
        return evaluate_deployment(deployment, card, trials, drift_compensation, seed, quiet)
    if card is None:
        raise DevmodelError("--card is required (the model card to evaluate with), or --deployment FILE")
    model = DeviceModel.load(card)
    times_s = times(times_text)
    cfg = {"standard": CrossbarConfig.standard(), "ideal-periphery": CrossbarConfig(),
           "ideal": CrossbarConfig.ideal()}[crossbar]
    cfg = cfg.with_(scales=scales, input_range=input_range, scale_levels=scale_levels,
                    read_window_s=read_window, read_noise=read_noise if cfg.device_noise else "constant")
    if drift_compensation is not None:
        cfg = cfg.with_(drift_compensation=drift_compensation)
    if management != "none":
        cfg = cfg.with_(noise_management=management in ("noise", "both"),
                        bound_management=10 if management in ("bound", "both") and cfg.out_bound else 0)
    if bit_serial:
        if not cfg.dac_bits:
            raise DevmodelError(f"--bit-serial needs an input DAC; --crossbar {crossbar} has none "
                                "(use --crossbar standard)")
        cfg = cfg.with_(bit_serial=True)
    outside = check_times(model, times_s, extrapolate)
    net, data = load_network(network, epochs, seed, quiet)
    fp = accuracy(net, data.x_test, data.y_test)
    anet = convert(net, model, cfg, extrapolate)
    if exempt_fraction:
        from devmodel.sim.exempt import column_sensitivity, exempt_columns

        n = exempt_columns(anet, column_sensitivity(net, data.x_train, data.y_train), exempt_fraction)
        click.echo(f"{n} columns read noise-free (the largest mean |gradient|, seed 000 B.4)")
    bar = tqdm(total=trials, desc="trials", disable=quiet or None, file=sys.stderr, leave=False)
    try:
        with quiet_extrapolation():
            acc = evaluate_over_time(anet, data.x_test, data.y_test, times_s, trials, seed,
                                     calibration=data.x_train, progress=lambda i, n: bar.update(1))
    except ExtrapolationError as e:
        raise DevmodelError(f"{e} (drop --no-extrapolate)") from None
    finally:
        bar.close()
    mean, err = acc.mean(0), sem(acc)
    click.echo(f"network {network} on {card} ({model.technology}), crossbar {crossbar}, "
               f"{scales} scales, drift compensation {'on' if anet.drift_compensation else 'off'}, "
               f"read noise {_read_noise_text(cfg, model)}, "
               f"{trials} trials; floating point {100 * fp:.2f} %")
    if bit_serial:
        click.echo(f"bit-serial inputs: {anet.layers[0].reads_per_mvm} reads per matrix-vector product, "
                   f"{anet.reads_per_inference(data.x_test):,} device reads per inference")
    if energy:
        from devmodel.sim.energy import format_energy, network_energy

        click.echo("read energy per inference (seed 004, Eq. 19–20), on the first 256 test samples:")
        click.echo(format_energy(network_energy(anet, data.x_test[:256])))
    click.echo("        time s   accuracy %    ± SEM")
    for t, m, e, o in zip(times_s, mean, err, outside, strict=True):
        click.echo(f"  {t:12g}   {100 * m:10.2f}   {100 * e:6.2f}" + ("  *" if o else ""))
    if plot:
        _plot(plot, times_s, mean, err, fp)


def _read_noise_text(cfg, model) -> str:
    if cfg.read_noise == "card":
        import torch

        nm = model.noise_model()
        nm.short_term_window_s = cfg.read_window_s
        g = torch.tensor([0.1, 1.0], dtype=torch.float64) * model.g_max_us
        lo, hi = (float(v) for v in nm.short_term_std_us(g))
        if lo == hi == 0:
            return "none (the card has no short-term read noise)"
        return (f"from the card per device (1/f faster than 1/{cfg.read_window_s:g} s and white: "
                f"{lo:.3g} µS at 0.1 g_max, {hi:.3g} µS at g_max)")
    return f"constant w_noise {cfg.w_noise:g}" if cfg.w_noise else "none"


def _plot(path: str, times_s, mean, err, fp: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.errorbar(times_s, 100 * mean, 100 * err, marker="o", capsize=3)
    ax.axhline(100 * fp, ls="--", color="gray", label="floating point")
    ax.set_xscale("log")
    ax.set_xlabel("time after programming (s)")
    ax.set_ylabel("accuracy (%)")
    ax.legend()
    fig.tight_layout()
    from devmodel.store.output import save_figure

    save_figure(fig, path)
    click.echo(f"written {path}")


@click.command("train-hwa")
@click.option("--card", required=True, type=click.Path(dir_okay=False), help="Model card (JSON).")
@click.option("--network", default="digits-cnn-small", show_default=True,
              help="digits-mlp, digits-cnn, digits-mlp-small, digits-cnn-small, or path.pt.")
@click.option("--method", required=True, type=click.Choice(METHODS.names()),
              help="Training method, named after the seed it comes from (docs/hwa-training.md).")
@click.option("--epochs", type=click.IntRange(1, 100_000), default=60, show_default=True,
              help="Hardware-aware epochs (per pipeline level for tile-003).")
@click.option("--fp-epochs", type=click.IntRange(1, 100_000), default=40, show_default=True,
              help="Floating-point epochs for a digits network trained here first.")
@click.option("--lr", type=Finite(0, 10, min_open=True), default=1e-3, show_default=True)
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True,
              help="sgd: with --momentum, as the seeds train their ResNets.")
@click.option("--momentum", type=Finite(0, 1, max_open=True), default=0.9, show_default=True)
@click.option("--weight-decay", type=Finite(0, 1), default=0.0, show_default=True)
@click.option("--lr-schedule", type=click.Choice(["constant", "step", "cosine"]), default="constant",
              show_default=True, help="step: ÷10 at 50 % and 75 % of the epochs (the seeds'); cosine.")
@click.option("--noise-scale", type=Finite(0, 100), default=None,
              help="Injected noise × the card's spread at t0 [noise-001: 2, device-000: 3, hasgd-002: 2].")
@click.option("--perturbations", type=click.IntRange(1, 1000), default=None,
              help="hasgd-002: L [4].")
@click.option("--set", "settings", multiple=True, metavar="OPTION=VALUE",
              help="An option of the method (docs/hwa-training.md), e.g. --set drop_connect=0.02; "
              "repeatable.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--times", "times_text", default="1,3600,86400", show_default=True,
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
@click.option("--sweep-noise", default=None, metavar="ETAS",
              help="Seed 001's Fig. 2 instead: train noise-001 at each relative weight noise η_train "
              "(comma-separated, e.g. 0,0.02,0.04,0.08) and test each at every --sweep-inference η.")
@click.option("--sweep-inference", default=None, metavar="ETAS",
              help="η_inference of --sweep-noise (default: the same values); --trials inference runs each.")
@click.option("--training-runs", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="--sweep-noise: training runs (seeds) per η_train.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="--sweep-noise: save the figure (accuracy vs η_inference per η_train; η_train = η_inf).")
@click.option("--quiet", is_flag=True)
@one_line
def train_hwa_cmd(card, network, method, epochs, fp_epochs, lr, optimizer, momentum, weight_decay,
                  lr_schedule, noise_scale, perturbations, settings, seed, times_text, trials, extrapolate,
                  out, checkpoint_dir, resume, sweep_noise, sweep_inference, training_runs, plot,
                  quiet) -> None:
    """Hardware-aware training with a seed's method, then accuracy over time vs the FP network."""
    import numpy as np
    import torch

    from devmodel.model.card import DeviceModel
    from devmodel.model.noise import ExtrapolationError
    from devmodel.sim import accuracy
    from devmodel.train import TrainOptions, evaluate_hwa, train_hwa

    model = DeviceModel.load(card)
    loop = TrainOptions(epochs=epochs, lr=lr, seed=seed, optimizer=optimizer, momentum=momentum,
                        weight_decay=weight_decay, schedule=lr_schedule)
    if sweep_noise is not None:
        from devmodel.commands.sweep import run_sweep

        return run_sweep(model, method, network, fp_epochs, loop, sweep_noise, sweep_inference,
                         training_runs, trials, plot, quiet)
    times_s = times(times_text)
    if out:
        from devmodel.store.output import check_output

        check_output(Path(out), False, [card, network, resume])
    options = typed_values("--set", key_values("--set", settings), METHODS[method].Options())
    for flag, field, value in (("--noise-scale", "noise_scale", noise_scale),
                               ("--perturbations", "n_perturb", perturbations)):
        if value is not None:
            if not hasattr(METHODS[method].Options(), field):
                raise DevmodelError(f"{flag} does not apply to method {method} (it has no {field})")
            options[field] = value
    outside = check_times(model, times_s, extrapolate)
    fp_net, data = load_network(network, fp_epochs, seed, quiet)
    result = train_hwa(fp_net, model, method, data, loop,
                       options, progress=not quiet, checkpoint_dir=checkpoint_dir, resume=resume)
    try:
        with quiet_extrapolation():
            fp_acc = evaluate_hwa(fp_net, model, data, times_s, trials, seed,
                                  config=result.method.eval_config().for_untrained(), extrapolate=extrapolate)
            hwa_acc = evaluate_hwa(result, model, data, times_s, trials, seed, extrapolate=extrapolate)
    except ExtrapolationError as e:
        raise DevmodelError(f"{e} (drop --no-extrapolate)") from None
    fp_digital = accuracy(fp_net, data.x_test, data.y_test)
    hwa_digital = accuracy(result.net, data.x_test, data.y_test)
    click.echo(f"{method} ({result.method.seed}) on {network}, {epochs} epochs in {result.seconds:.1f} s; "
               f"digital accuracy FP {100 * fp_digital:.2f} %, HWA {100 * hwa_digital:.2f} %")
    click.echo(f"  {', '.join(f'{k} = {v}' for k, v in result.report.items())}")
    click.echo("        time s    FP mapped %     HWA %   (mean ± SEM over trials; HWA median, top-25 %)")
    fp_sem, hwa_sem = sem(fp_acc), sem(hwa_acc)
    for j, t in enumerate(times_s):
        a, b = fp_acc[:, j], hwa_acc[:, j]
        click.echo(f"  {t:12g}   {100 * a.mean():6.2f} ± {100 * fp_sem[j]:4.2f}   "
                   f"{100 * b.mean():6.2f} ± {100 * hwa_sem[j]:4.2f}   "
                   f"({100 * np.median(b):.2f}, {100 * np.percentile(b, 75):.2f})"
                   + ("  *" if outside[j] else ""))
    if out:
        from devmodel.store.output import atomic_output

        with atomic_output(out, False, [card, network, resume]) as tmp:
            torch.save(result.net, tmp)  # a whole module, as --network path.pt expects
        click.echo(f"written {out}")
