"""Progress bars for long CLI work: one tqdm bar per phase of a session or replay, on stderr."""

from __future__ import annotations

import sys


class PhaseBars:
    """Callable ``(phase, done, total)`` progress hook: a new bar whenever the phase changes.

    ``units`` names the counted thing per phase (default ``unit``); tqdm hides the bars when stderr
    is not a terminal (``disable=None``), so logs and pipes stay clean.
    """

    def __init__(self, enabled: bool, unit: str = "events", units: dict[str, str] | None = None) -> None:
        self.enabled, self.unit, self.units = enabled, unit, units or {}
        self.bar = None
        self.phase = ""

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if phase != self.phase:
            from tqdm import tqdm  # here: importing tqdm costs `devmodel --help` a third of its time

            self.close()
            self.bar = tqdm(total=total, desc=f"{phase:>15}", unit=f" {self.units.get(phase, self.unit)}",
                            leave=False, file=sys.stderr, disable=None, mininterval=0.5)
            self.phase = phase
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
