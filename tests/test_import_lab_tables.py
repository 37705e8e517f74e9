"""What labs record, imported (real-data issue, part 3): header-less gzipped SI tables, verify reads
at time 0, nominal read ages, level labels, per-device targets grouped into levels, devices beyond
g_max dropped and counted; nothing claimed the table did not have."""

import gzip

import numpy as np
import pytest
from helpers import run_devmodel

from devmodel.fit.data import prepare
from devmodel.fit.session import fit_session
from devmodel.store import read_session
from devmodel.store.table_import import TableImportError, import_table

NOMINAL_S = (0.01, 1.0, 100.0, 10000.0)


def _lab_table(path, n_devices=240, seed=0):
    """Tab-separated, no header, siemens: device, time, resistance, G, G at first read, range,
    nominal time — the layout of the measured tech B data; reads within ±15 % of nominal ages, a
    few devices above g_max = 40 µS, relaxation towards the middle of the window."""
    rng = np.random.default_rng(seed)
    lines = []
    for d in range(n_devices):
        g0 = rng.uniform(2, 38) if d % 40 else 45.0  # every 40th device reads above g_max
        rows = [(0.0, 0.0, g0)]
        for a in NOMINAL_S:
            g = g0 + 0.05 * (20 - g0) * np.log10(a / 0.01 + 1) / 6 + 0.3 * rng.standard_normal()
            rows.append((a * rng.uniform(0.85, 1.15), a, g))
        for t, a, g in rows:
            lines.append(f"{d}\t{t:.6g}\t{1 / (g * 1e-6):.6g}\t{g * 1e-6:.9e}\t{g0 * 1e-6:.9e}\t"
                         f"{int(g0 / 40 * 8)}\t{a:g}\n")
    path.write_bytes(gzip.compress("".join(lines).encode()))
    return path


COLUMNS = ("device", "time_s", "-", "g_us", "target_us", "level", "nominal_time_s")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    d = tmp_path_factory.mktemp("lab")
    src = _lab_table(d / "lab.tsv.gz")
    return src, import_table(src, d / "lab.h5", "reram", 40.0, 1.0, columns=COLUMNS,
                             conductance_unit="S", beyond_g_max="drop")


def test_the_import_keeps_what_the_table_says_and_no_more(lab):
    src, out = lab
    s = read_session(out, with_trace=False)
    imp = s.config["import"]
    assert s.n_devices == 234 and imp["left_out"] == {"devices_beyond_g_max": 6,
                                                       "reads_of_devices_beyond_g_max": 30}
    assert not imp["convergence_recorded"] and imp["verify_recorded"]
    assert "burst" not in imp["columns"] and "converged" not in imp["columns"]
    assert np.all(s.devices["iterations"] == -1)
    # the time-0 read is the verify reading, not a schedule read
    np.testing.assert_allclose(s.devices["g_verify_us"], s.devices["target_us"], rtol=1e-8)
    assert np.all(s.reads["age_s"] > 0)
    assert sorted(np.unique(s.reads["nominal_age_s"])) == list(NOMINAL_S)
    # a level is a label; its value the mean target of its devices; deviations per device
    for j, lv in enumerate(s.levels_us):
        assert lv == pytest.approx(s.devices["target_us"][s.devices["level"] == j].mean())


def test_fits_compare_at_the_nominal_ages_not_the_measured_ones(lab):
    _, out = lab
    s = read_session(out, with_trace=False)
    data = prepare(s, None)
    assert data.has_nominal and list(data.schedule_ages()) == list(NOMINAL_S)
    assert data.losses(data.schedule_ages())["second_reads_of_a_device_at_one_age"] == 0
    card = fit_session(s)
    assert card.relaxation.span_s() == (0.01, 10000.0)
    snap = fit_session(s, {"form": "snapshots", "degree": 2})
    assert [x.t_s for x in snap.snapshots] == list(NOMINAL_S)


def test_info_lists_what_was_not_recorded_and_what_was_left_out(lab):
    _, out = lab
    r = run_devmodel("info", out)
    assert r.returncode == 0, r.stderr
    assert "not recorded: convergence, verify iterations" in r.stdout
    assert "0.01 s (234)" in r.stdout
    assert "devices beyond g max 6" in r.stdout


def test_per_device_targets_are_grouped_by_bins_or_levels(tmp_path):
    rng = np.random.default_rng(1)
    rows = ["device,target_us,time_s,g_us"]
    for d in range(300):
        tg = rng.uniform(1, 39)
        rows += [f"{d},{tg:.4f},{t},{tg - 0.01 * t:.4f}" for t in (1, 10)]
    src = tmp_path / "t.csv"
    src.write_text("\n".join(rows) + "\n")
    with pytest.raises(TableImportError, match="median of 1 device each"):
        import_table(src, tmp_path / "a.h5", "reram", 40.0)
    s = read_session(import_table(src, tmp_path / "b.h5", "reram", 40.0, target_bins=4))
    assert len(s.levels_us) == 4 and np.bincount(s.devices["level"]).min() > 50
    s = read_session(import_table(src, tmp_path / "c.h5", "reram", 40.0, levels_us=(10.0, 30.0)))
    lv = s.devices["level"]
    assert np.all((s.devices["target_us"] < 20) == (lv == 0))


def test_a_pcm_table_without_reads_near_t0_points_at_t0(tmp_path):
    rows = ["device,target_us,time_s,g_us"] + [f"{d},{[5, 10, 15, 20][d % 4]},{t},{4.5}"
                                                for d in range(60) for t in (5000, 9000, 20000)]
    src = tmp_path / "far.csv"
    src.write_text("\n".join(rows) + "\n")
    out = import_table(src, tmp_path / "far.h5", "pcm", 25.0)
    r = run_devmodel("fit", out, "--out", tmp_path / "far.json")
    assert r.returncode == 2 and "no device has a read within ±10 % of t0 = 20 s" in r.stderr
    assert "--t0-s" in r.stderr
