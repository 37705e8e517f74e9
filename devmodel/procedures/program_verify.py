"""Program-and-verify: drive many devices to target conductances at once, with per-device state.

All addressed devices step together (converged mask, amplitude, iteration and pulse counts); every
loop is bounded by iterations, pulses per device, chip time and wall time, and each device records
why it stopped. The pulse-level trace (verify reading before each pulse, the pulse, the reading after)
is kept for the session file and the pulse-response emulator.

Shared here: the bookkeeping (:class:`VerifyRun`), the settings every loop has (:class:`VerifyConfig`,
declared constraints), and the NeuRRAM-style alternating SET/RESET write-verify with stepped
voltages (:class:`StepVerify`), which voltage-mode technologies use with their own defaults. Each
technology's ``verify`` part names its configuration class (``CONFIG``) and loop (``RUN``);
:func:`program_verify` picks them by the chip's technology.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import ClassVar, Protocol

import numpy as np

from devmodel.array import CountsPulses, DeviceArray, PulseKind, as_addresses, check_pulses
from devmodel.errors import ConfigError, DevmodelError, LimitError
from devmodel.store.schema import StopReason
from devmodel.technologies import technology
from devmodel.validation import Constrained, Interval

_POS = Interval(0.0, None, "neither")  # a finite number > 0
_NONNEG = Interval(0.0, None)


@dataclass(frozen=True)
class VerifyConfig(Constrained):
    """What keeps every verify loop finite and how it verifies: tolerance, reads per verify,
    iterations, pulses per device, chip time and host (wall) time, all bounded; a delay between a
    pulse and its verify reads (lab practice: a device is not verified within milliseconds of its
    pulse, when it relaxes fastest; 0 verifies at once)."""

    tolerance_us: float = 0.25
    n_verify_reads: int = 5
    max_iterations: int = 55
    verify_delay_s: float = 0.0
    max_pulses_per_device: int = 100
    max_duration_s: float = 6 * 3600.0  # chip time
    max_wall_s: float = 24 * 3600.0  # host time of one run (a virtual clock can stand still)

    WHERE: ClassVar[str] = "program-and-verify"
    CONSTRAINTS: ClassVar[dict] = {
        "tolerance_us": _POS, "n_verify_reads": Interval(1, 10_000, integer=True),
        "max_iterations": Interval(1, 100_000, integer=True), "verify_delay_s": _NONNEG,
        "max_pulses_per_device": Interval(1, None, integer=True), "max_duration_s": _POS,
        "max_wall_s": _POS,
    }

    def validate(self) -> None:
        """Refuse settings outside their declared constraints (one sentence naming the field)."""
        self.check()

    def tolerance_for(self, targets_us: np.ndarray) -> np.ndarray:
        """The accepted |G − G_T| of each device (µS)."""
        return np.full(np.shape(targets_us), float(self.tolerance_us))

    def planned_pulses(self) -> list[tuple[str, float, float, float | None]]:
        """The largest pulse of every kind the loop can send: (field, amplitude, width, compliance)."""
        raise NotImplementedError

    def init_pulses(self) -> list[tuple[int, float, float]]:
        """The pulses every device gets before its loop: (kind, amplitude, width_ns)."""
        raise NotImplementedError


@dataclass(frozen=True)
class StepVerifyConfig(VerifyConfig):
    """Incremental write-verify after the NeuRRAM chip (docs/physics.md, "ReRAM").

    Every device first gets one ``init_reset_v`` RESET (to HRS, so its programming time is defined);
    a device with target 0 (the unused device of a differential pair) then one full RESET at
    ``reset_max_v`` and is not verified (stop reason reset_only).
    Then alternating loops: while too conductive, RESET pulses whose magnitude starts at
    ``reset_start_v`` and grows by ``step_v`` per consecutive RESET up to ``reset_max_v``; while too
    resistive, SET pulses likewise (compliance ``compliance_ua_per_us``·G_T). Verify on the mean of
    ``n_verify_reads`` reads after discarding the first ``discard_reads``.
    """

    tolerance_us: float = 0.4
    max_iterations: int = 100
    init_reset_v: float = 1.5
    discard_reads: int = 1
    set_start_v: float = 0.8
    set_max_v: float = 2.0
    reset_start_v: float = 0.7
    reset_max_v: float = 2.5
    step_v: float = 0.1
    pulse_width_ns: float = 100.0
    compliance_ua_per_us: float = 0.45
    compliance_min_ua: float = 1.0
    compliance_max_ua: float = 100.0

    CONSTRAINTS: ClassVar[dict] = VerifyConfig.CONSTRAINTS | {
        "init_reset_v": _POS, "discard_reads": Interval(0, None, integer=True),
        "set_start_v": _POS, "set_max_v": _POS, "reset_start_v": _POS, "reset_max_v": _POS,
        "step_v": _NONNEG, "pulse_width_ns": _POS, "compliance_ua_per_us": _NONNEG,
        "compliance_min_ua": _POS, "compliance_max_ua": _POS,
    }

    def check_more(self) -> None:
        if self.discard_reads >= self.n_verify_reads:
            raise ConfigError(f"{self.WHERE}: discard_reads ({self.discard_reads}) must be smaller "
                              f"than n_verify_reads ({self.n_verify_reads})")
        if not (self.set_start_v <= self.set_max_v and self.reset_start_v <= self.reset_max_v):
            raise ConfigError(f"{self.WHERE}: voltages must satisfy start ≤ max (SET and RESET)")
        if self.compliance_min_ua > self.compliance_max_ua:
            raise ConfigError(f"{self.WHERE}: compliance_min_ua must not exceed compliance_max_ua")

    def planned_pulses(self) -> list[tuple[str, float, float, float | None]]:
        return [("init_reset_v", self.init_reset_v, self.pulse_width_ns, None),
                ("set_max_v", self.set_max_v, self.pulse_width_ns, self.compliance_max_ua),
                ("reset_max_v", self.reset_max_v, self.pulse_width_ns, None)]

    def init_pulses(self) -> list[tuple[int, float, float]]:
        return [(int(PulseKind.RESET), float(self.init_reset_v), float(self.pulse_width_ns))]


def check_limits(cfg: VerifyConfig, info, addresses: np.ndarray) -> None:
    """Refuse, before anything is sent, a configuration whose pulses could exceed the chip's limits."""
    if len(addresses):
        as_addresses(np.array([np.min(addresses), np.max(addresses)]), info.n_devices)
    for name, amp, width, comp in cfg.planned_pulses():
        try:
            check_pulses(info, np.zeros(1, np.int64), amp, width, comp)
        except LimitError as e:
            raise LimitError(f"program-and-verify {name}: {e}; nothing was sent") from None


@dataclass
class PulseTrace:
    """One row per verify-driven pulse: the reading before, the pulse, and the reading after."""

    row: np.ndarray  # index into the programmed address list
    iteration: np.ndarray
    g_before_us: np.ndarray
    kind: np.ndarray
    amplitude: np.ndarray
    width_ns: np.ndarray
    compliance_ua: np.ndarray
    t_s: np.ndarray
    g_after_us: np.ndarray

    @classmethod
    def empty(cls) -> PulseTrace:
        f, i = np.empty(0), np.empty(0, np.int32)
        return cls(i, i, f, np.empty(0, np.int8), f, f, f, f, f)

    def __len__(self) -> int:
        return self.row.size


@dataclass
class VerifyResult:
    """Per-device outcome of program-and-verify (arrays aligned with ``addresses``)."""

    addresses: np.ndarray
    target_us: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    pulses: np.ndarray
    g_verify_us: np.ndarray
    t_last_pulse_s: np.ndarray
    stop_reason: np.ndarray
    trace: PulseTrace = field(default_factory=PulseTrace.empty)
    config: dict = field(default_factory=dict)

    def converged_fraction(self, exclude: np.ndarray | None = None) -> float:
        """Fraction converged among devices with a non-zero target (and not in ``exclude``)."""
        sel = self.target_us > 0
        if exclude is not None:
            sel &= ~exclude
        return float(self.converged[sel].mean()) if sel.any() else float("nan")


Progress = Callable[[int, int, int], None]  # (iteration, active devices, converged so far)


class Host(Protocol):
    """What the loop hands its idle time and finished devices to (the session's scheduler)."""

    def finished(self, rows: np.ndarray, t_last_pulse_s: np.ndarray) -> None:
        """Devices ``rows`` will not be pulsed again; their last pulse ended at ``t_last_pulse_s``."""

    def idle_until(self, t_s: float) -> None:
        """The loop has nothing to do on the chip until ``t_s``."""


class _Waiter:
    """Default host: waiting is just waiting."""

    def __init__(self, chip: DeviceArray) -> None:
        self.chip = chip

    def finished(self, rows, t_last_pulse_s) -> None:
        pass

    def idle_until(self, t_s: float) -> None:
        now = self.chip.now_s()
        if t_s > now:
            self.chip.wait(t_s - now)


class _Loop:
    """Per-device bookkeeping shared by the PCM and ReRAM loops."""

    chunk = 4096  # devices per read batch of the verify reads

    def __init__(self, chip: DeviceArray, addresses, targets, host: Host | None) -> None:
        self.chip = chip
        self.host = host or _Waiter(chip)
        self.addr = np.asarray(addresses, dtype=np.int64)
        self.target = np.asarray(targets, dtype=float)
        n = self.addr.size
        if self.target.shape != (n,):
            raise DevmodelError("one target conductance is needed per address")
        g_max = chip.info.g_max_us
        if np.any(~np.isfinite(self.target)) or np.any(self.target < 0) or np.any(
            self.target > g_max
        ):
            raise DevmodelError(f"targets must lie in [0, g_max = {g_max:g} µS]")
        self.converged = np.zeros(n, bool)
        self.iterations = np.zeros(n, np.int32)
        self.pulses = np.zeros(n, np.int32)
        self.g_verify = np.full(n, np.nan)
        self.t_last = np.full(n, np.nan)
        self.stop = np.full(n, -1, np.int8)
        self._trace: list[tuple] = []

    def read(self, rows: np.ndarray, n_reads: int) -> np.ndarray:
        """Verify reads in chunks, letting the host serve due schedule reads in between."""
        out = np.empty((rows.size, n_reads))
        for i in range(0, rows.size, self.chunk):
            self.host.idle_until(self.chip.now_s())
            out[i:i + self.chunk] = self.chip.read(self.addr[rows[i:i + self.chunk]], n_reads).g_us
        return out

    def pulse(self, rows, kind: PulseKind, amp, width, compliance=None, trace_g=None, iteration=0):
        """One pulse of one kind per row (in chunks, serving the host in between)."""
        m = rows.size
        if m == 0:  # an empty trace entry made finish() index past the end (found by hypothesis)
            return
        amp_a = np.broadcast_to(np.asarray(amp, dtype=float), m)
        comp_a = None if compliance is None else np.broadcast_to(compliance, m)
        t_end = np.empty(m)
        for i in range(0, m, self.chunk):
            sl = slice(i, i + self.chunk)
            self.host.idle_until(self.chip.now_s())
            t_end[sl] = self.chip.pulse(self.addr[rows[sl]], kind, amp_a[sl], width,
                                        None if comp_a is None else comp_a[sl])
        self.pulses[rows] += 1
        self.t_last[rows] = t_end
        if trace_g is not None:
            self._trace.append((
                rows.astype(np.int32), np.full(m, iteration, np.int32), trace_g,
                np.full(m, int(kind), np.int8), amp_a.copy(), np.full(m, float(width)),
                np.full(m, np.nan) if comp_a is None else comp_a.astype(float), t_end,
            ))

    def done(self, rows: np.ndarray, reason: StopReason | None = None) -> None:
        if reason is not None:
            self.stop[rows] = reason
        if rows.size:
            self.host.finished(rows, self.t_last[rows])

    def settle(self, delay_s: float) -> None:
        if delay_s > 0:
            self.host.idle_until(self.chip.now_s() + delay_s)

    _STATE = ("converged", "iterations", "pulses", "g_verify", "t_last", "stop")
    _TRACE = ("row", "iteration", "g_before_us", "kind", "amplitude", "width_ns", "compliance_ua", "t_s")

    def state_dict(self) -> dict[str, np.ndarray]:
        """Per-device bookkeeping and the trace so far (a checkpoint of the loop)."""
        out = {name: getattr(self, name).copy() for name in self._STATE}
        if self._trace:
            cols = [np.concatenate(c) for c in zip(*self._trace, strict=True)]
            self._trace = [tuple(cols)]  # one block from now on: later checkpoints concatenate less
            out.update({f"trace/{k}": c for k, c in zip(self._TRACE, cols, strict=True)})
        return out

    def load_state(self, d: dict[str, np.ndarray]) -> None:
        for name in self._STATE:
            getattr(self, name)[:] = d[name]
        self._trace = [tuple(d[f"trace/{k}"] for k in self._TRACE)] if "trace/row" in d else []

    def finish(self, record_trace: bool, config) -> VerifyResult:
        trace = PulseTrace.empty()
        if record_trace and self._trace:
            cols = [np.concatenate(c) for c in zip(*self._trace, strict=True)]
            row, it = cols[0], cols[1]
            order = np.lexsort((it, row))
            cols = [c[order] for c in cols]
            row = cols[0]
            # the reading after a pulse is the next verify reading of that device (or its final one)
            after = np.empty(row.size)
            last = np.r_[row[1:] != row[:-1], True]
            after[~last] = cols[2][1:][~last[:-1]]
            after[last] = self.g_verify[row[last]]
            trace = PulseTrace(*cols, g_after_us=after)
        return VerifyResult(
            self.addr, self.target, self.converged, self.iterations, self.pulses, self.g_verify,
            self.t_last, self.stop, trace, asdict(config),
        )


class VerifyRun:
    """Program-and-verify as an explicit state machine, resumable at the top of every iteration.

    ``run(checkpoint)`` calls ``checkpoint()`` there (a session commits its rows and this object's
    :meth:`state_dict` at those points); :meth:`load_state` continues from such a state, making the
    same chip calls the uninterrupted loop would have made (the loop is deterministic given the chip's
    answers).
    """

    config_cls: type[VerifyConfig] = VerifyConfig

    def __init__(self, chip: DeviceArray, addresses: np.ndarray, targets_us: np.ndarray,
                 config=None, progress: Progress | None = None, record_trace: bool = True,
                 host: Host | None = None) -> None:
        self.chip = chip
        self.cfg = cfg = config or self.config_cls()
        cfg.validate()
        self.lp = _Loop(chip, addresses, targets_us, host)
        check_limits(cfg, chip.info, self.lp.addr)
        self.tolerance = cfg.tolerance_for(self.lp.target)
        # pulses each device may still take: the loop's own bound, and what is left of a lifetime
        # limit the chip declares (as far as this host has counted them)
        self.budget = np.full(self.lp.addr.size, cfg.max_pulses_per_device, np.int64)
        life = chip.info.limits.max_pulses_per_device
        if life is not None:
            count = chip.pulse_counter.count if isinstance(chip, CountsPulses) else None
            used = count[self.lp.addr] if count is not None else 0
            self.budget = np.minimum(self.budget, life - used)
        self.progress = progress
        self.record_trace = record_trace
        self.stage = 0  # 0 initialise, 1 iterate, 2 done
        self.it = 1
        self.t_start = np.nan
        self.wall_start = np.nan  # set by run()
        self.act = np.empty(0, np.int64)

    def run(self, checkpoint: Callable[[], None] | None = None) -> VerifyResult:
        self.wall_start = time.monotonic()  # a resumed run gets its own wall budget
        if self.stage == 0:
            self.t_start = self.chip.now_s()
            self._initialise()
            self.stage = 1
        while self.stage == 1:
            if checkpoint is not None:
                checkpoint()
            if not self._iteration():
                self.stage = 2
        return self.lp.finish(self.record_trace, self.cfg)

    def state_dict(self) -> dict[str, np.ndarray]:
        out = {"stage": np.array(self.stage), "it": np.array(self.it), "t_start": np.array(self.t_start),
               "act": self.act.copy(), "budget": self.budget.copy()}
        out.update({f"loop/{k}": v for k, v in self.lp.state_dict().items()})
        out.update(self._extra_state())
        return out

    def load_state(self, d: dict[str, np.ndarray]) -> None:
        self.stage, self.it = int(d["stage"]), int(d["it"])
        self.t_start = float(d["t_start"])
        self.act = np.asarray(d["act"], dtype=np.int64)
        self.budget = np.asarray(d["budget"], dtype=np.int64)
        self.lp.load_state({k[5:]: v for k, v in d.items() if k.startswith("loop/")})
        self._load_extra(d)

    def _extra_state(self) -> dict[str, np.ndarray]:
        return {}

    def _load_extra(self, d: dict[str, np.ndarray]) -> None:
        pass

    def _initialise(self) -> None:
        raise NotImplementedError

    def _iteration(self) -> bool:
        raise NotImplementedError

    def _verify_reads(self, rows: np.ndarray) -> np.ndarray:
        """The verify reads of ``rows`` (devices × reads) that a verify decision uses."""
        return self.lp.read(rows, self.cfg.n_verify_reads)

    def _mean_read(self, rows: np.ndarray) -> np.ndarray:
        """The verify reading of ``rows``: the mean of the configured verify reads."""
        return self._verify_reads(rows).mean(axis=1)

    def _reset_only(self, rows: np.ndarray) -> None:
        """Targets of 0 (the unused device of a differential pair), RESET already: not iterated on,
        but read once like any verify (after the verify delay), and counted converged only if that
        reading lies within the tolerance of 0 — a stuck device or a high HRS floor shows."""
        lp = self.lp
        if rows.size == 0:
            return
        lp.settle(self.cfg.verify_delay_s)
        g = self._mean_read(rows)
        lp.g_verify[rows] = g
        lp.converged[rows] = np.abs(g) <= self.tolerance[rows]
        lp.done(rows, StopReason.RESET_ONLY)

    def _verify(self, reads: np.ndarray):
        """Record the verify reading of the active devices; finish those in tolerance."""
        lp, cfg, act, it = self.lp, self.cfg, self.act, self.it
        g = reads.mean(axis=1)
        lp.g_verify[act] = g
        lp.iterations[act] = it
        err = g - lp.target[act]
        ok = np.abs(err) <= self.tolerance[act]
        lp.converged[act[ok]] = True
        lp.done(act[ok], StopReason.CONVERGED)
        act, err, g = act[~ok], err[~ok], g[~ok]
        if self.progress:
            self.progress(it, act.size, int(lp.converged.sum()))
        if it == cfg.max_iterations:
            lp.done(act, StopReason.MAX_ITERATIONS)
            self.act = act[:0]
            return None
        return _enforce_bounds(lp, act, err, g, self.chip.now_s() - self.t_start,
                               time.monotonic() - self.wall_start, cfg, self.budget)


class StepVerify(VerifyRun):
    """NeuRRAM-style incremental write-verify (see StepVerifyConfig), resumable."""

    config_cls = StepVerifyConfig

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        n, cfg = self.lp.addr.size, self.cfg
        self.volts = np.zeros(n)
        self.last_kind = np.full(n, -1, np.int8)
        self.compliance = np.clip(cfg.compliance_ua_per_us * self.lp.target, cfg.compliance_min_ua,
                                  cfg.compliance_max_ua)

    def _verify_reads(self, rows: np.ndarray) -> np.ndarray:
        return self.lp.read(rows, self.cfg.n_verify_reads)[:, self.cfg.discard_reads:]

    def _extra_state(self) -> dict[str, np.ndarray]:
        return {"volts": self.volts.copy(), "last_kind": self.last_kind.copy()}

    def _load_extra(self, d: dict[str, np.ndarray]) -> None:
        self.volts[:] = d["volts"]
        self.last_kind[:] = d["last_kind"]

    def _initialise(self) -> None:
        lp = self.lp
        rows = np.arange(lp.addr.size)
        no_room = self.budget < 1
        if no_room.any():
            lp.done(rows[no_room], StopReason.PULSE_LIMIT)
        if lp.addr.size:
            lp.pulse(rows[~no_room], PulseKind.RESET, self.cfg.init_reset_v, self.cfg.pulse_width_ns)
        # a target of 0 (the unused device of a differential pair) is not verified, as in the PCM
        # loop (verifying towards 0 would pulse it against its HRS floor): it gets the loop's full
        # RESET, reset_max_v, which takes it to HRS (the initial RESET alone leaves several µS)
        zero = (lp.target == 0) & ~no_room
        full = zero & (self.budget >= 2)
        lp.pulse(rows[full], PulseKind.RESET, self.cfg.reset_max_v, self.cfg.pulse_width_ns)
        lp.done(rows[zero & ~full], StopReason.PULSE_LIMIT)
        self._reset_only(rows[full])
        self.act = rows[~zero & ~no_room]

    def _iteration(self) -> bool:
        lp, cfg = self.lp, self.cfg
        if self.act.size == 0 or self.it > cfg.max_iterations:
            return False
        lp.settle(cfg.verify_delay_s)
        step = self._verify(self._verify_reads(self.act))
        if step is None:
            return False
        act, err, g = step
        kind = np.where(err > 0, PulseKind.RESET, PulseKind.SET).astype(np.int8)
        start = np.where(kind == PulseKind.RESET, cfg.reset_start_v, cfg.set_start_v)
        cap = np.where(kind == PulseKind.RESET, cfg.reset_max_v, cfg.set_max_v)
        same = self.last_kind[act] == kind
        v = np.where(same, np.minimum(self.volts[act] + cfg.step_v, cap), start)
        self.volts[act] = v
        self.last_kind[act] = kind
        for k in (PulseKind.SET, PulseKind.RESET):
            sel = kind == k
            if sel.any():
                comp = self.compliance[act[sel]] if k == PulseKind.SET else None
                lp.pulse(act[sel], k, v[sel], cfg.pulse_width_ns, comp, trace_g=g[sel], iteration=self.it)
        self.act = act
        self.it += 1
        return True


def _enforce_bounds(lp: _Loop, act, err, g, elapsed_s: float, wall_s: float, cfg,
                    budget: np.ndarray):
    """Stop devices out of pulse budget, chip time or wall time; return the rest."""
    if elapsed_s > cfg.max_duration_s or wall_s > cfg.max_wall_s:
        lp.done(act, StopReason.TIME_LIMIT)
        return act[:0], err[:0], g[:0]
    spent = lp.pulses[act] >= budget[act]
    lp.done(act[spent], StopReason.PULSE_LIMIT)
    return act[~spent], err[~spent], g[~spent]


def verify_parts(technology_name: str):
    """(CONFIG, RUN) of a technology's program-and-verify (its ``verify`` part)."""
    part = technology(technology_name).part("verify")
    return part.CONFIG, part.RUN


def verify_config_from_dict(technology_name: str, d: dict) -> VerifyConfig:
    """The inverse of ``asdict`` of a verify configuration as recorded (JSON lists back to tuples,
    unknown fields ignored)."""
    cls, _ = verify_parts(technology_name)
    names = {f.name for f in fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names})


def program_verify(chip: DeviceArray, addresses: np.ndarray, targets_us: np.ndarray,
                   config: VerifyConfig | None = None, progress: Progress | None = None,
                   record_trace: bool = True, host: Host | None = None) -> VerifyResult:
    """Program ``addresses`` to ``targets_us`` with the program-and-verify of the chip's technology
    (its default configuration unless ``config``)."""
    cls, run = verify_parts(chip.info.technology)
    return run(chip, addresses, targets_us, config or cls(), progress, record_trace, host).run()
