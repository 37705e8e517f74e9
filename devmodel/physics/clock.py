"""Virtual clock of the simulated chips: every pulse and read costs chip time; ``wait`` jumps.

A one-day drift schedule therefore takes seconds of wall time, while ages and the timing of verify
reads stay realistic (the clock is what the 1/f process and drift see).
"""

from __future__ import annotations

from devmodel.array import check_wait


class VirtualClock:
    """Monotonic simulated time in seconds."""

    def __init__(self, start_s: float = 0.0) -> None:
        self.t_s = float(start_s)

    def now_s(self) -> float:
        return self.t_s

    def advance(self, dt_s: float) -> float:
        """Move forward by ``dt_s`` (≥ 0) and return the new time."""
        if dt_s < 0:
            raise ValueError(f"the clock cannot go back (dt = {dt_s} s)")
        self.t_s += float(dt_s)
        return self.t_s


class ClockedArray:
    """``now_s``/``wait`` of the DeviceArray protocol for chips that keep a ``self.clock``
    (simulated, replayed and emulated chips)."""

    clock: VirtualClock

    def now_s(self) -> float:
        return self.clock.now_s()

    def wait(self, dt_s: float) -> None:
        check_wait(dt_s)
        self.clock.advance(dt_s)
