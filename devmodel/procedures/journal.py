"""A journal of a chip's answers, so a session on a chip that outlives the host resumes exactly.

A simulated chip in the session's process stops with it and is restored from its snapshot. A chip
behind an instrument does not: between the session's last commit and the crash it ran pulses and
reads the host has forgotten, and a resumed procedure that ignored them would count ages from pulses
that were not the last. :class:`JournalChip` wraps such a chip and appends every answer (pulse end
times, reads, clock readings) to ``journal-<seq>.bin`` in the session's sidecar, with an *intent*
record (and the chip clock) before every command that must not run twice. Resuming from commit
``seq``, the procedure runs again from that commit's state against the journal: the same calls get
the recorded answers (the procedure is deterministic given them), so it arrives exactly where the
crash left it, with every record the lost window produced. Then the chip is live again; a pulse
batch or clock advance whose intent is the journal's last word is decided by the chip clock, as the
retry layer does (docs/reliability.md).

Records: ``b"DMJ1"``, u32 payload length, u32 CRC-32, payload (an ``.npz`` of the record's fields).
A torn last record (the process died writing it) fails its length or CRC and ends the replay.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from devmodel.array import ChipInfo, CountsPulses, PulseKind, ReadBatch, estimate_pulse_ends
from devmodel.errors import DevmodelError

MAGIC = b"DMJ1"
_HEAD = struct.Struct("<4sII")


def _digest(*parts) -> str:
    h = hashlib.blake2b(digest_size=12)
    for p in parts:
        h.update(np.ascontiguousarray(np.asarray(p if p is not None else np.nan, dtype=float)).tobytes())
    return h.hexdigest()


def read_journal(path: Path) -> list[dict[str, np.ndarray]]:
    """The records of a journal up to its first torn or damaged one."""
    out: list[dict[str, np.ndarray]] = []
    if not path.exists():
        return out
    data = path.read_bytes()
    i = 0
    while i + _HEAD.size <= len(data):
        magic, n, crc = _HEAD.unpack_from(data, i)
        payload = data[i + _HEAD.size: i + _HEAD.size + n]
        if magic != MAGIC or len(payload) != n or zlib.crc32(payload) != crc:
            break
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as z:
                out.append({k: z[k] for k in z.files})
        except (ValueError, OSError):
            break
        i += _HEAD.size + n
    return out


class JournalChip:
    """A device array that journals its inner chip's answers and, when resuming, replays them.

    ``records`` are the journal of the commit being resumed (replayed first, then appended to);
    ``on_live`` runs once when the replay is exhausted and the chip is live again (the resume's
    downtime rule). Everything else (``info``, ``pulse_counter``, ``ground_truth``…) is the inner
    chip's.
    """

    def __init__(self, inner, path: Path, records: list[dict[str, np.ndarray]] | None = None,
                 on_live: Callable[[JournalChip], None] | None = None) -> None:
        self.inner = inner
        self.path = Path(path)
        self._replay = list(records or [])
        self._pos = 0
        self.on_live = on_live
        self.last_known_time = float("nan")
        self.last_wall = float(self._replay[-1]["wall"]) if self._replay else float("nan")
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if not self._replay:
            self._live()

    def __getattr__(self, name):  # info, pulse_counter, ground_truth, retry counters…
        return getattr(self.inner, name)

    @property
    def info(self) -> ChipInfo:
        return self.inner.info

    # -- journal -----------------------------------------------------------------------------------
    def rotate(self, path: Path) -> None:
        """Start the journal of a new commit (the state it belongs to covers everything before)."""
        os.close(self._fd)
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def _write(self, kind: str, **fields) -> None:
        buf = io.BytesIO()
        np.savez(buf, kind=np.array(kind), wall=np.array(time.time()),
                 **{k: np.asarray(v) for k, v in fields.items()})
        payload = buf.getvalue()
        os.write(self._fd, _HEAD.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload)

    def _seen(self, t) -> None:
        t = np.asarray(t, dtype=float)
        if t.size:
            self.last_known_time = float(np.nanmax([np.nanmax(t), self.last_known_time])) \
                if np.isfinite(self.last_known_time) else float(np.nanmax(t))

    def _next(self, kind: str, digest: str) -> dict:
        """The next recorded answer for this call (while replaying)."""
        rec = self._replay[self._pos]
        if str(rec["kind"]) != kind or str(rec["digest"]) != digest:
            raise DevmodelError(f"the session's journal {self.path.name} does not match the procedure at "
                                f"record {self._pos} (expected {kind}, found {rec['kind']}); the session "
                                f"cannot be continued exactly")
        self._pos += 1
        return rec

    def _intent(self, kind: str, digest: str) -> dict | None:
        """Consume this call's intent record(s) while replaying; returns it if nothing follows it (the
        command was in flight when the session stopped), else None (its result comes next)."""
        rec = self._next(f"{kind}?", digest)
        # an intent the previous resume found unsent was written again before the command went out
        while self._pos < len(self._replay) and str(self._replay[self._pos]["kind"]) == f"{kind}?":
            rec = self._next(f"{kind}?", digest)
        return rec if self._pos >= len(self._replay) else None

    @property
    def replaying(self) -> bool:
        return self._pos < len(self._replay)

    def _live(self) -> None:
        """The replay is over (or there was none): the chip answers from now on."""
        self._replay, self._pos = [], 0
        if self.on_live is not None:
            hook, self.on_live = self.on_live, None
            hook(self)

    def _go_live(self) -> None:
        if self.on_live is not None:
            self._live()

    def _ran(self, intent: dict) -> bool:
        """Did the command of an intent left without a result run? A virtual clock that moved says so;
        a real-time clock cannot tell, and the command is sent again."""
        t_before = float(intent["t_before"])
        return bool(self.info.simulated and np.isfinite(t_before) and self.inner.now_s() != t_before)

    def _charge(self, a: np.ndarray) -> None:
        if isinstance(self.inner, CountsPulses) and a.size:
            self.inner.pulse_counter.charge(a.astype(np.int64))

    # -- DeviceArray -------------------------------------------------------------------------------
    def pulse(self, addresses, kind: PulseKind | np.ndarray, amplitude, width_ns, compliance_ua=None):
        a = np.asarray(addresses)
        digest = _digest(a, kind, amplitude, width_ns, compliance_ua)
        if self.replaying:
            intent = self._intent("pulse", digest)
            if intent is None:
                rec = self._next("pulse", digest)
                self._charge(a)  # the host's count of pulses against the limits includes these
                self._seen(rec["t_end"])
                return rec["t_end"].copy()
            ran = self._ran(intent)  # decided before anything else touches the chip
            t_now = self.inner.now_s() if ran else 0.0
            self._live()
            if ran:
                t_end = estimate_pulse_ends(float(intent["t_before"]), t_now, width_ns, a.size,
                                            self.info.read_cycle_s)
                self._charge(a)
                self._write("pulse", digest=digest, t_end=t_end)
                self._seen(t_end)
                return t_end
        self._go_live()
        t_before = self.inner.now_s() if self.info.simulated else float("nan")
        self._write("pulse?", digest=digest, t_before=t_before)
        t_end = self.inner.pulse(addresses, kind, amplitude, width_ns, compliance_ua)
        self._write("pulse", digest=digest, t_end=t_end)
        self._seen(t_end)
        return t_end

    def read(self, addresses, n_reads: int = 1, interval_s: float = 0.0) -> ReadBatch:
        digest = _digest(np.asarray(addresses), n_reads, interval_s)
        if self.replaying:
            rec = self._next("read", digest)
            self._seen(rec["t_s"])
            return ReadBatch(g_us=rec["g_us"].copy(), t_s=rec["t_s"].copy())
        self._go_live()
        rb = self.inner.read(addresses, n_reads, interval_s)
        self._write("read", digest=digest, g_us=rb.g_us, t_s=rb.t_s)
        self._seen(rb.t_s)
        return rb

    def now_s(self) -> float:
        if self.replaying:
            rec = self._next("now", "")
            self._seen(rec["t"])
            return float(rec["t"])
        self._go_live()
        t = self.inner.now_s()
        self._write("now", digest="", t=t)
        self._seen(t)
        return t

    def wait(self, dt_s: float) -> None:
        digest = _digest(dt_s)
        if self.replaying:
            intent = self._intent("wait", digest)
            if intent is None:
                self._next("wait", digest)
                return
            ran = self._ran(intent)
            self._live()
            if ran:
                self._write("wait", digest=digest)
                return
        self._go_live()
        t_before = self.inner.now_s() if self.info.simulated else float("nan")
        self._write("wait?", digest=digest, t_before=t_before)
        self.inner.wait(dt_s)
        self._write("wait", digest=digest)

    def close_journal(self) -> None:
        """Stop journaling (the inner chip stays open: its owner closes it)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        self.close_journal()
        self.inner.close()
