"""What crash safety costs: the same characterisation session with durability off (the plain
incremental SessionWriter) and on (DurableSessionWriter: atomic A/B commits of the session file with
the procedure's and the simulated chip's state), each in fresh processes; medians and ratios.

    python scripts/bench/bench_durability.py [--devices 2000 10000] [--repeats 5] [--intervals 2 0.5]

"full" fsyncs every commit (survives power loss), "process" does not (survives the death of the
process). The interval is the wall time between commits (the default of `characterize` is 2 s).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def session(devices: int, mode: str, interval_s: float) -> dict:
    from devmodel.chips import open_chip
    from devmodel.procedures.characterize import SweepConfig, config_dict, run_sweep
    from devmodel.store import SessionWriter
    from devmodel.store.durable import DurableSessionWriter
    from devmodel.technologies.pcm.verify import PcmVerifyConfig

    chip = open_chip(f"sim:pcm?devices={1 << 18}&seed=7")
    cfg = SweepConfig.default("pcm", devices)
    verify = PcmVerifyConfig()
    path = Path(tempfile.mkdtemp()) / "bench.h5"
    kw = dict(technology="pcm", g_max_us=25.0, t0_s=20.0, chip=chip.info.to_dict(),
              config=config_dict(cfg, verify), seed=7)
    t = time.perf_counter()
    if mode == "off":
        w = SessionWriter(path, **kw)
    else:
        w = DurableSessionWriter(path, commit_interval_s=interval_s, fsync=mode == "full", **kw)
    with w:
        s = run_sweep(chip, cfg, w, verify)
        w.finish()
    wall = time.perf_counter() - t
    return {"wall_s": wall, "reads": s.n_reads, "file_mb": path.stat().st_size / 1e6,
            "commits": getattr(w, "n_commits", 0), "commit_s": getattr(w, "commit_s", 0.0)}


def main() -> None:
    from _util import median_of, run_isolated

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, nargs="+", default=[2000, 10000])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--intervals", type=float, nargs="+", default=[2.0, 0.5])
    a = ap.parse_args()
    for devices in a.devices:
        # interleave the variants so drifts of the machine's speed hit them alike
        variants = [("off", 0.0)] + [(m, i) for i in a.intervals for m in ("full", "process")]
        runs: dict[tuple[str, float], list[dict]] = {v: [] for v in variants}
        for _ in range(a.repeats):
            for v in variants:
                runs[v].append(run_isolated("bench_durability", "session", devices, v[0], v[1]))
        base = median_of(runs[("off", 0.0)], "wall_s")
        reads = runs[("off", 0.0)][0]["reads"]
        print(f"session 13 levels × {devices} PCM devices ({reads} reads), one-day schedule, bursts; "
              f"{a.repeats} runs each")
        for (mode, interval), rs in runs.items():
            w = median_of(rs, "wall_s")
            label = "durability off (SessionWriter)" if mode == "off" else \
                f"durable, {mode:7s}, commit every {interval:g} s"
            extra = "" if mode == "off" else (f"  commits {median_of(rs, 'commits'):.0f}, "
                                              f"{median_of(rs, 'commit_s'):.2f} s in commits")
            walls = ", ".join(f"{r['wall_s']:.2f}" for r in rs)
            print(f"  {label:42s} median {w:6.2f} s  (runs {walls})"
                  f"  ratio {w / base:.3f}  throughput {reads / w / 1e3:7.0f} k reads/s{extra}")


if __name__ == "__main__":
    main()
