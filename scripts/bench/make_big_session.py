"""Write a large simulated PCM session chunk by chunk (issue 17, acceptance: a 10⁸-device session).

Devices are drawn from the published statistical model with 0.05 µS white read noise (13 levels,
the default one-day schedule, 100-device bursts per level), ``--chunk`` devices at a time, so memory
stays bounded whatever ``--devices`` is (docs/scale.md). Prints the wall time, the file's size and
the peak RSS.

    python scripts/bench/make_big_session.py --devices 100000000 --out /data/pcm-1e8.h5
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=10_000_000)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=1 << 20, help="devices per chunk")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args()
    from devmodel.technologies.pcm.synthetic import synthesize_pcm_chunked

    t = time.perf_counter()

    def progress(done: int, total: int) -> None:
        print(f"\r{done}/{total} chunks, {time.perf_counter() - t:.0f} s", end="", file=sys.stderr)

    synthesize_pcm_chunked(a.out, a.devices, white_noise_us=0.05, seed=a.seed, chunk_devices=a.chunk,
                           overwrite=a.overwrite, progress=progress)
    wall = time.perf_counter() - t
    size = Path(a.out).stat().st_size
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"\nwrote {a.devices} devices to {a.out}: {wall:.1f} s, {size / 1e9:.2f} GB, "
          f"peak RSS {rss:.2f} GB")


if __name__ == "__main__":
    main()
