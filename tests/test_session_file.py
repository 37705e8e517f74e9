"""The session file: schema, incremental writes, plain-h5py readability, determinism, refusals."""

import h5py
import numpy as np
import pytest
from helpers import make_session

from devmodel.errors import SessionFileError
from devmodel.procedures.characterize import BurstConfig
from devmodel.store import SCHEMA, SessionWriter, read_session

SMALL = dict(bursts=BurstConfig(devices_per_level=5, n_reads=16, interval_s=1.0, age_s=100.0),
             schedule=(20.0, 200.0, 3600.0))


def _contents(path):
    """Every dataset and attribute, minus host/time provenance."""
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
            for k, v in obj.attrs.items():
                if k not in ("start_utc", "end_utc", "host", "user", "command", "platform"):
                    out[f"{name}@{k}"] = v
        f.visititems(visit)
        for k, v in f.attrs.items():
            out[f"@{k}"] = v
    return out


def test_same_seed_gives_identical_session_contents(tmp_path):
    a = _contents(make_session(tmp_path / "a.h5", "sim:pcm?devices=4000", 100, seed=3, **SMALL).path)
    b = _contents(make_session(tmp_path / "b.h5", "sim:pcm?devices=4000", 100, seed=3, **SMALL).path)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    c = _contents(make_session(tmp_path / "c.h5", "sim:pcm?devices=4000", 100, seed=4, **SMALL).path)
    assert not np.array_equal(a["reads/g_us"], c["reads/g_us"])


def test_file_is_readable_with_plain_h5py_and_carries_units(tmp_path):
    s = make_session(tmp_path / "s.h5", "sim:pcm?devices=4000", 50, seed=1, **SMALL)
    with h5py.File(s.path, "r") as f:
        assert f.attrs["schema"] == SCHEMA and f.attrs["schema_version"] == 1
        assert f.attrs["status"] == "complete"
        assert f["reads/g_us"].attrs["unit"] == "uS" and f["reads/age_s"].attrs["unit"] == "s"
        assert f["reads"].attrs["n_rows"] == f["reads/g_us"].shape[0]
        assert f["devices/target_us"].shape == (13 * 50,)
        assert "toolkit_version" in f["provenance"].attrs
        assert f["ground_truth/nu"].shape == (13 * 50,)
    # every device has one read per schedule age, at ≥ the nominal age
    sched = s.reads["burst"] < 0
    counts = np.bincount(s.reads["device"][sched], minlength=s.n_devices)
    assert np.all(counts == 3)
    ages = np.sort(s.reads["age_s"][sched & (s.reads["age_s"] < 100)])
    assert ages.min() >= 20.0 and ages.max() < 20.0 * 1.05
    assert s.bursts["device"].size == 13 * 5
    assert np.all(np.bincount(s.reads["burst"][~sched]) == 16)


def test_writer_refuses_to_overwrite_and_reader_refuses_foreign_files(tmp_path):
    p = tmp_path / "x.h5"
    p.write_bytes(b"not hdf5")
    with pytest.raises(SessionFileError, match="already exists"):
        SessionWriter(p, technology="pcm", g_max_us=25, t0_s=20, chip={}, config={}, seed=0)
    assert p.read_bytes() == b"not hdf5"
    with pytest.raises(SessionFileError, match="not a readable HDF5"):
        read_session(p)
    q = tmp_path / "foreign.h5"
    with h5py.File(q, "w") as f:
        f["x"] = 1
    with pytest.raises(SessionFileError, match="not a devmodel session"):
        read_session(q)
    with pytest.raises(SessionFileError, match="does not exist"):
        read_session(tmp_path / "missing.h5")


def test_future_schema_versions_are_refused(tmp_path):
    s = make_session(tmp_path / "s.h5", "sim:pcm?devices=2000", 10, seed=1, **SMALL)
    with h5py.File(s.path, "a") as f:
        f.attrs["schema_version"] = 7
    with pytest.raises(SessionFileError, match="version 7"):
        read_session(s.path)


def test_an_exception_mid_session_leaves_a_readable_file_marked_failed(tmp_path):
    p = tmp_path / "f.h5"
    with pytest.raises(RuntimeError):
        with SessionWriter(p, technology="pcm", g_max_us=25, t0_s=20, chip={}, config={},
                           seed=0) as w:
            w.append("reads", {"device": [0], "t_s": [1.0], "age_s": [1.0], "g_us": [2.0],
                               "burst": [-1]})
            raise RuntimeError("instrument fell over")
    with h5py.File(p, "r") as f:
        assert f.attrs["status"] == "failed"
        assert "instrument fell over" in f.attrs["status_reason"]
        assert f["reads/g_us"][()].tolist() == [2.0]
