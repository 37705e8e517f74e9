"""Past one machine (docs/scale.md): ``fit-many`` (every chip's session on a Dask cluster, then the
population card) and ``characterize-wafer`` (a wafer of simulated chips with chip-to-chip
variation)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from devmodel.commands.common import Finite, key_values, one_line, typed_values
from devmodel.errors import DevmodelError

POPULATION_CARD = "population.json"


@click.command("fit-many")
@click.argument("sessions", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for the per-chip cards (<session name>.json) and population.json "
              "(created if missing).")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="A running Dask scheduler; its workers must read the sessions by these paths.")
@click.option("--workers", type=click.IntRange(0, 1024), default=2, show_default=True,
              help="Without --scheduler: worker processes of a local Dask cluster (0: one fit after "
              "another in this process, without Dask).")
@click.option("--connect-timeout", type=Finite(0.1, 600.0), default=10.0, show_default=True,
              help="Seconds to wait for --scheduler to answer.")
@click.option("--memory-limit", default="2GB", show_default=True,
              help="Peak memory of one fit (per worker); sessions larger are fitted out of core.")
@click.option("--set", "settings", multiple=True, metavar="OPTION=VALUE",
              help="An option of the sessions' technology's fitter; repeatable.")
@click.option("--overwrite", is_flag=True, help="Replace existing cards.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@one_line
def fit_many(sessions, out, scheduler, workers, connect_timeout, memory_limit, settings, overwrite,
             quiet) -> None:
    """Fit every chip's session on a Dask cluster; write per-chip cards and a population card
    (each parameter's mean and chip-to-chip spread, outlier chips flagged). A chip whose fit fails
    is reported with its reason; the others go on (exit status 1 if any failed)."""
    from devmodel.fit.many import Cluster, chip_name, population, run_fits
    from devmodel.fit.session import fit_options
    from devmodel.fit.streamed import memory_bytes
    from devmodel.store.output import check_output, write_text_atomically

    limit = memory_bytes(memory_limit)
    if scheduler is not None and "workers" in _given():
        raise DevmodelError("--workers and --scheduler contradict each other: a scheduler has its "
                            "own workers")
    paths = [str(Path(s)) for s in sessions]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:  # a typo, not a chip whose fit failed: nothing is fitted or written
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DevmodelError(f"session file {missing[0]} does not exist{more}")
    names = [chip_name(p) for p in paths]
    if len(set(names)) < len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DevmodelError(f"two sessions are named {dup!r}; their cards would have one name")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise DevmodelError(f"--out {folder} is a file; name a folder for the cards")
    if not folder.parent.is_dir():
        raise DevmodelError(f"--out {folder}: its parent folder {folder.parent} does not exist")
    card_paths = {p: folder / f"{n}.json" for p, n in zip(paths, names, strict=True)}
    if folder.is_dir():
        for target in [*card_paths.values(), folder / POPULATION_CARD]:
            check_output(target, overwrite, paths)
    options = _options(paths, settings, fit_options)
    created = not folder.exists()
    folder.mkdir(exist_ok=True)  # only now: a refused command leaves no folder behind
    try:
        results = run_fits(paths, options, Cluster(scheduler, workers, limit, not quiet, connect_timeout))
    except BaseException:
        if created and not any(folder.iterdir()):
            folder.rmdir()  # e.g. no scheduler answered: nothing was written
        raise
    for r in results:
        if r["ok"]:
            write_text_atomically(card_paths[r["session"]], r["card"], overwrite, paths)
    card = population(results, card_paths)
    card["command"] = shlex.join(["devmodel", *sys.argv[1:]])
    write_text_atomically(folder / POPULATION_CARD, json.dumps(card, indent=2), overwrite, paths)
    _print(card, results, folder)
    if card["failed_chips"]:
        sys.exit(1)


def _given() -> set[str]:
    ctx = click.get_current_context()
    return {n for n in ctx.params if (s := ctx.get_parameter_source(n)) is not None
            and s.name not in ("DEFAULT", "DEFAULT_MAP")}


def _options(paths: list[str], settings, fit_options) -> dict:
    """``--set`` values typed by the first readable session's technology's fit options."""
    if not settings:
        return {}
    from devmodel.store.reader import SessionFile

    for p in paths:
        try:
            with SessionFile(p) as sf:
                tech = sf.header()["technology"]
        except DevmodelError:
            continue
        return typed_values("--set", key_values("--set", settings), fit_options(tech))
    raise DevmodelError("--set: no session could be read to tell which fitter the options are for")


def _print(card: dict, results: list[dict], folder: Path) -> None:
    ok = sum(r["ok"] for r in results)
    click.echo(f"fitted {ok} of {len(results)} chips; cards and {POPULATION_CARD} in {folder}")
    click.echo(f"{'parameter':<28}{'mean':>12}{'chip SD':>12}{'± SE':>11}{'fit SE':>11}{'chips':>6}")
    def num(v, fmt: str) -> str:
        return "—" if v is None else format(v, fmt)

    for name, p in card["parameters"].items():
        click.echo(f"{name:<28}{num(p['mean'], '.5g'):>12}{num(p['chip_to_chip_sd'], '.3g'):>12}"
                   f"{num(p['chip_to_chip_sd_stderr'], '.2g'):>11}{num(p['rms_fit_stderr'], '.3g'):>11}"
                   f"{p['n_chips']:>6}")
    for chip, hits in card["outlier_chips"].items():
        what = ", ".join(f"{h['parameter']} (M = {h['modified_z']:+.1f})" for h in hits)
        click.echo(f"outlier chip {chip}: {what}")
    for f in card["failed_chips"]:
        click.echo(f"failed chip {f['chip']}: {f['reason']}", err=True)


@click.command("characterize-wafer")
@click.option("--chip", "chip_url", required=True,
              help="Simulated chip URL with chip-to-chip spreads, e.g. "
              "'sim:pcm?devices=8192&spread.stat.q_s.amp=0.2' (each chip adds chip=K).")
@click.option("--chips", type=click.IntRange(1, 10_000), required=True, help="Chips on the wafer.")
@click.option("--devices", type=click.IntRange(1), default=300, show_default=True,
              help="Devices programmed per target level on each chip.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Wafer seed (each chip's truth and devices derive from it and its index).")
@click.option("--set-chip", "chip_settings", multiple=True, metavar="K:PARAM=VALUE",
              help="Set one chip's parameter (a deliberately bad chip), e.g. 7:stat.q_s.amp=0.03.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for chip-000.h5, chip-001.h5, … (created if missing).")
@click.option("--overwrite", is_flag=True)
@one_line
def characterize_wafer(chip_url, chips, devices, seed, chip_settings, out, overwrite) -> None:
    """Characterise a wafer of simulated chips, one session file per chip (the technology's default
    sweep, plain files); each chip's parameters are its session's ground truth (docs/scale.md)."""
    from devmodel.chips import open_chip
    from devmodel.procedures.characterize import SweepConfig
    from devmodel.procedures.session import new_session
    from devmodel.store.output import atomic_output, check_output

    if not chip_url.lower().startswith("sim:"):
        raise DevmodelError("--chip: a wafer is made of simulated chips (sim:<technology>?…)")
    extra = _chip_settings(chip_settings, chips)
    folder = Path(out)
    folder.mkdir(parents=False, exist_ok=True) if folder.parent.is_dir() else None
    width = max(3, len(str(chips - 1)))
    targets = [folder / f"chip-{k:0{width}d}.h5" for k in range(chips)]
    for t in targets:
        check_output(t, overwrite)
    for k, target in enumerate(targets):
        url = chip_url + ("&" if "?" in chip_url else "?") + f"chip={k}" + extra.get(k, "")
        chip = open_chip(url, seed)
        try:
            cfg = SweepConfig.default(chip.info.technology, devices, record_trace=False)
            cfg.validate(chip.info.g_max_us, chip.info.n_devices)
            with atomic_output(target, overwrite) as tmp:  # no half-written chip on an interrupt
                new_session(chip, url, cfg, tmp, seed=seed, overwrite=True, durability="off",
                            command=shlex.join(["devmodel", *sys.argv[1:]]))
        finally:
            chip.close()
        click.echo(f"chip {k}: {url} -> {target}")


def _chip_settings(items, chips: int) -> dict[int, str]:
    out: dict[int, str] = {}
    for item in items:
        head, colon, setting = item.partition(":")
        if not colon or not head.isdigit() or "=" not in setting or int(head) >= chips:
            raise DevmodelError(f"--set-chip {item!r}: expected K:PARAM=VALUE with K below --chips")
        out[int(head)] = out.get(int(head), "") + "&" + setting
    return out
