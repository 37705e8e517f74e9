"""Replay throughput: reads served by ``replay:`` against plain h5py reads of the same data (issue 6:
replay serves reads at ≥ 80 % of the throughput of plain h5py reads).

The session is the foundation's 13 levels × 2000 PCM devices (one-day schedule, 100 burst devices per
level × 256 reads: 514,800 reads), generated once. Its read requests are recorded once by running the
replayed drift schedule and bursts (the live session's Scheduler) against ``replay:`` with a
recording wrapper; then, each in a fresh process, medians of ``--repeats`` runs of

* **h5py, bulk**: open the file, read the ``device``, ``t_s`` and ``g_us`` columns of ``/reads``
  (every byte the replay chip loads from ``/reads``) — the floor of getting the reads off the file;
* **h5py, per request**: open the file and, for every request of the schedule, read that request's
  rows of the same three columns with h5py slicing (what serving reads straight from the file costs);
* **replay**: open ``ReplayChip`` (loads the record: header, device table, the three columns), then
  answer every request through ``DeviceArray.read`` in the recorded order, with the clock waits in
  between: *serving* is the second part alone, *end to end* both.

Throughput = reads / wall time. Ratios: replay serving vs h5py bulk (the issue's criterion: the rate at
which replay answers reads against the rate at which h5py reads them), and, for completeness, replay
end to end vs h5py bulk and vs h5py per request.

    python scripts/bench/bench_replay.py [--devices 2000] [--repeats 7] [--session PATH]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

COLUMNS = ("device", "t_s", "g_us")


def make_session(path: str, devices: int) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from helpers import make_session as _make

    _make(path, "sim:pcm?devices=65536", devices, seed=7)


def record_plan(path: str, plan: str) -> None:
    """Run the replayed schedule once with a recording wrapper; save its calls (waits and reads)."""
    from devmodel.replay.backend import ReplayChip
    from devmodel.replay.procedures import replay_schedule
    from devmodel.store import read_session

    class Recorder:
        def __init__(self, chip):
            self.chip, self.info, self.calls = chip, chip.info, []

        def now_s(self):
            return self.chip.now_s()

        def wait(self, dt_s):
            self.calls.append((float(dt_s), None, 0, 0.0))
            self.chip.wait(dt_s)

        def read(self, addresses, n_reads=1, interval_s=0.0):
            self.calls.append((0.0, np.array(addresses), int(n_reads), float(interval_s)))
            return self.chip.read(addresses, n_reads, interval_s)

    class Discard:
        def __getattr__(self, name):
            return lambda *a, **k: None

    rec = Recorder(ReplayChip(path))
    replay_schedule(rec, read_session(path), Discard())
    reads = [c for c in rec.calls if c[1] is not None]
    np.savez(plan, wait=np.array([c[0] for c in rec.calls]),
             is_read=np.array([c[1] is not None for c in rec.calls]),
             sizes=np.array([c[1].size for c in reads]), n_reads=np.array([c[2] for c in reads]),
             interval=np.array([c[3] for c in reads]),
             addresses=np.concatenate([c[1] for c in reads]))


def _calls(plan: str):
    p = np.load(plan)
    addr = np.split(p["addresses"], np.cumsum(p["sizes"])[:-1])
    out, j = [], 0
    for w, is_read in zip(p["wait"], p["is_read"], strict=True):
        if is_read:
            out.append((None, addr[j], int(p["n_reads"][j]), float(p["interval"][j])))
            j += 1
        else:
            out.append((float(w), None, 0, 0.0))
    return out


def h5py_bulk(path: str) -> dict:
    import h5py

    t = time.perf_counter()
    with h5py.File(path, "r") as f:
        n = int(f["reads"].attrs["n_rows"])
        cols = [f[f"reads/{c}"][:n] for c in COLUMNS]
    return {"wall_s": time.perf_counter() - t, "reads": int(cols[0].size)}


def h5py_requests(path: str, plan: str) -> dict:
    import h5py

    calls = _calls(plan)
    t = time.perf_counter()
    n_reads, row = 0, 0
    with h5py.File(path, "r") as f:
        ds = [f[f"reads/{c}"] for c in COLUMNS]
        for _, addr, n, _ in calls:
            if addr is None:
                continue
            k = addr.size * n  # the recorded requests are consecutive rows of /reads
            _ = [d[row:row + k] for d in ds]
            row += k
            n_reads += k
    return {"wall_s": time.perf_counter() - t, "reads": n_reads}


def replay(path: str, plan: str) -> dict:
    from devmodel.replay.backend import ReplayChip

    calls = _calls(plan)
    t = time.perf_counter()
    chip = ReplayChip(path)
    t_open = time.perf_counter()
    n_reads = 0
    for wait, addr, n, interval in calls:
        if addr is None:
            chip.wait(wait)
        else:
            n_reads += chip.read(addr, n, interval).g_us.size
    end = time.perf_counter()
    return {"wall_s": end - t, "open_s": t_open - t, "serve_s": end - t_open, "reads": n_reads,
            "indexed": chip._index is not None}


def main() -> None:
    from _util import run_isolated

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=2000, help="devices per level (13 levels)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--session", default=None, help="an existing session file instead")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        path = a.session or str(Path(tmp) / "session.h5")
        if a.session is None:
            make_session(path, a.devices)
        plan = str(Path(tmp) / "plan.npz")
        record_plan(path, plan)
        runs: dict[str, list[dict]] = {"bulk": [], "requests": [], "replay": []}
        for _ in range(a.repeats):  # interleaved, so drifts in machine load hit all three alike
            runs["bulk"].append(run_isolated("bench_replay", "h5py_bulk", path))
            runs["requests"].append(run_isolated("bench_replay", "h5py_requests", path, plan))
            runs["replay"].append(run_isolated("bench_replay", "replay", path, plan))
        n_req = int(np.load(plan)["sizes"].size)
    reads = runs["bulk"][0]["reads"]
    assert all(r["reads"] == reads for v in runs.values() for r in v), "runs served different reads"
    assert not any(r["indexed"] for r in runs["replay"]), "the replay left the recorded order"

    def med(kind, key="wall_s"):
        return statistics.median(r[key] for r in runs[kind])

    def listed(kind, key="wall_s"):
        return ", ".join(f"{1e3 * r[key]:.1f}" for r in runs[kind])

    bulk, per_req = med("bulk"), med("requests")
    serve, total, opened = med("replay", "serve_s"), med("replay"), med("replay", "open_s")
    print(f"replay throughput: {reads:,} reads in {n_req} requests, {a.repeats} runs each in a fresh "
          "process (medians; ms of every run listed)")
    def line(label, wall, kind=None, key="wall_s"):
        rate = f"{reads / wall / 1e6:6.2f} M reads/s" if key != "open_s" else " " * 16
        runs_ms = f"   [{listed(kind, key)}]" if kind else ""
        print(f"  {label:42s} {1e3 * wall:7.1f} ms  {rate}{runs_ms}")

    line("h5py bulk read of /reads device,t_s,g_us", bulk, "bulk")
    line("h5py per request (same rows, sliced)", per_req, "requests")
    line("replay: open (load the record)", opened, "replay", "open_s")
    line("replay: serving (DeviceArray.read)", serve, "replay", "serve_s")
    line("replay: end to end (open + serving)", total, "replay")
    print(f"  ratio replay serving / h5py bulk            {bulk / serve:5.2f}  (criterion ≥ 0.80)")
    print(f"  ratio replay end to end / h5py bulk         {bulk / total:5.2f}")
    print(f"  ratio replay end to end / h5py per request  {per_req / total:5.2f}")


if __name__ == "__main__":
    main()
