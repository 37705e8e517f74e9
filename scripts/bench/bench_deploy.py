"""Deployment speed (issue 16; docs/benchmarks.md), medians of several runs, each against a baseline
measured in the same run.

1. **Deploy**: the seed's ResNet-32 (361,722 weights → 723,444 devices with the pairs; random
   weights, the mapping does not depend on training) on ``sim:pcm`` (2^20 devices): mapping, the
   PCM program-and-verify, reads at the 7 ages of the characterisation schedule (20 s … 1 day of
   chip time) into a crash-safe file (default durability) — target ≤ 60 s. Baseline: the same
   program-and-verify and reads into a plain (non-resumable) file, so the cost of crash safety shows.
2. **Evaluate**: the digits CNN deployed on ``sim:pcm`` with the 7-age schedule; accuracy from the
   measured conductances at the 7 ages (``evaluate --deployment`` without a card) vs the card's
   ``evaluate_over_time`` with one trial at 7 times (``evaluate --card --trials 1``; both without the
   FP training that ``evaluate --card`` adds) — target ratio ≤ 2.

    PYTHONPATH=. python scripts/bench/bench_deploy.py [--repeats 3] [--threads 2] [--skip-deploy]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from devmodel.chips import open_chip
from devmodel.deploy.mapping import map_network, mapping_config
from devmodel.deploy.measured import measured_accuracy, read_deployment
from devmodel.deploy.session import NetworkRecord, new_deployment
from devmodel.model.card import DeviceModel
from devmodel.sim import CrossbarConfig, convert, evaluate_over_time
from devmodel.sim.data import digits
from devmodel.sim.networks import ResNet32, build, train_fp

TIMES_S = [1.0, 10.0, 100.0, 1000.0, 3600.0, 10800.0, 86400.0]


def deploy(net, name: str, out: Path, chip_url: str, durability: str = "full") -> float:
    t = time.perf_counter()
    chip = open_chip(chip_url, 0)
    cfg = mapping_config(net)
    _, mp = map_network(net, cfg, chip.info.g_max_us)
    record = NetworkRecord(name, name, 0, {"scales": cfg.scales, "input_range": cfg.input_range,
                                           "tile_rows": cfg.tile_rows, "tile_cols": cfg.tile_cols,
                                           "scale_levels": None, "differential": "pair"})
    new_deployment(chip, chip_url, net, mp, record, out, overwrite=True, durability=durability)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-deploy", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        if not a.skip_deploy:
            net = ResNet32().eval()
            durable, plain = [], []
            for _ in range(a.repeats):
                durable.append(deploy(net, "resnet-32", d / "r.h5", "sim:pcm"))
                plain.append(deploy(net, "resnet-32", d / "p.h5", "sim:pcm", durability="off"))
            runs = ", ".join(f"{v:.1f}" for v in durable)
            print(f"deploy ResNet-32 (723,444 devices) on sim:pcm, 7 read ages to 1 day: median "
                  f"{statistics.median(durable):.1f} s crash-safe (runs {runs}), "
                  f"{statistics.median(plain):.1f} s plain file; ratio "
                  f"{statistics.median(durable) / statistics.median(plain):.2f}")
        data = digits(seed=0, image=True)
        net = train_fp(build("digits-cnn", 0), data, epochs=30, seed=0, progress=False)
        deploy(net, "digits-cnn", d / "c.h5", "sim:pcm?devices=131072")
        dep = read_deployment(d / "c.h5")
        card = DeviceModel.published("pcm")
        measured, predicted = [], []
        for _ in range(a.repeats + 2):
            t = time.perf_counter()
            measured_accuracy(dep, net, data, True)
            measured.append(time.perf_counter() - t)
            t = time.perf_counter()
            anet = convert(net, card, CrossbarConfig.standard())
            evaluate_over_time(anet, data.x_test, data.y_test, TIMES_S, 1, calibration=data.x_train)
            predicted.append(time.perf_counter() - t)
        m, p = statistics.median(measured), statistics.median(predicted)
        print(f"evaluate digits-cnn deployment at {dep.ages_s.size} ages: median {m:.2f} s; evaluate --card "
              f"one trial at 7 times: median {p:.2f} s; ratio {m / p:.2f}")


if __name__ == "__main__":
    main()
