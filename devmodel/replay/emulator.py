"""``emulate:session.h5``: an empirical pulse-response model of a recorded chip, served through the
device-array protocol, so a new or retuned program-and-verify algorithm can be tried offline.

**What it learns** from the session: per recorded pulse kind and width, the conditional distribution
of the next verify reading given the amplitude, the reading before the pulse and the compliance, with
per-device persistence (:mod:`devmodel.replay.response`); which devices the recorded algorithm could
not move at all (stuck devices: left out of the model, and left unchanged by emulated pulses); each
device's first verify reading after initialisation; the per-read noise level (from the read-noise
bursts); the initialisation pulses of the recorded verify configuration.

**What it serves.** Pulse: per device, the next state is drawn from the conditional model given the
current state. Pulses identical to the recorded initialisation pulses (``verify_config``: PCM RESET
plus SET staircase, ReRAM initial RESET) restore the device's recorded state after initialisation.
Read: the state plus read noise at the recorded level, centred over the reads a verify averages (after
the recorded ``discard_reads``), so a verify built like the recorded one sees exactly the modelled
reading while single reads carry the recorded read noise. Clock, timing, limits and pulse counting as
on the simulated chips.

**What it cannot capture** (docs/replay.md): drift or relaxation at any age other than the recorded
verify timing (every read returns the state as verified, whatever its age), read noise that depends
on the verify length, pulse kinds or widths the record never used (refused), amplitudes outside the
recorded range (clamped), history beyond the last verify reading, and more distinct devices than the
record holds (unrecorded addresses borrow a recorded device's initial state).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devmodel.array import (
    ChipInfo,
    PulseCounter,
    PulseKind,
    ReadBatch,
    as_addresses,
    check_pulses,
    check_reads,
)
from devmodel.errors import ChipURLError, DevmodelError, SessionFileError
from devmodel.physics.base import pulse_end_times, read_times
from devmodel.physics.clock import ClockedArray, VirtualClock
from devmodel.procedures.program_verify import verify_config_from_dict
from devmodel.replay.record import Record, ReplayError, load_record
from devmodel.replay.response import GroupModel, fit_group, typical_next
from devmodel.store.reader import SessionFile

TRACE_COLUMNS = ("device", "iteration", "g_before_us", "kind", "amplitude", "width_ns",
                 "compliance_ua", "g_after_us")
MIN_GROUP_PULSES = 50  # fewer recorded pulses of a kind/width: no model for it


@dataclass
class PulseResponseModel:
    """Everything the emulator serves from: group models, initial states, read noise, init pulses."""

    path: Path
    technology: str
    groups: list[GroupModel]
    post_init_us: np.ndarray  # per recorded device: its first verify reading
    read_noise_g_us: np.ndarray  # conductance grid of the read-noise level
    read_noise_us: np.ndarray  # per-read noise σ at that grid
    init_pulses: list[tuple[int, float, float]]  # (kind, amplitude, width_ns)
    discard_reads: int
    unresponsive: np.ndarray | None = None  # per recorded device: stuck (pulses do not move it)
    record: Record | None = None  # the recording it was fitted on (header, devices, programming)

    def read_sigma(self, g_us: np.ndarray) -> np.ndarray:
        """Per-read noise σ (µS) at these conductances (0 if the record has no bursts)."""
        if self.read_noise_us.size == 0:
            return np.zeros_like(g_us)
        return np.interp(g_us, self.read_noise_g_us, self.read_noise_us)


# -- fitting -----------------------------------------------------------------------------------
def fit_response_model(path: str | Path) -> PulseResponseModel:
    """Learn the pulse-response model from a session file (see the module docstring)."""
    what = "the pulse-response emulator"
    with SessionFile(path) as sf:
        path = sf.path
        rec = load_record(sf, what, programming=True)
        tr = sf.table("trace", TRACE_COLUMNS, what=what) if sf.has("trace") else {}
        if not tr or tr["device"].size == 0:
            raise SessionFileError(
                f"{path} records no program-and-verify trace (/trace is missing or empty), which "
                f"{what} needs; record the session without --no-trace"
            )
        reads = sf.table("reads", ("device", "g_us", "burst"), what=what) if sf.has("reads") else None
    verify = rec.verify or {}
    dev = tr["device"].astype(np.int64)
    if dev.min() < 0 or dev.max() >= rec.n_devices:
        raise SessionFileError(f"{path} is damaged: /trace/device points outside /devices")
    y, x = tr["g_after_us"].astype(float), tr["g_before_us"].astype(float)
    amp = tr["amplitude"].astype(float)
    finite = np.isfinite(y) & np.isfinite(x) & np.isfinite(amp)
    kind, width = tr["kind"].astype(np.int64), tr["width_ns"].astype(float)
    keys = [(int(k), float(w)) for k in np.unique(kind[finite])
            for w in np.unique(width[finite & (kind == k)])]
    masks = [finite & (kind == k) & (width == w) for k, w in keys]
    g_noise, s_noise = _read_noise(reads)
    comp = tr["compliance_ua"].astype(float)
    stuck = _unresponsive(masks, amp, x, y, comp, dev, rec)
    groups = []
    for (k, w), sel in zip(keys, masks, strict=True):
        sel = sel & ~stuck[dev]
        if sel.sum() >= MIN_GROUP_PULSES:
            groups.append(fit_group(k, w, amp[sel], x[sel], tr["compliance_ua"][sel].astype(float),
                                     y[sel], dev[sel], rec.n_devices))
    if not groups:
        raise SessionFileError(f"{path} has fewer than {MIN_GROUP_PULSES} usable trace pulses of any "
                               f"kind and width, too few for {what}")
    return PulseResponseModel(
        path=path, technology=rec.technology, groups=groups,
        post_init_us=_post_init(rec, tr, dev), read_noise_g_us=g_noise, read_noise_us=s_noise,
        init_pulses=_init_pulses(rec.technology, verify),
        discard_reads=int(verify.get("discard_reads", 0) or 0),
        unresponsive=stuck, record=rec,
    )


def _unresponsive(masks, amp, x, y, comp, dev, rec: Record) -> np.ndarray:
    """Devices the recorded algorithm could not move (stuck devices), per /devices row.

    A device is unresponsive when it never converged, got at least 3 pulses, and none of them moved
    its verify reading by a quarter of the larger of its distance from its target and the move the
    same pulse makes on average (an amplitude-and-compliance fit over all devices). Their pulses are
    left out of the response model — at the amplitudes a verify loop ends up giving stuck devices
    (clipped at a bound) they would otherwise be most of the data — and the emulator leaves their
    state unchanged. (A read-noise threshold would not do: a stuck device's verify readings still
    wander with drift and 1/f noise.)
    """
    n = rec.n_devices
    scale = np.zeros(n)
    moved = np.zeros(n)
    pulses = np.zeros(n, np.int64)
    for sel in masks:
        typical = typical_next(amp[sel], comp[sel], y[sel])
        dd = dev[sel]
        np.maximum.at(scale, dd, np.maximum(np.abs(typical - x[sel]),
                                            np.abs(y[sel] - rec.target_us[dd])))
        np.maximum.at(moved, dd, np.abs(y[sel] - x[sel]))
        pulses += np.bincount(dd, minlength=n)
    return (pulses >= 3) & ~rec.converged & (moved <= 0.25 * scale)


def _post_init(rec: Record, tr: dict, dev: np.ndarray) -> np.ndarray:
    """Each recorded device's first verify reading after initialisation."""
    out = np.full(rec.n_devices, np.nan)
    first = tr["iteration"] == 1
    out[dev[first]] = tr["g_before_us"][first]
    # devices that converged at the first verify have no trace row: their final reading is it
    at_first = (rec.iterations == 1) & np.isnan(out)
    out[at_first] = rec.g_verify_us[at_first]
    return out


def _read_noise(reads: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-read noise σ against conductance, from the spread of successive burst reads (robust:
    1.4826·MAD of the differences / √2 per burst, then medians over bursts binned by conductance)."""
    if reads is None or np.count_nonzero(reads["burst"] >= 0) < 20:
        return np.empty(0), np.empty(0)
    sel = np.flatnonzero(reads["burst"] >= 0)
    sel = sel[np.argsort(reads["burst"][sel], kind="stable")]  # each burst's reads in time order
    burst, g = reads["burst"][sel].astype(np.int64), reads["g_us"][sel].astype(float)
    same = burst[1:] == burst[:-1]
    diff, owner = np.diff(g)[same], burst[1:][same]
    n_b = int(burst.max()) + 1
    cnt = np.bincount(owner, minlength=n_b)
    ok = cnt >= 2
    if not ok.any():
        return np.empty(0), np.empty(0)
    start = np.concatenate([[0], np.cumsum(cnt)])[:-1]
    mid = np.clip(start + (cnt - 1) // 2, 0, max(diff.size - 1, 0))

    def per_burst_median(v: np.ndarray) -> np.ndarray:
        return v[np.lexsort((v, owner))][mid]

    med = per_burst_median(diff)
    sigma = (1.4826 / np.sqrt(2.0)) * per_burst_median(np.abs(diff - med[owner]))[ok]
    g_mean = (np.bincount(burst, g, minlength=n_b) / np.maximum(np.bincount(burst, minlength=n_b), 1))[ok]
    order = np.argsort(g_mean)
    g_mean, sigma = g_mean[order], sigma[order]
    parts = np.array_split(np.arange(g_mean.size), int(np.clip(g_mean.size // 20, 1, 16)))
    return (np.array([np.median(g_mean[p]) for p in parts]),
            np.array([np.median(sigma[p]) for p in parts]))


def _init_pulses(technology_name: str, verify: dict) -> list[tuple[int, float, float]]:
    """The initialisation pulses the recorded verify configuration applies before its loop (none if
    the record has no readable configuration)."""
    if not verify:
        return []
    try:
        return verify_config_from_dict(technology_name, verify).init_pulses()
    except (TypeError, ValueError, DevmodelError):
        return []


# -- the device array --------------------------------------------------------------------------
class EmulatedChip(ClockedArray):
    """A device array whose pulses follow the recorded chip's empirical response (module docstring)."""

    info: ChipInfo

    def __init__(self, path: str | Path, seed: int = 0, model: PulseResponseModel | None = None) -> None:
        self.model = model or fit_response_model(path)
        if self.model.record is not None and Path(self.model.path).resolve() == Path(path).resolve():
            self.record, path = self.model.record, Path(path)  # loaded once, by the fit
        else:
            with SessionFile(path) as sf:
                path = sf.path
                self.record = load_record(sf, "the pulse-response emulator", programming=True)
        self.path = path
        self.info = self.record.chip_info("emulate")
        self.seed = int(seed)
        self._cycle_s, self._overhead_s, self._pulse_overhead_s = self.record.timing()
        self.clock = VirtualClock()
        self.rng = np.random.default_rng(seed)
        self.pulse_counter = PulseCounter(self.info.n_devices, self.info.limits.max_pulses_per_device)
        n, n_rec = self.info.n_devices, self.record.n_devices
        # unrecorded addresses borrow a recorded device's initial state; their device effects are new
        row_of = self.record.address_rows(n)
        borrowed = self.rng.integers(0, n_rec, n)
        self.template = np.where(row_of >= 0, row_of, borrowed)
        post = self.model.post_init_us
        fallback = np.nanmedian(post) if np.isfinite(post).any() else 0.0
        self.post_init = np.where(np.isfinite(post), post, fallback)[self.template]
        self.state_us = self.post_init.copy()
        stuck = self.model.unresponsive
        self.stuck = (stuck[self.template] if stuck is not None else np.zeros(n, bool))
        # each device's fixed quantile of its posterior effect, per pulse kind/width
        self.row_of = row_of
        self.xi = [self.rng.standard_normal(n) for _ in self.model.groups]

    # -- DeviceArray protocol ------------------------------------------------------------------
    def close(self) -> None:
        pass

    def pulse(self, addresses: np.ndarray, kind: PulseKind | np.ndarray, amplitude, width_ns,
              compliance_ua=None) -> np.ndarray:
        a = check_pulses(self.info, addresses, amplitude, width_ns, compliance_ua)
        m = a.size
        if m == 0:
            return np.empty(0)
        self.pulse_counter.charge(a)
        kind = np.broadcast_to(np.asarray(kind, dtype=np.int64), (m,))
        amp = np.abs(np.broadcast_to(np.asarray(amplitude, dtype=float), (m,)))
        width = np.broadcast_to(np.asarray(width_ns, dtype=float), (m,))
        comp = (np.full(m, np.nan) if compliance_ua is None
                else np.broadcast_to(np.asarray(compliance_ua, dtype=float), (m,)))
        t_end = pulse_end_times(self.clock.now_s() + self._overhead_s, width, self._pulse_overhead_s)
        self.clock.check_until(t_end[-1])  # refused before the clock or any device moves
        start = self.clock.advance(self._overhead_s)
        new = np.full(m, np.nan)
        init = np.zeros(m, bool)
        for k, a0, w0 in self.model.init_pulses:
            init |= (kind == k) & np.isclose(amp, a0, rtol=1e-9, atol=0) & np.isclose(width, w0, rtol=1e-9)
        new[init] = self.post_init[a[init]]
        todo = ~init
        for gi, g in enumerate(self.model.groups):
            sel = todo & (kind == g.kind) & np.isclose(width, g.width_ns, rtol=1e-6)
            if sel.any():
                aa = a[sel]
                eta = g.device_effect(self.row_of[aa], amp[sel], self.xi[gi][aa])
                drawn = g.draw(amp[sel], self.state_us[aa], comp[sel], eta, self.rng)
                new[sel] = np.where(self.stuck[aa], self.state_us[aa], drawn)
                todo &= ~sel
        if todo.any():
            j = int(np.flatnonzero(todo)[0])
            known = ", ".join(f"{PulseKind(g.kind).name} {g.width_ns:g} ns" for g in self.model.groups)
            raise ReplayError(
                f"{self.path} records no {PulseKind(int(kind[j])).name} pulses of {width[j]:g} ns, so "
                f"the emulator cannot predict them (recorded: {known})"
            )
        self.state_us[a] = new
        self.clock.advance(t_end[-1] - start)
        return t_end

    def read(self, addresses: np.ndarray, n_reads: int = 1, interval_s: float = 0.0) -> ReadBatch:
        a = as_addresses(addresses, self.info.n_devices)
        n = check_reads(self.info, n_reads, interval_s)
        m, cyc = a.size, self._cycle_s
        t = read_times(self.clock.now_s() + self._overhead_s, m, n, cyc, interval_s)
        self.clock.check_until(t[-1, -1] + cyc if m else 0.0)  # before the clock moves
        start = self.clock.advance(self._overhead_s)
        state = self.state_us[a]
        z = self.rng.standard_normal((m, n))
        d = min(self.model.discard_reads, n - 2)
        if n >= 2:
            # centred over the averaged reads: a verify like the recorded one sees the modelled reading
            z[:, max(d, 0):] -= z[:, max(d, 0):].mean(axis=1, keepdims=True)
        g = state[:, None] + self.model.read_sigma(state)[:, None] * z
        self.clock.advance((t[-1, -1] + cyc - start) if m else 0.0)
        return ReadBatch(g_us=g, t_s=t)


def open_emulator(path: str, opts: dict[str, str], seed: int | None) -> EmulatedChip:
    """``emulate:<file>?seed=N`` (chip URL options)."""
    raw = opts.pop("seed", None)
    if opts:
        raise ChipURLError(f"unknown emulate option(s) {', '.join(sorted(opts))}; known: seed")
    s = 0 if seed is None else seed
    if raw is not None:
        try:
            s = int(raw)
        except ValueError:
            raise ChipURLError(f"emulate option seed={raw!r} is not an integer") from None
        if s < 0:
            raise ChipURLError(f"emulate option seed={s} must be ≥ 0")
    return EmulatedChip(path, s)


def open_emulator_url(url: str, target: str, opts: dict[str, str], seed: int | None,
                      station: str | None = None) -> EmulatedChip:
    """The ``emulate:`` scheme of :mod:`devmodel.chips`."""
    if not target:
        raise ChipURLError(f"chip URL {url!r} names no session file; try emulate:session.h5")
    return open_emulator(target, opts, seed)
