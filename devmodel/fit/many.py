"""Fitting many chips' sessions on a Dask cluster (docs/scale.md): ``devmodel fit-many``.

Each session is one task, :func:`fit_one`, run on a Dask worker: a ``LocalCluster`` of ``workers``
processes (one thread each) when no scheduler is given, or the cluster whose scheduler address is
given, whose workers must reach the session files by the same paths (shared storage). Only the
path, the options and the memory limit go to a worker and only the card's JSON text (tens of kB)
comes back: the session data never cross the wire. A task catches a fit's failure and returns its
reason, so one bad chip is reported and the others go on; a worker that dies is reported by the
error Dask gives for its task. ``workers=0`` runs the same tasks one after another in this process,
without Dask (the serial baseline). Dask is imported only here and only when used.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devmodel.errors import DevmodelError
from devmodel.fit.streamed import DEFAULT_MEMORY_LIMIT, in_memory_bytes, supports_streaming

#: The Dask worker's own memory limit above the fit's: the nanny stops a worker at 95 % of its limit,
#: and the fit's peak is estimated, not exact (docs/scale.md).
WORKER_MEMORY_MARGIN = 1.5
#: Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also stops glibc from raising
#: its mmap threshold: every large temporary array of a fit is then a fresh mmap and a page fault
#: per page. Measured: a PCM fit took 0.55–0.76 s in such a worker against 0.35–0.45 s without it
#: (docs/scale.md, "Workers"); a fit's memory is bounded by --memory-limit, not by trimming.
LOCAL_WORKER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
#: Seconds to wait for a scheduler to answer before giving up with one sentence (--connect-timeout).
CONNECT_TIMEOUT_S = 10


def fit_one(path: str, options: dict | None = None, memory_limit: int = DEFAULT_MEMORY_LIMIT) -> dict:
    """Fit one session within ``memory_limit``: ``{"session", "ok", "card" (JSON text) or "reason",
    "wall_s"}``. Out of core when the technology's fit has that form, else in memory if the
    estimate fits the limit; any failure is its one-sentence reason, never an exception."""
    t = time.perf_counter()
    try:
        from devmodel.fit.session import fit_session
        from devmodel.fit.streamed import fit_session_streamed
        from devmodel.store.reader import SessionFile

        with SessionFile(path) as sf:
            tech = sf.header()["technology"]
        if supports_streaming(tech):
            card = fit_session_streamed(path, options, memory_limit)
        elif in_memory_bytes(path) <= memory_limit:
            card = fit_session(path, options)
        else:
            raise DevmodelError(f"{path}: the {tech} fit has no out-of-core form and needs ≈ "
                                f"{in_memory_bytes(path) / 1e9:.1f} GB, above the memory limit")
        return {"session": path, "ok": True, "card": card.to_json(), "wall_s": time.perf_counter() - t}
    except DevmodelError as e:
        reason = str(e)
    except Exception as e:  # noqa: BLE001 - an unexpected failure of one chip is reported, not raised
        where = traceback.extract_tb(e.__traceback__)[-1]
        reason = f"{type(e).__name__}: {e} (at {Path(where.filename).name}:{where.lineno})"
    return {"session": path, "ok": False, "reason": reason, "wall_s": time.perf_counter() - t}


@dataclass
class Cluster:
    """Where the tasks run: ``scheduler`` address, or ``workers`` local processes (0: no Dask)."""

    scheduler: str | None = None
    workers: int = 2
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    progress: bool = True
    connect_timeout_s: float = CONNECT_TIMEOUT_S


def run_fits(paths: list[str], options: dict | None, where: Cluster) -> list[dict]:
    """:func:`fit_one` for every path, in the order given."""
    if where.scheduler is None and where.workers == 0:
        return [fit_one(p, options, where.memory_limit) for p in paths]
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise DevmodelError("fit-many on a cluster needs Dask: pip install 'devmodel[scale]' "
                            "(or --workers 0 to fit one session after another without it)") from None
    cluster = None
    try:
        if where.scheduler is not None:
            client = _connect(Client, where.scheduler, where.connect_timeout_s)
        else:
            cluster = local_cluster(LocalCluster, where.workers, where.memory_limit)
            client = Client(cluster)
        with client:
            futures = client.map(fit_one, paths, options=options, memory_limit=where.memory_limit,
                                 pure=False)
            if where.progress:
                _show_progress(futures, paths)
            return [_result(f, p) for f, p in zip(futures, paths, strict=True)]
    finally:
        if cluster is not None:
            cluster.close()


def local_cluster(cluster_class, workers: int, memory_limit: int):
    """A ``LocalCluster`` of ``workers`` one-thread processes, each with the fit's memory limit and
    margin, started without Dask's MALLOC_TRIM_THRESHOLD_ (``LOCAL_WORKER_CONFIG``)."""
    import dask

    with dask.config.set(LOCAL_WORKER_CONFIG):
        return cluster_class(n_workers=workers, threads_per_worker=1, processes=True,
                             memory_limit=int(memory_limit * WORKER_MEMORY_MARGIN), dashboard_address=None)


def _show_progress(futures, paths: list[str]) -> None:
    """Dask's text progress bar in a terminal; elsewhere (a log file, CI) one line per finished
    chip, not the bar's redraw every 0.1 s."""
    import sys

    from dask.distributed import as_completed, progress

    if sys.stdout.isatty():
        progress(futures)
        print(flush=True)
        return
    chip = {f.key: chip_name(p) for f, p in zip(futures, paths, strict=True)}
    for i, f in enumerate(as_completed(futures), 1):
        print(f"{i}/{len(futures)} {chip[f.key]}: {f.status}", flush=True)


def _connect(client_class, address: str, timeout_s: float):
    try:
        return client_class(address, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError, ValueError) as e:
        raise DevmodelError(f"--scheduler {address}: no Dask scheduler answered within "
                            f"{timeout_s:g} s ({type(e).__name__})") from None


def _result(future, path: str) -> dict:
    try:
        return future.result()
    except Exception as e:  # noqa: BLE001 - a worker that died: the task's error is the chip's reason
        return {"session": path, "ok": False, "reason": f"the Dask task failed: {type(e).__name__}: {e}",
                "wall_s": float("nan")}


def chip_name(path: str | Path) -> str:
    """A chip's name in the population card and its card's file name: the session file's stem."""
    return Path(path).stem


def population(results: list[dict], card_paths: dict[str, Path]) -> dict:
    """The population card of fitted results (:func:`devmodel.fit.population.population_card`)."""
    from devmodel.fit.population import population_card
    from devmodel.model.card import DeviceModel

    chips, techs = [], set()
    for r in results:
        entry: dict[str, Any] = {"chip": chip_name(r["session"]), "session": r["session"]}
        if r["ok"]:
            # the worker's own fit made it: schema-checked, not re-drawn (which would load torch)
            entry["card"] = DeviceModel.from_dict(json.loads(r["card"]), r["session"], plausible=False)
            entry["card_path"] = str(card_paths[r["session"]])
            techs.add(entry["card"].technology)
        else:
            entry["reason"] = r["reason"]
        chips.append(entry)
    if len(techs) > 1:
        raise DevmodelError(f"the sessions hold devices of {len(techs)} technologies "
                            f"({', '.join(sorted(techs))}); a population card describes one")
    return population_card(chips, next(iter(techs), "unknown"))
