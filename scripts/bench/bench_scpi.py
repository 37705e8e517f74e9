"""The SCPI test-chip protocol over loopback: batched binary reads, one-device ASCII queries, and a
100,000-device level sweep through `devmodel serve-chip` (pyvisa-py, TCPIP::127.0.0.1::PORT::SOCKET).

* binary: ``CHIP:READ?`` of 100,000 and 1,048,576 devices per message (REAL,64 and REAL,32
  conductances, float64 per-read times), and 100,000 devices × 10 consecutive reads; device reads/s,
  with the simulated chip's own time for the same read (the physics floor, measured in-process);
* ASCII: the same reads one device per query (``CHIP:ADDR:RANG i,1;:CHIP:READ? 1`` with
  ``FORM:DATA ASC``, no error check), timed on a subset and extrapolated to 100,000 devices;
* sweep: `characterize`'s level sweep (13 levels, default PCM schedule to one day and bursts)
  on ~100,000 devices through the server into an HDF5 session, fresh server each run.

Prints medians of several runs.

    python scripts/bench/bench_scpi.py [--repeats 5] [--ascii-devices 2000] [--sweep-devices 100000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench_reads(repeats: int, ascii_devices: int) -> None:
    from devmodel.chips import open_chip
    from instruments.chip import ScpiChip, open_visa_chip
    from instruments.testing import ServerProcess
    from instruments.transport import VisaTransport

    n_dev = 1 << 20
    local = open_chip(f"sim:pcm?devices={n_dev}&seed=7")
    local.read(np.arange(n_dev))  # first touch of every device (allocation of its 1/f state)
    with ServerProcess("--seed", "7", "--devices", str(n_dev)) as srv:
        chip = open_visa_chip(srv.resource)
        chip.read(np.arange(n_dev))
        chip32 = ScpiChip(VisaTransport(srv.resource, "@py", 30.0), real_bits=32)
        print(f"batched binary reads over loopback (pyvisa-py, {srv.resource}); median of {repeats}")
        print(f"  {'batch':<32}{'wire s':>9}{'reads/s':>13}{'chip s':>9}{'chip-only reads/s':>19}")
        cases = [
            ("100,000 devices × 1, REAL,64", chip, np.arange(100_000), 1),
            ("100,000 devices × 1, REAL,32", chip32, np.arange(100_000), 1),
            ("1,048,576 devices × 1, REAL,64", chip, np.arange(n_dev), 1),
            ("100,000 devices × 10, REAL,64", chip, np.arange(100_000), 10),
        ]
        results = {}
        for name, c, a, k in cases:
            wire = statistics.median(timed(lambda c=c, a=a, k=k: c.read(a, k), repeats))
            floor = statistics.median(timed(lambda a=a, k=k: local.read(a, k), repeats))
            results[name] = a.size * k / wire
            print(f"  {name:<32}{wire:9.3f}{a.size * k / wire:13,.0f}{floor:9.3f}{a.size * k / floor:19,.0f}")
        # one device per ASCII query, as a naive driver would do it
        t = VisaTransport(srv.resource, "@py", 10.0)
        t.write(b"FORM:DATA ASC")
        addrs = np.random.default_rng(1).permutation(n_dev)[:ascii_devices]

        def one_by_one() -> None:
            for i in addrs:
                t.write(f"CHIP:ADDR:RANG {i},1;:CHIP:READ? 1".encode())
                g, ts = (float(x) for x in t.read_line().split(b","))

        per = statistics.median(timed(one_by_one, max(repeats // 2, 1))) / ascii_devices
        rate = 1 / per
        print(f"one device per ASCII query ({ascii_devices} devices timed, extrapolated): "
              f"{rate:,.0f} reads/s, 100,000 devices in {100_000 * per:.1f} s")
        best = results["100,000 devices × 1, REAL,64"]
        print(f"  batched binary (100,000 × 1, REAL,64) is {best / rate:,.0f}× faster")
        t.close()
        chip.close()
        chip32.close()


def bench_sweep(repeats: int, devices: int) -> None:
    from devmodel.procedures.characterize import SweepConfig, config_dict, run_sweep
    from devmodel.store import SessionWriter
    from devmodel.technologies.pcm.verify import PcmVerifyConfig
    from instruments.chip import open_visa_chip
    from instruments.testing import ServerProcess

    per_level = -(-devices // 13)
    walls, reads = [], 0
    for _ in range(repeats):
        with ServerProcess("--seed", "7", "--devices", str(1 << 20)) as srv:
            chip = open_visa_chip(srv.resource)
            cfg = SweepConfig.default("pcm", per_level)
            verify = PcmVerifyConfig()
            path = Path(tempfile.mkdtemp()) / "sweep.h5"
            t = time.perf_counter()
            with SessionWriter(path, technology="pcm", g_max_us=25.0, t0_s=20.0,
                               chip=chip.info.to_dict(), config=config_dict(cfg, verify), seed=7) as w:
                s = run_sweep(chip, cfg, w, verify)
                w.finish()
            walls.append(time.perf_counter() - t)
            reads = s.n_reads
            chip.close()
    print(f"level sweep through the server: 13 levels × {per_level} = {13 * per_level:,} PCM devices, "
          f"schedule to 1 day, bursts; {reads:,} reads")
    print(f"  wall (median of {', '.join(f'{w:.1f}' for w in walls)} s): {statistics.median(walls):.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ascii-devices", type=int, default=2000)
    ap.add_argument("--sweep-devices", type=int, default=100_000)
    ap.add_argument("--sweep-repeats", type=int, default=3)
    a = ap.parse_args()
    bench_reads(a.repeats, a.ascii_devices)
    bench_sweep(a.sweep_repeats, a.sweep_devices)


if __name__ == "__main__":
    main()
