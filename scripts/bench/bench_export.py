"""Programming + drift + 1/f noise for 25,000,000 conductances on the CPU: devmodel's native torch
model vs aihwkit's PCMLikeNoiseModel on the same tensors, side by side (export issue: at most
aihwkit's time, target 2× faster; peak memory ≤ 4× the input tensor).

Each run is a fresh process: it allocates the float32 input, records RSS, runs program → drift
coefficients → conductance at 1 day, and reports wall time and the peak RSS above the baseline as a
multiple of the input tensor. aihwkit comes from its pinned sdist (tests/aihwkit_ref.py).

    python scripts/bench/bench_export.py [--n 25000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(which: str, n: int) -> dict:
    import resource
    import time

    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from aihwkit_ref import import_aihwkit

    from devmodel.model.card import DeviceModel
    from devmodel.model.noise import NativeNoiseModel

    torch.set_num_threads(2)
    g = torch.rand(n, generator=torch.Generator().manual_seed(0)) * 25.0
    if which == "aihwkit":
        ok, why = import_aihwkit()
        if not ok:
            return {"skipped": why}
        from aihwkit.inference.noise.pcm import PCMLikeNoiseModel

        model = PCMLikeNoiseModel()
        model.apply_programming_noise_to_conductance(g[:10].clone())  # warm up imports/kernels
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        torch.manual_seed(0)
        t = time.perf_counter()
        gp = model.apply_programming_noise_to_conductance(g)
        nu = model.generate_drift_coefficients(g)
        out = model.apply_drift_noise_to_conductance(gp, nu, 86400.0)
    else:
        m = NativeNoiseModel(DeviceModel.published("pcm"), torch.Generator().manual_seed(0))
        m.program(g[:10])
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        nu = m.drift_coefficients(g)
        out = m.at_time(m.program(g, nu), nu, 86400.0 + 20.0)
    wall = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"wall_s": wall, "peak_over_input": (peak - base) * 1024 / (g.numel() * 4),
            "mean": float(out.mean())}


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from _util import median_of, run_isolated

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=25_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    res = {w: [run_isolated("bench_export", "run", w, a.n) for _ in range(a.repeats)]
           for w in ("native", "aihwkit")}
    if "skipped" in res["aihwkit"][0]:
        print("aihwkit unavailable:", res["aihwkit"][0]["skipped"])
    print(f"{a.n:,} conductances, programming + ν + conductance at 1 day, {a.repeats} runs each")
    for w, runs in res.items():
        if "wall_s" not in runs[0]:
            continue
        print(f"  {w:8s} wall (median) {median_of(runs, 'wall_s'):6.2f} s   runs: "
              + ", ".join(f"{r['wall_s']:.2f}" for r in runs)
              + f"   peak RSS above baseline {median_of(runs, 'peak_over_input'):.2f}× input")
    if "wall_s" in res["aihwkit"][0]:
        ratio = median_of(res["aihwkit"], "wall_s") / median_of(res["native"], "wall_s")
        print(f"  native is {ratio:.2f}× faster than aihwkit")


if __name__ == "__main__":
    main()
