"""Sessions as xarray (docs/session-format.md, "As xarray"): ``devmodel.store.open_xarray`` holds
exactly what ``read_session`` reads, with units; ``devmodel export-data`` writes it to a netCDF file
that xarray (engine h5netcdf) opens unchanged, and refuses what every output refuses."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from helpers import make_session

from devmodel.commands.data import export_data
from devmodel.procedures.characterize import BurstConfig
from devmodel.store import open_xarray, read_session, sha256_of
from devmodel.store.xarray_view import write_netcdf

xr = pytest.importorskip("xarray")
pytest.importorskip("h5netcdf")

SCHEDULE_S = (20.0, 200.0, 2000.0)


@pytest.fixture(scope="module")
def session_path(tmp_path_factory):
    """13 levels × 4 devices, three schedule reads each, one 16-read burst per level."""
    path = tmp_path_factory.mktemp("xr") / "s.h5"
    make_session(path, "sim:pcm?devices=4096", 4, schedule=SCHEDULE_S, seed=3,
                 bursts=BurstConfig(devices_per_level=1, n_reads=16, interval_s=1.0, age_s=100.0))
    return path


@pytest.fixture(scope="module")
def ds(session_path):
    return open_xarray(session_path)


def _schedule_reads(s, device):
    """One device's schedule reads in time order (the reference, one device at a time)."""
    r = s.reads
    sel = np.flatnonzero((r["device"] == device) & (r["burst"] < 0))
    sel = sel[np.argsort(r["t_s"][sel], kind="stable")]
    return {k: r[k][sel] for k in ("g_us", "t_s", "age_s", "nominal_age_s")}


def _check_against(ds, s):
    assert ds.sizes["device"] == s.n_devices
    for col, values in s.devices.items():
        np.testing.assert_array_equal(ds[col].values, values)
    np.testing.assert_array_equal(ds["level_target_us"].values, s.levels_us)
    n_pad = 0
    for d in range(s.n_devices):
        ref = _schedule_reads(s, d)
        n = ref["g_us"].size
        assert int(ds["n_reads"][d]) == n
        for k, v in ref.items():
            if k in ds:
                np.testing.assert_array_equal(ds[k].values[d, :n], v)
                assert np.isnan(ds[k].values[d, n:]).all()
        n_pad += ds.sizes["read"] - n
    assert int(np.isnan(ds["g_us"].values).sum()) == n_pad
    return n_pad


def test_values_are_the_sessions(ds, session_path):
    s = read_session(session_path)
    assert _check_against(ds, s) == 0  # every device read at every schedule age
    assert ds.sizes["read"] == len(SCHEDULE_S)
    assert ds.sizes["target_level"] == s.levels_us.size
    np.testing.assert_allclose(np.nanmedian(ds["nominal_age_s"].values, axis=0), SCHEDULE_S)
    np.testing.assert_array_equal(ds["level_target_us"].values[ds["level"].values], ds["target_us"].values)
    assert ds.attrs["technology"] == s.technology and ds.attrs["g_max_us"] == s.g_max_us
    assert ds.attrs["t0_s"] == s.t0_s and ds.attrs["status"] == "complete"
    assert ds.attrs["source"] == "s.h5" and ds.attrs["chip_identity"] == s.chip["identity"]


def test_padding_and_time_order(session_path):
    """Reads in any file order, devices with fewer reads (or none): time order, NaN padding."""
    s = read_session(session_path)
    rng = np.random.default_rng(0)
    r = s.reads
    keep = np.ones(r["device"].size, bool)
    sched = r["burst"] < 0
    keep[np.flatnonzero(sched & (r["device"] == 0))[1:]] = False  # device 0: one read
    keep[sched & (r["device"] == 5)] = False  # device 5: none
    keep[np.flatnonzero(sched & (r["device"] == 7))[0]] = False  # device 7: two
    order = rng.permutation(np.flatnonzero(keep))
    reads = {k: v[order] for k, v in r.items()}
    reads["nominal_age_s"] = np.full(order.size, np.nan)  # files written before the column
    cut = dataclasses.replace(s, reads=reads)
    ds = open_xarray(cut)
    assert _check_against(ds, cut) == 2 + 3 + 1
    assert ds.sizes["read"] == len(SCHEDULE_S)
    assert "nominal_age_s" not in ds  # not recorded: left out rather than all NaN
    assert int(ds["n_reads"][5]) == 0 and np.isnan(ds["g_us"][5]).all()


def test_units_and_attributes_are_netcdf_safe(ds):
    for name, var in ds.variables.items():
        assert var.attrs.get("units") in ("uS", "s", "1"), name
        assert var.attrs.get("long_name"), name
        if str(name).endswith("_us"):
            assert var.attrs["units"] == "uS", name
        elif str(name).endswith("_s"):
            assert var.attrs["units"] == "s", name
    assert ds["stop_reason"].attrs["flag_meanings"].split()[0] == "converged"
    for key, value in ds.attrs.items():
        assert isinstance(value, str | int | float), key
    for key in ("technology", "g_max_us", "t0_s", "status", "source", "devmodel_version", "chip_json",
                "config_json", "provenance_json"):
        assert key in ds.attrs


def test_groupby_level(ds):
    means = ds["g_us"].groupby("level").mean()
    assert means.sizes["level"] == ds.sizes["target_level"]
    g, lv = ds["g_us"].values, ds["level"].values
    for k in range(ds.sizes["target_level"]):
        np.testing.assert_allclose(means.sel(level=k).values, g[lv == k].mean(axis=0))


def test_bursts(ds, session_path):
    s = read_session(session_path)
    r = s.reads
    assert ds.sizes["burst"] == s.bursts["burst"].size and ds.sizes["burst_read"] == 16
    np.testing.assert_array_equal(ds["burst_device"].values, s.bursts["device"])
    np.testing.assert_array_equal(ds["burst_level"].values, s.devices["level"][s.bursts["device"]])
    np.testing.assert_array_equal(ds["burst_interval_s"].values, s.bursts["interval_s"])
    for i, b in enumerate(ds["burst"].values):
        sel = np.flatnonzero(r["burst"] == b)
        sel = sel[np.argsort(r["t_s"][sel], kind="stable")]
        np.testing.assert_array_equal(ds["burst_g_us"].values[i], r["g_us"][sel])
        np.testing.assert_array_equal(ds["burst_age_s"].values[i], r["age_s"][sel])
    assert int(ds["n_reads"].sum()) == int((r["burst"] < 0).sum())  # bursts not in the schedule matrix


def test_export_data_writes_what_xarray_opens(ds, session_path, tmp_path):
    out = tmp_path / "s.nc"
    res = CliRunner().invoke(export_data, [str(session_path), "--to", "netcdf", "--out", str(out)])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == f"written {out}"
    assert lines[1].startswith(f"{ds.sizes['device']} devices × {ds.sizes['read']} reads")
    with xr.open_dataset(out, engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds)
    again = CliRunner().invoke(export_data, [str(session_path), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.stderr
    replaced = CliRunner().invoke(export_data, [str(session_path), "--out", str(out), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert write_netcdf(session_path, tmp_path / "api.nc") == tmp_path / "api.nc"
    with xr.open_dataset(tmp_path / "api.nc", engine="h5netcdf") as back:
        xr.testing.assert_identical(back.load(), ds)


def test_missing_session_is_one_line(tmp_path):
    res = CliRunner().invoke(export_data, [str(tmp_path / "none.h5"), "--out", str(tmp_path / "x.nc")])
    assert res.exit_code == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("devmodel: error: ")
    assert "does not exist" in res.stderr
    assert list(tmp_path.iterdir()) == []


def test_out_equal_to_input_is_refused(session_path):
    before = sha256_of(session_path)
    for extra in ([], ["--overwrite"]):
        res = CliRunner().invoke(export_data, [str(session_path), "--out", str(session_path), *extra])
        assert res.exit_code == 2 and "own input" in res.stderr, res.output
        assert res.stderr.count("\n") == 1
    assert sha256_of(session_path) == before


def test_cli_module_does_not_import_xarray():
    code = ("import sys, devmodel.store, devmodel.commands.data; "
            "assert 'xarray' not in sys.modules and 'devmodel.store.xarray_view' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
