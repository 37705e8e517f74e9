"""Hardware-aware training epoch vs a plain floating-point epoch, side by side in one process
(hardware-aware training issue: methods 1–2 must take ≤ 3× a plain epoch; HA-SGD linear in L).

One epoch = the digits training split (1,347 samples) in batches of 64 with Adam, one thread (as
``train_hwa`` and ``train_fp`` run). The baseline is the plain network trained by the same loop.
Medians of several epochs each, interleaved, after one warm-up epoch.

    python scripts/bench/bench_hwa.py [--repeats 5] [--network digits-cnn]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from devmodel.model.card import DeviceModel
from devmodel.sim.data import digits
from devmodel.sim.networks import NETWORKS, build
from devmodel.train.hwa import _epoch, make_method, wrap
from devmodel.train.methods import TrainOptions


def plain_epoch(net, opt, data, batch: int, gen) -> None:
    net.train()
    perm = torch.randperm(data.x_train.shape[0], generator=gen)
    for i in range(0, perm.numel(), batch):
        idx = perm[i:i + batch]
        opt.zero_grad()
        F.cross_entropy(net(data.x_train[idx]), data.y_train[idx]).backward()
        opt.step()


def timed(f, *args) -> float:
    t = time.perf_counter()
    f(*args)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--network", default="digits-cnn", choices=sorted(NETWORKS))
    a = ap.parse_args()
    torch.set_num_threads(1)
    data, card = digits(seed=0), DeviceModel.published("pcm")
    gen = torch.Generator().manual_seed(0)
    net = build(a.network, 0)
    plain_opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    runs = [("noise-001", {}), ("device-000", {}), ("hasgd-002", {"n_perturb": 1}),
            ("hasgd-002", {"n_perturb": 2}), ("hasgd-002", {"n_perturb": 4}),
            ("hasgd-002", {"n_perturb": 8}), ("tile-003", {}), ("fluct-004", {})]
    setups = []
    for name, kw in runs:
        opts = TrainOptions()
        m = make_method(name, card, opts, kw)
        if name == "tile-003":
            m.level = 3  # the slowest pipeline
        w = wrap(net, m)
        setups.append((name, kw, m, w, torch.optim.Adam(w.parameters(), lr=1e-3), opts))
    times: dict[int, list[float]] = {i: [] for i in range(-1, len(setups))}
    for rep in range(a.repeats + 1):  # the first round warms up
        t = timed(plain_epoch, net, plain_opt, data, 64, gen)
        if rep:
            times[-1].append(t)
        for i, (_, _, m, w, opt, opts) in enumerate(setups):
            t = timed(_epoch, w, m, opt, data, opts, gen)
            if rep:
                times[i].append(t)
    base = statistics.median(times[-1])
    print(f"{a.network}: plain FP epoch {1e3 * base:.0f} ms (median of {a.repeats}, one thread)")
    for i, (name, kw, *_rest) in enumerate(setups):
        med = statistics.median(times[i])
        label = name + "".join(f" L={v}" for v in kw.values()) + (" (level 3)" if name == "tile-003" else "")
        print(f"  {label:22s} {1e3 * med:8.0f} ms   {med / base:5.2f}× plain")


if __name__ == "__main__":
    main()
