"""scripts/examples/resnet32_cifar10.py runs end to end, every option it documents included, on a
folder of fake CIFAR-10 python batches (a few random images; the real set is not downloaded)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from helpers import load_module

SCRIPT = Path(__file__).parent.parent / "scripts" / "examples" / "resnet32_cifar10.py"


def fake_cifar(root: Path, n: int = 16) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, n)]}
        with open(folder / name, "wb") as fh:
            pickle.dump(batch, fh)
    return root


def test_the_documented_options_exist():
    text = SCRIPT.read_text("utf-8")
    doc = text.split('"""')[1]
    for option in ("--data-dir", "--card", "--epochs", "--trials", "--times", "--hwa-method", "--hwa-epochs",
                   "--widths"):
        assert option in doc and f'"{option}"' in text, option


def test_the_example_runs_with_hardware_aware_training(tmp_path, capsys):
    script = load_module(SCRIPT, "resnet32_example")
    script.main(["--data-dir", str(fake_cifar(tmp_path)), "--card", "published:pcm", "--epochs", "1",
                 "--trials", "1", "--times", "1,86400", "--hwa-method", "noise-001", "--hwa-epochs", "1"])
    out = capsys.readouterr().out
    assert "ResNet-32, 361,722 analog weights" in out
    assert "after noise-001:" in out and "t =      86400 s" in out
