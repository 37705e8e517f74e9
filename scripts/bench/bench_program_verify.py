"""Program-and-verify of 1,000,000 simulated PCM devices to 13 levels (foundation issue).

Prints the median wall time and peak RSS of several runs, each in a fresh process, and the ratio
against a bare-NumPy floor measured in the same run: the floor replays the same number of active
devices per iteration and draws the same random numbers and does the same arithmetic (pulse
response, 1/f run of 5 verify reads, drift, white noise, ADC) on contiguous arrays, with no
addressing, state or bookkeeping.

    python scripts/bench/bench_program_verify.py [--devices 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

LEVELS = np.array([0.5, 1, 2, 3, 5, 7.5, 10, 12.5, 15, 17.5, 20, 22.5, 25.0])


def real(n: int) -> dict:
    from devmodel.procedures.program_verify import program_verify
    from devmodel.technologies.pcm.physics import SimulatedPCM

    chip = SimulatedPCM(n_devices=n, seed=1)
    addr = np.arange(n)
    t = time.perf_counter()
    res = program_verify(chip, addr, LEVELS[addr % 13], record_trace=False)
    wall = time.perf_counter() - t
    ok = chip.defect == 0
    its = res.iterations
    active = [int(np.count_nonzero(its >= k)) for k in range(1, its.max() + 1)]
    return {"wall_s": wall, "converged": float(res.converged[ok].mean()), "active": active,
            "fast": int(np.count_nonzero(chip.bank.lam * 4 * 2e-6 >= chip.bank.freeze))}


def floor(active: list[int], fast: int) -> dict:
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    g20 = np.full(max(active), 10.0)
    nu = np.full(max(active), 0.05)
    for m in [active[0]] * 7 + active:  # 7 init pulses on all, then one pulse per verify
        amp = np.full(m, 250.0)
        plug = (amp - 90) / 330 * np.exp(0.05 * rng.standard_normal(m))
        g_reset = 0.05 * np.exp(0.3 * rng.standard_normal(m))
        g_p = np.maximum(35 * (1 - np.minimum(plug, 1)) ** 2, g_reset)
        creep = 0.02 * 35 * (amp / 90) ** 4 * rng.standard_exponential(m)
        g_c = 35 * np.exp(0.03 * rng.standard_normal(m))
        g20[:m] = np.where(amp > 90, g_p, np.minimum(g20[:m] + creep, g_c))
        nu[:m] = np.abs(0.05 + 0.01 * rng.standard_normal(m))
    for m in active:
        x = np.sqrt(0.5) * rng.standard_normal((m, fast))
        lump = rng.standard_normal(m)
        eta = np.empty((m, 5))
        eta[:, 0] = lump + x.sum(1)
        for j in range(1, 5):
            x = x * 0.9 + 0.1 * rng.standard_normal((m, fast), dtype=np.float32)
            eta[:, j] = lump + x.sum(1)
        age = np.full((m, 5), 1.0)
        g = g20[:m, None] * (age / 20) ** (-nu[:m, None]) * (1 + 0.01 * eta)
        g += 0.05 * rng.standard_normal(g.shape)
        g = np.round(g / 0.01) * 0.01
        g.mean(1)
    return {"wall_s": time.perf_counter() - t}


def main() -> None:
    from _util import median_of, run_isolated

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    runs, floors = [], []
    for _ in range(a.repeats):
        r = run_isolated("bench_program_verify", "real", a.devices)
        runs.append(r)
        floors.append(run_isolated("bench_program_verify", "floor", r["active"], r["fast"]))
    wall, rss = median_of(runs, "wall_s"), median_of(runs, "peak_rss_gb")
    fl = median_of(floors, "wall_s")
    print(f"program-and-verify, {a.devices} PCM devices × 13 levels, {a.repeats} runs")
    print(f"  wall (median)      {wall:7.2f} s     runs: "
          + ", ".join(f"{r['wall_s']:.2f}" for r in runs))
    print(f"  peak RSS (median)  {rss:7.2f} GB")
    print(f"  bare-NumPy floor   {fl:7.2f} s     ratio {wall / fl:.2f}×")
    print(f"  converged (non-defective) {100 * runs[0]['converged']:.2f} %, "
          f"{len(runs[0]['active'])} iterations")


if __name__ == "__main__":
    main()
