"""Regenerate the small recorded sessions in ``calibration_data/`` (deterministic: fixed seeds).

Each file is a complete characterisation session on a built-in simulated chip (default physics,
see docs/physics.md; every parameter is also stored in the file's ``/ground_truth`` attributes),
written with the plain session writer (gzip + shuffle, 64k-row chunks):

* ``pcm_sample.h5``: ``sim:pcm?devices=4096&seed=7``, 13 levels × 300 devices, the default PCM
  program-and-verify (±0.25 µS), drift schedule 20 s … 1 day, read-noise bursts of 256 reads 1 s apart
  at 1000 s on 20 devices per level;
* ``reram_sample.h5``: ``sim:reram?devices=4096&seed=11``, 13 levels × 300 devices, the default ReRAM
  write-verify (±0.4 µS), schedule 1 s … 2 days, bursts of 64 reads 1 s apart at 100 s on 20 devices
  per level.

    python scripts/make_calibration_data.py [--out-dir calibration_data] [--overwrite]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

SAMPLES = {
    "pcm_sample.h5": {"url": "sim:pcm?devices=4096&seed=7", "seed": 7, "devices": 300,
                      "bursts": {"devices_per_level": 20, "n_reads": 256, "interval_s": 1.0,
                                 "age_s": 1000.0}},
    "reram_sample.h5": {"url": "sim:reram?devices=4096&seed=11", "seed": 11, "devices": 300,
                        "bursts": {"devices_per_level": 20, "n_reads": 64, "interval_s": 1.0,
                                   "age_s": 300.0}},
}


def make(path: Path, url: str, seed: int, devices: int, bursts: dict, overwrite: bool) -> None:
    from devmodel.chips import open_chip
    from devmodel.procedures.characterize import BurstConfig, SweepConfig, config_dict, run_sweep
    from devmodel.procedures.program_verify import verify_parts
    from devmodel.store import SessionWriter
    from devmodel.technologies import technology

    chip = open_chip(url, seed)
    tech = chip.info.technology
    cfg = SweepConfig.default(tech, devices, bursts=BurstConfig(**bursts))
    verify = verify_parts(tech)[0]()
    if path.exists() and overwrite:
        path.unlink()
    with SessionWriter(path, technology=tech, g_max_us=chip.info.g_max_us,
                       t0_s=technology(tech).t0_s, chip=dict(chip.info.to_dict(), url=url),
                       config=config_dict(cfg, verify), seed=seed,
                       command=shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])) as w:
        summary = run_sweep(chip, cfg, w, verify)
        w.finish("complete")
    print(f"{path}: {summary.n_devices} devices, {summary.n_reads} reads, converged "
          f"{100 * summary.converged_fraction:.2f} %, {path.stat().st_size / 1e6:.2f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", default=str(Path(__file__).resolve().parents[1] / "calibration_data"))
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args()
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, spec in SAMPLES.items():
        make(out / name, spec["url"], spec["seed"], spec["devices"], spec["bursts"], a.overwrite)


if __name__ == "__main__":
    main()
