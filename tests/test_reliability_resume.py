"""Resume semantics in-process (fast): both technologies, crashes at many points, both downtime rules,
the sidecar and its lock, refusals; and that the durable writer's file equals the plain writer's."""

from __future__ import annotations

import shutil
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from devmodel.chips import open_chip
from devmodel.commands import main
from devmodel.errors import SessionFileError
from devmodel.procedures.characterize import BurstConfig, SweepConfig, config_dict, run_sweep
from devmodel.store import SessionWriter, read_session
from devmodel.store.durable import DurableSessionWriter, sidecar
from devmodel.technologies.pcm.verify import PcmVerifyConfig
from devmodel.technologies.reram.verify import ReramVerifyConfig

CASES = {"pcm": ("sim:pcm?devices=2048", PcmVerifyConfig, BurstConfig(4, 16, 1.0, 100.0)),
         "reram": ("sim:reram?devices=2048", ReramVerifyConfig, BurstConfig(4, 16, 1.0, 300.0))}


class CrashError(Exception):
    """Stands in for a kill at a commit (the writer drops what was not committed, as a kill would)."""


def session(path, tech, crash_at: int | None = None, durable: bool = True):
    url, vcls, bursts = CASES[tech]
    chip = open_chip(url, 5)
    cfg = SweepConfig.default(tech, 12, bursts=bursts)
    kw = dict(technology=tech, g_max_us=chip.info.g_max_us, t0_s=20.0 if tech == "pcm" else 1.0,
              chip=dict(chip.info.to_dict(), url=url), config=config_dict(cfg, vcls()), seed=5)
    # a commit at every safe point: the crash points are the same on every machine (a wall-clock
    # interval made their number depend on the machine's speed)
    w = DurableSessionWriter(path, commit_interval_s=0.0, fsync=False, **kw) if durable else \
        SessionWriter(path, **kw)
    if crash_at is not None:
        commit, n = w._commit, [0]

        def counting(state, with_rows):
            commit(state, with_rows)
            n[0] += state is not None
            if n[0] == crash_at:
                raise CrashError
        w._commit = counting
    with w:
        run_sweep(chip, cfg, w, vcls())
        w.finish()
    s = read_session(path)
    s.n_commits = getattr(w, "n_commits", 0)
    return s


def resume(path, *extra):
    res = CliRunner().invoke(main, ["characterize", "--resume", str(path), "--quiet",
                                    "--checkpoint-interval", "0.01", "--durability", "process", *extra])
    assert res.exit_code == 0, (res.stderr, res.exception)
    return read_session(path)


def assert_same(a, b):
    for table in ("devices", "reads", "trace", "bursts"):
        ta, tb = getattr(a, table), getattr(b, table)
        assert ta.keys() == tb.keys(), table
        for col in ta:
            np.testing.assert_array_equal(ta[col], tb[col], err_msg=f"{table}/{col}")
    for name, arr in a.ground_truth["devices"].items():
        np.testing.assert_array_equal(arr, b.ground_truth["devices"][name], err_msg=name)


@pytest.mark.parametrize("tech", ["pcm", "reram"])
def test_durable_and_plain_writers_write_the_same_session(tmp_path, tech):
    assert_same(session(tmp_path / "d.h5", tech), session(tmp_path / "p.h5", tech, durable=False))
    assert not sidecar(tmp_path / "d.h5").exists()


@pytest.mark.parametrize("tech", ["pcm", "reram"])
def test_crashes_anywhere_then_paused_resume_equal_the_uninterrupted_session(tmp_path, tech):
    ref = session(tmp_path / "ref.h5", tech)
    with h5py.File(tmp_path / "ref.h5") as f:
        assert "gaps" not in f
    n = ref.n_commits
    assert n >= 8
    for crash_at in sorted({1, 2, n // 4, n // 2}):
        p = tmp_path / f"c{crash_at}.h5"
        with pytest.raises(CrashError):
            session(p, tech, crash_at)
        with h5py.File(p) as f:
            assert f.attrs["status"] == "failed" and int(f["resume"].attrs["seq"]) >= 1
        s = resume(p, "--downtime", "paused")
        assert_same(s, ref)
        with h5py.File(p) as f:
            assert f["gaps/reason"][()].tolist() == [b"CrashError"]


def test_crash_twice_more_and_resume_each_time(tmp_path):
    ref = session(tmp_path / "ref.h5", "pcm")
    p = tmp_path / "s.h5"
    with pytest.raises(CrashError):
        session(p, "pcm", 5)
    resume(p, "--downtime", "paused")
    assert_same(read_session(p), ref)


def test_wall_downtime_advances_the_chip_and_keeps_ages_right(tmp_path):
    p = tmp_path / "s.h5"
    with pytest.raises(CrashError):
        session(p, "pcm", 3)
    time.sleep(1.5)
    s = resume(p)  # default: --downtime wall
    ref = session(tmp_path / "ref.h5", "pcm")
    assert s.n_devices == ref.n_devices
    sched = s.reads["burst"] < 0
    np.testing.assert_array_equal(np.bincount(s.reads["device"]), np.bincount(ref.reads["device"]))
    ages = np.array(SweepConfig.default("pcm", 1).schedule_s)
    nominal = ages[np.argmin(np.abs(np.log(s.reads["age_s"][sched][:, None] / ages)), axis=1)]
    assert np.all(s.reads["age_s"][sched] >= nominal * (1 - 1e-9))
    # ages are measured from each device's own last pulse, whatever the clock did meanwhile
    dev = s.reads["device"]
    np.testing.assert_allclose(s.reads["age_s"], s.reads["t_s"] - s.devices["t_last_pulse_s"][dev])
    with h5py.File(p) as f:
        assert f["gaps/downtime_s"][0] >= 1.5
        assert f["gaps/t_resume_s"][0] - f["gaps/t_stop_s"][0] >= 1.5


def test_a_resume_is_refused_cleanly(tmp_path):
    complete = tmp_path / "done.h5"
    session(complete, "pcm")
    r = CliRunner().invoke(main, ["characterize", "--resume", str(complete)])
    assert r.exit_code == 2 and "nothing to resume" in r.stderr
    plain = tmp_path / "plain.h5"
    session(plain, "pcm", durable=False)
    with h5py.File(plain, "a") as f:
        f.attrs["status"] = "failed"
    r = CliRunner().invoke(main, ["characterize", "--resume", str(plain)])
    assert r.exit_code == 2 and "was not written by a resumable session" in r.stderr
    p = tmp_path / "s.h5"
    with pytest.raises(CrashError):
        session(p, "pcm", 3)
    for args, phrase in ((["--devices", "5"], "--devices cannot be given with --resume"),
                         (["--overwrite"], "contradict"), (["--durability", "off"], "cannot resume"),
                         (["--out", str(tmp_path / "other.h5")], "differs from --resume")):
        r = CliRunner().invoke(main, ["characterize", "--resume", str(p), *args])
        assert r.exit_code == 2 and phrase in r.stderr, r.stderr
    shutil.rmtree(sidecar(p))
    r = CliRunner().invoke(main, ["characterize", "--resume", str(p)])
    assert r.exit_code == 2 and "resume folder" in r.stderr


def test_one_session_one_writer(tmp_path):
    p = tmp_path / "s.h5"
    with pytest.raises(CrashError):
        session(p, "pcm", 3)
    w, _ = DurableSessionWriter.reopen(p, fsync=False)
    try:
        with pytest.raises(SessionFileError, match="being written by another running devmodel process"):
            DurableSessionWriter.reopen(p, fsync=False)
    finally:
        w.close()
    r = CliRunner().invoke(main, ["characterize", "--chip", "sim:pcm?devices=2048", "--devices", "2",
                                  "--out", str(p), "--quiet"])
    assert r.exit_code == 2 and "--resume" in r.stderr


def test_simulated_chip_state_round_trips_and_refuses_another_chip():
    a = open_chip("sim:pcm?devices=1024", 3)
    addr = np.arange(100, 200)
    a.pulse(addr, 1, 200.0, 50.0)
    a.read(addr, 3)
    st = a.save_state(addr)
    b = open_chip("sim:pcm?devices=1024", 3)
    b.restore_state(st)
    np.testing.assert_array_equal(a.read(addr, 2).g_us, b.read(addr, 2).g_us)
    with pytest.raises(Exception, match="belongs to another chip"):
        open_chip("sim:pcm?devices=1024", 4).restore_state(st)


def test_a_reader_may_hold_the_file_while_the_session_commits(tmp_path):
    """Readers open the session's path during a run and see its last commit; one that keeps the file
    open across commits keeps a consistent (older) file: the writer notices its lock and copies
    instead of rewriting that inode as its spare."""
    p = tmp_path / "s.h5"
    w = DurableSessionWriter(p, technology="pcm", g_max_us=25, t0_s=20, chip={}, config={}, seed=0,
                             fsync=False, commit_interval_s=0)

    def rows(k):
        return {"device": np.arange(k), "t_s": np.ones(k), "age_s": np.ones(k), "g_us": np.arange(k) * 1.0,
                "burst": -np.ones(k)}

    w.append("reads", rows(10))
    w.checkpoint({"x": np.zeros(1)}, force=True)
    with h5py.File(p, "r") as reader:
        for _ in range(4):
            w.append("reads", rows(1000))
            w.checkpoint({"x": np.zeros(1)}, force=True)
            with h5py.File(p, "r") as fresh:  # a new reader sees the latest commit
                assert fresh["reads"].attrs["n_rows"] == fresh["reads/g_us"].shape[0]
        assert reader["reads"].attrs["n_rows"] == 10
        np.testing.assert_array_equal(reader["reads/g_us"][()], np.arange(10.0))
    assert w.n_copies >= 1
    w.finish()
    with h5py.File(p) as f:
        assert f["reads"].attrs["n_rows"] == 4010 and f.attrs["status"] == "complete"
