"""Virtual clock of the simulated chips: every pulse and read costs chip time; ``wait`` jumps.

A one-day drift schedule therefore takes seconds of wall time, while ages and the timing of verify
reads stay realistic (the clock is what the 1/f process and drift see).
"""

from __future__ import annotations

from devmodel.array import check_wait
from devmodel.errors import LimitError

# The furthest a simulated chip's clock may run: 1e10 s (317 years, thirty times the ten-year
# retention horizon of docs/physics.md) keeps every time finite and resolved to 2 µs in float64,
# so a verify read's timing survives; a request beyond it is refused and the clock stays put.
MAX_CLOCK_S = 1e10


class VirtualClock:
    """Monotonic simulated time in seconds."""

    def __init__(self, start_s: float = 0.0) -> None:
        self.t_s = float(start_s)

    def now_s(self) -> float:
        return self.t_s

    def check_until(self, t_s: float) -> None:
        """Refuse, before any device changes, an operation that would end at ``t_s``."""
        if not t_s <= MAX_CLOCK_S:  # also catches NaN
            raise LimitError(f"the chip clock would pass {MAX_CLOCK_S:g} s (now {self.t_s:.6g} s, the "
                             f"request ends at {t_s:.6g} s): refused, the clock stays where it is")

    def advance(self, dt_s: float) -> float:
        """Move forward by ``dt_s`` (≥ 0) and return the new time."""
        if dt_s < 0:
            raise ValueError(f"the clock cannot go back (dt = {dt_s} s)")
        self.check_until(self.t_s + dt_s)
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
