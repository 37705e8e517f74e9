"""ResNet-32 on CIFAR-10 on a characterised chip: train in floating point, then accuracy over time.

The seeds' experiment (001, 000) with your own device model. Needs the CIFAR-10 python batches
already on disk (nothing is downloaded): a folder holding ``cifar-10-batches-py``. Not run in CI.

    python scripts/examples/resnet32_cifar10.py --data-dir ~/data --card model.json|published:pcm \\
        [--epochs 30] [--trials 10] [--times 1,3600,86400,31536000] [--hwa-method none|noise-001|…]
        [--hwa-epochs 10] [--widths 16,28,56]

``--hwa-method`` continues the floating-point network with one of ``devmodel train-hwa``'s methods
(docs/hwa-training.md) before the evaluation; ``--widths`` are the stages' channels (the seed's
16,28,56: 361,722 weights). Its test runs it end to end on a few fake CIFAR-10 images.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from devmodel.model.card import DeviceModel
from devmodel.sim import CrossbarConfig, accuracy, convert, evaluate_over_time
from devmodel.sim.data import cifar10
from devmodel.sim.networks import ResNet32, analog_weight_count
from devmodel.train import TrainOptions, train_hwa
from devmodel.train.registry import METHODS


def train(net: nn.Module, data, epochs: int, batch: int = 128, seed: int = 0) -> nn.Module:
    """SGD with momentum 0.9, learning rate 0.1 divided by 10 at 50 % and 75 % (as the seeds)."""
    torch.manual_seed(seed)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [epochs // 2, 3 * epochs // 4], 0.1)
    n = data.x_train.shape[0]
    for _ in tqdm(range(epochs), desc="training"):
        net.train()
        perm = torch.randperm(n)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            x = data.x_train[idx]
            if torch.rand(()) < 0.5:  # random horizontal flip
                x = x.flip(-1)
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), data.y_train[idx]).backward()
            opt.step()
        sched.step()
    return net.eval()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--card", required=True, help="A card file or a preset (published:pcm).")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--times", default="1,3600,86400,31536000")
    ap.add_argument("--hwa-method", default="none", choices=["none", *METHODS.names()])
    ap.add_argument("--hwa-epochs", type=int, default=10)
    ap.add_argument("--widths", default="16,28,56")
    a = ap.parse_args(argv)
    data = cifar10(a.data_dir)
    card = DeviceModel.load(a.card)
    net = ResNet32(widths=tuple(int(w) for w in a.widths.split(",")))
    print(f"ResNet-32, {analog_weight_count(net):,} analog weights")
    net = train(net, data, a.epochs)
    print(f"floating point: {100 * accuracy(net, data.x_test, data.y_test):.2f} %")
    if a.hwa_method != "none":
        net = train_hwa(net, card, a.hwa_method, data, TrainOptions(epochs=a.hwa_epochs), progress=True).net
        print(f"after {a.hwa_method}: {100 * accuracy(net, data.x_test, data.y_test):.2f} % (digital)")
    times = [float(t) for t in a.times.split(",")]
    anet = convert(net, card, CrossbarConfig.standard(), extrapolate=True)
    acc = evaluate_over_time(anet, data.x_test, data.y_test, times, a.trials,
                             calibration=data.x_train[:512])
    for t, m, s in zip(times, acc.mean(0), acc.std(0) / np.sqrt(a.trials), strict=True):
        print(f"  t = {t:>10g} s   {100 * m:6.2f} ± {100 * s:.2f} %")


if __name__ == "__main__":
    main()
