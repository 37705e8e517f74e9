"""Seed 000's two tables on the digits CNN: accuracy at 1 day vs the number N of integer output
scales (Suppl. B.3.1, Fig. 2) and vs the fraction of PCM-noise-exempt columns chosen by the seed's
rule (Suppl. B.4, Table 8), with a card fitted to the shipped PCM session (docs/analog-inference.md,
"Scales and exempt columns").

    python scripts/examples/seed000_scales_exempt.py [--trials 10] [--epochs 30]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from devmodel.fit.session import fit_session
from devmodel.sim import CrossbarConfig, accuracy, convert, evaluate_over_time
from devmodel.sim.data import digits
from devmodel.sim.exempt import column_sensitivity, exempt_columns
from devmodel.sim.networks import build, train_fp

SESSION = Path(__file__).resolve().parents[2] / "calibration_data" / "pcm_sample.h5"
DAY_S = 86400.0


def at_one_day(net, card, cfg, data, trials, exempt=None) -> tuple[float, float]:
    anet = convert(net, card, cfg, extrapolate=True)
    if exempt is not None:
        sens, fraction = exempt
        exempt_columns(anet, sens, fraction)
    acc = evaluate_over_time(anet, data.x_test, data.y_test, [DAY_S], trials, 0, calibration=data.x_train)
    return float(acc.mean()), float(acc.std(ddof=1) / np.sqrt(trials)) if trials > 1 else 0.0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=30)
    a = ap.parse_args(argv)
    card = fit_session(SESSION)
    data = digits(seed=0, image=True)
    net = train_fp(build("digits-cnn", 0), data, epochs=a.epochs, seed=0)
    print(f"digits-cnn, card fitted to {SESSION.name}; floating point "
          f"{100 * accuracy(net, data.x_test, data.y_test):.2f} %; accuracy at 1 day, mean ± SEM over "
          f"{a.trials} programmings")
    std = CrossbarConfig.standard().with_(drift_compensation=True)
    print("\noutput scales (seed 000, B.3.1: N = 16 costs < 1 % on every DNN; N = 1 severe on large ones)")
    for n in (None, 16, 4, 2, 1):
        m, e = at_one_day(net, card, std.with_(scale_levels=n), data, a.trials)
        print(f"  {'FP scales' if n is None else f'N = {n}':>10}   {100 * m:6.2f} ± {100 * e:.2f} %")
    sens = column_sensitivity(net, data.x_train, data.y_train)
    print("\nnoise-exempt columns, largest mean |gradient| first (seed 000, Table 8: half the sensitive "
          "layers' columns ≈ iso-accuracy; the smallest-gradient half is much worse)")
    for f in (0.0, 0.1, 0.25, 0.5, 1.0):
        m, e = at_one_day(net, card, std, data, a.trials, (sens, f))
        print(f"  {100 * f:5.0f} % of columns   {100 * m:6.2f} ± {100 * e:.2f} %")
    m, e = at_one_day(net, card, std, data, a.trials, ([-s for s in sens], 0.25))
    print(f"  25 % smallest       {100 * m:6.2f} ± {100 * e:.2f} %  (control: the seed's rule reversed)")


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
