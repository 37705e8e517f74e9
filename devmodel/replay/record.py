"""The parts of a session file that the replay backend and the emulator serve from.

Read through the one session reader (:class:`devmodel.store.SessionFile`), column by column: only
the columns a backend needs, after the same schema checks as every other reader. Every problem with
the file is one sentence naming the file and what is missing or wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devmodel.array import ChipInfo, Limits
from devmodel.errors import DevmodelError, SessionFileError
from devmodel.store.reader import SessionFile, verify_config_of
from devmodel.technologies import technology

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
    verify: dict | None = None  # the recorded program-and-verify configuration

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
        unit = c.get("pulse_unit") or technology(self.technology).pulse_unit
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


PROGRAMMING_COLUMNS = ("target_us", "iterations", "stop_reason", "converged", "g_verify_us")


def load_record(sf: SessionFile, what: str, programming: bool = False) -> Record:
    """The header and device table of an open session file (with ``programming``, also each
    device's target, iterations, stop reason, convergence and final verify reading)."""
    path, a = sf.path, dict(sf.attrs)
    h = sf.header()
    chip = sf.json_attr("chip", "json", "{}")
    truth = sf.ground_truth(devices=False)  # the timing parameters only
    a["_ground_truth_params"] = truth["params"] if truth else {}
    cols = ("address", "t_last_pulse_s") + (PROGRAMMING_COLUMNS if programming else ())
    d = sf.table("devices", cols, what=what)
    address = d["address"].astype(np.int64)
    if address.size == 0:
        raise SessionFileError(f"{path} records no devices, so {what} has nothing to serve")
    if address.min() < 0:
        raise SessionFileError(f"{path} is damaged: /devices/address holds a negative address")
    rows = np.full(int(address.max()) + 1, -1, np.int64)
    rows[address] = np.arange(address.size)
    if not np.array_equal(rows[address], np.arange(address.size)):
        raise SessionFileError(f"{path} is damaged: /devices/address holds duplicate addresses")
    rec = Record(path=path, technology=h["technology"], g_max_us=h["g_max_us"], t0_s=h["t0_s"],
                 chip=chip, attrs=a, address=address, t_last_pulse_s=d["t_last_pulse_s"].astype(float))
    if programming:
        rec.target_us = d["target_us"].astype(float)
        rec.iterations = d["iterations"].astype(np.int64)
        rec.stop_reason = d["stop_reason"].astype(np.int64)
        rec.converged = d["converged"].astype(bool)
        rec.g_verify_us = d["g_verify_us"].astype(float)
        rec.verify = verify_config_of(sf.json_attr("config", "json", "{}"), a, path) or {}
    return rec

