"""The session file's schema ``devmodel.session`` version 1 (docs/session-format.md): its tables
and columns with units, the stop reasons of program-and-verify, the header and provenance a new file
gets, and the file hash cards cite. Shared by every writer and the reader."""

from __future__ import annotations

import getpass
import hashlib
import json
import platform
import socket
import sys
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from devmodel import __version__

SCHEMA = "devmodel.session"
SCHEMA_VERSION = 1
COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


class StopReason(IntEnum):
    """Why a device's programming loop ended (``/devices/stop_reason``, int8)."""

    CONVERGED = 0
    RESET_ONLY = 1  # target 0: the unused device of a differential pair, one RESET pulse
    MAX_ITERATIONS = 2
    PULSE_LIMIT = 3
    TIME_LIMIT = 4


#: ``/devices`` attribute stop_reasons: code → name.
STOP_REASONS = {int(r): r.name.lower() for r in StopReason}

#: The group a deployment adds to the session schema (docs/session-format.md, "Deployments")
DEPLOYMENT_GROUP = "deployment"

#: Extendable tables: name → {column: (dtype, unit)}
TABLES: dict[str, dict[str, tuple[str, str]]] = {
    "reads": {
        "device": ("i4", "row of /devices"),
        "t_s": ("f8", "s"),
        "age_s": ("f8", "s"),
        "g_us": ("f8", "uS"),
        "burst": ("i4", "burst id, -1 for a schedule read"),
        "nominal_age_s": ("f8", "s, the schedule age the read was taken for (NaN: none)"),
    },
    "trace": {
        "device": ("i4", "row of /devices"),
        "iteration": ("i4", "verify iteration"),
        "g_before_us": ("f8", "uS"),
        "kind": ("i1", "0 SET, 1 RESET"),
        "amplitude": ("f8", "chip pulse unit (see /chip attribute pulse_unit)"),
        "width_ns": ("f8", "ns"),
        "compliance_ua": ("f8", "uA, NaN if none"),
        "t_s": ("f8", "s, end of the pulse"),
        "g_after_us": ("f8", "uS, the next verify reading"),
    },
}

DEVICE_COLUMNS: dict[str, tuple[str, str]] = {
    "address": ("i8", "chip address"),
    "level": ("i4", "index into /levels/target_us"),
    "target_us": ("f8", "uS"),
    "converged": ("u1", "1 if the verify loop converged"),
    "iterations": ("i4", "verify iterations"),
    "pulses": ("i4", "pulses applied"),
    "g_verify_us": ("f8", "uS, final verify reading"),
    "t_last_pulse_s": ("f8", "s, chip time at the end of the last pulse"),
    "stop_reason": ("i1", "see attribute stop_reasons"),
}

BURST_COLUMNS: dict[str, tuple[str, str]] = {
    "burst": ("i4", "burst id"),
    "device": ("i4", "row of /devices"),
    "n_reads": ("i4", "reads"),
    "interval_s": ("f8", "s"),
    "t_start_s": ("f8", "s"),
}


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def to_json(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, sort_keys=True)


def sha256_of(path: str | Path) -> str:
    """SHA-256 of a file (model cards cite the session they were fitted on by it)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: Columns an append may leave out (filled with these values), and files written before they existed
#: lack (the reader fills them in the same way).
OPTIONAL_COLUMNS: dict[str, dict[str, float]] = {"reads": {"nominal_age_s": np.nan}, "trace": {}}


def append_rows(table: str, columns: dict[str, np.ndarray]) -> int:
    """Rows in an append to ``reads`` or ``trace`` (every writer): every required column, equal
    lengths; optional ones missing from ``columns`` are added to it with their fill value."""
    missing = set(TABLES[table]) - set(columns) - set(OPTIONAL_COLUMNS[table])
    if missing:
        raise ValueError(f"append to {table}: missing columns {sorted(missing)}")
    n = {np.size(v) for v in columns.values()}
    if len(n) != 1:
        raise ValueError(f"append to {table}: columns of different lengths {n}")
    k = n.pop()
    for col, fill in OPTIONAL_COLUMNS[table].items():
        columns.setdefault(col, np.full(k, fill))
    return k


def header_attrs(technology: str, g_max_us: float, t0_s: float) -> dict[str, Any]:
    """Root attributes of a new session file (every writer)."""
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "technology": technology,
            "g_max_us": float(g_max_us), "t0_s": float(t0_s), "status": "running", "status_reason": ""}


def provenance(seed: int | None, command: str) -> dict[str, Any]:
    """``/provenance`` attributes of a new session file (every writer)."""
    return {"toolkit_version": __version__, "seed": -1 if seed is None else int(seed),
            "host": socket.gethostname(), "user": getpass.getuser(), "python": sys.version.split()[0],
            "platform": platform.platform(), "numpy": np.__version__, "h5py": h5py.__version__,
            "command": command, "start_utc": utc_now(), "end_utc": ""}
