"""``devmodel card``: look at a model card — a file, or a published preset (``published:pcm``,
``published:reram``, ``published:cmo``; docs/model-card.md, "Presets")."""

from __future__ import annotations

import click

from devmodel.commands.common import one_line


@click.group("card")
def card() -> None:
    """Model cards: files, and the published presets (published:pcm, published:reram, published:cmo)."""


@card.command("show")
@click.argument("name", metavar="NAME|FILE")
@click.option("--json", "as_json", is_flag=True, help="Print the card's JSON instead of its summary.")
@one_line
def show(name: str, as_json: bool) -> None:
    """Print a card: its fitted parameters with standard errors and provenance (or its JSON)."""
    from devmodel.model.card import DeviceModel
    from devmodel.model.summary import format_card

    model = DeviceModel.load(name)
    if as_json:
        click.echo(model.to_json())
        return
    click.echo(format_card(model))
    source = model.provenance.get("source")
    if source:
        click.echo(f"  source: {source}")


@card.command("list")
def list_presets() -> None:
    """The published presets, one per registered technology."""
    from devmodel.model.card import PRESET_PREFIX
    from devmodel.technologies import names

    for name in names():
        click.echo(f"{PRESET_PREFIX}{name}")
