"""Model commands: ``fit`` a card to a session, ``validate`` it on held-out data, ``report`` figures,
``export`` it to simulators."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from devmodel.commands.common import Finite, floats, key_values, one_line, typed_values, write_atomically
from devmodel.errors import DevmodelError
from devmodel.progress import PhaseBars
from devmodel.technologies import all_technologies


def _legacy_fit_flags(fn):
    """The fit flags technologies declare (``--prog-degree`` → PCM's prog_degree, …), one option each."""
    for tech in reversed(all_technologies()):
        for flag, field in tech.fit_flags.items():
            fn = click.option(f"--{flag}", f"flag_{field}_{tech.name}", type=int, default=None,
                              help=f"{tech.title}: the fit option {field} (as --set {field}=N).")(fn)
    return fn


@click.command()
@click.argument("session", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False),
              help="Model card (JSON) [default: the session's name with .json, in the current directory].")
@click.option("--set", "settings", multiple=True, metavar="OPTION=VALUE",
              help="An option of the session technology's fitter (e.g. --set prog_degree=3); repeatable.")
@_legacy_fit_flags
@click.option("--holdout-fraction", type=Finite(), default=0.0, show_default=True,
              help="Fraction of devices left out of the fit, for `devmodel validate`.")
@click.option("--holdout-seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True)
@click.option("--holdout-split", type=click.Choice(["random", "parity"]), default="random",
              show_default=True,
              help="random: --holdout-fraction of the devices; parity: the devices at odd addresses.")
@click.option("--bootstrap", type=int, default=0, show_default=True,
              help="Device-resampled refits for 95 % percentile intervals (0: none).")
@click.option("--memory-limit", default="2GB", show_default=True,
              help="Peak memory of the fit; a session whose in-memory fit would need more is fitted "
              "out of core, in chunks (docs/scale.md).")
@click.option("--overwrite", is_flag=True, help="Replace an existing card.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@one_line
def fit(session, out, settings, holdout_fraction, holdout_seed, holdout_split, bootstrap, memory_limit,
        overwrite, quiet, **flags) -> None:
    """Fit a device model (model card JSON) to a session file."""
    from devmodel.fit.session import fit_options, fit_session
    from devmodel.fit.streamed import in_memory_bytes, memory_bytes
    from devmodel.model.summary import format_card
    from devmodel.store import read_session
    from devmodel.store.output import check_output

    out_path = Path(out) if out else Path(Path(session).with_suffix(".json").name)
    check_output(out_path, overwrite, [session])
    if not 0 <= holdout_fraction < 1:
        raise DevmodelError("--holdout-fraction must be in [0, 1)")
    if bootstrap < 0:
        raise DevmodelError("--bootstrap must be ≥ 0")
    limit = memory_bytes(memory_limit)
    if in_memory_bytes(session) > limit:
        card = _fit_out_of_core(session, settings, flags, limit, holdout_fraction, bootstrap, quiet)
        write_atomically(out_path, card.to_json(), overwrite, [session])
        click.echo(format_card(card))
        click.echo(f"written {out_path}")
        return
    record = read_session(session, with_trace=False)
    options = typed_values("--set", key_values("--set", settings), fit_options(record.technology))
    options.update(_legacy_values(record.technology, flags))
    bars = PhaseBars(not quiet, units={"bootstrap refits": "refits"})
    try:
        card = fit_session(record, options, holdout_fraction, holdout_seed, bootstrap, progress=bars,
                           holdout=holdout_split)
    finally:
        bars.close()
    write_atomically(out_path, card.to_json(), overwrite, [session])
    click.echo(format_card(card))
    click.echo(f"written {out_path}")


def _fit_out_of_core(session, settings, flags, limit, holdout_fraction, bootstrap, quiet):
    """The out-of-core fit (devmodel.fit.streamed) of a session too large for ``limit``."""
    from devmodel.fit.session import fit_options
    from devmodel.fit.streamed import fit_session_streamed, in_memory_bytes
    from devmodel.store.reader import SessionFile

    if holdout_fraction > 0 or bootstrap > 0:
        need = in_memory_bytes(session) / 1e9
        raise DevmodelError(f"{session}: --holdout-fraction and --bootstrap need the in-memory fit, ≈ "
                            f"{need:.1f} GB, above --memory-limit; raise it to {need + 0.05:.1f}GB")
    with SessionFile(session) as sf:
        tech = sf.header()["technology"]
    options = typed_values("--set", key_values("--set", settings), fit_options(tech))
    options.update(_legacy_values(tech, flags))
    bars = PhaseBars(not quiet, units={"fitting devices": "chunks", "level statistics": "levels"})
    try:
        return fit_session_streamed(session, options, limit, progress=bars)
    finally:
        bars.close()


def _legacy_values(technology_name: str, flags: dict) -> dict:
    """Values of the technologies' own fit flags that were given; one sentence for a flag of another
    technology than the session's."""
    out = {}
    for tech in all_technologies():
        for flag, field in tech.fit_flags.items():
            value = flags.get(f"flag_{field}_{tech.name}")
            if value is None:
                continue
            if tech.name != technology_name:
                raise DevmodelError(f"--{flag} applies to {tech.name} sessions; this is a "
                                    f"{technology_name} session (see --set)")
            out[field] = value
    return out


@click.command()
@click.argument("card", type=click.Path(dir_okay=False))
@click.argument("session", type=click.Path(dir_okay=False))
@click.option("--holdout-fraction", type=Finite(), default=0.3, show_default=True,
              help="Held-out fraction when the card was fitted on all devices of this session.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Seed of the split.")
@click.option("--max-ks", type=Finite(0.0, 1.0, min_open=True), default=0.05, show_default=True,
              help="Fail when a gated Kolmogorov–Smirnov statistic reaches this.")
@click.option("--gate-ages", default=None,
              help="Ages (s, comma-separated) whose KS decides pass/fail [default: all].")
@click.option("--alpha", type=Finite(), default=0.05, show_default=True,
              help="A failing KS must also be significant at this family-wise level (Bonferroni "
              "over the gated comparisons), so sampling noise of small sessions does not fail; "
              "1: the KS threshold alone decides.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@one_line
def validate(card, session, holdout_fraction, seed, max_ks, gate_ages, alpha, quiet) -> None:
    """Compare a card's predictions with held-out data; exit 1 if a threshold fails."""
    from devmodel.fit.validate import format_report
    from devmodel.fit.validate import validate as run_validation
    from devmodel.model.card import DeviceModel

    if not 0 < holdout_fraction < 1:
        raise DevmodelError("--holdout-fraction must be in (0, 1)")
    if not 0 < alpha <= 1:
        raise DevmodelError("--alpha must be in (0, 1]")
    bars = PhaseBars(not quiet, units={"comparing ages": "ages"})
    try:
        report = run_validation(DeviceModel.load(card), session, holdout_fraction, seed, max_ks,
                                list(floats("gate-ages", gate_ages)) if gate_ages else None,
                                alpha=alpha, progress=bars)
    finally:
        bars.close()
    click.echo(format_report(report))
    if report.worst() is None:  # nothing gated was compared: not a pass
        raise DevmodelError(f"validate compared nothing: no level of {session} had {report.min_devices} "
                            "held-out devices with reads at a gated age (more devices, another "
                            "--holdout-fraction or --gate-ages)")
    if not report.passed:
        sys.exit(1)


@click.command()
@click.argument("card", type=click.Path(dir_okay=False))
@click.argument("session", type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for the PNG figures and index.html.")
@click.option("--no-validation", is_flag=True, help="Skip the validation table.")
@one_line
def report(card, session, out, no_validation) -> None:
    """Figures (PNG) and one HTML page for a card and its session."""
    from devmodel.fit.validate import validate as run_validation
    from devmodel.model.card import DeviceModel
    from devmodel.report.figures import write_report
    from devmodel.store import read_session

    model = DeviceModel.load(card)
    record = read_session(session, with_trace=False)  # loaded once for the table and the figures
    val = None if no_validation else run_validation(model, record)
    page = write_report(model, record, out, val)
    click.echo(f"written {page}")


def _export_targets() -> list[str]:
    from devmodel.export import EXPORTERS

    return list(EXPORTERS.names())


@click.command()
@click.argument("card", type=click.Path(dir_okay=False))
@click.option("--to", "target", type=click.Choice(_export_targets()), required=True,
              help="aihwkit: a Python module building aihwkit noise models; json: the normalised "
              "card; summary: the scalars simpler simulators take.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file [default: standard output].")
@click.option("--g-max-us", type=Finite(0.0, 1e6, min_open=True), default=None,
              help="Conductance range of the target simulator (must match the card's).")
@click.option("--overwrite", is_flag=True)
@one_line
def export(card, target, out, g_max_us, overwrite) -> None:
    """Export a model card to aihwkit, normalised JSON, or a scalar summary."""
    from devmodel.export import EXPORTERS
    from devmodel.model.card import DeviceModel

    if out is not None:
        from devmodel.store.output import check_output

        check_output(Path(out), overwrite, [card])
    text = EXPORTERS.get(target)(DeviceModel.load(card), g_max_us)
    if out is None:
        click.echo(text, nl=False)
    else:
        write_atomically(Path(out), text, overwrite, [card])
        click.echo(f"written {out}")



@click.command("read-noise")
@click.argument("session", type=click.Path(dir_okay=False))
@click.option("--min-samples", type=click.IntRange(128, None), default=1024, show_default=True,
              help="Bursts with fewer reads are not traces.")
@click.option("--figure", type=click.Path(dir_okay=False), default=None,
              help="Write the spectra with their fits (PNG or PDF).")
@one_line
def read_noise(session, min_samples, figure) -> None:
    """Read noise from the spectra of read traces (long bursts or imported time series): 1/f
    amplitude Q, exponent α and white floor per level, with the variogram estimator beside it."""
    from devmodel.fit.psd import format_levels, traces_by_level
    from devmodel.store import read_session

    rows = traces_by_level(read_session(session, with_trace=False), min_samples)
    click.echo(format_levels(rows))
    if figure:
        from devmodel.report.figures import spectra_figure

        spectra_figure(rows, Path(figure))
        click.echo(f"written {figure}")


@click.command()
@click.argument("table", type=click.Path(dir_okay=False))
@click.option("--g-max-us", type=Finite(0.0, 1e6, min_open=True), required=True,
              help="Conductance range (µS).")
@click.option("--columns", default="device,time_s,-,g_us,temperature_c", show_default=True,
              metavar="NAME,…", help="Names of the file's columns (- skips one); needs device, "
              "time_s, g_us, temperature_c.")
@click.option("--conductance-unit", type=click.Choice(["S", "mS", "uS", "nS"]), default="S",
              show_default=True)
@click.option("--bands", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Equal level bands over [0, g_max], by the read before the bake.")
@one_line
def bake(table, g_max_us, columns, conductance_unit, bands) -> None:
    """Retention against temperature from before/after-bake read pairs (one row per read, optionally
    gzipped): the spread of the change per temperature and level band, and its Arrhenius fit."""
    from devmodel.fit.bake import bake_pairs, fit_bake, format_bake
    from devmodel.store.table_import import read_numeric_table

    cols = read_numeric_table(table, tuple(c.strip() for c in columns.split(",")),
                              ("device", "time_s", "g_us", "temperature_c"), conductance_unit)
    before, after, temp = bake_pairs(cols["device"], cols["time_s"], cols["g_us"], cols["temperature_c"])
    click.echo(format_bake(fit_bake(before, after, temp, g_max_us, bands)))
