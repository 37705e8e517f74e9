"""``ScpiChip``: the device-array protocol over the SCPI test-chip protocol (docs/chip-protocol.md).

Each device-array call is one program message and one response: the address selection, the action
and ``SYST:ERR?`` travel together (``CHIP:ADDR #…;:CHIP:READ? 1,0.0;:SYST:ERR?``), so a batch
costs one round trip and its error check comes back with its data. Addresses and per-address pulse
parameters go out as little-endian definite-length blocks; conductances and per-read chip times
come back the same way. Every limit (the chip's declared ones, narrowed by the station file, and
the station's address range) is checked before a byte is written.

A reply that breaks the framing, a timeout or a closed connection leaves the stream out of step:
the driver then refuses further commands until ``reconnect()``. With a :class:`RetryPolicy` the driver
does that itself: it backs off, reconnects and tries again, up to a budget of attempts per operation.
Reads, clock queries and the ground truth are safe to repeat; a pulse batch or a clock advance is not,
so before sending one the driver notes the chip clock, and after a failure it asks the clock again: a
virtual clock that has not moved means the command never ran (it is sent again), one that moved means
it ran and only its answer was lost (docs/reliability.md, docs/chip-protocol.md).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from devmodel.array import (
    ChipInfo,
    Limits,
    PulseCounter,
    PulseKind,
    ReadBatch,
    as_addresses,
    check_pulses,
    check_reads,
    check_wait,
    estimate_pulse_ends,
)
from devmodel.errors import ChipURLError, DevmodelError, LimitError
from devmodel.technologies import names as technology_names
from instruments.base import (
    ChipDiscontinuityError,
    Identity,
    Instrument,
    InstrumentConnectionError,
    InstrumentError,
)
from instruments.faults import FaultSpec, FaultyTransport
from instruments.scpi import (
    ProtocolError,
    array_block,
    block_to_array,
    parse_block_header,
    parse_block_length,
    parse_error,
    split_units,
)
from instruments.station import (
    DEFAULT_STATION,
    ChipLimits,
    InstrumentSpec,
    Station,
    load_station,
    outside_range,
)
from instruments.transport import Transport, TransportError, VisaTransport

PROTOCOL_NAME, PROTOCOL_VERSION = "DEVMODEL-CHIP", 1
ERR = b";:SYST:ERR?"

#: Geometry, capabilities and limits, asked in one message at connect: (query, field name).
_INFO_QUERIES = (
    ("SYST:PROT?", "protocol"), ("CHIP:TECH?", "technology"), ("CHIP:DEV?", "n_devices"),
    ("CHIP:GMAX?", "g_max_us"), ("CHIP:UNIT?", "pulse_unit"), ("CHIP:RCYC?", "read_cycle_s"),
    ("CHIP:CLOC:MODE?", "clock"), ("CHIP:LIM:AMPL?", "max_amplitude"),
    ("CHIP:LIM:WIDT?", "max_width_ns"), ("CHIP:LIM:COMP?", "max_compliance_ua"),
    ("CHIP:LIM:PULS?", "max_pulses_per_device"), ("CHIP:LIM:READ?", "max_reads_per_request"),
    ("CHIP:LIM:ADDR?", "max_addresses_per_request"), ("CHIP:LIM:VAL?", "max_values_per_request"),
    ("CHIP:BOOT?", "boot_id"),
)


def _slice(x, m: int, i: int, n: int):
    """Rows ``i … i+n`` of a per-address parameter; a scalar (or None) applies to every part."""
    arr = np.asarray(x) if x is not None else None
    return arr[i:i + n] if arr is not None and arr.ndim and arr.size == m else x


def _boot_id(label: str, text: str) -> str:
    """The chip's boot id: printable, at most 64 characters (docs/chip-protocol.md)."""
    t = text.strip().strip('"')
    if not t or len(t) > 64 or not t.isprintable():
        raise InstrumentError(f"{label} answered CHIP:BOOT? with {text[:40]!r}, not a boot id")
    return t


@dataclass(frozen=True)
class RetryPolicy:
    """How ScpiChip recovers from transport faults: up to ``attempts`` further tries per operation, each
    after a reconnect and a back-off of ``backoff_s``·2^k (at most ``max_backoff_s``, jittered by a
    generator seeded with ``seed``). ``attempts=0`` turns recovery off (the first fault is final)."""

    attempts: int = 5
    backoff_s: float = 0.02
    max_backoff_s: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.attempts, int) and 0 <= self.attempts <= 1000):
            raise DevmodelError(f"retry attempts must be an integer in 0..1000, not {self.attempts!r}")
        if not (np.isfinite(self.backoff_s) and np.isfinite(self.max_backoff_s)
                and 0 <= self.backoff_s <= self.max_backoff_s <= 600):
            raise DevmodelError("retry back-off must satisfy 0 ≤ backoff_s ≤ max_backoff_s ≤ 600 s")

    @classmethod
    def parse(cls, value, where: str = "retries") -> RetryPolicy | None:
        """An attempt count (``5``) or a station file mapping (``{attempts: 5, backoff_s: 0.05}``)."""
        if value is None:
            return None
        if isinstance(value, RetryPolicy):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {"attempts", "backoff_s", "max_backoff_s", "seed"}
            if unknown:
                raise DevmodelError(f"{where}: unknown setting {sorted(unknown)[0]!r}")
            return cls(**value)
        try:
            n = int(str(value))
        except ValueError:
            raise DevmodelError(f"{where}={value!r} is not a number of attempts") from None
        return cls(attempts=n)


NO_RETRY = RetryPolicy(attempts=0)


class ScpiChip(Instrument):
    """A test chip behind a controller that speaks the devmodel chip protocol; a DeviceArray.

    ``station_limits`` narrows the chip's declared limits (never widens them) and may restrict the
    addresses that can be touched. ``models`` lists the ``*IDN?`` models accepted (regular
    expressions); by default the simulated chips of ``devmodel serve-chip``.
    """

    models: tuple[str, ...] = ()  # default: the simulated chips, SIM-<TECHNOLOGY>

    def __init__(self, transport: Transport, name: str = "chip", *,
                 station_limits: ChipLimits | None = None, models: tuple[str, ...] | None = None,
                 reset: bool = True, real_bits: int = 64, retry: RetryPolicy | None = None,
                 connect: bool = True) -> None:
        if real_bits not in (32, 64):
            raise DevmodelError(f"chip conductance format must be REAL,32 or REAL,64, not {real_bits}")
        self.station_limits = station_limits or ChipLimits()
        self.real_bytes = real_bits // 8
        self._broken: str | None = None
        self.info: ChipInfo
        self.virtual_clock = True
        self.last_clock_s = float("-inf")  # the latest chip time seen (continuity across reconnects)
        self.retry = retry or NO_RETRY
        self._retry_rng = np.random.default_rng(self.retry.seed)
        self.n_retries = 0  # operations tried again after a fault
        self.n_reconnects = 0
        self.n_recovered = 0  # non-idempotent commands found (by the clock) to have run after all
        models = models or self.models or tuple(f"SIM-{n.upper()}" for n in technology_names())
        super().__init__(transport, name, models=models, reset=reset, connect=False)
        if connect:
            self.connect_with_retry()

    def fault_record(self) -> dict[str, int | dict[str, int]]:
        """Faults met and recovered so far (devmodel.array.ReportsFaults)."""
        return {"instrument_retries": self.n_retries, "instrument_reconnects": self.n_reconnects,
                "instrument_recovered": self.n_recovered,
                "faults_injected": dict(self.transport.injected)
                if isinstance(self.transport, FaultyTransport) else {}}

    # -- connection -----------------------------------------------------------------------------
    def connect(self) -> None:
        self._broken = None
        super().connect()

    def reset(self) -> None:
        """``*CLS`` and ``*RST`` (formats and selection only: programmed states are not touched)."""
        self._ascii(b"*CLS;*RST", "*RST", 0)

    def on_connect(self) -> None:
        self._ascii(f"FORM:BORD SWAP;:FORM:DATA REAL,{self.real_bytes * 8}".encode(), "FORMat", 0)
        msg = ";:".join(q for q, _ in _INFO_QUERIES).encode()
        values = dict(zip([f for _, f in _INFO_QUERIES], self._ascii(msg, "CHIP:LIMit?", len(_INFO_QUERIES)),
                          strict=True))
        info = self._chip_info(values)
        self.addresses_per_request, self.values_per_request = (
            self._positive(values[k], k) for k in ("max_addresses_per_request", "max_values_per_request"))
        previous = getattr(self, "info", None)
        if previous is not None and (previous.technology, previous.n_devices, previous.identity) != (
                info.technology, info.n_devices, info.identity):
            # a garbled *IDN? answer looks the same: asked again (within the retry budget) it clears up
            raise InstrumentError(f"{self.label} is another chip after reconnecting ({info.identity[:60]}, "
                                  f"{info.n_devices} devices; was {previous.identity}, "
                                  f"{previous.n_devices})")
        if previous is not None:
            self._check_continuity(previous.boot_id, info.boot_id)
        self.info = info
        self.virtual_clock = self.info.simulated
        if previous is None:  # a reconnect keeps the pulses already counted against the limits
            self.pulse_counter = PulseCounter(self.info.n_devices, self.info.limits.max_pulses_per_device)
        if self.virtual_clock:
            self.ground_truth = self._ground_truth  # only simulated chips have one (run_sweep looks)
        else:
            self.__dict__.pop("ground_truth", None)

    def _check_continuity(self, boot_before: str, boot_now: str) -> None:
        """After a reconnect: the same boot, and a clock that did not go back (docs/chip-protocol.md,
        "Identity and continuity")."""
        if boot_before and boot_now != boot_before:
            raise ChipDiscontinuityError(
                f"{self.label} was restarted while the session ran (boot id {boot_before} → "
                f"{boot_now[:32]}): its programmed states and clock are gone, so the session stops "
                "here; start a new session on it")
        t_now = self._clock_raw()
        if np.isfinite(self.last_clock_s) and t_now < self.last_clock_s:
            raise ChipDiscontinuityError(
                f"{self.label}'s clock went back from {self.last_clock_s:.6g} s to {t_now:.6g} s across "
                "a reconnect: it does not continue the record, so the session stops here")

    # -- recovery -------------------------------------------------------------------------------
    def raise_queue(self, first: tuple[int, str], context: str) -> None:
        """The chip reported an error: final, whatever the retry policy (the chip refused)."""
        try:
            super().raise_queue(first, context)
        except InstrumentError as e:
            e.reported = True
            raise

    def connect_with_retry(self) -> None:
        """Connect, retrying transport faults within the retry policy."""
        self._retrying("*IDN?", self.connect, reconnect=False)

    def _backoff(self, attempt: int) -> None:
        r = self.retry
        jitter = 0.5 + self._retry_rng.random()  # spread reconnects so clients do not retry in lockstep
        time.sleep(min(r.max_backoff_s, r.backoff_s * 2.0 ** (attempt - 1)) * jitter)

    def _retrying(self, command: str, once: Callable[[], object], *, t_before: float | None = None,
                  applied: Callable[[float], object] | None = None, reconnect: bool = True):
        """``once()``, tried again after faults within the retry policy.

        With ``t_before`` (the chip clock before a command that must not run twice) a retry first asks
        the clock: if it moved, the command ran and ``applied(t_now)`` stands in for its lost answer.
        """
        attempt = 0
        while True:
            try:
                if attempt:
                    self._backoff(attempt)
                    if reconnect:
                        self.n_reconnects += 1
                        self.reconnect()
                    else:
                        self.transport.reopen()
                    if t_before is not None:
                        t_now = self._clock_once()
                        if t_now != t_before:
                            self.n_recovered += 1
                            return applied(t_now)
                return once()
            except InstrumentError as e:
                if getattr(e, "reported", False) or self.retry.attempts == 0:
                    raise
                if attempt >= self.retry.attempts:
                    detail = str(e).replace(self.label, "").strip(" :;")
                    raise type(e)(f"{self.label} gave up on {command} after {attempt + 1} attempts "
                                  f"(the last: {detail})") from None
                attempt += 1
                self.n_retries += 1
            except TransportError as e:  # reopen() itself failed
                if self.retry.attempts == 0 or attempt >= self.retry.attempts:
                    raise self._io_error(e, command) from None
                attempt += 1
                self.n_retries += 1

    def _positive(self, text: str, what: str) -> int:
        """CHIP:LIMit:ADDResses? / VALues?: addresses, and addresses × reads, one request may
        carry; larger batches are split (docs/chip-protocol.md, "Sharing the chip")."""
        try:
            v = int(text)
        except ValueError:
            v = 0
        if v < 1:
            raise InstrumentError(f"{self.label} gave {what} = {text[:40]!r}, not a positive integer")
        return v

    def _chip_info(self, v: dict[str, str]) -> ChipInfo:
        def num(key: str, cast=float, optional: bool = False):
            text = v[key]
            if optional and text.upper() == "NONE":
                return None
            try:
                x = cast(text)
            except ValueError:
                raise InstrumentError(f"{self.label} gave {key} = {text[:40]!r}, not a number") from None
            if not np.isfinite(x) or x <= 0:
                raise InstrumentError(f"{self.label} gave {key} = {text[:40]!r}, not a positive number")
            return x

        proto = split_units(v["protocol"], ",")
        if proto[0].strip().upper() != PROTOCOL_NAME or proto[-1].strip() != str(PROTOCOL_VERSION):
            raise InstrumentError(f"{self.label} speaks protocol {v['protocol'][:40]!r}; this driver "
                                  f"speaks {PROTOCOL_NAME},{PROTOCOL_VERSION}")
        tech = v["technology"].strip().lower()
        unit = {"UA": "uA", "V": "V"}.get(v["pulse_unit"].strip().upper())
        known = technology_names()
        if tech not in known or unit is None:
            raise InstrumentError(f"{self.label} declares technology {v['technology'][:20]!r} and pulse "
                                  f"unit {v['pulse_unit'][:20]!r}; expected "
                                  f"{'|'.join(n.upper() for n in known)} and UA|V")
        declared = Limits(
            max_amplitude=num("max_amplitude"), max_width_ns=num("max_width_ns"),
            max_compliance_ua=num("max_compliance_ua", optional=True),
            max_pulses_per_device=num("max_pulses_per_device", int, optional=True),
            max_reads_per_request=num("max_reads_per_request", int),
        )
        return ChipInfo(
            technology=tech, n_devices=num("n_devices", int), g_max_us=num("g_max_us"),
            pulse_unit=unit, identity=str(self.identity or Identity("", "", "", "")),
            limits=self.station_limits.combine(declared), simulated=v["clock"].strip().upper() == "VIRT",
            read_cycle_s=num("read_cycle_s"), boot_id=_boot_id(self.label, v["boot_id"]),
        )

    # -- DeviceArray ----------------------------------------------------------------------------
    def pulse(self, addresses: np.ndarray, kind: PulseKind | np.ndarray, amplitude: np.ndarray | float,
              width_ns: np.ndarray | float, compliance_ua: np.ndarray | float | None = None) -> np.ndarray:
        """Apply one pulse per address (``CHIP:PULSe?``); returns each pulse's end in chip seconds."""
        try:
            a = check_pulses(self.info, addresses, amplitude, width_ns, compliance_ua)
            self._check_range(a)
            k = np.asarray(kind)
            if k.size and not np.all(np.isin(k, (PulseKind.SET, PulseKind.RESET))):
                raise LimitError("pulse kind must be SET (0) or RESET (1)")
            if a.size == 0:
                return np.empty(0)
            self.pulse_counter.charge(a)
        except LimitError as e:
            raise LimitError(f"{self.label}: {e}; nothing was sent") from None
        cap = self.addresses_per_request
        if a.size <= cap:
            return self._pulse_batch(a, k, amplitude, width_ns, compliance_ua)
        return np.concatenate([
            self._pulse_batch(a[i:i + cap], *(_slice(x, a.size, i, cap) for x in (k, amplitude, width_ns,
                                                                                 compliance_ua)))
            for i in range(0, a.size, cap)])

    def _pulse_batch(self, a: np.ndarray, k, amplitude, width_ns, compliance_ua) -> np.ndarray:
        """One CHIP:PULSe? request (at most CHIP:LIMit:VALues? addresses)."""
        m = a.size
        params = [self._param(k, m, "<u1", kind=True), self._param(amplitude, m, "<f8"),
                  self._param(width_ns, m, "<f8")]
        if compliance_ua is not None:
            params.append(self._param(compliance_ua, m, "<f8"))
        msg = self._select(a) + b";:CHIP:PULS? " + b",".join(params)

        def once() -> np.ndarray:
            (blk,) = self._blocks(msg, "CHIP:PULSe?", 1)
            return self._decode(blk, "<f8", m, "CHIP:PULSe?", "pulse end times")

        if not self.retry.attempts:
            return once()
        if not self.virtual_clock:
            try:
                return once()
            except InstrumentError as e:
                if getattr(e, "reported", False):
                    raise
                raise InstrumentError(f"{self.label} lost the answer to CHIP:PULSe? and, its clock being "
                                      f"real time, cannot tell whether the batch ran; not retried") from None
        t_before = self._retrying("CHIP:CLOCk?", self._clock_once)

        def ran(t_now: float) -> np.ndarray:  # the batch ran and only its answer was lost
            return estimate_pulse_ends(t_before, t_now, width_ns, m, self.info.read_cycle_s)

        return self._retrying("CHIP:PULSe?", once, t_before=t_before, applied=ran)

    def read(self, addresses: np.ndarray, n_reads: int = 1, interval_s: float = 0.0) -> ReadBatch:
        """Read every address ``n_reads`` times (``CHIP:READ?``): conductances and per-read chip times."""
        try:
            a = as_addresses(addresses, self.info.n_devices)
            self._check_range(a)
        except LimitError as e:
            raise LimitError(f"{self.label}: {e}; nothing was sent") from None
        n_reads = check_reads(self.info, n_reads, interval_s, self.label)
        step = max(1, min(self.addresses_per_request, self.values_per_request // n_reads))
        if a.size <= step:
            return self._read_batch(a, n_reads, interval_s)
        parts = [self._read_batch(a[i:i + step], n_reads, interval_s) for i in range(0, a.size, step)]
        return ReadBatch(g_us=np.concatenate([p.g_us for p in parts]),
                         t_s=np.concatenate([p.t_s for p in parts]))

    def _read_batch(self, a: np.ndarray, n_reads: int, interval_s: float) -> ReadBatch:
        """One CHIP:READ? request (at most CHIP:LIMit:VALues? addresses × reads)."""
        m = a.size
        msg = self._select(a) + f";:CHIP:READ? {n_reads},{float(interval_s)!r}".encode()

        def once() -> ReadBatch:
            g, t = self._blocks(msg, "CHIP:READ?", 2)
            n = m * n_reads
            g_us = self._decode(g, f"<f{self.real_bytes}", n, "CHIP:READ?", "conductances")
            t_s = self._decode(t, "<f8", n, "CHIP:READ?", "read times")
            if t_s.size:
                self.last_clock_s = max(self.last_clock_s, float(np.max(t_s)))
            return ReadBatch(g_us=g_us.astype(float).reshape(m, n_reads), t_s=t_s.reshape(m, n_reads))

        # reads are safe to repeat: a read whose answer was lost moved only the clock
        return self._retrying("CHIP:READ?", once) if self.retry.attempts else once()

    def now_s(self) -> float:
        """Chip time: the controller's clock (``CHIP:CLOCk?``)."""
        return self._retrying("CHIP:CLOCk?", self._clock_once) if self.retry.attempts else self._clock_once()

    def _clock_once(self) -> float:
        t = self._clock_raw()
        self.last_clock_s = max(self.last_clock_s, t)
        return t

    def _clock_raw(self) -> float:
        (text,) = self._ascii(b"CHIP:CLOC?", "CHIP:CLOCk?", 1)
        try:
            t = float(text)
        except ValueError:
            raise InstrumentError(f"{self.label} answered CHIP:CLOCk? with {text[:40]!r}, not a time") \
                from None
        if not np.isfinite(t):
            raise InstrumentError(f"{self.label} answered CHIP:CLOCk? with {text[:40]!r}, not a finite time")
        return t

    def wait(self, dt_s: float) -> None:
        """Let ``dt_s`` pass: a virtual clock is advanced on the chip, a real one is slept host-side."""
        check_wait(dt_s)
        if not self.virtual_clock:
            time.sleep(dt_s)
            return
        msg = f"CHIP:CLOC:ADV {float(dt_s)!r}".encode()
        if not self.retry.attempts:
            self._ascii(msg, "CHIP:CLOCk:ADVance", 0)
            return
        # advancing twice would wait twice: a moved clock after a fault means it was done
        t_before = self._retrying("CHIP:CLOCk?", self._clock_once)
        self._retrying("CHIP:CLOCk:ADVance", lambda: self._ascii(msg, "CHIP:CLOCk:ADVance", 0),
                       t_before=t_before, applied=lambda t_now: None)

    def _ground_truth(self) -> dict:
        """The simulated chip's parameters and per-device state (``SIMulation:TRUTh?``)."""
        if self.retry.attempts:
            (blk,) = self._retrying("SIMulation:TRUTh?", lambda: self._blocks(b"SIM:TRUT?",
                                                                              "SIMulation:TRUTh?", 1))
        else:
            (blk,) = self._blocks(b"SIM:TRUT?", "SIMulation:TRUTh?", 1)
        try:
            with np.load(io.BytesIO(blk), allow_pickle=False) as z:
                devices = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("devices/")}
                return {"model": str(z["model"]), "params": json.loads(str(z["params_json"])),
                        "devices": devices}
        except (ValueError, KeyError, OSError) as e:
            raise InstrumentError(f"{self.label} answered SIMulation:TRUTh? with an unreadable "
                                  f"archive ({type(e).__name__})") from None

    # -- encoding -------------------------------------------------------------------------------
    def _check_range(self, a: np.ndarray) -> None:
        rng = self.station_limits.address_range
        bad = outside_range(a, rng)
        if bad is not None:
            raise LimitError(f"address {bad} is outside the station's address range {rng[0]}..{rng[1]}")

    @staticmethod
    def _select(a: np.ndarray) -> bytes:
        """``CHIP:ADDR:RANG`` for a contiguous run (a few bytes), else a uint32 block."""
        m = a.size
        if m and a[-1] - a[0] == m - 1 and (m == 1 or np.all(np.diff(a) == 1)):
            return f"CHIP:ADDR:RANG {int(a[0])},{m}".encode()
        return b"CHIP:ADDR " + array_block(a, "<u4")

    @staticmethod
    def _param(x, m: int, dtype: str, kind: bool = False) -> bytes:
        """One number for all addresses if it is one, else a block with a value per address."""
        arr = np.asarray(x)
        if arr.ndim and arr.size and np.all(arr == arr.flat[0]):
            arr = arr.flat[0]
        if np.ndim(arr) == 0:
            if kind:
                return b"RES" if int(arr) == PulseKind.RESET else b"SET"
            return repr(float(arr)).encode()
        return array_block(np.broadcast_to(arr, (m,)), dtype)

    def _decode(self, payload: bytes, dtype: str, count: int, command: str, what: str) -> np.ndarray:
        try:
            values = block_to_array(payload, dtype, count, what).copy()
        except ProtocolError as e:
            raise InstrumentError(f"{self.label} answered {command} badly: {e}") from None
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            # a NaN time or conductance would pass every later comparison and limit silently
            raise InstrumentError(f"{self.label} answered {command} with non-finite {what} "
                                  f"({int((~np.isfinite(values)).sum())} of {values.size})")
        return values

    # -- wire -----------------------------------------------------------------------------------
    def _send(self, message: bytes, command: str) -> None:
        if self._broken:
            raise InstrumentConnectionError(f"{self.label} is out of step since {self._broken}; "
                                            f"reconnect before sending {command}")
        try:
            self.transport.write(message)
        except TransportError as e:
            raise self._lost(e, command) from None

    def _read(self, n: int, command: str) -> bytes:
        try:
            return self.transport.read_exact(n)
        except TransportError as e:
            raise self._lost(e, command) from None

    def _line(self, command: str) -> str:
        try:
            return self.transport.read_line().decode("latin-1").strip()
        except TransportError as e:
            raise self._lost(e, command) from None

    def _lost(self, e: TransportError, command: str) -> InstrumentError:
        self._broken = f"{e.kind} during {command}"
        return self._io_error(e, command)

    def _malformed(self, command: str, detail: str) -> InstrumentError:
        self._broken = f"a malformed answer to {command}"
        return InstrumentError(f"{self.label} answered {command} with a malformed reply: {detail}")

    def _error_unit(self, text: str, command: str) -> None:
        """The trailing ``SYST:ERR?`` answer; a non-zero code drains the queue and raises."""
        try:
            code, msg = parse_error(text)
        except ProtocolError:
            raise self._malformed(command, f"expected an error reply, got {text[:60]!r}") from None
        if code != 0:
            self.raise_queue((code, msg), command)

    def _ascii(self, message: bytes, command: str, n_values: int) -> list[str]:
        """Send ``message;:SYST:ERR?`` and return the ``n_values`` ASCII answers before the error reply."""
        self._send(message + ERR, command)
        units = split_units(self._line(command))
        self._error_unit(units[-1], command)
        if len(units) != n_values + 1:
            raise self._malformed(command, f"{len(units) - 1} answers, expected {n_values}")
        return [u.strip() for u in units[:-1]]

    def _blocks(self, message: bytes, command: str, n_blocks: int) -> list[bytes]:
        """Send ``message;:SYST:ERR?`` and return the comma-separated blocks of its one answer."""
        self._send(message + ERR, command)
        head = self._read(1, command)
        if head != b"#":
            # a failed query has no answer: what is there is the error reply (or garbage)
            self._error_unit((head + self._line(command).encode("latin-1")).decode("latin-1"), command)
            raise self._malformed(command, "no data and no error")
        out = []
        for k in range(n_blocks):
            try:
                if k:
                    sep = self._read(2, command)
                    if sep != b",#":
                        raise ProtocolError(f"expected ',#' between blocks, got {sep!r}")
                nd = parse_block_header(b"#" + self._read(1, command))
                length = parse_block_length(self._read(nd, command))
            except ProtocolError as e:
                raise self._malformed(command, str(e)) from None
            out.append(self._read(length, command))
        sep = self._read(1, command)
        if sep != b";":
            raise self._malformed(command, f"expected ';' after the data, got {sep!r} (wrong block length?)")
        self._error_unit(self._line(command), command)
        return out


def open_visa_chip(resource: str, station: str | None = None, transport_factory=None, *,
                   faults: FaultSpec | str | dict | None = None,
                   retry: RetryPolicy | int | str | dict | None = None) -> ScpiChip:
    """Open the chip at VISA ``resource`` (from a ``visa://`` URL) with the station file's settings.

    The station's ``instruments.chip`` entry gives backend, timeout, accepted models, terminations,
    the retry policy (``retries``) and, for rehearsals, injected faults (``faults``); ``chip.limits``
    narrows the chip's declared limits. Without a station file the defaults apply (pyvisa-py, 10 s,
    the simulated chips' models, no retries, no faults). ``faults``/``retry`` given here win over the
    station's. ``visa://probe-station`` builds the SMU + pulse generator + switch matrix array of the
    station's ``probe_station`` section. ``transport_factory`` (same arguments as VisaTransport) lets a
    wrapping transport, such as a recording one, be slotted in.
    """
    st: Station = load_station(station) if station else DEFAULT_STATION
    if resource.strip().lower() == "probe-station":
        from instruments.probe import open_probe_station

        return open_probe_station(st, transport_factory)
    spec = st.instruments.get("chip") or InstrumentSpec("chip", "scpi-chip")
    if spec.driver != "scpi-chip":
        st.instrument("chip", "scpi-chip")  # raises the one-sentence error
    resource = resource.strip() or (spec.resource or "")
    if not resource:
        raise DevmodelError("visa:// URL names no resource and the station file gives none "
                            "(instruments.chip.resource)")
    fault_spec = faults if isinstance(faults, FaultSpec) else FaultSpec.parse(
        faults if faults is not None else spec.faults, "faults")
    policy = RetryPolicy.parse(retry if retry is not None else spec.retries, "retries")
    try:
        transport = (transport_factory or VisaTransport)(resource, st.backend_for(spec), spec.timeout_s,
                                                         spec.read_termination, spec.write_termination)
    except TransportError as e:
        raise InstrumentConnectionError(f"instrument chip ({resource}): {e.detail}") from None
    if fault_spec is not None:
        transport = FaultyTransport(transport, fault_spec)
    try:
        return ScpiChip(transport, "chip", station_limits=st.chip_limits, models=spec.models, retry=policy)
    except BaseException:
        transport.close()
        raise


def open_visa_url(url: str, target: str, opts: dict[str, str], seed: int | None,
                  station: str | None = None) -> ScpiChip:
    """The ``visa://`` scheme of :mod:`devmodel.chips` (VISA resource strings hold no '?': what
    follows one are this toolkit's options, ``faults`` and ``retries``)."""
    unknown = sorted(set(opts) - {"faults", "retries"})
    if unknown:
        raise ChipURLError(f"chip URL {url!r} sets unknown option {unknown[0]!r}; visa:// URLs take "
                            f"faults and retries")
    return open_visa_chip(target.removeprefix("//"), station, faults=opts.get("faults"),
                          retry=opts.get("retries"))
