"""``replay:session.h5``: a recorded session served through the device-array protocol.

The replay chip answers read requests with the reads the session recorded, on the recorded clock,
so a read-only procedure (drift schedule, read-noise bursts) re-run against it reproduces the
session value for value.

**Matching.** A request for ``n_reads`` reads of each address is laid out in time as the simulated
chips lay it out (a command overhead, then one read cycle per read; reads ``interval_s`` apart in
passes). Each device's reads are answered by ``n_reads`` consecutive recorded reads of that device,
the first one the recorded read nearest in time to the first requested one. Every recorded read
used must lie within the *match window* of its requested time: ``|t_recorded − t_requested| ≤
window × age`` (age counted from the device's last recorded pulse; default window 5 %, so a
scheduler that waits for an age gets the read recorded at that age even when the recording chip
was busy a little longer). Requests replayed in the recorded order are answered from the record's
next rows without any search (the fast path); any other request goes through a per-device index
built on first use.

**Answers and the clock.** Answered reads carry their *recorded* chip times, and the chip's clock
moves to the end of the last recorded read it served (or of the requested layout, if later), so
ages computed by the procedure equal the recorded ages exactly.

**Policies.** With the default ``exact`` policy a request the record cannot answer — an address
that was never recorded, or an age with no recorded read in the window — is a
:class:`~devmodel.replay.record.ReplayError` naming the device and the age. ``policy=nearest``
answers such a read with the device's recorded read nearest in ln(age); ``policy=loglinear``
interpolates the device's recorded reads linearly in ln(age) (clamped to the first and last read,
never extrapolated). Interpolated answers carry the requested times (the chip's own clock), and add
no read noise: two reads at the same age get the same value. Unrecorded addresses are an error under
every policy. Pulses are always refused: a record cannot be reprogrammed (use ``emulate:``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from devmodel.array import ChipInfo, PulseKind, ReadBatch, as_addresses, check_reads
from devmodel.errors import ChipURLError, SessionFileError
from devmodel.physics.base import read_times
from devmodel.physics.clock import ClockedArray, VirtualClock
from devmodel.replay.record import Record, ReplayError, load_record
from devmodel.store.reader import SessionFile

POLICIES = ("exact", "nearest", "loglinear")
DEFAULT_WINDOW = 0.05


class ReplayChip(ClockedArray):
    """A recorded session as a read-only device array (see the module docstring for the rules)."""

    info: ChipInfo

    def __init__(self, path: str | Path, policy: str = "exact", window: float = DEFAULT_WINDOW) -> None:
        if policy not in POLICIES:
            raise ChipURLError(f"replay policy {policy!r} is unknown; use one of {', '.join(POLICIES)}")
        if not (np.isfinite(window) and 0 < window < 1):
            raise ChipURLError(f"replay match window {window!r} must be a fraction of the age in (0, 1)")
        self.policy, self.window = policy, float(window)
        with SessionFile(path) as sf:
            path = sf.path
            self.record: Record = load_record(sf, "replay")
            r = sf.table("reads", ("device", "t_s", "g_us"), what="replay")
        n_rec = self.record.n_devices
        dev = r["device"]
        if dev.size and (dev.min() < 0 or dev.max() >= n_rec):
            raise SessionFileError(f"{path} is damaged: /reads/device points outside /devices")
        self.path = path
        self.info = self.record.chip_info("replay")
        self._cycle_s, self._overhead_s, _ = self.record.timing()
        self._row_of = self.record.address_rows(self.info.n_devices)
        self._t_last = self.record.t_last_pulse_s
        for arr in (dev, r["t_s"], r["g_us"]):
            arr.flags.writeable = False  # answers are views of these: nobody may change the record
        self._dev, self._t, self._g = dev, r["t_s"], r["g_us"]
        self._cursor = 0  # next file row of a replay in the recorded order
        self._index: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.clock = VirtualClock()

    # -- DeviceArray protocol ------------------------------------------------------------------
    def close(self) -> None:
        self._index = None

    def pulse(self, addresses: np.ndarray, kind: PulseKind | np.ndarray, amplitude, width_ns,
              compliance_ua=None) -> np.ndarray:
        raise ReplayError(
            f"replay:{self.path} is a recorded session and cannot be pulsed; use "
            f"emulate:{self.path} to program devices offline"
        )

    def read(self, addresses: np.ndarray, n_reads: int = 1, interval_s: float = 0.0) -> ReadBatch:
        a = as_addresses(addresses, self.info.n_devices)
        n = check_reads(self.info, n_reads, interval_s)
        m = a.size
        if m == 0:
            return ReadBatch(np.empty((0, n)), np.empty((0, n)))
        rows = self._row_of[a]
        if rows.min() < 0:
            bad = a[rows < 0][0]
            raise ReplayError(f"address {bad} was not recorded in {self.path}, so replay cannot read it")
        t_nom = self._layout(m, n, interval_s)
        g, t = self._serve_sequential(rows, n, t_nom)
        if g is None:
            g, t = self._serve_indexed(a, rows, n, t_nom)
        end = max(t_nom[-1, -1], float(t.max())) + self._cycle_s
        self.clock.advance(end - self.clock.now_s())
        return ReadBatch(g_us=g, t_s=t)

    # -- internals -----------------------------------------------------------------------------
    def _layout(self, m: int, n: int, interval_s: float) -> np.ndarray:
        """Requested read times, laid out as the simulated chips lay out a batch (physics/base.py)."""
        return read_times(self.clock.now_s() + self._overhead_s, m, n, self._cycle_s, interval_s)

    def _in_window(self, rows: np.ndarray, t_rec: np.ndarray, t_nom: np.ndarray) -> np.ndarray:
        age = t_nom - self._t_last[rows][:, None]
        return (age > 0) & (np.abs(t_rec - t_nom) <= self.window * age)

    def _serve_sequential(self, rows, n, t_nom):
        """The record's next rows, if they are this request's answer (a replay in recorded order).
        Answers are read-only views of the record (no copy on the hot path)."""
        c, m = self._cursor, rows.size
        k = m * n
        dev = self._dev[c:c + k]
        if dev.size != k or not (dev.reshape(m, n) == rows[:, None]).all():
            return None, None
        t = self._t[c:c + k].reshape(m, n)
        # the window, in few passes: |t − t_nom| ≤ w·(t_nom − t_last) for every read, ages > 0
        lag = t - t_nom
        np.abs(lag, out=lag)
        slack = t_nom - self._t_last[rows][:, None]
        slack *= self.window
        if not ((lag <= slack).all() and slack[:, 0].min() > 0):
            return None, None
        self._cursor = c + k
        return self._g[c:c + k].reshape(m, n), t

    def _build_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """File rows sorted by (device, time) and each device's slice of them."""
        order = np.argsort(self._dev, kind="stable")
        d, t = self._dev[order], self._t[order]
        if np.any((np.diff(t) < 0) & (d[1:] == d[:-1])):  # rows not in time order (imported files)
            order = np.lexsort((self._t, self._dev))
        counts = np.bincount(self._dev, minlength=self.record.n_devices)
        start = np.concatenate([[0], np.cumsum(counts)])
        return order, self._t[order], start

    def _serve_indexed(self, a, rows, n, t_nom):
        if self._index is None:
            self._index = self._build_index()
        order, t_sorted, start = self._index
        lo, hi = start[rows], start[rows + 1]
        if np.any(lo == hi):
            i = int(np.flatnonzero(lo == hi)[0])
            raise ReplayError(f"device at address {a[i]} has no recorded reads in {self.path}")
        first = _nearest(t_sorted, lo, hi, t_nom[:, 0])
        idx = first[:, None] + np.arange(n)[None, :]
        inside = idx < hi[:, None]
        idx_c = np.minimum(idx, hi[:, None] - 1)
        t_rec = t_sorted[idx_c]
        ok = inside & self._in_window(rows, t_rec, t_nom)
        file_rows = order[idx_c]
        g = self._g[file_rows]
        t = t_rec.copy()
        if not ok.all():
            if self.policy == "exact":
                i, j = np.argwhere(~ok)[0]
                age = t_nom[i, j] - self._t_last[rows[i]]
                self._raise_gap(a[i], rows[i], age, n)
            bad = ~ok
            rr = np.broadcast_to(rows[:, None], bad.shape)[bad]
            g[bad] = self._fill(rr, t_nom[bad])
            t[bad] = t_nom[bad]
        if ok.any():
            self._cursor = int(file_rows[ok].max()) + 1
        return g, t

    def _fill(self, rows: np.ndarray, t_nom: np.ndarray) -> np.ndarray:
        """Answer reads the record holds no match for, by the chosen policy (ln-age based)."""
        order, t_sorted, start = self._index
        lo, hi = start[rows], start[rows + 1]
        t_last = self._t_last[rows]
        la = np.log(np.maximum(t_nom - t_last, 1e-12))
        right = np.clip(_search(t_sorted, lo, hi, t_nom), lo, hi - 1)
        left = np.maximum(right - 1, lo)
        la_r = np.log(np.maximum(t_sorted[right] - t_last, 1e-12))
        la_l = np.log(np.maximum(t_sorted[left] - t_last, 1e-12))
        g_r, g_l = self._g[order[right]], self._g[order[left]]
        if self.policy == "nearest":
            return np.where(np.abs(la - la_l) <= np.abs(la_r - la), g_l, g_r)
        span = la_r - la_l
        w = np.where(span > 0, np.clip((la - la_l) / np.where(span > 0, span, 1.0), 0.0, 1.0), 0.0)
        w = np.where(la >= la_r, 1.0, w)
        return g_l + w * (g_r - g_l)

    def _raise_gap(self, address: int, row: int, age_s: float, n: int) -> None:
        order, t_sorted, start = self._index
        ages = t_sorted[start[row]:start[row + 1]] - self._t_last[row]
        shown = ", ".join(f"{x:.4g}" for x in np.unique(np.round(ages, 3))[:8])
        more = "…" if np.unique(np.round(ages, 3)).size > 8 else ""
        what = f"{n} consecutive reads" if n > 1 else "read"
        raise ReplayError(
            f"{self.path} holds no {what} of the device at address {address} within "
            f"{100 * self.window:g} % of age {age_s:.6g} s (recorded ages {shown}{more} s); choose an "
            f"interpolation policy (replay:{self.path}?policy=nearest or policy=loglinear) to answer it"
        )


def _search(t_sorted: np.ndarray, lo: np.ndarray, hi: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per query, the first index in ``t_sorted[lo:hi]`` whose time is ≥ ``t`` (vectorised bisection
    over many independent sorted segments; ``hi`` if none)."""
    lo, hi = lo.copy(), hi.copy()
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) // 2
        below = t_sorted[np.minimum(mid, t_sorted.size - 1)] < t
        lo = np.where(active & below, mid + 1, lo)
        hi = np.where(active & ~below, mid, hi)


def _nearest(t_sorted: np.ndarray, lo: np.ndarray, hi: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per query, the index in its segment of the time nearest to ``t``."""
    right = _search(t_sorted, lo, hi, t)
    left = np.maximum(right - 1, lo)
    right = np.minimum(right, hi - 1)
    return np.where(np.abs(t_sorted[left] - t) <= np.abs(t_sorted[right] - t), left, right)


def open_replay(path: str, opts: dict[str, str]) -> ReplayChip:
    """``replay:<file>?policy=exact|nearest|loglinear&window=0.05`` (chip URL options)."""
    policy = opts.pop("policy", "exact")
    raw = opts.pop("window", str(DEFAULT_WINDOW))
    try:
        window = float(raw)
    except ValueError:
        raise ChipURLError(f"replay option window={raw!r} is not a number") from None
    if opts:
        raise ChipURLError(f"unknown replay option(s) {', '.join(sorted(opts))}; known: policy, window")
    return ReplayChip(path, policy, window)


def open_replay_url(url: str, target: str, opts: dict[str, str], seed: int | None,
                    station: str | None = None) -> ReplayChip:
    """The ``replay:`` scheme of :mod:`devmodel.chips`."""
    if not target:
        raise ChipURLError(f"chip URL {url!r} names no session file; try replay:session.h5")
    return open_replay(target, opts)
