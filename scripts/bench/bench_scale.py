"""Out-of-core fit vs in-memory fit (issue 17, "Speed": out-of-core ≥ 70 % of the in-memory devices/s at
10⁶ devices), and the out-of-core fit's peak RSS on a large session (acceptance: ≤ 4 GB).

Throughput: a session of ``--devices`` PCM devices (published model, 0.05 µS white noise, default
one-day schedule, bursts) is written once; then the in-memory fit (``fit_session``) and the
out-of-core fit (``fit_session_streamed`` at ``--memory-limit``) run alternately, each in a fresh
process, ``--repeats`` times; medians, devices/s and their ratio are printed. The cards are compared.

    python scripts/bench/bench_scale.py --devices 1000000 --repeats 3 [--memory-limit 1GB]
    python scripts/bench/bench_scale.py --session /data/pcm-1e8.h5 --out-of-core-only --memory-limit 4GB
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from _util import run_isolated


def make(path: str, devices: int) -> dict:
    from devmodel.technologies.pcm.synthetic import synthesize_pcm_session

    synthesize_pcm_session(path, devices_per_level=devices // 13, white_noise_us=0.05, seed=1,
                           overwrite=True)
    return {}


def fit_in_memory(path: str) -> dict:
    from devmodel.fit.session import fit_session

    t = time.perf_counter()
    card = fit_session(path)
    return {"wall_s": time.perf_counter() - t, "card": card.to_json(),
            "n_devices": card.provenance["n_devices"]}


def fit_out_of_core(path: str, limit: str) -> dict:
    from devmodel.fit.streamed import fit_session_streamed, memory_bytes

    t = time.perf_counter()
    card = fit_session_streamed(path, memory_limit=memory_bytes(limit))
    return {"wall_s": time.perf_counter() - t, "card": card.to_json(),
            "n_devices": card.provenance["n_devices"], "chunks": card.provenance["out_of_core"]["n_chunks"]}


def comparable(card_json: str) -> dict:
    d = json.loads(card_json)
    d["provenance"].pop("created_utc")
    d["provenance"].pop("out_of_core", None)
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory-limit", default="1GB")
    ap.add_argument("--session", help="an existing session (skips making one)")
    ap.add_argument("--out-of-core-only", action="store_true", help="no in-memory baseline")
    ap.add_argument("--card-out", help="write the (last) out-of-core card here")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = a.session or str(Path(tmp) / "s.h5")
        if not a.session:
            t = time.perf_counter()
            run_isolated("bench_scale", "make", path, a.devices)
            print(f"session: {a.devices} devices written in {time.perf_counter() - t:.1f} s")
        mem, ooc = [], []
        for _ in range(a.repeats):
            if not a.out_of_core_only:
                mem.append(run_isolated("bench_scale", "fit_in_memory", path))
            ooc.append(run_isolated("bench_scale", "fit_out_of_core", path, a.memory_limit))
    n = ooc[0]["n_devices"]
    show = lambda runs: ", ".join(f"{r['wall_s']:.2f}" for r in runs)  # noqa: E731
    med_o = statistics.median(r["wall_s"] for r in ooc)
    print(f"out of core (--memory-limit {a.memory_limit}, {ooc[0]['chunks']} chunks): median "
          f"{med_o:.2f} s ({show(ooc)}), {n / med_o:,.0f} devices/s, peak RSS "
          f"{max(r['peak_rss_gb'] for r in ooc):.2f} GB")
    if a.card_out:
        Path(a.card_out).write_text(ooc[-1]["card"])
    if mem:
        med_m = statistics.median(r["wall_s"] for r in mem)
        print(f"in memory: median {med_m:.2f} s ({show(mem)}), {n / med_m:,.0f} devices/s, peak RSS "
              f"{max(r['peak_rss_gb'] for r in mem):.2f} GB")
        print(f"throughput ratio out-of-core / in-memory: {med_m / med_o:.2f} (goal ≥ 0.70)")
        same = comparable(mem[0]["card"]) == comparable(ooc[0]["card"])
        print(f"cards identical (but for created_utc and provenance.out_of_core): {same}")


if __name__ == "__main__":
    main()
