"""Build ``calibration_data/rram_techB/``: a subset of measured ReRAM relaxation data (tech B of the
MIT-licensed RRAM-Relaxation-Master-Model data), imported as a session, with its fitted card.

Deterministic: a fixed-seed random choice of ``--devices`` device addresses; their rows are copied
unchanged (same text, same order) into a gzipped TSV (mtime 0, so the bytes repeat), which is then
imported with the command written into the folder's NOTICE.md and fitted with 30 % of the devices
held out (the card validates on its own split).

    python scripts/make_measured_data.py SOURCE_DIR [--devices 5000] [--out-dir calibration_data/rram_techB]

SOURCE_DIR holds ``techB/relaxdata_10k.min.tsv.gz`` and the data's ``LICENSE``.
"""

from __future__ import annotations

import argparse
import gzip
import io
import shutil
from pathlib import Path

import numpy as np

TABLE = "relaxation_subset.tsv.gz"
IMPORT = {"technology": "reram", "g_max_us": 128.0, "t0_s": 1.0,
          "columns": ("device", "time_s", "-", "g_us", "target_us", "level", "nominal_time_s"),
          "conductance_unit": "S", "beyond_g_max": "drop"}


def subset(source: Path, out: Path, n_devices: int, seed: int) -> int:
    """Copy the rows of ``n_devices`` randomly chosen addresses; returns the rows written."""
    with gzip.open(source, "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines(keepends=True)
    addr = np.array([int(line.split("\t", 1)[0]) for line in lines])
    chosen = np.random.default_rng(seed).choice(np.unique(addr), n_devices, replace=False)
    keep = np.isin(addr, chosen)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write("".join(line for line, k in zip(lines, keep, strict=True) if k).encode())
    out.write_bytes(buf.getvalue())
    return int(keep.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("--devices", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", type=Path, default=Path("calibration_data/rram_techB"))
    args = ap.parse_args()

    from devmodel.fit.session import fit_session
    from devmodel.store.table_import import import_table

    args.out_dir.mkdir(parents=True, exist_ok=True)
    rows = subset(args.source / "techB" / "relaxdata_10k.min.tsv.gz", args.out_dir / TABLE,
                  args.devices, args.seed)
    shutil.copyfile(args.source / "LICENSE", args.out_dir / "LICENSE")
    opts = dict(IMPORT)
    tech, g_max, t0 = opts.pop("technology"), opts.pop("g_max_us"), opts.pop("t0_s")
    session = import_table(args.out_dir / TABLE, args.out_dir / "session.h5", tech, g_max, t0,
                           overwrite=True, **opts)
    card = fit_session(session, holdout_fraction=0.3, holdout_seed=0)
    card.provenance["source"] = "calibration_data/rram_techB/session.h5"  # not this machine's path
    (args.out_dir / "card.json").write_text(card.to_json() + "\n", encoding="utf-8")
    print(f"{rows} rows of {args.devices} devices → {args.out_dir}")


if __name__ == "__main__":
    main()
