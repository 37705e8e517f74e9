"""A wafer of simulated PCM chips fitted by ``devmodel fit-many`` (issue 17, acceptance): serial loop
(``--workers 0``) vs a 2-worker LocalCluster vs a ``dask scheduler`` + 2 ``dask worker`` processes
on 127.0.0.1; identical per-chip cards, the speed-up, and the population card against the chips'
ground truth (Q_s amplitude and μ_ν intercept spread chip to chip; one chip deliberately bad).

    python scripts/bench/bench_fit_many.py --chips 20 --devices 300 --repeats 2 --folder /tmp/wafer
    python scripts/bench/bench_fit_many.py --folder /tmp/wafer --reuse --repeats 3   # the same wafer again
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SPREADS = {"stat.q_s.amp": 0.10, "stat.nu_mean.b": 0.10}
TRUTH = {"read_noise.q_s_amp": ("q_s", "amp"), "drift.nu_mean.b": ("nu_mean", "b")}


def devmodel(*args) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "devmodel", *map(str, args)], capture_output=True, text=True)
    return time.perf_counter() - t, r


CPU_PROBE = ("import time, numpy as np\nx = np.random.default_rng(0).random(2_000_000)\n"
             "t = time.perf_counter()\nfor _ in range(40):\n    np.sort(x)\n"
             "print(time.perf_counter() - t)")


def parallel_capacity() -> float:
    """How many cores this machine gives two CPU-bound processes now: 2 × (one alone) / (two at once),
    with a NumPy sort as the workload (the ceiling of any 2-worker speed-up on a shared machine)."""
    def run(k: int) -> float:
        ps = [subprocess.Popen([sys.executable, "-c", CPU_PROBE], stdout=subprocess.PIPE, text=True)
              for _ in range(k)]
        return max(float(p.communicate()[0]) for p in ps)

    return 2 * run(1) / run(2)


HALF = ("import sys, time\nfrom devmodel.fit.many import fit_one\nt = time.perf_counter()\n"
        "for path in sys.argv[1:]:\n    assert fit_one(path)['ok'] or 'broken' in path\n")


def plain_processes(sessions: list[Path], k: int = 2) -> float:
    """The ceiling of any k-worker speed-up for this workload on this machine now: k plain Python
    processes, no Dask, each fitting every k-th session (process start and imports included, as in
    the serial command). Wall time until the last one ends."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    t = time.perf_counter()
    ps = [subprocess.Popen([sys.executable, "-c", HALF, *map(str, sessions[i::k])], env=env)
          for i in range(k)]
    assert all(p.wait() == 0 for p in ps)
    return time.perf_counter() - t


def cards(folder: Path) -> dict:
    out = {}
    for p in sorted(folder.glob("chip-*.json")):
        d = json.loads(p.read_text())
        d["provenance"].pop("created_utc")
        out[p.stem] = d
    return out


def scheduler_run(folder: Path, sessions: list[Path], out: Path) -> float:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    # the workers as docs/scale.md starts them: Dask's MALLOC_TRIM_THRESHOLD_ unset by a config file
    (folder / "dask-config").mkdir(exist_ok=True)
    (folder / "dask-config" / "devmodel-workers.yaml").write_text(
        "distributed:\n  nanny:\n    pre-spawn-environ:\n      MALLOC_TRIM_THRESHOLD_: null\n")
    env["DASK_CONFIG"] = str(folder / "dask-config")
    sched = folder / "scheduler.json"
    sched.unlink(missing_ok=True)
    dask = [sys.executable, "-m", "dask"]
    procs = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sched)], env=env, stderr=subprocess.DEVNULL)]
    try:
        end = time.monotonic() + 60
        while not sched.exists() and time.monotonic() < end:
            time.sleep(0.2)
        for _ in range(2):
            procs.append(subprocess.Popen([*dask, "worker", "--scheduler-file", str(sched), "--nthreads", "1",
                                           "--no-dashboard", "--host", "127.0.0.1", "--memory-limit", "3GB"],
                                          env=env, stderr=subprocess.DEVNULL))
        address = json.loads(sched.read_text())["address"]
        time.sleep(3)  # let both workers register (their start-up is not the fits' time)
        wall, r = devmodel("fit-many", *sessions, "--out", out, "--scheduler", address, "--quiet",
                           "--overwrite")
        print(f"dask scheduler {address} + 2 workers: {wall:.1f} s, exit {r.returncode}")
        return wall
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=20)
    ap.add_argument("--devices", type=int, default=300, help="devices per level")
    ap.add_argument("--chip-devices", type=int, default=8192, help="devices on each simulated chip")
    ap.add_argument("--bad-chip", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--folder", default="/tmp/devmodel-wafer")
    ap.add_argument("--reuse", action="store_true", help="fit the wafer already in --folder")
    a = ap.parse_args()
    folder = Path(a.folder)
    if not a.reuse:
        make_wafer(folder, a)
    sessions = sorted((folder / "sessions").glob("chip-*.h5"))
    print(f"{len(sessions)} sessions in {folder / 'sessions'}")
    ceiling = "two plain processes, half the chips each (no Dask)"
    times = {"serial (--workers 0)": [], "LocalCluster (--workers 2)": [], ceiling: []}
    for _ in range(a.repeats):
        for name, w in (("serial (--workers 0)", 0), ("LocalCluster (--workers 2)", 2)):
            out = folder / f"cards-w{w}"
            wall, r = devmodel("fit-many", *sessions, "--out", out, "--workers", w, "--quiet", "--overwrite")
            assert r.returncode == 0, r.stderr
            times[name].append(wall)
        times[ceiling].append(plain_processes(sessions))
    for name, t in times.items():
        print(f"{name}: median {statistics.median(t):.1f} s ({', '.join(f'{x:.1f}' for x in t)})")
    med = [statistics.median(t) for t in times.values()]
    print(f"speed-up LocalCluster vs serial: {med[0] / med[1]:.2f}× (wall of the whole command); "
          f"two plain processes vs serial: {med[0] / med[2]:.2f}× (the ceiling here); "
          f"parallel capacity of this machine now: {parallel_capacity():.2f} cores for two processes "
          f"(NumPy sort probe)")
    print(f"per-chip cards identical (serial vs LocalCluster): "
          f"{cards(folder / 'cards-w0') == cards(folder / 'cards-w2')}")
    scheduler_run(folder, sessions, folder / "cards-sched")
    print(f"per-chip cards identical (serial vs scheduler): "
          f"{cards(folder / 'cards-w0') == cards(folder / 'cards-sched')}")
    report(folder, sessions)


def make_wafer(folder: Path, a: argparse.Namespace) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    url = f"sim:pcm?devices={a.chip_devices}&" + "&".join(f"spread.{k}={v}" for k, v in SPREADS.items())
    wall, r = devmodel("characterize-wafer", "--chip", url, "--chips", a.chips, "--devices", a.devices,
                       "--seed", 11, "--set-chip", f"{a.bad_chip}:stat.q_s.amp=0.016", "--out",
                       folder / "sessions")
    assert r.returncode == 0, r.stderr
    print(f"wafer: {a.chips} chips × 13 levels × {a.devices} devices in {wall:.1f} s ({url})")


def nu_by_level(folder: Path, sessions: list[Path], bad: set[str]) -> None:
    """μ_ν's chip-to-chip variation where the card's law is identified: at each unclipped level,
    each chip's card law against the mean true ν of its non-defective devices (ground truth). The
    clipped-log's a and b trade off and ν is drawn at each device's own programmed x, so b alone is
    not the chip's b; the law at the levels is what the card states."""
    from devmodel.forms import ClippedLog
    from devmodel.store import read_session

    rows = []
    for path in sessions:
        if path.stem in bad:
            continue
        s = read_session(path, with_trace=False)
        nm = json.loads((folder / "cards-w0" / f"{path.stem}.json").read_text())["drift"]["nu_mean"]
        law = ClippedLog(nm["a"], nm["b"], nm["lo"], nm["hi"])
        x = s.devices["target_us"] / s.g_max_us
        ok = s.ground_truth["devices"]["defect"] == 0
        rows.append([(s.ground_truth["devices"]["nu"][ok & np.isclose(x, lv)].mean(), float(law(lv)))
                     for lv in (0.02, 0.04, 0.08, 0.12, 0.2)])
    r = np.array(rows)  # chips × levels × (true, card)
    for j, lv in enumerate((0.02, 0.04, 0.08, 0.12, 0.2)):
        tru, fit = r[:, j, 0], r[:, j, 1]
        print(f"μ_ν at x = {lv}: true {tru.mean():.4f} (chip SD {tru.std(ddof=1):.4f}), card "
              f"{fit.mean():.4f} (chip SD {fit.std(ddof=1):.4f}); card − true rms "
              f"{np.sqrt(np.mean((fit - tru) ** 2)):.4f}; correlation across chips "
              f"{np.corrcoef(fit, tru)[0, 1]:+.2f}")


def report(folder: Path, sessions: list[Path]) -> None:
    from devmodel.store import read_session

    pop = json.loads((folder / "cards-w2" / "population.json").read_text())
    print("outlier chips:", {c: [h["parameter"] for h in v] for c, v in pop["outlier_chips"].items()})
    stat = {p.stem: read_session(p, with_trace=False).ground_truth["params"]["stat"] for p in sessions}
    for name, (group, key) in TRUTH.items():
        p = pop["parameters"][name]
        truth = np.array([stat[c][group][key] for c in p["chips"]])
        good = ~np.array(p["outlier"])
        err = np.array(p["values"])[good] / truth[good] - 1
        print(f"{name}: chip-to-chip SD recovered {p['chip_to_chip_sd']:.3g} ± "
              f"{p['chip_to_chip_sd_stderr'] or float('nan'):.2g} vs truth {np.std(truth[good], ddof=1):.3g} "
              f"(SD of the {good.sum()} unflagged chips' true values); mean {p['mean']:.4g} vs "
              f"{truth[good].mean():.4g}; per-chip |fit/truth − 1| median {np.median(np.abs(err)):.3f}; "
              f"flagged {[c for c, o in zip(p['chips'], p['outlier'], strict=True) if o]}")
    nu_by_level(folder, sessions, set(pop["outlier_chips"]))


if __name__ == "__main__":
    main()
