"""Data commands: ``export-data`` writes a session's reads and device tables for other tools (netCDF,
readable by ``xarray.open_dataset(path, engine="h5netcdf")``; layout: docs/session-format.md,
"As xarray"). xarray is imported only when the command runs, so ``devmodel --help`` stays fast."""

from __future__ import annotations

from pathlib import Path

import click

from devmodel.commands.common import one_line


@click.command("export-data")
@click.argument("session", type=click.Path(dir_okay=False))
@click.option("--to", "target", type=click.Choice(["netcdf"]), default="netcdf", show_default=True,
              help="netcdf: a netCDF-4 file of the session as an xarray Dataset (engine h5netcdf).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output file (e.g. session.nc).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@one_line
def export_data(session, target, out, overwrite) -> None:
    """Export a session's reads and device tables (units as attributes) for xarray and other tools."""
    from devmodel.store.output import check_output
    from devmodel.store.xarray_view import open_xarray, save_netcdf, summary

    check_output(Path(out), overwrite, [session])  # before the session is read
    ds = open_xarray(session)
    path = save_netcdf(ds, out, overwrite, inputs=[session])
    click.echo(f"written {path}")
    click.echo(summary(ds))
