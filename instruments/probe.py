"""The classic single-device probe station: an SMU reads, a pulse generator programs, a switch
matrix routes either to the device under test.

Drivers (subsets, commands as in the instruments' programming manuals): :class:`Keithley2450`
(source voltage, measure current, current limit, NPLC), :class:`Keysight33500` (pulse amplitude,
width, polarity, triggered burst), :class:`ScpiSwitch` (``ROUTe:CLOSe``/``ROUTe:OPEN:ALL``).
:class:`ProbeStation` composes them into a device array of one or a few devices; it is inherently
one device at a time, so its loops are per device (the bounded size of a probe station makes that
fine). Time is the host's monotonic clock.
"""

from __future__ import annotations

import math
import re
import time

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
)
from devmodel.errors import DevmodelError, LimitError
from instruments.base import (
    Instrument,
    InstrumentConnectionError,
    control,
    measurement,
    strict_discrete_set,
    strict_int_range,
    strict_range,
)
from instruments.station import ChipLimits, ProbeStationSpec, Station, StationError, outside_range
from instruments.transport import Transport, TransportError, VisaTransport


def _int(text: str) -> int:
    v = float(text)
    if not (math.isfinite(v) and v.is_integer()):
        raise ValueError(f"{text[:40]!r} is not an integer")
    return int(v)


# SCPI instruments answer 9.91e37 for "not a number" (an overload, an aborted reading)
SCPI_NAN = 9.9e37


class Keithley2450(Instrument):
    """Keithley 2450 SourceMeter subset: source a voltage, measure current, current limit, NPLC."""

    models = (r"MODEL 2450",)
    source_voltage_v = control(":SOUR:VOLT?", ":SOUR:VOLT {:g}", "Source voltage level (V).",
                               strict_range, (-210.0, 210.0))
    current_limit_a = control(":SOUR:VOLT:ILIM?", ":SOUR:VOLT:ILIM {:g}",
                              "Current limit (compliance) while sourcing voltage (A).",
                              strict_range, (1e-9, 1.05))
    nplc = control(":SENS:CURR:NPLC?", ":SENS:CURR:NPLC {:g}",
                   "Current measurement aperture in power-line cycles.", strict_range, (0.01, 10.0))
    output_enabled = control(":OUTP?", ":OUTP {:d}", "Output relay (1 on, 0 off).",
                             strict_discrete_set, (0, 1), cast=_int)
    current_a = measurement(":MEAS:CURR?", "One current measurement (A).")

    def configure_voltage_source(self, nplc: float, current_limit_a: float) -> None:
        """Source voltage, sense current with autorange, the given NPLC and current limit (one batch)."""
        nplc = self.validate("nplc", nplc)
        limit = self.validate("current_limit_a", current_limit_a)
        with self.batch("configure_voltage_source"):
            self.write(":SOUR:FUNC VOLT")
            self.write(':SENS:FUNC "CURR"')
            self.write(":SENS:CURR:RANG:AUTO ON")
            self.write(f":SENS:CURR:NPLC {nplc:g}")
            self.write(f":SOUR:VOLT:ILIM {limit:g}")

    def measure_currents_a(self, n: int, interval_s: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` current readings ``interval_s`` apart (one batch); returns (currents A, host times s)."""
        i_a, t_s = np.empty(n), np.empty(n)
        with self.batch(":MEAS:CURR?"):
            for j in range(n):
                if j and interval_s:
                    time.sleep(interval_s)
                t_s[j] = time.monotonic()
                text = self.query(":MEAS:CURR?")
                try:
                    i_a[j] = float(text)
                except ValueError:
                    i_a[j] = np.nan
                if not abs(i_a[j]) < SCPI_NAN:  # NaN, ±inf and the SCPI not-a-number code
                    raise DevmodelError(f"{self.label} answered :MEAS:CURR? with {text[:40]!r}, "
                                        f"not a finite current")
        return i_a, t_s


class Keysight33500(Instrument):
    """Keysight/Agilent 33500 waveform generator subset: single triggered pulses of set level and width."""

    models = (r"335\d\d[AB]?",)
    high_v = control("VOLT:HIGH?", "VOLT:HIGH {:g}", "Pulse high level (V).", strict_range, (-10.0, 10.0))
    low_v = control("VOLT:LOW?", "VOLT:LOW {:g}", "Pulse low level (V).", strict_range, (-10.0, 10.0))
    width_s = control("FUNC:PULS:WIDT?", "FUNC:PULS:WIDT {:g}", "Pulse width (s).",
                      strict_range, (16e-9, 1e3))
    period_s = control("FUNC:PULS:PER?", "FUNC:PULS:PER {:g}", "Pulse period (s).",
                       strict_range, (33e-9, 1e6))
    burst_cycles = control("BURS:NCYC?", "BURS:NCYC {:d}", "Pulses per trigger.",
                           strict_int_range, (1, 100_000_000), cast=_int)
    polarity = control("OUTP:POL?", "OUTP:POL {}", "Output polarity (NORM or INV).",
                       strict_discrete_set, ("NORM", "INV"), cast=str.strip)
    output_enabled = control("OUTP?", "OUTP {:d}", "Output (1 on, 0 off).",
                             strict_discrete_set, (0, 1), cast=_int)

    def configure_burst(self, period_s: float = 1e-3) -> None:
        """Pulse function, one pulse per bus trigger, high-impedance load, output on (one batch)."""
        period_s = self.validate("period_s", period_s)
        with self.batch("configure_burst"):
            for cmd in ("FUNC PULS", f"FUNC:PULS:PER {period_s:g}", "VOLT:LOW 0", "BURS:MODE TRIG",
                        "BURS:NCYC 1", "BURS:STAT ON", "TRIG:SOUR BUS", "OUTP:LOAD INF", "OUTP 1"):
                self.write(cmd)

    def set_pulse(self, amplitude_v: float, width_ns: float, inverted: bool = False) -> None:
        """Pulse of ``amplitude_v`` above 0 V, ``width_ns`` long, optionally inverted (one batch)."""
        high = self.validate("high_v", amplitude_v)
        width = self.validate("width_s", width_ns * 1e-9)
        with self.batch("set_pulse"):
            self.write(f"FUNC:PULS:WIDT {width:g}")
            self.write(f"VOLT:HIGH {high:g}")
            self.write(f"OUTP:POL {'INV' if inverted else 'NORM'}")

    def trigger(self) -> None:
        """Fire one burst (``*TRG``) and wait until it is done (``*OPC?``)."""
        with self.batch("*TRG"):
            self.write("*TRG")
            self.query("*OPC?")


class ScpiSwitch(Instrument):
    """A SCPI switch matrix (Keysight 34980A / E5250A style channel lists)."""

    models = (r"34980A", r"E5250A", r"SIM-SWITCH")

    def route(self, channels: str) -> None:
        """Open every crosspoint, then close ``channels`` (a SCPI channel list body like ``1101,1201``)."""
        if not re.fullmatch(r"[0-9]+([,:][0-9]+)*", channels):
            raise DevmodelError(f"{self.label}: channel list {channels!r} is not like 1101,1201")
        with self.batch("ROUT:CLOS"):
            self.write("ROUT:OPEN:ALL")
            self.write(f"ROUT:CLOS (@{channels})")

    def open_all(self) -> None:
        """Disconnect everything."""
        with self.batch("ROUT:OPEN:ALL"):
            self.write("ROUT:OPEN:ALL")


class ProbeStation:
    """A device array of the few devices wired to an SMU and a pulse generator through a switch.

    Limits are checked (chip limits of the station file, the pulse generator's ranges) before any
    command is sent. The pulse generator has no current compliance, so a pulse batch that asks for
    one is refused rather than silently applied without it.
    """

    def __init__(self, smu: Keithley2450, pulser: Keysight33500, switch: ScpiSwitch | None,
                 spec: ProbeStationSpec, station_limits: ChipLimits | None = None) -> None:
        self.smu, self.pulser, self.switch, self.spec = smu, pulser, switch, spec
        self.station_limits = station_limits or ChipLimits()
        hi = pulser.allowed("high_v")[1]
        w = pulser.allowed("width_s")[1] * 1e9
        max_amp = hi / (spec.load_ohm * 1e-6) if spec.pulse_unit == "uA" else hi
        declared = Limits(max_amplitude=max_amp, max_width_ns=w, max_compliance_ua=None,
                          max_reads_per_request=10_000)
        self.info = ChipInfo(
            technology=spec.technology, n_devices=len(spec.devices), g_max_us=spec.g_max_us,
            pulse_unit=spec.pulse_unit, identity=f"probe-station,{smu.identity.model}+"
            f"{pulser.identity.model},{smu.identity.serial},0", limits=self.station_limits.combine(declared),
            simulated=False, read_cycle_s=spec.nplc / 50.0,
        )
        self.pulse_counter = PulseCounter(self.info.n_devices, self.info.limits.max_pulses_per_device)
        self._t0 = time.monotonic()
        smu.configure_voltage_source(spec.nplc, spec.read_current_limit_a)
        pulser.configure_burst()

    def _addresses(self, addresses: np.ndarray) -> np.ndarray:
        a = as_addresses(addresses, self.info.n_devices)
        rng = self.station_limits.address_range
        if outside_range(a, rng) is not None:
            raise LimitError(f"probe station: an address is outside the station's range {rng[0]}..{rng[1]}")
        return a

    def _route(self, address: int, role: str) -> None:
        if self.switch is not None:
            self.switch.route(self.spec.devices[address][role])

    def pulse(self, addresses: np.ndarray, kind: PulseKind | np.ndarray, amplitude: np.ndarray | float,
              width_ns: np.ndarray | float, compliance_ua: np.ndarray | float | None = None) -> np.ndarray:
        """One pulse per address through the pulse generator; returns host times of the pulse ends."""
        a = check_pulses(self.info, addresses, amplitude, width_ns, compliance_ua)
        self._addresses(a)
        if compliance_ua is not None:
            raise LimitError("probe station: the pulse generator cannot limit current, so a pulse with "
                             "compliance_ua is refused; nothing was sent")
        m = a.size
        kinds = np.broadcast_to(np.asarray(kind, dtype=np.int8), (m,))
        amp = np.broadcast_to(np.abs(np.asarray(amplitude, dtype=float)), (m,))
        width = np.broadcast_to(np.asarray(width_ns, dtype=float), (m,))
        volts = amp * self.spec.load_ohm * 1e-6 if self.spec.pulse_unit == "uA" else amp
        self.pulse_counter.charge(a)
        t_end = np.empty(m)
        for i in range(m):  # one device at a time: the station has one pulse generator
            self._route(int(a[i]), "pulse")
            inverted = self.spec.bipolar and kinds[i] == PulseKind.RESET
            self.pulser.set_pulse(float(volts[i]), float(width[i]), inverted)
            self.pulser.trigger()
            t_end[i] = self.now_s()
        return t_end

    def read(self, addresses: np.ndarray, n_reads: int = 1, interval_s: float = 0.0) -> ReadBatch:
        """Read each address ``n_reads`` times with the SMU at the read voltage (G = I / V)."""
        a = self._addresses(addresses)
        n_reads = check_reads(self.info, n_reads, interval_s, "probe station")
        m = a.size
        g, t = np.empty((m, n_reads)), np.empty((m, n_reads))
        v = self.spec.v_read_v
        for i in range(m):
            self._route(int(a[i]), "smu")
            self.smu.source_voltage_v = v
            self.smu.output_enabled = 1
            try:
                i_a, t_host = self.smu.measure_currents_a(n_reads, interval_s)
            finally:
                self.smu.output_enabled = 0
            g[i] = i_a / v * 1e6
            t[i] = t_host - self._t0
        return ReadBatch(g_us=g, t_s=t)

    def now_s(self) -> float:
        return time.monotonic() - self._t0

    def wait(self, dt_s: float) -> None:
        check_wait(dt_s)
        time.sleep(dt_s)

    def close(self) -> None:
        for inst in (self.switch, self.pulser, self.smu):
            if inst is not None:
                inst.close()


def _open(station: Station, name: str, driver: str, cls: type[Instrument],
          transport_factory=None) -> Instrument:
    spec = station.instrument(name, driver)
    if not spec.resource:
        raise StationError(f"station file {station.path}: instruments.{name}.resource is missing")
    try:
        transport: Transport = (transport_factory or VisaTransport)(
            spec.resource, station.backend_for(spec), spec.timeout_s, spec.read_termination,
            spec.write_termination)
    except TransportError as e:
        raise InstrumentConnectionError(f"instrument {name} ({spec.resource}): {e.detail}") from None
    return cls(transport, name, limits=spec.limits, models=spec.models, reset=spec.reset)


def open_probe_station(station: Station, transport_factory=None) -> ProbeStation:
    """Open the SMU, pulse generator and switch named by the station file's ``probe_station``."""
    ps = station.probe_station
    if ps is None:
        raise StationError(f"station file {station.path} has no probe_station section")
    if ps.switch is None and len(ps.devices) > 1:
        raise StationError(f"station file {station.path}: probe_station lists {len(ps.devices)} devices "
                           f"but no switch to select them")
    for i, dev in enumerate(ps.devices):
        missing = [k for k in ("smu", "pulse") if ps.switch and k not in dev]
        if missing:
            raise StationError(f"station file {station.path}: probe_station.devices.{i} has no "
                               f"{missing[0]!r} channel list for the switch")
    smu = _open(station, ps.smu, "keithley2450", Keithley2450, transport_factory)
    pulser = _open(station, ps.pulser, "keysight33500", Keysight33500, transport_factory)
    switch = _open(station, ps.switch, "scpi-switch", ScpiSwitch, transport_factory) if ps.switch else None
    return ProbeStation(smu, pulser, switch, ps, station.chip_limits)
