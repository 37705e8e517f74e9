"""Data for analog inference and training: scikit-learn's digits (ships with scikit-learn, nothing is
downloaded) and, for the example script only, CIFAR-10 from a folder the user already has."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from devmodel.errors import DevmodelError


@dataclass
class Split:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def digits(seed: int = 0, test_fraction: float = 0.25, image: bool = True) -> Split:
    """The 8×8 handwritten digits (1,797 samples, 10 classes), pixels scaled to [0, 1], split
    deterministically; ``image`` gives (n, 1, 8, 8), else (n, 64)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    xt = torch.from_numpy(x)
    if image:
        xt = xt.reshape(-1, 1, 8, 8)
    yt = torch.from_numpy(y)
    return Split(xt[train], yt[train], xt[test], yt[test])


def cifar10(data_dir: str | Path) -> Split:
    """CIFAR-10 from the python batches in ``data_dir`` (cifar-10-batches-py), normalised per
    channel. Nothing is downloaded: the folder must already be there."""
    root = Path(data_dir)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    files = [root / f"data_batch_{i}" for i in range(1, 6)] + [root / "test_batch"]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise DevmodelError(f"{root} has no CIFAR-10 python batches ({', '.join(missing)} missing)")

    def load(f):
        with open(f, "rb") as fh:
            d = pickle.load(fh, encoding="bytes")
        return d[b"data"].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0, np.array(d[b"labels"])

    parts = [load(f) for f in files]
    x_tr = np.concatenate([p[0] for p in parts[:5]])
    y_tr = np.concatenate([p[1] for p in parts[:5]])
    x_te, y_te = parts[5]
    mean = x_tr.mean(axis=(0, 2, 3), keepdims=True)
    std = x_tr.std(axis=(0, 2, 3), keepdims=True)
    return Split(torch.from_numpy((x_tr - mean) / std), torch.from_numpy(y_tr).long(),
                 torch.from_numpy((x_te - mean) / std), torch.from_numpy(y_te).long())
