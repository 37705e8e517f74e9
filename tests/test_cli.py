"""The command line, run as a real subprocess: outputs, and one clear sentence for bad input."""


import h5py
import pytest
from helpers import run_devmodel as devmodel

FAST = ["--devices", "20", "--schedule", "20,600", "--burst-devices", "2", "--burst-reads", "8",
        "--burst-age", "100", "--quiet"]




def test_characterize_then_info(tmp_path):
    out = tmp_path / "s.h5"
    r = devmodel("characterize", "--chip", "sim:pcm?devices=4096", "--seed", "2", *FAST,
                 "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "converged" in r.stdout and "median spread" in r.stdout
    with h5py.File(out) as f:
        assert f.attrs["status"] == "complete" and f["devices/address"].shape == (260,)
    r2 = devmodel("info", str(out))
    assert r2.returncode == 0 and "at t0 = 20 s, G − G_T of each device" in r2.stdout


def test_reram_session(tmp_path):
    out = tmp_path / "r.h5"
    # default bursts (100 per level, clamped to --devices) at 300 s, clear of the schedule reads
    r = devmodel("characterize", "--chip", "sim:reram?devices=4096", "--devices", "20",
                 "--schedule", "1,100,1000", "--quiet", "--out", str(out))
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as f:
        assert f.attrs["technology"] == "reram" and f.attrs["g_max_us"] == 40.0
        assert f["bursts/device"].shape == (13 * 20,)
    assert ", 0 late reads" in devmodel("info", str(out)).stdout


@pytest.mark.parametrize("args, phrase", [
    (["--levels", "0,5"], "--levels: 0 µS is outside (0, g_max = 25 µS]"),
    (["--levels", "5,26"], "--levels: 26 µS is outside"),
    (["--levels", "5,abc"], "--levels: expected comma-separated numbers"),
    (["--devices", "6000"], "the chip has 65536"),
    (["--chip", "sim:flash"], "unknown simulated technology"),
    (["--chip", "nonsense"], "has no scheme"),
    (["--schedule", "20,10"], "--schedule: ages must be strictly increasing"),
    (["--schedule", "-1,10"], "--schedule: ages must be positive"),
    (["--schedule", "20,600,1200"], "--burst-age: the read-noise burst at 1000 s runs until 1255 s and "
     "would delay the schedule read at 1200 s"),
])
def test_bad_input_is_one_sentence_nonzero_exit_nothing_written(tmp_path, args, phrase):
    out = tmp_path / "s.h5"
    base = ["characterize", "--chip", "sim:pcm?devices=65536", "--devices", "10", "--quiet"]
    if args[0] == "--chip":
        base = ["characterize", "--devices", "10", "--quiet"]
    r = devmodel(*base, *args, "--out", str(out))
    assert r.returncode == 2
    assert phrase in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not out.exists()


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "s.h5"
    out.write_bytes(b"precious")
    r = devmodel("characterize", "--chip", "sim:pcm?devices=4096", *FAST, "--out", str(out))
    assert r.returncode == 2 and "already exists" in r.stderr
    assert out.read_bytes() == b"precious"
    r = devmodel("characterize", "--chip", "sim:pcm?devices=4096", *FAST, "--out", str(out),
                 "--overwrite")
    assert r.returncode == 0, r.stderr


def test_info_on_a_foreign_file_fails_cleanly(tmp_path):
    p = tmp_path / "x.h5"
    p.write_text("hello")
    r = devmodel("info", str(p))
    assert r.returncode == 2 and "not a readable HDF5 file" in r.stderr and "Traceback" not in r.stderr


def test_help_explains_the_commands():
    r = devmodel("--help")
    assert r.returncode == 0
    for cmd in ("characterize", "info", "demo"):
        assert cmd in r.stdout
    r = devmodel("characterize", "--help")
    assert "--schedule" in r.stdout and "sim:pcm" in r.stdout


def test_demo_runs_the_whole_loop(tmp_path):
    """The README's main job: session → summary → fitted card vs ground truth → aihwkit module →
    a network's accuracy on the chip."""
    r = devmodel("demo", "--out-dir", str(tmp_path), "--devices", "100", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    for name in ("demo_pcm.h5", "demo_pcm_model.json", "demo_pcm_aihwkit.py"):
        assert (tmp_path / name).stat().st_size > 1000
    assert "fitted card vs the simulated chip's ground truth" in r.stdout
    # the 10 µS row: true/fitted σ_prog, ν mean, ν std, Q_s (100 devices per level: loose margins)
    truth = r.stdout.split("ground truth", 1)[1]
    row = next(ln for ln in truth.splitlines() if ln.strip().startswith("10.00 ")).split()
    sig, q = (float(row[i]) / float(row[i + 2]) for i in (1, 10))
    assert 0.75 < sig < 1.33 and abs(float(row[4]) - float(row[6])) < 0.006 and 0.85 < q < 1.18, row
    assert "white read noise per read: true 0.05 µS, fitted" in r.stdout
    assert "identical to the record (device, time, age, value): yes" in r.stdout  # offline replay
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("digits MLP on this chip"))
    accs = [float(v.split(" %")[0]) for v in line.split(": ", 1)[1].split("; ")[1].split(", ")]
    assert len(accs) == 3 and all(80 < a <= 100 for a in accs)
    compile((tmp_path / "demo_pcm_aihwkit.py").read_text(), "demo_pcm_aihwkit.py", "exec")
