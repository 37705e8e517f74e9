"""`devmodel fit` on a session of 1,000,000 PCM devices × 10 read times (fitting issue: ≤ 15 s,
≤ 3 GB), and the vectorised per-device ν regression against a per-device lmfit loop on a sample.

The session is drawn from the published statistical model (13 levels, 10 log-spaced ages from 20 s
to 2 days, 100-device bursts per level) once, then fitted in fresh processes.

    python scripts/bench/bench_fit.py [--devices 1000000] [--repeats 3] [--sample 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

SCHEDULE = (20.0, 45.0, 100.0, 300.0, 1000.0, 3600.0, 10800.0, 36000.0, 86400.0, 172800.0)


def make(path: str, devices: int) -> dict:
    from devmodel.technologies.pcm.synthetic import synthesize_pcm_session

    synthesize_pcm_session(path, devices_per_level=devices // 13, schedule_s=SCHEDULE, seed=1,
                           overwrite=True)
    return {}


def fit(path: str) -> dict:
    from devmodel.fit.session import fit_session

    t = time.perf_counter()
    card = fit_session(path)
    return {"wall_s": time.perf_counter() - t, "q_s_exp": card.read_noise.q_s_exp,
            "n_used": card.provenance["n_devices_used"], "n_reads": card.provenance["n_reads"]}


def regression(path: str, sample: int) -> dict:
    """Vectorised ν for all devices (median of 3 calls) vs lmfit per device on ``sample``
    devices (same reads)."""
    from lmfit import Model

    from devmodel.fit.stats import fit_drift_per_device
    from devmodel.store import read_session

    s = read_session(path, with_trace=False)
    r = s.reads
    sched = r["burst"] < 0
    dev, age, g = r["device"][sched].astype(np.int64), r["age_s"][sched], r["g_us"][sched]
    n = s.n_devices
    times = []
    for _ in range(3):  # median of three: the first call is cold (fresh pages for temporaries)
        t = time.perf_counter()
        d = fit_drift_per_device(dev, age, g, n, s.t0_s)
        times.append(time.perf_counter() - t)
    vec_s = float(np.median(times))
    order = np.argsort(dev, kind="stable")
    dev, age, g = dev[order], age[order], g[order]
    starts = np.searchsorted(dev, np.arange(sample + 1))
    model = Model(lambda t, g0, nu: g0 * (t / 20.0) ** (-nu))
    nus = []
    t = time.perf_counter()
    for i in range(sample):
        sl = slice(starts[i], starts[i + 1])
        res = model.fit(g[sl], t=age[sl], g0=max(g[sl][0], 1e-3), nu=0.05)
        nus.append(res.params["nu"].value)
    loop_s = time.perf_counter() - t
    per_dev_vec = vec_s / n
    per_dev_loop = loop_s / sample
    agree = float(np.median(np.abs(np.array(nus) - d.nu[:sample])))
    return {"vec_s": vec_s, "loop_s": loop_s, "n": n, "sample": sample,
            "speedup": per_dev_loop / per_dev_vec, "median_abs_diff_nu": agree}


def main() -> None:
    from _util import median_of, run_isolated

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sample", type=int, default=1000)
    a = ap.parse_args()
    path = str(Path(tempfile.mkdtemp()) / "bench_fit.h5")
    t = time.perf_counter()
    run_isolated("bench_fit", "make", path, a.devices)
    print(f"session drawn in {time.perf_counter() - t:.1f} s: {path}")
    runs = [run_isolated("bench_fit", "fit", path) for _ in range(a.repeats)]
    reg = [run_isolated("bench_fit", "regression", path, a.sample) for _ in range(a.repeats)]
    print(f"devmodel fit, {runs[0]['n_used']} devices used, {runs[0]['n_reads']} reads, "
          f"{a.repeats} runs")
    print(f"  wall (median)      {median_of(runs, 'wall_s'):6.2f} s   runs: "
          + ", ".join(f"{r['wall_s']:.2f}" for r in runs))
    print(f"  peak RSS (median)  {median_of(runs, 'peak_rss_gb'):6.2f} GB")
    print(f"  per-device ν: vectorised {median_of(reg, 'vec_s'):.2f} s for {reg[0]['n']} devices; "
          f"lmfit loop {median_of(reg, 'loop_s'):.2f} s for {reg[0]['sample']} devices")
    print(f"  per-device speed-up (median) {median_of(reg, 'speedup'):,.0f}×; "
          f"median |Δν| between them {reg[0]['median_abs_diff_nu']:.2e}")


if __name__ == "__main__":
    main()
