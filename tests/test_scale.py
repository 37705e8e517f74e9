"""Past one machine (issue 17, docs/scale.md): the out-of-core fit gives the in-memory fit's card in
chunks; fit-many on a Dask LocalCluster, on a real `dask scheduler` + 2 `dask worker` processes on
127.0.0.1, and serially gives identical per-chip cards; the population card recovers the wafer's
chip-to-chip spread and flags the bad chip; a broken session is reported and the others go on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import run_devmodel

from devmodel.errors import DevmodelError
from devmodel.fit.session import fit_session
from devmodel.fit.streamed import BASELINE_BYTES, fit_session_streamed
from devmodel.store import read_session
from devmodel.technologies.pcm.synthetic import synthesize_pcm_chunked, synthesize_pcm_session

ROOT = Path(__file__).resolve().parents[1]
#: A limit that leaves ~4 MB for chunks: the smallest chunk (1024 devices), so a small session is
#: read in several chunks.
TINY_LIMIT = BASELINE_BYTES + (4 << 20)
WAFER_CHIPS, BAD_CHIP, SPREAD = 6, 5, 0.1


def _comparable(card_json: str) -> dict:
    """A card as data, without what differs between two fits of the same data by design."""
    d = json.loads(card_json)
    d["provenance"].pop("created_utc")
    d["provenance"].pop("out_of_core", None)
    return d


@pytest.mark.parametrize("layout", ["age-major", "chunk-major"])
def test_out_of_core_card_equals_the_in_memory_card(tmp_path, layout):
    path = tmp_path / "s.h5"
    if layout == "age-major":  # all devices at one age, then the next (as sessions are recorded)
        synthesize_pcm_session(path, devices_per_level=300, white_noise_us=0.05, seed=3)
    else:  # all ages of one chunk of devices, then the next (the large-session generator)
        synthesize_pcm_chunked(path, 3900, white_noise_us=0.05, seed=3, chunk_devices=1300)
    streamed = fit_session_streamed(path, memory_limit=TINY_LIMIT)
    assert streamed.provenance["out_of_core"]["n_chunks"] >= 3
    assert _comparable(streamed.to_json()) == _comparable(fit_session(path).to_json())


def test_out_of_core_refuses_a_session_without_nominal_ages(tmp_path):
    path = tmp_path / "s.h5"
    synthesize_pcm_session(path, devices_per_level=40, seed=1)
    with h5py.File(path, "a") as f:
        del f["reads/nominal_age_s"]
    with pytest.raises(DevmodelError, match="records no nominal read ages"):
        fit_session_streamed(path, memory_limit=TINY_LIMIT)


def test_fit_cli_goes_out_of_core_above_the_memory_limit(tmp_path):
    path = tmp_path / "s.h5"
    synthesize_pcm_session(path, devices_per_level=200, white_noise_us=0.05, seed=2)
    r = run_devmodel("fit", path, "--memory-limit", "256MiB", "--out", tmp_path / "c.json", "--quiet",
                     cwd=tmp_path, timeout_s=120)
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "c.json").read_text())
    assert card["provenance"]["out_of_core"]["memory_limit_bytes"] == 256 << 20
    r = run_devmodel("fit", path, "--memory-limit", "256MiB", "--bootstrap", 3, "--out",
                     tmp_path / "d.json", cwd=tmp_path, timeout_s=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--bootstrap" in r.stderr
    assert not (tmp_path / "d.json").exists()


@pytest.fixture(scope="module")
def wafer(tmp_path_factory) -> Path:
    """Six simulated PCM chips, Q_s amplitude spread 10 % chip to chip, chip 5 with 1.8× Q_s, and a
    file that is not a session."""
    d = tmp_path_factory.mktemp("wafer")
    r = run_devmodel("characterize-wafer", "--chip", f"sim:pcm?devices=2048&spread.stat.q_s.amp={SPREAD}",
                     "--chips", WAFER_CHIPS, "--devices", 150, "--seed", 4,
                     "--set-chip", f"{BAD_CHIP}:stat.q_s.amp=0.016", "--out", d / "sessions",
                     timeout_s=120)
    assert r.returncode == 0, r.stderr
    (d / "sessions" / "chip-broken.h5").write_bytes(b"not a session")
    return d


def _fit_many(wafer: Path, out: str, *args, sessions=None, quiet=True) -> subprocess.CompletedProcess:
    """fit-many (n_mc = 1000 ν-estimator simulations per level instead of 4000: a quarter of the
    time; the Q_s amplitude checked here does not use them)."""
    sessions = sessions or sorted((wafer / "sessions").glob("*.h5"))
    return run_devmodel("fit-many", *sessions, "--out", wafer / out, *(["--quiet"] if quiet else []),
                        "--set", "n_mc=1000", *args, timeout_s=180)


def _cards(folder: Path) -> dict[str, dict]:
    return {p.stem: _comparable(p.read_text()) for p in sorted(folder.glob("chip-*.json"))}


def test_fit_many_local_cluster_equals_the_serial_loop_and_finds_the_bad_chip(wafer):
    r = _fit_many(wafer, "serial", "--workers", 0)
    assert r.returncode == 1, r.stderr  # one chip failed
    assert "failed chip chip-broken:" in r.stderr and "not a readable HDF5 file" in r.stderr
    r2 = _fit_many(wafer, "local", "--workers", 2, quiet=False)
    assert r2.returncode == 1, r2.stderr
    # not a terminal: one progress line per chip, not Dask's bar redrawn every 0.1 s
    lines = [ln for ln in r2.stdout.splitlines() if ln.split(" ")[0].count("/") == 1]
    n = WAFER_CHIPS + 1
    assert [ln.split(" ")[0] for ln in lines] == [f"{i}/{n}" for i in range(1, n + 1)], r2.stdout
    assert "\r" not in r2.stdout and "% Completed" not in r2.stdout
    serial, local = _cards(wafer / "serial"), _cards(wafer / "local")
    assert len(serial) == WAFER_CHIPS and serial == local
    # …and each equals the in-memory fit of its session
    one = wafer / "sessions" / "chip-000.h5"
    assert serial["chip-000"] == _comparable(fit_session(one, {"n_mc": 1000}).to_json())
    pop = json.loads((wafer / "local" / "population.json").read_text())
    assert [f["chip"] for f in pop["failed_chips"]] == ["chip-broken"] and pop["n_fitted"] == WAFER_CHIPS
    bad = f"chip-{BAD_CHIP:03d}"
    assert "read_noise.q_s_amp" in [h["parameter"] for h in pop["outlier_chips"][bad]]
    q = pop["parameters"]["read_noise.q_s_amp"]
    assert [c for c, o in zip(q["chips"], q["outlier"], strict=True) if o] == [bad]
    # the truth of every chip is its session's ground truth
    truth = np.array([read_session(wafer / "sessions" / f"{c}.h5", with_trace=False)
                      .ground_truth["params"]["stat"]["q_s"]["amp"] for c in q["chips"]])
    fitted = np.array(q["values"])
    assert np.all(np.abs(fitted / truth - 1) < 0.05)  # each chip's amplitude within 5 %
    good = ~np.array(q["outlier"])
    sd_truth = np.std(truth[good], ddof=1)
    assert abs(q["chip_to_chip_sd"] - sd_truth) <= 2 * q["chip_to_chip_sd_stderr"]
    assert abs(q["mean"] - truth[good].mean()) <= 3 * q["sd_observed"] / np.sqrt(good.sum())



def test_local_cluster_workers_keep_glibcs_own_allocator_tuning():
    """fit-many's workers run without Dask's MALLOC_TRIM_THRESHOLD_ (a fit in a worker with it took
    1.5–2× as long, docs/scale.md "Workers"), keep one BLAS thread each, and hold the fit's limit
    with the margin."""
    from dask.distributed import Client, LocalCluster

    from devmodel.fit.many import WORKER_MEMORY_MARGIN, local_cluster

    with local_cluster(LocalCluster, 2, 10**9) as cluster, Client(cluster) as client:
        env = client.run(lambda: {k: os.environ.get(k) for k in ("MALLOC_TRIM_THRESHOLD_",
                                                                   "OMP_NUM_THREADS")})
        limits = {w["memory_limit"] for w in client.scheduler_info()["workers"].values()}
    assert len(env) == 2
    assert all(e == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1"} for e in env.values())
    assert limits == {int(10**9 * WORKER_MEMORY_MARGIN)}

def _wait_for(path: Path, procs, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while not path.exists():
        for p in procs:
            assert p.poll() is None, p.stderr.read()
        assert time.monotonic() < end, f"no {path} after {timeout_s} s"
        time.sleep(0.2)


def test_fit_many_on_a_dask_scheduler_and_two_workers(wafer, tmp_path):
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1, started and stopped here."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    sched_file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m", "dask"]
    procs = []
    try:
        procs.append(subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                                       "--no-dashboard", "--scheduler-file", str(sched_file)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                                      cwd=tmp_path, text=True))
        _wait_for(sched_file, procs, 60)
        for _ in range(2):
            procs.append(subprocess.Popen([*dask, "worker", "--scheduler-file", str(sched_file),
                                           "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1",
                                           "--memory-limit", "3GB"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                                          cwd=tmp_path, text=True))
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        some = [wafer / "sessions" / n for n in ("chip-000.h5", "chip-001.h5", "chip-broken.h5")]
        r = _fit_many(wafer, "remote", "--scheduler", address, sessions=some)
        assert r.returncode == 1, r.stderr
        assert "failed chip chip-broken:" in r.stderr
        remote = _cards(wafer / "remote")
        assert set(remote) == {"chip-000", "chip-001"}
        local = _cards(wafer / "local") if (wafer / "local").exists() else {}
        assert all(remote[c] == local[c] for c in remote if c in local)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def test_fit_many_refuses_an_unreachable_scheduler_in_one_sentence(wafer):
    r = _fit_many(wafer, "nowhere", "--scheduler", "tcp://127.0.0.1:9", "--connect-timeout", 1)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "no Dask scheduler answered" in r.stderr
    assert not (wafer / "nowhere").exists()  # no folder left behind


def test_fit_many_refuses_a_missing_session_before_any_work(wafer):
    """A session path that does not exist is a typo, not a failed chip: one sentence, exit 2, no
    folder, no cards."""
    sessions = [*sorted((wafer / "sessions").glob("*.h5"))[:2], wafer / "sessions" / "chip-99.h5"]
    r = _fit_many(wafer, "typo", "--workers", 0, sessions=sessions)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert f"session file {wafer / 'sessions' / 'chip-99.h5'} does not exist" in r.stderr
    assert not (wafer / "typo").exists()


def test_wafer_chip_urls_are_deterministic_and_checked():
    from devmodel.chips import open_chip
    from devmodel.errors import ChipURLError

    def amp(url: str, seed: int = 5) -> float:
        chip = open_chip(url, seed)
        try:
            return chip.physics.stat.q_s.amp
        finally:
            chip.close()

    url = "sim:pcm?devices=64&chip={}&spread.stat.q_s.amp=0.2"
    assert amp(url.format(2)) == amp(url.format(2)) != amp(url.format(3))
    assert amp(url.format(2)) != amp(url.format(2), seed=6)
    assert amp("sim:pcm?devices=64&chip=2") == 0.0088  # no spread: the published value
    for bad, words in [("sim:pcm?spread.stat.q_s.amp=0.2", "no chip=K"),
                       ("sim:pcm?chip=1&spread.stat.q_s.amp=-1", "outside 0..2"),
                       ("sim:pcm?chip=1&spread.stat.nope=0.1", "unknown parameter")]:
        with pytest.raises(ChipURLError, match=words):
            open_chip(bad)


def test_population_statistics_by_hand():
    from devmodel.fit.population import parameter_summary

    # median 3, MAD 1: M = 0.6745·(x − 3); 100 is flagged (M = 65.4), 1 is not (M = −1.35)
    p = parameter_summary(np.array([1.0, 2.0, 3.0, 4.0, 100.0]), np.full(5, 0.1))
    assert p["outlier"] == [False, False, False, False, True]
    assert p["modified_z"][4] == pytest.approx(65.43, abs=0.01)
    assert p["mean"] == 2.5 and p["sd_observed"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    # the fit errors' share is removed: SD² = 1.6667, mean SE² = 0.01 → σ_c = √1.6567
    assert p["chip_to_chip_sd"] == pytest.approx(np.sqrt(5 / 3 - 0.01))
    # M = 12.8 for 1.2, but 0.19 from the median is within 3.5 of its SE 0.1: fit noise, not a bad chip
    q = parameter_summary(np.array([1.0, 1.01, 0.99, 1.02, 1.2]), np.full(5, 0.1))
    assert q["modified_z"][4] > 3.5 and not any(q["outlier"])


NO_DASK = """
import sys
class NoDask:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("dask", "distributed"):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)
sys.meta_path.insert(0, NoDask())
from devmodel.commands import main
sys.argv = ["devmodel", *sys.argv[1:]]
main()
"""


def test_fit_many_without_dask_says_what_is_missing(tmp_path):
    path = tmp_path / "s.h5"
    synthesize_pcm_session(path, devices_per_level=20, seed=1)
    r = subprocess.run([sys.executable, "-c", NO_DASK, "fit-many", str(path), "--out", str(tmp_path / "c"),
                        "--workers", "2"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "needs Dask: pip install 'devmodel[scale]'" in r.stderr
