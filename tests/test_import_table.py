"""Importing measurements made elsewhere: a CSV round trip fits like the original session; every
kind of bad table gives one sentence naming file, column and line, exit 2, and writes nothing."""

import csv

import numpy as np
import pytest
from helpers import run_devmodel

from devmodel.fit.session import card_scalars, fit_session
from devmodel.store import read_session
from devmodel.store.table_import import TableImportError, import_table
from devmodel.technologies.pcm.synthetic import synthesize_pcm_session


@pytest.fixture(scope="module")
def small_session(tmp_path_factory):
    from devmodel.procedures.characterize import BurstConfig

    p = tmp_path_factory.mktemp("imp") / "s.h5"
    return synthesize_pcm_session(p, devices_per_level=300, seed=3,
                                  bursts=BurstConfig(devices_per_level=30, n_reads=64))


def _to_csv(session_path, csv_path, extra=True):
    s = read_session(session_path)
    r = s.reads
    with open(csv_path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["device", "target_us", "time_s", "g_us", "burst", "converged"]
                   + (["temperature_c"] if extra else []))
        for i in range(r["g_us"].size):
            d = int(r["device"][i])
            b = int(r["burst"][i])
            w.writerow([int(s.devices["address"][d]), repr(float(s.devices["target_us"][d])),
                        repr(float(r["age_s"][i])), repr(float(r["g_us"][i])),
                        "" if b < 0 else b, 1] + ([25.0] if extra else []))


def test_round_trip_fits_identically(small_session, tmp_path):
    csv_path = tmp_path / "reads.csv"
    _to_csv(small_session, csv_path)
    out = import_table(csv_path, tmp_path / "imported.h5", "pcm", 25.0)
    s = read_session(out)
    assert s.technology == "pcm" and s.t0_s == 20.0 and s.n_devices == 13 * 300
    assert s.bursts["n_reads"].tolist() == [64] * (13 * 30)
    assert np.allclose(s.bursts["interval_s"], 1.0)
    a = card_scalars(fit_session(small_session))
    b = card_scalars(fit_session(out))
    assert a.keys() == b.keys()
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-6, abs=1e-9), k
    import h5py
    with h5py.File(out) as f:
        assert f["import/extra/temperature_c"].shape == (s.reads["g_us"].size,)
        assert len(f["import"].attrs["source_sha256"]) == 64


GOOD = "device,target_us,time_s,g_us\n0,5,20,5.1\n0,5,60,5.0\n1,10,20,9.8\n1,10,60,9.7\n"


@pytest.mark.parametrize("text, phrase", [
    ("", "is empty"),
    ("device,target_us,time_s,g_us\n", "has a header but no data rows"),
    ("device,target_us,time_s,g_uS\n0,5,20,5\n", "missing column 'g_us'; did you mean 'g_uS'?"),
    ("dev,target_us,time_s,g_us\n0,5,20,5\n", "missing column 'device'"),
    (GOOD + "2,10,20,abc\n", "line 6, column g_us: 'abc' is not a number"),
    (GOOD + "2,10,20,nan\n", "line 6, column g_us: nan is not a finite number"),
    (GOOD + "2,10,inf,5\n", "column time_s: inf is not a finite number"),
    (GOOD + "2,10,-5,5\n", "line 6, column time_s: -5 must be ≥ 0"),
    (GOOD + "2.5,10,20,5\n", "column device: '2.5' is not an integer"),
    (GOOD + "2,30,20,5\n2,30,60,5\n", "column target_us: 30 µS lies beyond g_max = 25 µS (1 device does)"),
    (GOOD + "0,7,200,5\n", "line 6, column target_us: device 0 has two different targets"),
    (GOOD + "2,10,20,5\n", "line 6: device 2 has 1 read(s) after programming"),
    (GOOD + "2,10,20\n", "line 6: 3 cells where the header has 4"),
    ("device,target_us,time_s,g_us,,note\n0,5,20,5.1,x,a\n", "header column 5 has no name"),
    ("device,target_us,time_s,g_us,burst\n0,5,20,5,\n0,5,60,5,\n0,5,1000,5,1\n0,5,1001,5,1\n"
     "0,5,1010,5,1\n", "line 5, column time_s: burst 1 of device 0 is not equally spaced"),
    ("device,target_us,time_s,g_us,burst\n0,5,20,5,\n0,5,60,5,\n0,5,1000,5,1\n",
     "line 4, column burst: burst 1 of device 0 has a single read"),
])
def test_bad_tables(tmp_path, text, phrase):
    src = tmp_path / "bad.csv"
    src.write_text(text)
    out = tmp_path / "out.h5"
    with pytest.raises(TableImportError) as e:
        import_table(src, out, "pcm", 25.0)
    assert phrase in str(e.value) and str(src) in str(e.value)
    assert not out.exists() and not (tmp_path / "out.h5.partial").exists()


def test_cli_bad_table_is_one_line_exit_2(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text(GOOD + "2,10,20,abc\n")
    out = tmp_path / "o.h5"
    r = run_devmodel("import-table", src, "--technology", "pcm", "--g-max-us", "25", "--out", out,
                     timeout_s=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "line 6, column g_us" in r.stderr
    assert not out.exists()


def test_fewer_levels_than_the_polynomial_needs(tmp_path):
    src = tmp_path / "two.csv"  # two levels of three devices each
    src.write_text("device,target_us,time_s,g_us\n" + "".join(
        f"{d},{5 if d < 3 else 10},{t},{(5 if d < 3 else 10) - 0.01 * t}\n"
        for d in range(6) for t in (20, 60)))
    out = import_table(src, tmp_path / "two.h5", "pcm", 25.0)
    from devmodel.errors import DevmodelError
    with pytest.raises(DevmodelError, match="2 programmed levels; a degree-2 σ_prog polynomial "
                                            "needs at least 4"):
        fit_session(out)


def test_extra_columns_are_kept_whatever_their_text(tmp_path):
    """Any extra column survives: numbers as floats, text as UTF-8 (µ, Å…), a '/' in a name as '_'
    with the header's name kept in the dataset's 'column' attribute."""
    import h5py

    src = tmp_path / "x.csv"
    src.write_text("device,target_us,time_s,g_us,note,G/G0\n0,5,20,5.1,µS chip,1\n0,5,60,5.0,Å,0.9\n",
                   encoding="utf-8")
    out = import_table(src, tmp_path / "x.h5", "pcm", 25.0)
    with h5py.File(out) as f:
        note, ratio = f["import/extra/note"], f["import/extra/G_G0"]
        assert [v.decode() for v in note[:]] == ["µS chip", "Å"]
        assert ratio[:].tolist() == [1.0, 0.9] and ratio.attrs["column"] == "G/G0"
