"""The default simulated PCM session validates (real-data issue, part 7), seed after seed:
``characterize --devices 2000`` (defaults) → ``fit --holdout-fraction 0.3`` → ``validate``, as a user
runs them (real subprocesses), printing each seed's verdict line.

    python scripts/check_default_sessions.py [--seeds 1-10] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path


def devmodel(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "devmodel", *args], capture_output=True, text=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="1-10", help="first-last")
    ap.add_argument("--out-dir", type=Path, default=None)
    args = ap.parse_args()
    first, last = (int(x) for x in args.seeds.split("-"))
    out = args.out_dir or Path(tempfile.mkdtemp(prefix="devmodel-seeds-"))
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for seed in range(first, last + 1):
        s, c = out / f"s{seed}.h5", out / f"c{seed}.json"
        for step in (("characterize", "--devices", "2000", "--seed", str(seed), "--out", str(s),
                      "--overwrite"),
                     ("fit", str(s), "--holdout-fraction", "0.3", "--out", str(c), "--overwrite",
                      "--quiet")):
            r = devmodel(*step)
            if r.returncode != 0:
                sys.exit(f"seed {seed}: devmodel {step[0]} failed: {r.stderr.strip()}")
        r = devmodel("validate", str(c), str(s))
        failed += r.returncode != 0
        verdict = next(ln for ln in r.stdout.splitlines() if ln.startswith(("PASSED", "FAILED")))
        print(f"seed {seed}: {verdict}", flush=True)
    print(f"{last - first + 1 - failed} of {last - first + 1} seeds passed; files in {out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
