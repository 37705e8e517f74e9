"""An instruments-only machine (docs/instruments.md, "An instruments-only install"): the lab commands
run without torch — characterise, look at the session, import tables and traces, export the data,
serve a simulated chip — in a real process where importing torch fails, as it would where it is not
installed; and the model commands say in one sentence what is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# a meta-path finder that refuses torch, then the devmodel command line with the given arguments
NO_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)
sys.meta_path.insert(0, NoTorch())
from devmodel.commands import main
sys.argv = ["devmodel", *sys.argv[1:]]
main()
"""


def run(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.mark.parametrize("args", [
    ["--help"],
    ["characterize", "--chip", "sim:reram?devices=2048", "--devices", 4, "--out", "s.h5", "--quiet"],
    ["info", "s.h5"],
    ["export-data", "s.h5", "--out", "s.nc"],
    ["import-table", "t.csv", "--technology", "pcm", "--g-max-us", 25, "--out", "t.h5"],
    ["card", "list"],
])
def test_lab_commands_run_without_torch(tmp_path_factory, args):
    d = tmp_path_factory.getbasetemp() / "no-torch"
    d.mkdir(exist_ok=True)
    (d / "t.csv").write_text("device,target_us,time_s,g_us\n1,5,20,4.9\n1,5,60,4.8\n")
    if args[0] == "export-data":
        pytest.importorskip("xarray")
    r = run(*args, cwd=d)
    assert r.returncode == 0, r.stderr
    assert "torch" not in r.stderr


def test_serve_chip_starts_without_torch(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", NO_TORCH, "serve-chip", "--port", "0", "--devices", "1024"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = p.stdout.readline()
        assert "listening on 127.0.0.1:" in line, p.stderr.read() if p.poll() is not None else line
    finally:
        p.terminate()
        p.wait(30)


def test_a_model_command_without_torch_says_what_is_missing(tmp_path):
    r = run("evaluate", "--card", "published:pcm", "--quiet", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("devmodel: error: this command needs torch, which is not installed here")
