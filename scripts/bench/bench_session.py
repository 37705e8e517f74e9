"""A full characterisation session: 13 levels × 2000 PCM devices, schedule to one day, bursts.

Prints the median wall time of several runs (each in a fresh process) and the ratio against the same
session with a writer that discards everything (the cost of the HDF5 session file).

    python scripts/bench/bench_session.py [--devices 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


class NullWriter:
    """Accepts what SessionWriter accepts and keeps nothing."""

    def __getattr__(self, name):
        return lambda *a, **k: None


def session(devices: int, to_disk: bool) -> dict:
    from devmodel.chips import open_chip
    from devmodel.procedures.characterize import SweepConfig, config_dict, run_sweep
    from devmodel.store import SessionWriter
    from devmodel.technologies.pcm.verify import PcmVerifyConfig

    chip = open_chip("sim:pcm?devices=65536&seed=7")
    cfg = SweepConfig.default("pcm", devices)
    verify = PcmVerifyConfig()
    t = time.perf_counter()
    if to_disk:
        path = Path(tempfile.mkdtemp()) / "bench.h5"
        with SessionWriter(path, technology="pcm", g_max_us=25.0, t0_s=20.0,
                           chip=chip.info.to_dict(), config=config_dict(cfg, verify), seed=7) as w:
            s = run_sweep(chip, cfg, w, verify)
            w.finish()
        size = path.stat().st_size / 1e6
    else:
        s = run_sweep(chip, cfg, NullWriter(), verify)
        size = 0.0
    return {"wall_s": time.perf_counter() - t, "reads": s.n_reads, "file_mb": size}


def main() -> None:
    from _util import median_of, run_isolated

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    disk = [run_isolated("bench_session", "session", a.devices, True) for _ in range(a.repeats)]
    null = [run_isolated("bench_session", "session", a.devices, False) for _ in range(a.repeats)]
    w, w0 = median_of(disk, "wall_s"), median_of(null, "wall_s")
    print(f"session 13 levels × {a.devices} PCM devices, one-day schedule, bursts; {a.repeats} runs")
    print(f"  wall with session file (median)  {w:6.2f} s   runs: "
          + ", ".join(f"{r['wall_s']:.2f}" for r in disk))
    print(f"  wall, writer discarding (median) {w0:6.2f} s   ratio {w / w0:.2f}×")
    print(f"  {disk[0]['reads']} reads, file {disk[0]['file_mb']:.1f} MB, "
          f"peak RSS {median_of(disk, 'peak_rss_gb'):.2f} GB")


if __name__ == "__main__":
    main()
