"""Loading the parts of a session file that the replay backend and the emulator serve from.

Only the columns a backend needs are read (plain h5py, no copy of the whole session), after the same
schema checks as :func:`devmodel.store.session.read_session`. Every problem with the file is one
sentence naming the file and what is missing or wrong, raised as a
:class:`~devmodel.errors.SessionFileError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from devmodel.array import ChipInfo, Limits
from devmodel.errors import DevmodelError, SessionFileError
from devmodel.store.session import SCHEMA, SCHEMA_VERSION

#: Chip timing used when a record does not say (the simulated chips' defaults, physics/base.py).
DEFAULT_READ_CYCLE_S = 2e-6
DEFAULT_COMMAND_OVERHEAD_S = 10e-6
DEFAULT_PULSE_OVERHEAD_S = 2e-6


class ReplayError(DevmodelError):
    """A request a recorded session cannot answer, or an operation a record cannot do."""


@dataclass
class Record:
    """What a replay or emulation backend knows about the recorded chip and its devices."""

    path: Path
    technology: str
    g_max_us: float
    t0_s: float
    chip: dict
    attrs: dict
    address: np.ndarray  # per /devices row
    t_last_pulse_s: np.ndarray  # per /devices row
    target_us: np.ndarray | None = None
    iterations: np.ndarray | None = None
    stop_reason: np.ndarray | None = None
    converged: np.ndarray | None = None  # the programming columns are loaded only if asked for
    g_verify_us: np.ndarray | None = None

    @property
    def n_devices(self) -> int:
        return int(self.address.size)

    def chip_info(self, role: str) -> ChipInfo:
        """The recorded chip's geometry and limits, re-labelled as a replay/emulation of it."""
        c = self.chip
        lim = c.get("limits") or {}
        n = int(c.get("n_devices") or (int(self.address.max()) + 1 if self.address.size else 0))
        if self.address.size and int(self.address.max()) >= n:
            n = int(self.address.max()) + 1
        unit = c.get("pulse_unit") or ("uA" if self.technology == "pcm" else "V")
        limits = Limits(
            max_amplitude=float(lim.get("max_amplitude") or np.inf),
            max_width_ns=float(lim.get("max_width_ns") or np.inf),
            max_compliance_ua=lim.get("max_compliance_ua"),
            max_pulses_per_device=lim.get("max_pulses_per_device"),
            max_reads_per_request=int(lim.get("max_reads_per_request") or 100_000),
        )
        return ChipInfo(
            technology=self.technology, n_devices=n, g_max_us=self.g_max_us, pulse_unit=unit,
            identity=f"devmodel,{role.upper()},{self.path.name},{c.get('identity', 'unknown chip')}",
            limits=limits, simulated=True,
            read_cycle_s=float(c.get("read_cycle_s") or DEFAULT_READ_CYCLE_S),
        )

    def timing(self) -> tuple[float, float, float]:
        """(read cycle, command overhead, pulse overhead) in s: recorded ground truth if any."""
        read_cycle = float(self.chip.get("read_cycle_s") or DEFAULT_READ_CYCLE_S)
        command, pulse = DEFAULT_COMMAND_OVERHEAD_S, DEFAULT_PULSE_OVERHEAD_S
        params = self.attrs.get("_ground_truth_params") or {}
        t = params.get("timing") if isinstance(params, dict) else None
        if isinstance(t, dict):
            command = float(t.get("command_overhead_s", command))
            pulse = float(t.get("pulse_overhead_s", pulse))
        return read_cycle, command, pulse

    def address_rows(self, n_devices: int) -> np.ndarray:
        """Lookup chip address → /devices row (−1 where the record holds no such device)."""
        rows = np.full(n_devices, -1, np.int64)
        rows[self.address] = np.arange(self.address.size)
        return rows


def open_h5(path: str | Path) -> tuple[Path, h5py.File]:
    """Open a session file read-only after checking it is a devmodel session we can read."""
    path = Path(path)
    if not path.exists():
        raise SessionFileError(f"{path} does not exist")
    if path.is_dir():
        raise SessionFileError(f"{path} is a folder, not a session file")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise SessionFileError(
            f"{path} is not a readable HDF5 file (truncated or not HDF5: {e.__class__.__name__})"
        ) from None
    try:
        schema = f.attrs.get("schema")
        if isinstance(schema, bytes):
            schema = schema.decode()
        if schema != SCHEMA:
            raise SessionFileError(f"{path} is not a devmodel session file (no '{SCHEMA}' schema)")
        version = int(f.attrs.get("schema_version", -1))
        if version > SCHEMA_VERSION:
            raise SessionFileError(
                f"{path} uses session schema version {version}, newer than the version "
                f"{SCHEMA_VERSION} this devmodel reads: upgrade devmodel to replay it"
            )
        if version < 1:
            raise SessionFileError(f"{path} has an invalid schema_version {version}")
    except BaseException:
        f.close()
        raise
    return path, f


def table(f: h5py.File, path: Path, group: str, columns: tuple[str, ...],
          what: str) -> dict[str, np.ndarray]:
    """Columns of an extendable table (``n_rows`` acknowledged rows) or a fixed one."""
    if group not in f:
        raise SessionFileError(f"{path} has no /{group} table, which {what} needs")
    g = f[group]
    n = g.attrs.get("n_rows")
    out = {}
    for c in columns:
        if c not in g:
            raise SessionFileError(f"{path} has no /{group}/{c} column, which {what} needs")
        try:
            out[c] = g[c][: int(n)] if n is not None else g[c][()]
        except (OSError, ValueError) as e:
            raise SessionFileError(
                f"{path} is damaged: /{group}/{c} cannot be read ({e.__class__.__name__})"
            ) from None
    sizes = {v.size for v in out.values()}
    if len(sizes) > 1:
        raise SessionFileError(f"{path} is damaged: the columns of /{group} differ in length")
    return out


PROGRAMMING_COLUMNS = ("target_us", "iterations", "stop_reason", "converged", "g_verify_us")


def load_record(f: h5py.File, path: Path, what: str, programming: bool = False) -> Record:
    """The header and device table of an open session file (with ``programming``, also each
    device's target, iterations, stop reason, convergence and final verify reading)."""
    a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    for key in ("technology", "g_max_us", "t0_s"):
        if key not in a:
            raise SessionFileError(f"{path} has no '{key}' attribute, which {what} needs")
    try:
        chip = json.loads(f["chip"].attrs["json"]) if "chip" in f else {}
    except (KeyError, ValueError):
        raise SessionFileError(f"{path} has an unreadable /chip description") from None
    if "ground_truth" in f:
        try:
            a["_ground_truth_params"] = json.loads(f["ground_truth"].attrs.get("params_json", "{}"))
        except ValueError:
            a["_ground_truth_params"] = {}
    cols = ("address", "t_last_pulse_s") + (PROGRAMMING_COLUMNS if programming else ())
    d = table(f, path, "devices", cols, what)
    address = d["address"].astype(np.int64)
    if address.size == 0:
        raise SessionFileError(f"{path} records no devices, so {what} has nothing to serve")
    if address.min() < 0:
        raise SessionFileError(f"{path} is damaged: /devices/address holds a negative address")
    rows = np.full(int(address.max()) + 1, -1, np.int64)
    rows[address] = np.arange(address.size)
    if not np.array_equal(rows[address], np.arange(address.size)):
        raise SessionFileError(f"{path} is damaged: /devices/address holds duplicate addresses")
    rec = Record(path=path, technology=str(a["technology"]), g_max_us=float(a["g_max_us"]),
                 t0_s=float(a["t0_s"]), chip=chip, attrs=a, address=address,
                 t_last_pulse_s=d["t_last_pulse_s"].astype(float))
    if programming:
        rec.target_us = d["target_us"].astype(float)
        rec.iterations = d["iterations"].astype(np.int64)
        rec.stop_reason = d["stop_reason"].astype(np.int64)
        rec.converged = d["converged"].astype(bool)
        rec.g_verify_us = d["g_verify_us"].astype(float)
    return rec
