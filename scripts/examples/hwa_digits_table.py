"""What each hardware-aware training method does on digits: the table of docs/hwa-training.md.

For every method and training seed: a floating-point digits network (40 epochs), mapped directly and
after hardware-aware training from it (the method's defaults), both evaluated on the method's own
crossbar configuration at 1 s and 1 day with global drift compensation (25 programming trials each).
Prints a Markdown table: accuracy loss vs the FP network's digital accuracy (mean over seeds) and how
much of the direct-mapping loss the method removes; tile-003 also the top-25 % and median of trials.

    python scripts/examples/hwa_digits_table.py --card card.json [--network digits-cnn-small]
        [--seeds 3] [--trials 25] [--methods noise-001,fluct-004]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from torch import nn

from devmodel.model.card import DeviceModel
from devmodel.sim import accuracy
from devmodel.sim.data import digits
from devmodel.sim.networks import NETWORKS, build, train_fp
from devmodel.train import METHODS, TrainOptions, evaluate_hwa, train_hwa

TIMES_S = [1.0, 86400.0]


def _fp_energy(net: nn.Module, alpha_t: list[int]) -> float:
    """Σ_layers α_t·Σ|w| of the FP network at ρ = 1 (seed 004, Eq. 13), α_t as the trained one's."""
    layers = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return sum(a * float(m.weight.detach().abs().sum()) for a, m in zip(alpha_t, layers, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--card", required=True)
    ap.add_argument("--network", default="digits-cnn-small", choices=sorted(NETWORKS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--trials", type=int, default=25)
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    a = ap.parse_args()
    names = [m.strip() for m in a.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        ap.error(f"--methods: unknown {', '.join(unknown)}; known: {', '.join(METHODS)}")
    card, data = DeviceModel.load(a.card), digits(seed=0)
    fps = [train_fp(build(a.network, s), data, epochs=40, seed=s) for s in range(a.seeds)]
    refs = [accuracy(f, data.x_test, data.y_test) for f in fps]
    print(f"{a.network}: FP digital accuracy {100 * np.mean(refs):.2f} % (mean of {a.seeds} seeds); "
          f"{a.trials} trials per evaluation; losses in points at 1 s / 1 day\n")
    print("| method | seed | FP mapped directly | HWA | loss removed at 1 day | train s/epoch | notes |")
    print("|---|---|---|---|---|---|---|")
    fp_cache: dict = {}  # (seed, crossbar) → the FP network's accuracies: methods share crossbars
    for name in names:
        fp_loss, hwa_loss, secs, day, energy = [], [], [], [], []
        for s, (f, ref) in enumerate(zip(fps, refs, strict=True)):
            t = time.perf_counter()
            r = train_hwa(f, card, name, data, TrainOptions(seed=s))
            secs.append((time.perf_counter() - t) / len(r.history))
            # the FP network on the crossbar the method trained for (tile-003: its last level)
            cfg = r.method.eval_config().for_untrained()
            if (s, cfg) not in fp_cache:
                fp_cache[s, cfg] = evaluate_hwa(f, card, data, TIMES_S, a.trials, seed=100, config=cfg)
            fp_acc = fp_cache[s, cfg]
            acc = evaluate_hwa(r, card, data, TIMES_S, a.trials, seed=100)
            fp_loss.append(ref - fp_acc.mean(0))
            hwa_loss.append(ref - acc.mean(0))
            day.append(acc[:, 1])
            if name == "fluct-004":  # read energy Σ α_t·ρ·|w| relative to the FP network at ρ = 1
                energy.append(r.report["energy"] / _fp_energy(f, r.report["alpha_t"]))
        f_l, h_l = 100 * np.mean(fp_loss, 0), 100 * np.mean(hwa_loss, 0)
        removed = 1 - h_l[1] / f_l[1]
        extra = ""
        if name == "tile-003":
            d = 100 * np.concatenate(day)
            extra = f"1 day top-25 % {np.percentile(d, 75):.2f}, median {np.median(d):.2f}"
        elif name == "fluct-004":
            extra = f"read energy {np.mean(energy):.2f}× the FP network's at ρ = 1"
        print(f"| {name} | {METHODS[name].seed.split(' ')[0]} | {f_l[0]:.2f} / {f_l[1]:.2f} | "
              f"{h_l[0]:.2f} / {h_l[1]:.2f} | {100 * removed:.0f} % | {np.median(secs):.2f} | {extra} |",
              flush=True)


if __name__ == "__main__":
    main()
