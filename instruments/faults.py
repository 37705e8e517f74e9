"""Instrument faults on purpose: a transport that times out, drops, garbles, cuts short or slows down
a configurable fraction of commands (docs/reliability.md).

:class:`FaultyTransport` wraps any :class:`~instruments.transport.Transport` (normally
``VisaTransport``, so the bytes that do go through travel through pyvisa-py and the simulated chip
server for real). A fault is drawn per *command* (one program message written) from an explicit,
seeded generator, so a rehearsal is reproducible:

* ``timeout`` — the command runs but its answer is never read: the next read raises a time-out at
  once (rather than after the transport's timeout) and the answer stays in the stream;
* ``drop`` — the connection closes, before the command was sent (it never ran) or, for a share
  ``after`` of the drops (default half), just after (it ran; its answer is lost);
* ``garble`` — the first bytes of the answer arrive corrupted (detectable: the protocol has no
  checksum over block payloads, so payload corruption is left to TCP);
* ``short`` — the answer stops part-way: a line comes back cut, a block read gets fewer bytes;
* ``slow`` — the answer arrives ``slow_s`` late (not a failure unless that exceeds the timeout).

``start=N`` lets the first N commands through untouched.

Use: ``devmodel characterize --chip visa://… --faults timeout=0.01,drop=0.005``, a station file's
``instruments.chip.faults``, or ``FaultyTransport(VisaTransport(...), FaultSpec.parse(...))`` in tests.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, fields

import numpy as np

from devmodel.errors import DevmodelError
from instruments.transport import Transport, TransportError

KINDS = ("timeout", "drop", "garble", "short", "slow")


@dataclass(frozen=True)
class FaultSpec:
    """Fractions of commands that meet each fault (their sum is at most 1), and the generator seed."""

    timeout: float = 0.0
    drop: float = 0.0
    garble: float = 0.0
    short: float = 0.0
    slow: float = 0.0
    slow_s: float = 0.05
    seed: int = 0
    start: int = 0  # commands that pass untouched first (let a rehearsal get going)
    after: float = 0.5  # share of drops that happen after the command was sent (it ran)

    def __post_init__(self) -> None:
        for kind in KINDS:
            v = getattr(self, kind)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and 0.0 <= v <= 1.0):
                raise DevmodelError(f"fault rate {kind}={v!r} must be a fraction in [0, 1]")
        if self.total > 1.0 + 1e-12:
            raise DevmodelError(f"fault rates add up to {self.total:g}; at most 1 command in 1 can fail")
        if not (np.isfinite(self.slow_s) and 0.0 <= self.slow_s <= 60.0):
            raise DevmodelError(f"slow_s={self.slow_s!r} must be between 0 and 60 s")
        if self.start < 0 or self.seed < 0:
            raise DevmodelError("fault start and seed must be ≥ 0")
        if not (np.isfinite(self.after) and 0.0 <= self.after <= 1.0):
            raise DevmodelError(f"after={self.after!r} (share of drops after sending) must be in [0, 1]")

    @property
    def total(self) -> float:
        return float(sum(getattr(self, k) for k in KINDS))

    @property
    def failing(self) -> float:
        """Fraction of commands that fail (a slow answer still arrives)."""
        return self.total - self.slow

    @classmethod
    def parse(cls, text: str | dict | None, where: str = "--faults") -> FaultSpec | None:
        """``"timeout=0.01,drop=0.005,seed=3"`` (or a mapping from a station file); None for none."""
        if text is None or text == "" or text == {}:
            return None
        if isinstance(text, dict):
            items = list(text.items())
        else:
            items = []
            for part in str(text).replace(";", ",").split(","):
                if not part.strip():
                    continue
                key, sep, value = part.partition("=")
                if not sep:
                    raise DevmodelError(f"{where}: {part.strip()!r} is not name=value (e.g. timeout=0.01)")
                items.append((key.strip(), value.strip()))
        known = {f.name: f for f in fields(cls)}
        kw = {}
        for key, value in items:
            if key not in known:
                raise DevmodelError(f"{where}: unknown fault {key!r}; known: {', '.join(known)}")
            try:
                kw[key] = int(value) if key in ("seed", "start") else float(value)
            except (TypeError, ValueError):
                raise DevmodelError(f"{where}: {key}={value!r} is not a number") from None
        return cls(**kw)


class FaultyTransport:
    """A transport that injects faults into a fraction of the commands passing through it.

    ``plan`` places faults on given commands instead (``{3: "drop_after", 5: "timeout"}``; kinds as
    above, ``drop`` split into ``drop_before``/``drop_after``). ``injected`` counts the faults by kind;
    ``commands`` the messages written.
    """

    def __init__(self, inner: Transport, spec: FaultSpec | None = None,
                 plan: dict[int, str] | None = None) -> None:
        self.inner = inner
        self.spec = spec = spec or FaultSpec()
        self.plan = dict(plan or {})  # command number (1-based) → fault kind, for exact tests
        self.rng = np.random.default_rng(spec.seed)
        self.resource = inner.resource
        self.timeout_s = inner.timeout_s
        self.injected: Counter[str] = Counter()
        self.commands = 0
        self._pending: str | None = None  # the fault waiting for the answer of the last command
        self._closed = False
        cut = np.cumsum([getattr(spec, k) for k in KINDS])
        self._cut = cut

    def _draw(self) -> str | None:
        u = self.rng.random()
        i = int(np.searchsorted(self._cut, u, side="right"))
        return KINDS[i] if i < len(KINDS) else None

    def write(self, data: bytes) -> None:
        if self._closed:
            raise TransportError("closed", "the connection is closed")
        self.commands += 1
        self._pending = None
        kind = self.plan.pop(self.commands, None) or (self._draw() if self.commands > self.spec.start
                                                      else None)
        if kind == "drop_before" or kind == "drop_after":
            before = kind == "drop_before"
            kind = "drop"
        else:
            before = self.rng.random() >= self.spec.after if kind == "drop" else False
        if kind is not None:
            self.injected[kind] += 1
        if kind == "drop":
            if not before:
                self.inner.write(data)
            self._drop()
            raise TransportError("closed", "the connection was closed while sending (injected fault)") \
                if before else TransportError("closed", "the connection was closed after sending "
                                              "(injected fault)")
        self.inner.write(data)
        self._pending = kind

    def _drop(self) -> None:
        self._closed = True
        self.inner.close()

    def _take(self) -> str | None:
        """The fault pending for this read, if any; a timeout or a slow reply acts here, the
        answer-shaping faults (garble, short) are left to the caller."""
        if self._closed:
            raise TransportError("closed", "the connection was closed while reading")
        kind, self._pending = self._pending, None
        if kind == "timeout":
            raise TransportError("timeout", f"no answer within {self.timeout_s:g} s while reading "
                                            f"(injected fault)")
        if kind == "slow":
            time.sleep(self.spec.slow_s)
        return kind

    def read_line(self) -> bytes:
        kind = self._take()
        line = self.inner.read_line()
        if kind == "garble":
            return b"\x00\xff?" + line[3:]
        if kind == "short":
            return line[: len(line) // 2]
        return line

    def read_exact(self, n: int) -> bytes:
        kind = self._take()
        if kind == "short":
            if n == 1:  # too small to cut: the cut falls on the next, larger read of this answer
                self._pending = "short"
            else:
                self.inner.read_exact(n // 2)
                raise TransportError("io", f"read {n // 2} of {n} bytes (injected fault)")
        data = self.inner.read_exact(n)
        if kind == "garble":
            return b"!" + data[1:]
        return data

    def reopen(self) -> None:
        self._pending = None
        self.inner.reopen()
        self._closed = False

    def close(self) -> None:
        self._closed = True
        self.inner.close()
