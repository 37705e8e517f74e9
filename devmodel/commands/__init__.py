"""The ``devmodel`` command line: a thin shell over the library (docs/architecture.md).

One module per area — ``lab`` (characterize, info, import-table, import-traces, serve-chip),
``model`` (fit, validate, report, export, read-noise, bake), ``network`` (evaluate, train-hwa),
``replay``, ``demo``, ``deploy`` (deploy; evaluate --deployment), ``data`` (export-data),
``card`` (show, list), ``scale`` (fit-many, characterize-wafer) — each command parsing its
options, calling the library and printing.
Choices (technologies, export targets, training methods) come from the registries. Every error a
user can cause ends in one sentence on stderr and exit status 2, never a traceback, and nothing
half-written. Modules import only click and the core at the top, so ``devmodel --help`` stays fast.
"""

from __future__ import annotations

import click

from devmodel import __version__
from devmodel.commands.card import card
from devmodel.commands.common import OneLineErrors
from devmodel.commands.data import export_data
from devmodel.commands.demo import demo
from devmodel.commands.deploy import deploy
from devmodel.commands.lab import characterize, import_table_cmd, import_traces_cmd, info, serve_chip
from devmodel.commands.model import bake, export, fit, read_noise, report, validate
from devmodel.commands.network import evaluate, train_hwa_cmd
from devmodel.commands.replay import replay
from devmodel.commands.scale import characterize_wafer, fit_many


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="devmodel")
def main() -> None:
    """devmodel: characterise PCM/ReRAM chips, fit device models, export them to simulators.

    \b
    Start with `devmodel demo` (a complete session on the built-in simulated chip), then
    `devmodel characterize --chip sim:pcm --out session.h5` and `devmodel info session.h5`.
    Chips are named by URL: sim:pcm, sim:reram (options: sim:pcm?devices=1000000&seed=3).
    """


for _command in (characterize, info, demo, fit, validate, report, import_table_cmd, import_traces_cmd,
                 read_noise, bake, export, export_data, card, evaluate, train_hwa_cmd, serve_chip, replay,
                 deploy, characterize_wafer, fit_many):
    main.add_command(_command)

if __name__ == "__main__":
    main()
