"""A chip that lost its state is not trusted (reliability round two, part 1): `serve-chip` has a boot
id that changes when it restarts; a session whose chip is restarted under it stops with one sentence
and is not marked complete, and `--resume` refuses a restarted chip — real processes, real sockets."""

from __future__ import annotations

import signal

import h5py
import pytest
from helpers import run_devmodel, start, wait_for_commits

from instruments.testing import ServerProcess

SERVER = ("--technology", "pcm", "--seed", "4", "--devices", "4096")
COMMITS = ("--checkpoint-interval", "0", "--durability", "process", "--quiet")


def _status(path) -> str:
    with h5py.File(path, "r") as f:
        return str(f.attrs["status"])


def test_a_server_restarted_under_a_running_session_stops_it(tmp_path):
    path = tmp_path / "s.h5"
    first = ServerProcess(*SERVER).start()
    port = first.port
    try:
        proc = start("--chip", f"visa://{first.resource}", "--devices", 30, "--retries", 8, "--out", path,
                     *COMMITS)
        wait_for_commits(proc, path, 0, 3)
        assert proc.poll() is None, "the session ended before the server could be restarted"
        first.kill()
    finally:
        first.kill()
    with ServerProcess(*SERVER, "--port", str(port)):
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "was restarted while the session ran" in err and "Traceback" not in err
    assert err.count("\n") == 1
    assert _status(path) != "complete"


def test_resume_refuses_a_restarted_chip(tmp_path):
    path = tmp_path / "s.h5"
    with ServerProcess(*SERVER) as first:
        port = first.port
        proc = start("--chip", f"visa://{first.resource}", "--devices", 30, "--out", path, *COMMITS)
        wait_for_commits(proc, path, 0, 3)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    with ServerProcess(*SERVER, "--port", str(port)):
        r = run_devmodel("characterize", "--resume", path, "--quiet")
    assert r.returncode == 2, r.stderr
    assert "the chip was restarted since the session stopped" in r.stderr
    assert "Traceback" not in r.stderr and _status(path) != "complete"


@pytest.mark.parametrize("boot", ["", "x" * 65, "a\tb"])
def test_a_chip_without_a_usable_boot_id_is_refused(boot):
    """A controller must say which boot it is in (docs/chip-protocol.md)."""
    from instruments.base import InstrumentError
    from instruments.chip import _boot_id

    with pytest.raises(InstrumentError, match="CHIP:BOOT"):
        _boot_id("chip", boot)
