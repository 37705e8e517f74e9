"""Acceptance (reliability issue, part 1): a real `devmodel characterize` process on the simulated chip
is killed with SIGKILL at random moments, more than 20 times across one session, and resumed each
time. After every kill plain h5py opens the file and every table holds whole commits only; the final
file holds exactly the records of an uninterrupted run with the same seed (paused downtime: value for
value), and says where each gap was and why."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import committed_seq, start, wait_for_commits

from devmodel.store import read_session
from devmodel.store.durable import sidecar

MIN_KILLS = 20
SESSION = ["--chip", "sim:pcm?devices=8192", "--seed", "5", "--devices", "300", "--burst-devices", "5",
           "--burst-reads", "64", "--quiet"]
# a commit at every safe point (~400 in this session): progress per kill is counted in commits, so the
# number of kills a session allows does not depend on the machine's speed
FAST_COMMITS = ["--checkpoint-interval", "0", "--durability", "process"]


def check_readable(path: Path) -> tuple[int, str]:
    """Plain h5py opens the file and reads every dataset; extendable tables hold whole commits."""
    with h5py.File(path, "r") as f:
        for table in ("reads", "trace"):
            n = int(f[table].attrs["n_rows"])
            for ds in f[table].values():
                assert ds.shape == (n,)
                ds[()]
        f.visititems(lambda name, obj: obj[()] if isinstance(obj, h5py.Dataset) else None)
        return int(f["reads"].attrs["n_rows"]), str(f.attrs["status"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    proc = start(*SESSION, *FAST_COMMITS, "--out", str(out))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    s = read_session(out)
    s.n_commits = committed_seq(out)  # state commits: one per safe point at interval 0
    return s


def test_sigkill_many_times_then_resume_gives_the_uninterrupted_session(tmp_path, reference):
    rng = random.Random(20261123)
    path = tmp_path / "killed.h5"
    kills, runs, reads_seen = 0, 0, []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if runs == 0 or not path.exists():  # killed before the file first appeared: start again
            args = [*SESSION, *FAST_COMMITS, "--out", str(path), "--overwrite"]
        else:
            args = ["--resume", str(path), "--downtime", "paused", "--quiet", *FAST_COMMITS]
        seq = max(committed_seq(path), 0) if runs else 0
        proc = start(*args)
        runs += 1
        if kills < MIN_KILLS + 2:
            if rng.random() < 0.25:  # anywhere, start-up and resume included
                delay = rng.uniform(0.0, 0.6)
            else:  # during the work: some commits in, anywhere within a commit cycle; on average
                # the kills walk through 70 % of the session's safe points (the rest runs unkilled)
                wait_for_commits(proc, path, seq, rng.randint(1, max(2, int(1.4 * reference.n_commits
                                                                            / (MIN_KILLS + 2)))))
                delay = rng.uniform(0.0, 0.02)
            try:
                proc.wait(delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.communicate(timeout=30)
                kills += 1
                if path.exists():
                    n, status = check_readable(path)
                    reads_seen.append(n)
                    if status == "complete":  # killed after its last commit: nothing left to do
                        break
                continue
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        break
    assert kills >= MIN_KILLS, f"only {kills} kills before the session completed"
    assert max(reads_seen) > 0 and len(set(reads_seen)) > 5  # kills landed all along the session
    assert not sidecar(path).exists()  # a complete session keeps no resume data

    s = read_session(path)
    assert s.status == "complete"
    for table in ("devices", "reads", "trace", "bursts"):
        a, b = getattr(s, table), getattr(reference, table)
        assert a.keys() == b.keys()
        for col in a:
            np.testing.assert_array_equal(a[col], b[col], err_msg=f"{table}/{col}")
    for name, arr in reference.ground_truth["devices"].items():
        np.testing.assert_array_equal(s.ground_truth["devices"][name], arr, err_msg=name)
    np.testing.assert_array_equal(np.bincount(s.reads["device"]), np.bincount(reference.reads["device"]))
    with h5py.File(path) as f:
        gaps = {k: f["gaps"][k][()] for k in f["gaps"]}
        assert int(f["resume"].attrs["resumes"]) == gaps["reason"].size >= 1
    assert all(b"killed, crashed or lost power" in r for r in gaps["reason"])
    assert np.all(np.diff(gaps["reads_row"]) >= 0) and gaps["reads_row"].max() <= s.reads["g_us"].size
    print(f"\n{kills} SIGKILLs over {runs} runs; {gaps['reason'].size} resumes recorded; "
          f"{s.reads['g_us'].size} reads, {s.trace['device'].size} trace rows, all equal to the "
          f"uninterrupted run")


def test_sigkill_on_an_instrument_session_resumes_from_the_journal(tmp_path):
    """A chip behind `serve-chip` keeps its state while the host process is killed: the resumed
    session replays its journal of the chip's answers, so every device's last pulse as the session
    records it is the chip's own (its ground truth), each device has one read per schedule age at no
    less than that age, and every verify-driven pulse is in the trace exactly once."""
    from instruments.testing import ServerProcess

    rng = random.Random(7)
    path = tmp_path / "visa.h5"
    common = ["--quiet", "--checkpoint-interval", "0", "--durability", "process"]
    kills, runs = 0, 0
    with ServerProcess("--technology", "pcm", "--seed", "4", "--devices", "4096") as srv:
        while runs < 40:
            args = (["--chip", f"visa://{srv.resource}", "--devices", "30", "--burst-devices", "3",
                     "--burst-reads", "16", "--out", str(path), *common] if runs == 0 or not path.exists()
                    else ["--resume", str(path), "--downtime", "paused", *common])
            seq = max(committed_seq(path), 0)
            proc = start(*args)
            runs += 1
            if kills < 8:
                wait_for_commits(proc, path, seq, rng.randint(1, 6))
                try:
                    proc.wait(rng.uniform(0.0, 0.05))
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGKILL)
                    proc.communicate(timeout=30)
                    kills += 1
                    if path.exists() and check_readable(path)[1] == "complete":
                        break
                    continue
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err
            break
    assert kills >= 5
    s = read_session(path)
    assert s.status == "complete"
    d, truth = s.devices, s.ground_truth["devices"]
    ok = truth["defect"] == 0  # stuck devices ignore pulses: the chip does not date them
    np.testing.assert_allclose(d["t_last_pulse_s"][ok], truth["t_pulse_s"][ok], rtol=0, atol=1e-5)
    sched = s.reads["burst"] < 0
    ages = np.array([20.0, 60.0, 200.0, 600.0, 3600.0, 10800.0, 86400.0])
    assert np.all(np.bincount(s.reads["device"][sched], minlength=s.n_devices) == ages.size)
    nominal = ages[np.argmin(np.abs(np.log(s.reads["age_s"][sched][:, None] / ages)), axis=1)]
    assert np.all(s.reads["age_s"][sched] >= nominal * (1 - 1e-9))
    key = s.trace["device"].astype(np.int64) * 1000 + s.trace["iteration"]
    assert np.unique(key).size == key.size  # no pulse twice in the trace
    active = d["target_us"] > 0
    np.testing.assert_array_equal(np.bincount(s.trace["device"], minlength=s.n_devices)[active],
                                  d["pulses"][active] - 7)  # all but the 7 initialisation pulses
    print(f"\n{kills} SIGKILLs of an instrument session over {runs} runs; last pulses equal the chip's")
