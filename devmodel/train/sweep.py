"""Seed 001's noise sweep (Fig. 2): networks trained with relative weight noise η_train, each tested
with relative weight noise η_inference injected before inference.

η is relative to each layer's largest weight, σ_δW^l = η·max|W^l| (seed 001, Sec. III): training uses
``noise-001`` with ``eta = η_train`` (η_train = 0 trains with its weight clipping but no noise); at
inference one Gaussian draw per layer and inference run perturbs the trained network's weights.
The seed trains ResNet-32 on CIFAR-10 10 times and runs inference 100 times per network; here the
training runs and inference runs are options (docs/hwa-training.md, "Seed 001's noise sweep").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from devmodel.model.card import DeviceModel
from devmodel.sim.analog import accuracy
from devmodel.sim.data import Split
from devmodel.train.hwa import train_hwa
from devmodel.train.methods import TrainOptions


@dataclass
class NoiseSweep:
    """Accuracy (η_train × η_inference × training runs × inference runs) of seed 001's sweep."""

    eta_train: list[float]
    eta_inference: list[float]
    accuracy: np.ndarray

    def mean(self) -> np.ndarray:
        """Mean accuracy per (η_train, η_inference)."""
        return self.accuracy.mean(axis=(2, 3))

    def std(self) -> np.ndarray:
        """Standard deviation over inference runs, averaged over training runs (the seed's bars)."""
        return self.accuracy.std(axis=3).mean(axis=2)

    def best_train(self) -> list[float]:
        """The η_train with the highest mean accuracy at each η_inference."""
        return [self.eta_train[i] for i in self.mean().argmax(axis=0)]

    def table(self) -> str:
        """The grid as text: rows η_train, columns η_inference, accuracy % (best per column marked *)."""
        m = 100 * self.mean()
        best = m.argmax(axis=0)
        head = "η_train \\ η_inf " + "".join(f"{e:>10.3g}" for e in self.eta_inference)
        rows = [head]
        for i, e in enumerate(self.eta_train):
            cells = "".join(f"{m[i, j]:>9.2f}{'*' if best[j] == i else ' '}"
                            for j in range(len(self.eta_inference)))
            rows.append(f"{e:>15.3g} {cells}")
        return "\n".join(rows)

    def figure(self):
        """Fig. 2b (accuracy vs η_inference, one line per η_train) and 2c (η_train = η_inference)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax_b, ax_c) = plt.subplots(1, 2, figsize=(9, 3.6))
        m, s = 100 * self.mean(), 100 * self.std()
        for i, e in enumerate(self.eta_train):
            ax_b.errorbar(self.eta_inference, m[i], s[i], marker="o", capsize=2, label=f"η_train {e:g}")
        ax_b.set_xlabel("η_inference (σ / max|W| per layer)")
        ax_b.set_ylabel("test accuracy (%)")
        ax_b.legend(fontsize=7)
        diag = [(e, i, self.eta_inference.index(e)) for i, e in enumerate(self.eta_train)
                if e in self.eta_inference]
        if diag:
            ax_c.errorbar([d[0] for d in diag], [m[i, j] for _, i, j in diag],
                          [s[i, j] for _, i, j in diag], marker="o", capsize=2)
        ax_c.set_xlabel("η_train = η_inference")
        ax_c.set_ylabel("test accuracy (%)")
        fig.tight_layout()
        return fig


@torch.no_grad()
def perturbed_accuracy(net: nn.Module, data: Split, eta: float, runs: int, seed: int) -> np.ndarray:
    """Accuracy of ``net`` over ``runs`` inference runs, each with every Linear/Conv2d weight perturbed
    by N(0, (η·max|W^l|)²) once (seed 001's η_inf)."""
    layers = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    clean = [m.weight.detach().clone() for m in layers]
    gen = torch.Generator().manual_seed(seed)
    out = np.empty(runs)
    try:
        for r in range(runs):
            for m, w in zip(layers, clean, strict=True):
                z = torch.randn(w.shape, generator=gen, dtype=w.dtype)
                m.weight.copy_(w + eta * w.abs().max() * z)
            out[r] = accuracy(net, data.x_test, data.y_test)
    finally:
        for m, w in zip(layers, clean, strict=True):
            m.weight.copy_(w)
    return out


def sweep_noise(fp_net: nn.Module, card: DeviceModel, data: Split, eta_train: list[float],
                eta_inference: list[float], opts: TrainOptions, training_runs: int = 1,
                inference_runs: int = 25, progress=None) -> NoiseSweep:
    """Train ``noise-001`` at every η_train (``training_runs`` seeds from ``opts.seed``) and test each
    network at every η_inference; ``progress(done, total)`` after each training."""
    acc = np.empty((len(eta_train), len(eta_inference), training_runs, inference_runs))
    total, done = len(eta_train) * training_runs, 0
    for i, eta in enumerate(eta_train):
        for k in range(training_runs):
            run = TrainOptions(**{**opts.to_dict(), "seed": opts.seed + k})
            net = train_hwa(fp_net, card, "noise-001", data, run, {"eta": eta}).net
            for j, eta_inf in enumerate(eta_inference):
                acc[i, j, k] = perturbed_accuracy(net, data, eta_inf, inference_runs,
                                                  seed=10_000 * (k + 1) + j)
            done += 1
            if progress:
                progress(done, total)
    return NoiseSweep(list(eta_train), list(eta_inference), acc)
