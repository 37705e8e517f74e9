"""Sessions drawn from a published statistical model instead of a chip: what the technologies'
``synthetic`` parts share (the layout of levels × devices and the device table). Written as normal
session files, so the fitters cannot tell them from a live session; they are the ground truth the
fitters must recover (docs/physics.md)."""

from __future__ import annotations

import numpy as np

from devmodel.procedures.characterize import DevicePlan, burst_rows_of
from devmodel.store.schema import StopReason


def layout(levels_us, devices_per_level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(levels, device rows, level of each row, target of each row); levels interleaved as a
    characterisation sweep lays them out (:meth:`DevicePlan.interleaved`)."""
    plan = DevicePlan.interleaved(levels_us, devices_per_level)
    return plan.levels_us, plan.address, plan.level, plan.target_us


def devices_table(rows: np.ndarray, level: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """A /devices table of devices programmed exactly (converged at once, no trace)."""
    n = rows.size
    return {"address": rows, "level": level, "target_us": target, "converged": np.ones(n),
            "iterations": np.ones(n), "pulses": np.ones(n), "g_verify_us": target,
            "t_last_pulse_s": np.zeros(n), "stop_reason": np.full(n, int(StopReason.CONVERGED))}


def burst_rows(level: np.ndarray, k: int, per_level: int) -> np.ndarray:
    """The first ``per_level`` devices of each level (those a burst reads)."""
    return burst_rows_of(level, k, per_level)
