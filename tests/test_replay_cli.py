"""`devmodel replay` and `devmodel fit` on the shipped calibration data, as real subprocesses, and one
clear sentence (exit 2, no traceback) for every kind of bad input."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import h5py
import pytest
from helpers import run_devmodel

ROOT = Path(__file__).resolve().parents[1]
PCM = ROOT / "calibration_data" / "pcm_sample.h5"
RERAM = ROOT / "calibration_data" / "reram_sample.h5"


def devmodel(*args, cwd=ROOT):
    return run_devmodel(*args, cwd=cwd)


def test_calibration_data_is_shipped_small_and_not_ignored():
    for p in (PCM, RERAM, ROOT / "calibration_data" / "README.md"):
        assert p.exists(), p
        r = subprocess.run(["git", "check-ignore", "-q", str(p)], cwd=ROOT)
        assert r.returncode == 1, f"{p} is git-ignored"
    assert PCM.stat().st_size + RERAM.stat().st_size < 6e6
    readme = (ROOT / "calibration_data" / "README.md").read_text()
    for phrase in ("sim:pcm?devices=4096&seed=7", "sim:reram?devices=4096&seed=11",
                   "scripts/make_calibration_data.py"):
        assert phrase in readme


def test_fit_works_out_of_the_box(tmp_path):
    r = devmodel("fit", PCM, cwd=tmp_path)  # the command as written: no --out
    assert r.returncode == 0, r.stderr
    assert "drift.nu_mean" in r.stdout and (tmp_path / "pcm_sample.json").exists()
    r = devmodel("fit", PCM, cwd=tmp_path)  # never overwritten silently
    assert r.returncode == 2 and "pcm_sample.json already exists" in r.stderr


@pytest.mark.parametrize("path", [PCM, RERAM])
def test_replay_drift_and_bursts_is_identical_to_the_record(path, tmp_path):
    out = tmp_path / "replayed.h5"
    r = devmodel("replay", path, "--procedure", "drift,bursts", "--out", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "identical to the record (device, time, age, value): yes" in r.stdout
    with h5py.File(out) as f:
        assert f.attrs["status"] == "complete"
        assert f["chip"].attrs["json"].find("replay:") >= 0


def test_replay_program_verify_prints_recorded_emulated_and_live(tmp_path):
    r = devmodel("replay", PCM, "--procedure", "program-verify", "--tolerance", "0.4",
                 "--compare-live", "sim:pcm?devices=4096&seed=7")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "tolerance_us=0.4" in lines[0]
    assert any(line.strip().startswith("recorded session (tolerance_us=0.25)") for line in lines)
    assert any("emulate:pcm_sample.h5" in line for line in lines)
    assert any(line.strip().startswith("sim:pcm?devices=4096&seed=7") for line in lines)


def test_replay_with_a_new_schedule_needs_a_policy():
    r = devmodel("replay", PCM, "--procedure", "drift", "--schedule", "20,100", "--quiet")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "holds no read of the device" in r.stderr and "policy=loglinear" in r.stderr
    r = devmodel("replay", PCM, "--procedure", "drift", "--schedule", "20,100", "--policy", "loglinear",
                 "--quiet")
    assert r.returncode == 0, r.stderr
    assert "reads at the requested ages: 7,800" in r.stdout


# -- bad input --------------------------------------------------------------------------------
def _truncated(tmp_path: Path) -> Path:
    p = tmp_path / "truncated.h5"
    p.write_bytes(PCM.read_bytes()[: PCM.stat().st_size // 2])
    return p


def _garbled_chunk(tmp_path: Path) -> Path:
    """An HDF5 file that opens but one compressed chunk of /reads/g_us is overwritten."""
    p = tmp_path / "garbled.h5"
    shutil.copy(PCM, p)
    with h5py.File(p) as f:
        info = f["reads/g_us"].id.get_chunk_info(0)
    with open(p, "r+b") as fh:
        fh.seek(info.byte_offset + 16)
        fh.write(b"\xff" * 64)
    return p


def _foreign(tmp_path: Path) -> Path:
    p = tmp_path / "foreign.h5"
    with h5py.File(p, "w") as f:
        f["data"] = [1.0, 2.0]
        f.attrs["creator"] = "someone else"
    return p


def _future(tmp_path: Path) -> Path:
    p = tmp_path / "future.h5"
    shutil.copy(PCM, p)
    with h5py.File(p, "r+") as f:
        f.attrs["schema_version"] = 7
    return p


def _no_trace(tmp_path: Path) -> Path:
    p = tmp_path / "no_trace.h5"
    shutil.copy(PCM, p)
    with h5py.File(p, "r+") as f:
        del f["trace"]
    return p


def _not_hdf5(tmp_path: Path) -> Path:
    p = tmp_path / "notes.h5"
    p.write_text("device,target_us\n0,5\n")
    return p


@pytest.mark.parametrize("make, procedure, phrases", [
    (_truncated, "drift", ["truncated.h5", "not a readable HDF5 file"]),
    (_truncated, "program-verify", ["truncated.h5", "not a readable HDF5 file"]),
    (_garbled_chunk, "drift", ["garbled.h5", "damaged"]),
    (_foreign, "drift", ["foreign.h5", "not a devmodel session file"]),
    (_foreign, "program-verify", ["foreign.h5", "not a devmodel session file"]),
    (_future, "drift", ["future.h5", "schema version 7", "upgrade devmodel"]),
    (_future, "program-verify", ["future.h5", "schema version 7"]),
    (_no_trace, "program-verify", ["no_trace.h5", "no program-and-verify trace", "--no-trace"]),
    (_not_hdf5, "bursts", ["notes.h5", "not a readable HDF5 file"]),
])
def test_bad_input_is_one_sentence_and_exit_2(tmp_path, make, procedure, phrases):
    path = make(tmp_path)
    r = devmodel("replay", path, "--procedure", procedure, "--quiet")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("devmodel: error: "), r.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert list(tmp_path.glob("*.partial")) == []


@pytest.mark.parametrize("make, url, phrase", [
    (_truncated, "replay", "not a readable HDF5 file"),
    (_garbled_chunk, "replay", "is damaged: /reads/g_us cannot be read"),
    (_foreign, "emulate", "not a devmodel session file"),
    (_future, "emulate", "schema version 7, newer than the version 1"),
    (_no_trace, "emulate", "records no program-and-verify trace (/trace is missing or empty)"),
])
def test_chip_urls_on_bad_files(tmp_path, make, url, phrase):
    from devmodel.chips import open_chip
    from devmodel.errors import SessionFileError

    with pytest.raises(SessionFileError) as e:
        open_chip(f"{url}:{make(tmp_path)}")
    assert phrase in str(e.value) and "\n" not in str(e.value)


def test_missing_file_and_bad_options(tmp_path):
    r = devmodel("replay", tmp_path / "nope.h5", "--quiet")
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = devmodel("replay", PCM, "--procedure", "walk")
    assert r.returncode == 2 and "--procedure: unknown walk" in r.stderr
    r = devmodel("replay", PCM, "--procedure", "program-verify", "--set", "tolerance_us")
    assert r.returncode == 2 and "expected FIELD=VALUE" in r.stderr
    r = devmodel("replay", PCM, "--procedure", "program-verify", "--set", "colour=3")
    assert r.returncode == 2 and "has no field 'colour'" in r.stderr
    r = devmodel("replay", PCM, "--tolerance", "0.4")
    assert r.returncode == 2 and "apply to --procedure program-verify" in r.stderr
    out = tmp_path / "exists.h5"
    out.write_bytes(b"")
    r = devmodel("replay", PCM, "--out", out)
    assert r.returncode == 2 and "already exists" in r.stderr
