"""Shared by the benchmarks: run a function in a fresh subprocess, report wall time and peak RSS."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent  # where the benchmark modules live (not sys.path[0])


def run_isolated(module: str, func: str, *args) -> dict:
    """Run ``module.func(*args)`` in a new interpreter; it returns a dict, we add peak RSS (GB)."""
    code = (
        "import json, resource, sys, time\n"
        f"sys.path.insert(0, {str(BENCH_DIR)!r})\n"
        f"from {module} import {func}\n"
        "t = time.perf_counter()\n"
        f"out = {func}(*{args!r})\n"
        "out['wall_s'] = out.get('wall_s', time.perf_counter() - t)\n"
        "out['peak_rss_gb'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6\n"
        "print(json.dumps(out))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)
