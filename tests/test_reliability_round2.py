"""Reliability round two (parts 2 and 4–7): finite limits on both sides of the wire, outputs written
safely, cards and sessions that make no sense refused, the last tracebacks turned into one line,
repeated table rows, and a failed resume that keeps its gap's reason. Part 1 (a restarted chip) is
tests/test_chip_continuity.py, part 3 (server fairness) tests/test_server_fairness.py, and the
malformed-file corpus (extended with every case here) tests/test_reliability_input.py."""

from __future__ import annotations

import errno
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from helpers import ask_line as _ask
from helpers import run_devmodel, start, wait_for_commits
from hypothesis import given, settings
from hypothesis import strategies as st

from devmodel.commands import main
from devmodel.errors import ChipURLError, LimitError
from devmodel.model.card import DeviceModel, ModelCardError
from devmodel.store import read_session
from devmodel.store.durable import sidecar
from devmodel.store.output import OutputError, atomic_output, write_text_atomically
from devmodel.technologies.pcm.physics import SimulatedPCM

SESSION = Path(__file__).parent.parent / "calibration_data" / "pcm_sample.h5"
RERAM_CARD = next((Path(__file__).parent.parent / "calibration_data" / "rram_techB").glob("*.json"))


def cli(*args) -> tuple[int, str, str]:
    """(exit status, stderr, stdout) of the command run in-process; an escaped exception fails."""
    res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=True)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, (res.stderr or "").strip(), res.stdout


def one_line(code: int, err: str, phrase: str) -> None:
    assert code == 2, (code, err)
    assert err.startswith("devmodel: error: ") and "\n" not in err and "Traceback" not in err, err
    assert phrase in err, (phrase, err)


# -- part 2: every number that reaches a comparison is finite and in range --------------------------
NON_FINITE = ["nan", "NaN", "inf", "-inf", "1e400", "-1e999"]


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("argv", [
    ["characterize", "--chip", "sim:pcm?devices=256", "--out", "{tmp}/s.h5", "--checkpoint-interval"],
    ["characterize", "--chip", "sim:pcm?devices=256", "--out", "{tmp}/s.h5", "--burst-age"],
    ["characterize", "--chip", "sim:pcm?devices=256", "--out", "{tmp}/s.h5", "--burst-interval"],
    ["fit", str(SESSION), "--out", "{tmp}/c.json", "--holdout-fraction"],
    ["validate", str(RERAM_CARD), str(SESSION), "--max-ks"],
    ["validate", str(RERAM_CARD), str(SESSION), "--alpha"],
    ["import-table", "{tmp}/t.csv", "--technology", "pcm", "--out", "{tmp}/s.h5", "--g-max-us"],
    ["replay", str(SESSION), "--window"],
])
def test_non_finite_cli_floats_are_refused_where_they_enter(tmp_path, argv, value):
    code, err, _ = cli(*[a.replace("{tmp}", str(tmp_path)) for a in argv], value)
    one_line(code, err, "")
    assert "finite" in err or "range" in err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("option", ["--schedule", "--levels"])
@pytest.mark.parametrize("value", NON_FINITE)
def test_non_finite_number_lists_are_refused(tmp_path, option, value):
    code, err, _ = cli("characterize", "--chip", "sim:pcm?devices=256", "--out", tmp_path / "s.h5",
                       option, f"5,{value}")
    one_line(code, err, option)
    assert not (tmp_path / "s.h5").exists()


def test_a_simulated_clock_never_runs_past_its_bound_nor_backwards():
    chip = SimulatedPCM(n_devices=64, seed=1)
    chip.wait(10.0)
    before = chip.now_s()
    for step in (lambda: chip.wait(1e300), lambda: chip.read(np.arange(4), 3, 1e12)):
        with pytest.raises(LimitError, match="the chip clock would pass 1e\\+10 s"):
            step()
        assert chip.now_s() == before  # refused before anything moved
    with pytest.raises(ValueError):
        chip.clock.advance(-1.0)


def test_the_server_refuses_what_would_make_its_clock_or_a_value_non_finite():
    from instruments.server import ChipServer
    from instruments.testing import ThreadedServer

    with ThreadedServer(ChipServer(SimulatedPCM(n_devices=256, seed=2), port=0)) as srv:
        port = srv.server.port
        t0 = _ask(port, b"CHIP:CLOC?\n")
        for bad in (b"CHIP:CLOC:ADV 1e300", b"CHIP:CLOC:ADV nan", b"CHIP:CLOC:ADV inf",
                    b"CHIP:ADDR:RANG 0,4;:CHIP:READ? 3,1e300", b"CHIP:ADDR:RANG 0,4;:CHIP:READ? 2,nan",
                    b"CHIP:ADDR:RANG 0,2;:CHIP:PULS? RES,nan,50",
                    b"CHIP:ADDR:RANG 0,2;:CHIP:PULS? RES,#216" + np.array([100.0, np.nan]).tobytes()
                    + b",50"):
            answer = _ask(port, bad + b";:SYST:ERR?\n")
            assert answer.startswith((b"-222", b"-200")), (bad, answer)
        assert _ask(port, b"CHIP:CLOC?\n") == t0


class _NanChip(SimulatedPCM):
    def read(self, addresses, n_reads=1, interval_s=0.0):
        rb = super().read(addresses, n_reads, interval_s)
        rb.g_us[0, 0] = np.nan
        return rb


def test_the_client_refuses_non_finite_answers():
    from instruments.base import InstrumentError
    from instruments.chip import RetryPolicy, ScpiChip
    from instruments.server import ChipServer
    from instruments.testing import ThreadedServer
    from instruments.transport import VisaTransport

    with ThreadedServer(ChipServer(_NanChip(n_devices=256, seed=2), port=0)) as srv:
        chip = ScpiChip(VisaTransport(srv.resource, "@py", 5.0), retry=RetryPolicy(attempts=0))
        try:
            with pytest.raises(InstrumentError, match=r"answered CHIP:READ\? with non-finite conductances "
                                                      r"\(1 of 4\)"):
                chip.read(np.arange(4))
        finally:
            chip.close()


def test_a_chip_too_large_for_the_memory_is_refused_by_an_estimate(monkeypatch):
    from devmodel.chips import open_chip
    from devmodel.physics import sim

    monkeypatch.setattr(sim, "available_memory_bytes", lambda: 600 << 20)
    with pytest.raises(ChipURLError, match=r"needs ≈ 1\.\d GB for 2000000 devices \(4\d\d bytes each\), "
                                           r"more than the 0\.6 GB this machine has available; use at most "
                                           r"devices=\d+"):
        open_chip("sim:pcm?devices=2000000", 1)
    code, err, _ = cli("serve-chip", "--devices", 2_000_000, "--port", 0)
    one_line(code, err, "this machine has available")


# -- part 4: outputs written safely -----------------------------------------------------------------
def test_temporary_files_are_unique_exclusive_and_never_followed(tmp_path):
    target = tmp_path / "card.json"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    # the old predictable temporary name, planted as a link to another file
    (tmp_path / "card.json.partial").symlink_to(victim)
    with atomic_output(target) as a, atomic_output(target, overwrite=True) as b:
        assert a != b and a.parent == b.parent == tmp_path
        assert a.is_file() and not a.is_symlink() and oct(a.stat().st_mode & 0o777) != "0o600"
        a.write_text("one")
        b.write_text("two")
    # the inner block replaced the target first, the outer one last
    assert victim.read_text() == "keep me" and target.read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json", "card.json.partial", "victim.txt"]


def test_a_failed_write_leaves_nothing_and_says_why(tmp_path, monkeypatch):
    out = tmp_path / "c.json"

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OutputError, match=r"cannot write .*c\.json: no space left on the device"):
        write_text_atomically(out, "{}")
    assert list(tmp_path.iterdir()) == []
    code, err, _ = cli("export", str(RERAM_CARD), "--to", "json", "--out", out)
    one_line(code, err, "no space left on the device (nothing was written)")
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_folder_is_one_line():
    folder = Path("/sys")
    if os.access(folder, os.W_OK):
        try:
            (folder / ".devmodel-probe").touch()
            (folder / ".devmodel-probe").unlink()
            pytest.skip("/sys is writable here")
        except OSError:
            pass
    code, err, _ = cli("export", str(RERAM_CARD), "--to", "json", "--out", folder / "card.json")
    one_line(code, err, "its folder is read-only or not writable")


@pytest.fixture
def tiny_disk(tmp_path, request):
    """A small tmpfs (64 KiB, or the size the test's parameter names), where the system lets the
    test mount one (root in a container); else the test is skipped."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    size = getattr(request, "param", "64k")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_a_full_disk_is_one_line_and_leaves_no_temporary_file(tiny_disk, tmp_path):
    (tiny_disk / "filler").write_bytes(b"\0" * 40_000)
    card = tmp_path / "c.json"
    card.write_text(DeviceModel.published("pcm").to_json())
    r = run_devmodel("export", card, "--to", "aihwkit", "--out", tiny_disk / "model.py")
    assert r.returncode == 0, r.stderr  # a small file still fits
    r = run_devmodel("import-table", _wide_table(tmp_path, 400), "--technology", "pcm", "--g-max-us", 25,
                     "--out", tiny_disk / "s.h5")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "no space left on the device" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "model.py"]


@pytest.mark.parametrize("tiny_disk", ["1m"], indirect=True)
@pytest.mark.parametrize("durability", ["process", "off"])
def test_a_session_on_a_full_disk_stops_in_one_line(tiny_disk, durability):
    path = tiny_disk / "s.h5"
    r = run_devmodel("characterize", "--chip", "sim:pcm?devices=4096", "--devices", 50, "--out", path,
                     "--quiet", "--durability", durability)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "no space left on the device" in r.stderr
    if durability == "off":  # the plain writer stops before HDF5 meets the full disk
        assert "the rows written so far are kept" in r.stderr
        with h5py.File(path) as f:
            assert f.attrs["status"] == "failed"
    else:  # the resumable one keeps its last commit, and says how to go on
        assert f"continue it with devmodel characterize --resume {path}" in r.stderr


def _wide_table(folder: Path, n_devices: int) -> Path:
    p = folder / "t.csv"
    p.write_text("device,target_us,time_s,g_us\n" + "".join(
        f"{d},5,{t},{4.9 - 0.001 * d}\n" for d in range(n_devices) for t in (20, 60, 600)))
    return p


def test_leftovers_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".c.json.{dead.pid}.abc123.partial"
    stale.write_text("half")
    mine = tmp_path / f".c.json.{os.getpid()}.zz.partial"  # a live writer's: left alone
    mine.write_text("busy")
    write_text_atomically(tmp_path / "c.json", "{}")
    assert not stale.exists() and mine.exists()


def test_sigterm_stops_a_session_cleanly_and_it_resumes(tmp_path):
    path = tmp_path / "s.h5"
    proc = start("--chip", "sim:pcm?devices=65536", "--devices", 400, "--out", path,
                 "--checkpoint-interval", "0", "--durability", "process", "--quiet")
    wait_for_commits(proc, path, 0, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in err, err
    with h5py.File(path) as f:
        assert f.attrs["status"] == "failed" and f.attrs["status_reason"] == "interrupted by the user"
    assert not glob.glob(str(tmp_path / ".*.partial"))
    r = run_devmodel("characterize", "--resume", path, "--quiet", timeout_s=300)
    assert r.returncode == 0, r.stderr
    with h5py.File(path) as f:
        assert f.attrs["status"] == "complete"
        assert f["gaps/reason"][0].decode() == "interrupted by the user"


def test_a_command_never_overwrites_its_own_input(tmp_path):
    s = tmp_path / "s.h5"
    shutil.copyfile(SESSION, s)
    station = tmp_path / "st.yaml"
    station.write_text("station: 1\n")
    table = _wide_table(tmp_path, 3)
    before = {p: p.read_bytes() for p in (s, station, table)}
    for argv in (["fit", s, "--out", s, "--overwrite"],
                 ["replay", s, "--out", s, "--overwrite"],
                 ["import-table", table, "--technology", "pcm", "--g-max-us", 25, "--out", table,
                  "--overwrite"],
                 ["characterize", "--chip", "sim:pcm?devices=256", "--station", station, "--devices", 2,
                  "--out", station, "--overwrite"],
                 ["characterize", "--chip", f"emulate:{s}", "--devices", 2, "--out", s, "--overwrite"]):
        code, err, _ = cli(*argv)
        one_line(code, err, "is the command's own input")
    card = tmp_path / "c.json"
    card.write_text(RERAM_CARD.read_text())
    before[card] = card.read_bytes()
    one_line(*cli("export", card, "--to", "json", "--out", card, "--overwrite")[:2], "own input")
    assert all(p.read_bytes() == b for p, b in before.items())


# -- part 5: cards and sessions that make no sense --------------------------------------------------
GOOD = json.loads(DeviceModel.published("pcm").to_json())
NUMERIC_PATHS = [("g_max_us",), ("t0_s",), ("programming", "poly_coeffs_us", 0), ("programming", "g_ref_us"),
                 ("drift", "nu_mean", "lo"), ("drift", "nu_mean", "hi"), ("drift", "nu_std", "lo"),
                 ("drift", "nu_std", "a"), ("read_noise", "q_s_amp"), ("read_noise", "q_s_max"),
                 ("read_noise", "t_read_s"), ("programming", "mean_offset_coeffs_us", 0)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(NUMERIC_PATHS),
                          st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                    st.integers(-10**30, 10**30), st.sampled_from([1e300, -1e300, 1e-300]))),
                min_size=1, max_size=3))
def test_a_card_that_loads_draws_finite_conductances(edits):
    """Any number anywhere (NaN, ±inf, huge, negative): the card is refused in one sentence, or it
    loads and every draw at t0 and a day is finite."""
    d = json.loads(json.dumps(GOOD))
    for path, value in edits:
        obj = d
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
    try:
        card = DeviceModel.from_json(json.dumps(d), "card.json")
    except ModelCardError as e:
        assert "\n" not in str(e) and str(e).startswith("card.json")
        return
    g = np.linspace(0.5, card.g_max_us, 50)
    for t in (card.t0_s, 86400.0):
        x = card.sample(g, t, np.random.default_rng(0))
        assert np.isfinite(x).all()


def test_a_card_of_another_technology_is_refused_by_validate_and_report(tmp_path):
    one_line(*cli("validate", RERAM_CARD, SESSION)[:2],
             f"the card describes reram devices but {SESSION} holds pcm devices")
    one_line(*cli("report", RERAM_CARD, SESSION, "--out", tmp_path / "r")[:2], "describes reram devices")


def test_validate_that_compared_nothing_is_not_a_pass(tmp_path):
    card = tmp_path / "c.json"
    assert cli("fit", SESSION, "--out", card, "--quiet")[0] == 0
    code, err, out = cli("validate", card, SESSION, "--gate-ages", "5")
    one_line(code, err, "validate compared nothing")
    assert "no level had enough held-out devices" in out


def test_numpy_warnings_do_not_leak_before_the_sentence(tmp_path):
    d = json.loads(json.dumps(GOOD))
    d["g_max_us"] = 1e300
    card = tmp_path / "c.json"
    card.write_text(json.dumps(d))
    r = run_devmodel("validate", card, SESSION)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Warning" not in r.stderr, r.stderr


# -- part 6: the remaining tracebacks ---------------------------------------------------------------
def test_a_session_stopped_before_its_first_read_says_how_to_go_on(tmp_path):
    from devmodel.store.writer import SessionWriter

    p = tmp_path / "early.h5"
    with SessionWriter(p, technology="pcm", g_max_us=25.0, t0_s=20.0, chip={"technology": "pcm"},
                       config={}, seed=1) as w:
        w.f.attrs["status"] = "running"
    for argv in (["info", p], ["fit", p, "--out", tmp_path / "c.json"]):
        code, err, _ = cli(*argv)
        one_line(code, err, "characterize --resume")


@pytest.fixture
def stopped(tmp_path):
    """A session stopped (by an exception at its third commit, as a kill would) with its resume data."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_reliability_resume import CrashError, session

    p = tmp_path / "s.h5"
    with pytest.raises(CrashError):
        session(p, "pcm", 3)
    return p


def _state(path: Path) -> Path:
    return sorted(sidecar(path).glob("state-*.npz"))[-1]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "drop_key", "short_array"])
def test_a_damaged_resume_state_is_one_line_and_the_gap_keeps_its_reason(stopped, damage):
    st = _state(stopped)
    good = dict(np.load(st))
    if damage == "truncate":
        with open(st, "r+b") as fh:
            fh.truncate(st.stat().st_size // 3)
    elif damage == "garbage":
        st.write_bytes(b"not a zip" * 100)
    elif damage == "drop_key":
        np.savez(st, **{k: v for k, v in good.items() if k != "chip/bank/xsum"})
    else:
        big = next(k for k, v in good.items() if k.startswith("chip/") and v.size > 4)
        np.savez(st, **(good | {big: good[big][:2]}))
    code, err, _ = cli("characterize", "--resume", stopped, "--quiet")
    one_line(code, err, "resume state")
    with h5py.File(stopped) as f:  # the reason it first stopped for comes first, whatever failed since
        assert f.attrs["status"] == "failed" and f.attrs["status_reason"].startswith("CrashError")
    np.savez(st, **good)  # repaired: the resume goes on, and its gap says why the session stopped
    code, err, _ = cli("characterize", "--resume", stopped, "--quiet", "--durability", "process")
    assert code == 0, err
    with h5py.File(stopped) as f:
        assert [r.decode() for r in f["gaps/reason"][()]] == ["CrashError"]


# -- part 7: repeated rows, wide tables, colliding names -------------------------------------------
def test_repeated_rows_are_refused_or_dropped_with_a_count(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("device,target_us,time_s,g_us,note\n1,5,20,4.9,a\n1,5,60,4.8,b\n1,5,20,4.9,c\n"
                   "2,50,20,4.9,d\n2,50,60,4.9,e\n")
    out = tmp_path / "s.h5"
    base = ["import-table", src, "--technology", "pcm", "--g-max-us", 25, "--beyond-g-max", "drop",
            "--out", out]
    one_line(*cli(*base)[:2], "line 4 repeats line 2 (device 1, time_s 20, g_us 4.9; 1 repeated row(s)")
    assert not out.exists()
    code, err, _ = cli(*base, "--dedupe")
    assert code == 0 and "1 duplicate row(s) left out" in err, err
    with h5py.File(out) as f:  # the extra column follows the rows kept (duplicate and device 2 left out)
        assert [x.decode() for x in f["import/extra/note"][()]] == ["a", "b"]
        assert f["reads/g_us"][()].tolist() == [4.9, 4.8]
    assert read_session(out).config["import"]["left_out"]["duplicate_rows"] == 1


def test_extra_columns_that_collide_after_renaming_keep_their_names(tmp_path):
    src = tmp_path / "t.csv"
    src.write_text("device,target_us,time_s,g_us,a/b,a_b,.,..\n1,5,20,4.9,1,2,3,4\n1,5,60,4.8,1,2,3,4\n")
    code, err, _ = cli("import-table", src, "--technology", "pcm", "--g-max-us", 25, "--out",
                       tmp_path / "s.h5")
    assert code == 0, err
    with h5py.File(tmp_path / "s.h5") as f:
        ex = f["import/extra"]
        assert {k: ex[k].attrs["column"] for k in ex} == {"a_b": "a/b", "a_b~2": "a_b", "_": ".", "_~2": ".."}
