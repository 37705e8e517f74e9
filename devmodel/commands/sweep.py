"""``train-hwa --sweep-noise``: seed 001's η_train × η_inference grid (Fig. 2), printed and plotted."""

from __future__ import annotations

import sys

import click

from devmodel.commands.common import floats, load_network
from devmodel.errors import DevmodelError


def _etas(flag: str, text: str) -> list[float]:
    values = floats(flag.lstrip("-"), text)
    if not values:
        raise DevmodelError(f"{flag}: give at least one relative noise η, e.g. 0,0.02,0.04")
    if any(v < 0 or v > 10 for v in values):
        raise DevmodelError(f"{flag}: η is a standard deviation relative to max|W|, between 0 and 10")
    return list(values)


def run_sweep(model, method: str, network: str, fp_epochs: int, loop, sweep_noise: str,
              sweep_inference: str | None, training_runs: int, trials: int, plot: str | None,
              quiet: bool) -> None:
    """Train noise-001 at each η_train, test at each η_inference, print the grid, save the figure."""
    from tqdm import tqdm

    from devmodel.sim import accuracy
    from devmodel.train.sweep import sweep_noise as sweep

    if method != "noise-001":
        raise DevmodelError(f"--sweep-noise is seed 001's sweep and trains noise-001, not {method}; "
                            "use --method noise-001")
    eta_train = _etas("--sweep-noise", sweep_noise)
    eta_inf = _etas("--sweep-inference", sweep_inference) if sweep_inference else eta_train
    if plot:
        from pathlib import Path

        from devmodel.store.output import check_output

        check_output(Path(plot), True, option="--plot")
    fp_net, data = load_network(network, fp_epochs, loop.seed, quiet)
    bar = tqdm(total=len(eta_train) * training_runs, desc="η_train runs", disable=quiet or None,
               file=sys.stderr, leave=False)
    try:
        result = sweep(fp_net, model, data, eta_train, eta_inf, loop, training_runs, trials,
                       progress=lambda i, n: bar.update(1))
    finally:
        bar.close()
    click.echo(f"seed 001 noise sweep on {network}: noise-001, {loop.epochs} epochs from the FP network "
               f"({100 * accuracy(fp_net, data.x_test, data.y_test):.2f} %), {training_runs} training "
               f"run(s) × {trials} inference runs per cell; test accuracy %, * best η_train per column")
    click.echo(result.table())
    if plot:
        from devmodel.store.output import save_figure

        save_figure(result.figure(), plot)
        click.echo(f"written {plot}")
