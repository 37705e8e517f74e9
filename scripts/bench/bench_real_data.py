"""Real-data speed (real-data issue): import + fit of a measured ReRAM relaxation table, and the PSD
read-noise fit of measured read traces; each against a baseline measured in the same run.

* import + fit: ``devmodel import-table`` then the relaxation-law fit, in a fresh process; baseline:
  the same gzipped table only parsed into floats (``np.loadtxt``), the least any import does;
* PSD: import of the trace file + spectra and fits of every trace (``traces_by_level``); baseline:
  ``scipy.signal.welch`` of the same traces alone.

    python scripts/bench/bench_real_data.py [--source DIR] [--repeats 3]

DIR holds ``techB/relaxdata_10k.min.tsv.gz`` and ``techA/tsdata.min.tsv.gz`` (the measured data's
layout); without it the shipped 5,000-device subset is timed and the PSD part is skipped.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _util import median_of, run_isolated

ROOT = Path(__file__).resolve().parents[2]
TECHB_COLUMNS = ("device", "time_s", "-", "g_us", "target_us", "level", "nominal_time_s")


def import_and_fit(table: str) -> dict:
    import time

    from devmodel.fit.session import fit_session
    from devmodel.store.table_import import import_table

    out = Path(tempfile.mkdtemp()) / "s.h5"
    t = time.perf_counter()
    import_table(table, out, "reram", 128.0, 1.0, columns=TECHB_COLUMNS, conductance_unit="S",
                 beyond_g_max="drop")
    t_import = time.perf_counter() - t
    card = fit_session(out)
    return {"wall_s": time.perf_counter() - t, "import_s": t_import,
            "levels": len(card.relaxation.levels_us), "devices": card.provenance["n_devices_used"]}


def parse_only(table: str) -> dict:
    import time

    import numpy as np

    t = time.perf_counter()
    a = np.loadtxt(table)
    return {"wall_s": time.perf_counter() - t, "rows": int(a.shape[0])}


def psd_traces(path: str) -> dict:
    import time

    from devmodel.fit.psd import traces_by_level
    from devmodel.store import read_session
    from devmodel.store.trace_import import import_traces

    out = Path(tempfile.mkdtemp()) / "t.h5"
    t = time.perf_counter()
    import_traces(path, out, "reram", 240.0, 400.0, conductance_unit="S")
    rows = traces_by_level(read_session(out, with_trace=False))
    return {"wall_s": time.perf_counter() - t, "traces": sum(r.n_traces for r in rows)}


def welch_only(path: str) -> dict:
    import gzip
    import time

    import numpy as np
    from scipy import signal

    lines = gzip.decompress(Path(path).read_bytes()).decode().splitlines()
    x = np.array([ln.split("\t")[2:] for ln in lines], dtype=float)
    t = time.perf_counter()
    signal.welch(x / x.mean(axis=1, keepdims=True) - 1, fs=400.0, nperseg=8192, axis=1)
    return {"wall_s": time.perf_counter() - t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", type=Path, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    table = (args.source / "techB" / "relaxdata_10k.min.tsv.gz" if args.source
             else ROOT / "calibration_data" / "rram_techB" / "relaxation_subset.tsv.gz")
    runs = [run_isolated("bench_real_data", "import_and_fit", str(table)) for _ in range(args.repeats)]
    base = [run_isolated("bench_real_data", "parse_only", str(table)) for _ in range(args.repeats)]
    wall, floor = median_of(runs, "wall_s"), median_of(base, "wall_s")
    print(f"import + fit of {table.name}: {runs[0]['devices']} devices, {runs[0]['levels']} levels; "
          f"median {wall:.2f} s (import {median_of(runs, 'import_s'):.2f} s) over "
          f"{[round(r['wall_s'], 2) for r in runs]}; parse-only baseline {floor:.2f} s "
          f"({base[0]['rows']} rows); ratio {wall / floor:.2f}×")
    if args.source:
        ts = str(args.source / "techA" / "tsdata.min.tsv.gz")
        runs = [run_isolated("bench_real_data", "psd_traces", ts) for _ in range(args.repeats)]
        base = [run_isolated("bench_real_data", "welch_only", ts) for _ in range(args.repeats)]
        wall, floor = median_of(runs, "wall_s"), median_of(base, "wall_s")
        print(f"PSD read noise of {runs[0]['traces']} tech A traces (import + spectra + fits): median "
              f"{wall:.2f} s over {[round(r['wall_s'], 2) for r in runs]}; Welch-only baseline "
              f"{floor:.3f} s; ratio {wall / floor:.1f}×")


if __name__ == "__main__":
    main()
