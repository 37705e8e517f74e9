"""Analog forward vs digital forward, side by side in one process (analog-inference issue: the
analog forward with weights sampled once per trial and the periphery on must take ≤ 3× the digital).

Networks: the digits CNN and the seeds' ResNet-32 (CIFAR-sized inputs), random inputs, batch 256,
the standard crossbar configuration (8-bit DAC/ADC, output noise, weight noise, bound, 512×512 tiles,
column scales, drift compensation), devices programmed once and moved to 1 day before timing.
Medians of several forward passes each, interleaved. A third column runs the same crossbar with each
device's short-term read noise from the card (``read_noise="card"``, `evaluate`'s default), which
costs one more product per tile (Σ x²σ²).

    python scripts/bench/bench_analog.py [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from devmodel.model.card import DeviceModel
from devmodel.sim import CrossbarConfig, convert
from devmodel.sim.networks import ResNet32, digits_cnn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    card = DeviceModel.published("pcm")
    for name, net, shape in (("digits-cnn", digits_cnn().eval(), (256, 1, 8, 8)),
                             ("resnet-32", ResNet32().eval(), (256, 3, 32, 32))):
        x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
        nets = [net]
        for cfg in (CrossbarConfig.standard(), CrossbarConfig.standard().with_(read_noise="card")):
            anet = convert(net, card, cfg)
            anet.program(0)
            anet.set_time(0.0)
            anet.calibrate(x)
            anet.set_time(86400.0)
            nets.append(anet)
        times: list[list[float]] = [[] for _ in nets]
        with torch.no_grad():
            for f in nets:  # warm up
                f(x)
            for _ in range(a.repeats):
                for f, acc in zip(nets, times, strict=True):
                    t = time.perf_counter()
                    f(x)
                    acc.append(time.perf_counter() - t)
        d, an, ac = (statistics.median(t) for t in times)
        print(f"{name:10s} batch {shape[0]}: digital {1e3 * d:8.1f} ms   analog {1e3 * an:8.1f} ms "
              f"({an / d:.2f}×)   analog, card read noise {1e3 * ac:8.1f} ms ({ac / d:.2f}×)   "
              f"({a.repeats} runs each, medians)")


if __name__ == "__main__":
    main()
