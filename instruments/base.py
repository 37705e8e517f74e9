"""A small driver base over a :class:`~instruments.transport.Transport`, PyMeasure style.

A driver is mostly data: ``control``/``measurement`` descriptors name the SCPI commands and carry a
validator with its allowed values, so an instrument's limits are a table, not scattered ``if``s;
a station file can narrow them per instrument (``Instrument(limits={"nplc": (0.1, 1)})``). A value
outside them is refused before anything is sent.

Every public operation is one *command batch*: its commands are written, then ``SYST:ERR?`` is
asked once (``batch()``), and a non-zero answer drains the queue and raises one sentence naming
the instrument and the command. ``*IDN?`` is checked against the driver's models on connect;
``reconnect()`` reopens the transport and runs the same checks (the hook the reliability work uses).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from devmodel.errors import DevmodelError, LimitError
from instruments.scpi import ProtocolError, parse_error
from instruments.transport import Transport, TransportError

MAX_ERROR_DRAIN = 32  # SYST:ERR? answers read after a failure (an error queue is that deep)


class InstrumentError(DevmodelError):
    """An instrument failed, answered badly or reported an error; the message names it and the command."""


class InstrumentTimeoutError(InstrumentError):
    """An instrument did not answer within its timeout."""


class InstrumentConnectionError(InstrumentError):
    """The connection could not be opened, or was closed under a command."""


class ChipDiscontinuityError(InstrumentError):
    """The chip does not continue the record (restarted, another boot, its clock went back): final,
    never retried — continuing would mix two chips' states in one session."""

    reported = True


@dataclass(frozen=True)
class Identity:
    """The four fields of an ``*IDN?`` answer."""

    manufacturer: str
    model: str
    serial: str
    firmware: str

    @classmethod
    def parse(cls, text: str) -> Identity:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 4:
            raise ProtocolError(f"*IDN? answer {text[:80]!r} does not have four comma-separated fields")
        return cls(*parts)

    def __str__(self) -> str:
        return ",".join((self.manufacturer, self.model, self.serial, self.firmware))


# -- validators: (value, allowed) -> value to send, or ValueError with the reason -------------------
def strict_range(value: Any, allowed: tuple[float, float]) -> float:
    """Accept a finite number within ``allowed = (low, high)`` inclusive."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    lo, hi = allowed
    if not lo <= v <= hi:  # also refuses NaN
        raise ValueError(f"{v:g} is outside {lo:g}..{hi:g}")
    return v


def strict_int_range(value: Any, allowed: tuple[int, int]) -> int:
    """Accept an integer within ``allowed`` inclusive."""
    if isinstance(value, bool) or not float(value).is_integer():
        raise ValueError(f"{value!r} is not an integer")
    v = int(value)
    if not allowed[0] <= v <= allowed[1]:
        raise ValueError(f"{v} is outside {allowed[0]}..{allowed[1]}")
    return v


def strict_discrete_set(value: Any, allowed: tuple) -> Any:
    """Accept one of ``allowed`` (strings compared case-insensitively)."""
    for a in allowed:
        if value == a or (isinstance(value, str) and isinstance(a, str) and value.upper() == a.upper()):
            return a
    raise ValueError(f"{value!r} is not one of {', '.join(map(str, allowed))}")


def narrow(default: tuple, override: tuple | list | None) -> tuple:
    """The allowed values of a control once a station file narrows them (never widens)."""
    if override is None:
        return default
    override = tuple(override)
    if len(default) == 2 and all(isinstance(v, (int, float)) for v in default + override):
        return (max(default[0], override[0]), min(default[1], override[1]))
    return tuple(v for v in default if v in override)


class control:  # noqa: N801 - reads like PyMeasure's Instrument.control
    """A settable and readable instrument property.

    ``get_command`` is a query, ``set_command`` a format string taking the validated value; setting
    validates against the instrument's allowed values for this name, then runs one command batch.
    """

    def __init__(self, get_command: str | None, set_command: str | None, doc: str,
                 validator: Callable[[Any, tuple], Any] | None = None, values: tuple = (),
                 cast: Callable[[str], Any] = float) -> None:
        self.get_command, self.set_command = get_command, set_command
        self.validator, self.values, self.cast = validator, tuple(values), cast
        self.__doc__ = doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, inst: Instrument | None, owner: type) -> Any:
        if inst is None:
            return self
        if self.get_command is None:
            raise AttributeError(f"{self.name} can only be set")
        return inst.ask(self.get_command, self.cast, what=self.name)

    def __set__(self, inst: Instrument, value: Any) -> None:
        if self.set_command is None:
            raise AttributeError(f"{self.name} is read-only")
        v = inst.validate(self.name, value)
        with inst.batch(self.set_command.split()[0]):
            inst.write(self.set_command.format(v))


def measurement(get_command: str, doc: str, cast: Callable[[str], Any] = float) -> control:
    """A read-only property (one query, then the error check)."""
    return control(get_command, None, doc, cast=cast)


class Instrument:
    """Base of every driver: identity check, reset, command batches with error checks, reconnect.

    Subclasses set ``models`` (regular expressions one of which must match the ``*IDN?`` model field
    in full, case-insensitively) and declare ``control``/``measurement`` attributes.
    """

    models: tuple[str, ...] = ()
    error_query = "SYST:ERR?"

    def __init__(self, transport: Transport, name: str, *, limits: dict[str, Any] | None = None,
                 models: tuple[str, ...] | list[str] | None = None, reset: bool = False,
                 connect: bool = True) -> None:
        self.transport = transport
        self.name = name
        self._limits = dict(limits or {})
        self._accepted_models = tuple(models) if models else self.models
        self._reset_on_connect = reset
        self._batch_depth = 0
        self._batch_context = ""
        self.identity: Identity | None = None
        for key in self._limits:
            if not isinstance(getattr(type(self), key, None), control):
                raise InstrumentError(f"{self.label}: the station file limits {key!r}, which this "
                                      f"driver does not have")
        if connect:
            self.connect()

    # -- naming and errors ----------------------------------------------------------------------
    @property
    def label(self) -> str:
        return f"instrument {self.name} ({self.transport.resource})"

    def _io_error(self, e: TransportError, command: str) -> InstrumentError:
        if e.kind == "timeout":
            return InstrumentTimeoutError(f"{self.label} did not answer {command}: {e.detail}")
        if e.kind in ("closed", "connect"):
            return InstrumentConnectionError(f"{self.label} failed during {command}: {e.detail}")
        return InstrumentError(f"{self.label} failed during {command}: {e.detail}")

    # -- connection -----------------------------------------------------------------------------
    def connect(self) -> None:
        """Check ``*IDN?`` (and ``*RST`` if asked), then run the driver's ``on_connect`` setup."""
        self.identity = self.identify()
        if self._reset_on_connect:
            self.reset()
        self.on_connect()

    def on_connect(self) -> None:
        """Driver-specific setup after the identity check (formats, geometry queries)."""

    def reconnect(self) -> None:
        """Reopen the transport and repeat the connect checks (used to recover from faults)."""
        try:
            self.transport.reopen()
        except TransportError as e:
            raise self._io_error(e, "reconnect") from None
        self.connect()

    def close(self) -> None:
        self.transport.close()

    def identify(self) -> Identity:
        """Ask ``*IDN?`` and refuse an instrument whose model is not one this driver drives."""
        text = self.query("*IDN?")
        try:
            idn = Identity.parse(text)
        except ProtocolError as e:
            raise InstrumentError(f"{self.label} answered *IDN? badly: {e}") from None
        if self._accepted_models and not any(
                re.fullmatch(m, idn.model, re.IGNORECASE) for m in self._accepted_models):
            raise InstrumentError(
                f"{self.label} answered *IDN? with model {idn.model!r} ({idn.manufacturer}); "
                f"{type(self).__name__} drives {', '.join(self._accepted_models)}"
            )
        return idn

    def reset(self) -> None:
        """``*RST`` and ``*CLS`` as one checked batch."""
        with self.batch("*RST"):
            self.write("*RST")
            self.write("*CLS")

    # -- limits as data -------------------------------------------------------------------------
    def allowed(self, name: str) -> tuple:
        """Allowed values of control ``name`` after the station file's narrowing."""
        ctl = getattr(type(self), name)
        return narrow(ctl.values, self._limits.get(name))

    def validate(self, name: str, value: Any) -> Any:
        """Value to send for control ``name``, or LimitError naming instrument and property."""
        ctl = getattr(type(self), name)
        if ctl.validator is None:
            return value
        try:
            return ctl.validator(value, self.allowed(name))
        except ValueError as e:
            raise LimitError(f"{self.label}: {name} = {value!r} refused, {e}; nothing was sent") from None

    # -- wire -----------------------------------------------------------------------------------
    def write(self, command: str) -> None:
        """Send one command; outside a batch it is its own batch (followed by the error check)."""
        try:
            self.transport.write(command.encode("ascii"))
        except TransportError as e:
            raise self._io_error(e, command) from None
        if self._batch_depth == 0:
            self.check_errors(command)

    def read_line(self, command: str) -> str:
        """One response line as text (``command`` names what it answers, for errors)."""
        try:
            return self.transport.read_line().decode("ascii", "replace").strip()
        except TransportError as e:
            raise self._io_error(e, command) from None

    def query(self, command: str) -> str:
        """Send a query and return its answer line (no error check: see ``ask``)."""
        try:
            self.transport.write(command.encode("ascii"))
        except TransportError as e:
            raise self._io_error(e, command) from None
        return self.read_line(command)

    def ask(self, command: str, cast: Callable[[str], Any] = str, what: str = "") -> Any:
        """A query as its own batch: answer cast to a value, then the error check."""
        with self.batch(command):
            text = self.query(command)
        try:
            value = cast(text)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError("not finite")  # a NaN setting or reading passes every limit check
            return value
        except (TypeError, ValueError, OverflowError):
            raise InstrumentError(f"{self.label} answered {command} with {text[:60]!r}, which is "
                                  f"not a valid {what or cast.__name__}") from None

    @contextmanager
    def batch(self, context: str) -> Iterator[None]:
        """Group commands; ``SYST:ERR?`` is asked once at the end (not if the batch raised)."""
        outer = self._batch_depth == 0
        if outer:
            self._batch_context = context
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
        if outer:
            self.check_errors(self._batch_context)

    def check_errors(self, context: str) -> None:
        """Ask ``SYST:ERR?``; on an error, drain the queue and raise one sentence about ``context``."""
        first = self._parse_error_reply(self.query(self.error_query), context)
        if first[0] != 0:
            self.raise_queue(first, context)

    def _parse_error_reply(self, text: str, context: str) -> tuple[int, str]:
        try:
            return parse_error(text)
        except ProtocolError:
            raise InstrumentError(f"{self.label} answered {self.error_query} after {context} with "
                                  f"{text[:60]!r}, not an error reply") from None

    def raise_queue(self, first: tuple[int, str], context: str) -> None:
        """Drain the rest of the error queue (bounded) and raise the first error."""
        more = 0
        for _ in range(MAX_ERROR_DRAIN):
            code, _ = self._parse_error_reply(self.query(self.error_query), context)
            if code == 0:
                break
            more += 1
        extra = f" (and {more} more error{'s' * (more > 1)})" if more else ""
        raise InstrumentError(f"{self.label} reported error {first[0]} \"{first[1]}\" after "
                              f"{context}{extra}")
