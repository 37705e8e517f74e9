"""Acceptance (instruments issue), scaled down: `devmodel serve-chip --seed 7` in one process and
`devmodel characterize --chip visa://TCPIP::127.0.0.1::PORT::SOCKET --seed 7` in another give a
session that agrees with the in-process `sim:pcm?seed=7` session, statistically per level, and in
fact value for value (the protocol is lossless and the chip deterministic given its seed) as long
as every request fits the server's declared size (CHIP:LIMit:VALues?, docs/chip-protocol.md
"Sharing the chip"): the burst is 13 × 50 devices × 256 reads; a larger one is split by address and
its later part read after the first, so only its statistics agree."""

import subprocess

import numpy as np
import pytest
from helpers import run_devmodel

from devmodel.report.summary import summarize
from devmodel.store import read_session
from instruments.testing import ServerProcess

DEVICES = 150  # per level; the full acceptance (13 × 2000) is reported in docs/benchmarks.md


def characterize(url: str, out) -> subprocess.CompletedProcess:
    return run_devmodel("characterize", "--chip", url, "--seed", "7", "--devices", DEVICES, "--quiet",
                        "--burst-devices", "50", "--out", out, timeout_s=300)


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    d = tmp_path_factory.mktemp("acceptance")
    with ServerProcess("--technology", "pcm", "--seed", "7", "--devices", "65536") as srv:
        rv = characterize(f"visa://{srv.resource}", d / "visa.h5")
    rs = characterize("sim:pcm?devices=65536&seed=7", d / "sim.h5")
    assert rv.returncode == 0, rv.stderr
    assert rs.returncode == 0, rs.stderr
    return read_session(d / "visa.h5"), read_session(d / "sim.h5")


def test_per_level_statistics_agree(sessions):
    visa, sim = (summarize(s) for s in sessions)
    assert visa.status == sim.status == "complete" and visa.n_devices == 13 * DEVICES
    for a, b in zip(visa.levels, sim.levels, strict=True):
        assert a.target_us == b.target_us and a.n == b.n == DEVICES
        # converged fraction: within 3 binomial standard errors of the difference (+1 device)
        p = (a.converged + b.converged) / 2
        assert abs(a.converged - b.converged) <= 3 * np.sqrt(2 * p * (1 - p) / DEVICES) + 1 / DEVICES
        # mean deviation at t0 (its SE is below the median's) and robust spread: within 3 SE of the difference
        se_median = 1.2533 * b.spread_t0_us / np.sqrt(b.n_t0)
        assert abs(a.mean_dev_t0_us - b.mean_dev_t0_us) <= 3 * np.sqrt(2) * se_median + 0.02
        assert abs(a.spread_t0_us / b.spread_t0_us - 1) <= 3 * np.sqrt(2) * 1.17 / np.sqrt(b.n_t0)
    assert visa.n_reads == sim.n_reads and visa.n_bursts == sim.n_bursts


def test_sessions_are_identical_value_for_value(sessions):
    visa, sim = sessions
    for table in ("reads", "devices", "trace", "bursts"):
        a, b = getattr(visa, table), getattr(sim, table)
        assert a.keys() == b.keys()
        for col in a:
            np.testing.assert_array_equal(a[col], b[col], err_msg=f"{table}/{col}")
    assert visa.ground_truth is not None  # a simulated server hands over its ground truth too
    np.testing.assert_array_equal(visa.ground_truth["devices"]["nu"], sim.ground_truth["devices"]["nu"])
    assert visa.chip["url"].startswith("visa://TCPIP::127.0.0.1::") and visa.chip["simulated"] is True
