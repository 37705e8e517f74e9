"""Probe-station drivers against their pyvisa-sim definitions: the exact commands each public method
sends, limits refused before the wire, wrong instruments refused by *IDN?."""

from pathlib import Path

import numpy as np
import pytest

import instruments
from devmodel.array import PulseKind
from devmodel.errors import LimitError
from instruments.base import InstrumentError
from instruments.chip import open_visa_chip
from instruments.probe import Keithley2450, Keysight33500, ProbeStation, ScpiSwitch, open_probe_station
from instruments.station import load_station
from instruments.transport import RecordingTransport, VisaTransport

SIM = Path(instruments.__file__).parent / "sim"
SMU = ("TCPIP::192.0.2.24::INSTR", f"{SIM / 'keithley2450.yaml'}@sim")
PULSER = ("TCPIP::192.0.2.33::INSTR", f"{SIM / 'keysight33500.yaml'}@sim")
SWITCH = ("TCPIP::192.0.2.50::INSTR", f"{SIM / 'switch.yaml'}@sim")


def recorded(cls, where, name, **kw):
    t = RecordingTransport(VisaTransport(*where, timeout_s=2.0))
    inst = cls(t, name, **kw)
    t.log.clear()  # the *IDN? of connect is tested separately
    return inst, t


def test_connect_asks_idn_and_optionally_resets():
    t = RecordingTransport(VisaTransport(*SMU, timeout_s=2.0))
    smu = Keithley2450(t, "smu", reset=True)
    assert smu.identity.model == "MODEL 2450"
    assert t.sent == ["*IDN?", "*RST", "*CLS", "SYST:ERR?"]


def test_keithley2450_transcripts():
    smu, t = recorded(Keithley2450, SMU, "smu")
    smu.configure_voltage_source(nplc=1, current_limit_a=1e-4)
    assert t.sent == [":SOUR:FUNC VOLT", ':SENS:FUNC "CURR"', ":SENS:CURR:RANG:AUTO ON",
                      ":SENS:CURR:NPLC 1", ":SOUR:VOLT:ILIM 0.0001", "SYST:ERR?"]
    steps = [
        (lambda: setattr(smu, "source_voltage_v", 0.2), [":SOUR:VOLT 0.2", "SYST:ERR?"]),
        (lambda: smu.source_voltage_v, [":SOUR:VOLT?", "SYST:ERR?"]),
        (lambda: setattr(smu, "current_limit_a", 1e-3), [":SOUR:VOLT:ILIM 0.001", "SYST:ERR?"]),
        (lambda: smu.current_limit_a, [":SOUR:VOLT:ILIM?", "SYST:ERR?"]),
        (lambda: setattr(smu, "nplc", 0.1), [":SENS:CURR:NPLC 0.1", "SYST:ERR?"]),
        (lambda: smu.nplc, [":SENS:CURR:NPLC?", "SYST:ERR?"]),
        (lambda: setattr(smu, "output_enabled", 1), [":OUTP 1", "SYST:ERR?"]),
        (lambda: smu.output_enabled, [":OUTP?", "SYST:ERR?"]),
        (lambda: smu.current_a, [":MEAS:CURR?", "SYST:ERR?"]),
        (lambda: smu.measure_currents_a(3), [":MEAS:CURR?"] * 3 + ["SYST:ERR?"]),
        (lambda: smu.reset(), ["*RST", "*CLS", "SYST:ERR?"]),
    ]
    for call, expected in steps:
        t.log.clear()
        call()
        assert t.sent == expected


def test_keithley2450_values_round_trip():
    smu, t = recorded(Keithley2450, SMU, "smu")
    smu.source_voltage_v = 0.25
    smu.nplc = 2
    assert smu.source_voltage_v == 0.25 and smu.nplc == 2.0
    i_a, t_s = smu.measure_currents_a(2)
    assert i_a.tolist() == [2e-6, 2e-6] and np.all(np.diff(t_s) >= 0)


def test_keysight33500_transcripts():
    gen, t = recorded(Keysight33500, PULSER, "pulser")
    gen.configure_burst(period_s=1e-3)
    assert t.sent == ["FUNC PULS", "FUNC:PULS:PER 0.001", "VOLT:LOW 0", "BURS:MODE TRIG", "BURS:NCYC 1",
                      "BURS:STAT ON", "TRIG:SOUR BUS", "OUTP:LOAD INF", "OUTP 1", "SYST:ERR?"]
    steps = [
        (lambda: gen.set_pulse(1.2, 100, inverted=True),
         ["FUNC:PULS:WIDT 1e-07", "VOLT:HIGH 1.2", "OUTP:POL INV", "SYST:ERR?"]),
        (lambda: gen.trigger(), ["*TRG", "*OPC?", "SYST:ERR?"]),
        (lambda: setattr(gen, "burst_cycles", 3), ["BURS:NCYC 3", "SYST:ERR?"]),
        (lambda: gen.burst_cycles, ["BURS:NCYC?", "SYST:ERR?"]),
        (lambda: setattr(gen, "low_v", -0.5), ["VOLT:LOW -0.5", "SYST:ERR?"]),
        (lambda: gen.polarity, ["OUTP:POL?", "SYST:ERR?"]),
        (lambda: gen.width_s, ["FUNC:PULS:WIDT?", "SYST:ERR?"]),
    ]
    for call, expected in steps:
        t.log.clear()
        call()
        assert t.sent == expected
    assert gen.polarity == "INV" and gen.width_s == pytest.approx(1e-7) and gen.burst_cycles == 3


def test_switch_transcripts():
    sw, t = recorded(ScpiSwitch, SWITCH, "switch")
    sw.route("1101,1201")
    sw.open_all()
    assert t.sent == ["ROUT:OPEN:ALL", "ROUT:CLOS (@1101,1201)", "SYST:ERR?", "ROUT:OPEN:ALL", "SYST:ERR?"]


def test_limits_are_data_and_refused_before_the_wire():
    gen, t = recorded(Keysight33500, PULSER, "pulser", limits={"high_v": (0.0, 2.0)})
    assert gen.allowed("high_v") == (0.0, 2.0)
    with pytest.raises(LimitError, match=r"instrument pulser .*high_v = 2\.5 refused, 2\.5 is outside "
                                         r"0\.\.2; nothing was sent"):
        gen.set_pulse(2.5, 100)
    with pytest.raises(LimitError, match="width_s"):
        gen.set_pulse(1.0, 5.0)  # 5 ns: shorter than the generator can make
    assert t.sent == []
    with pytest.raises(InstrumentError, match="limits 'no_such_control'"):
        Keysight33500(t, "pulser", limits={"no_such_control": (0, 1)}, connect=False)


def test_instrument_error_queue_reaches_the_user():
    smu, t = recorded(Keithley2450, SMU, "smu")
    with pytest.raises(InstrumentError, match=r'instrument smu .* reported error -113 "Undefined header" '
                                              r"after :SOUR:BOGUS"):
        smu.write(":SOUR:BOGUS")


def test_wrong_model_is_refused_with_a_clear_sentence():
    t = RecordingTransport(VisaTransport(*PULSER, timeout_s=2.0))
    with pytest.raises(InstrumentError, match=r"instrument smu \(TCPIP::192\.0\.2\.33::INSTR\) answered "
                                              r"\*IDN\? with model '33522B' .*drives MODEL 2450"):
        Keithley2450(t, "smu")


STATION = """\
station: 1
instruments:
  smu: {driver: keithley2450, resource: "TCPIP::192.0.2.24::INSTR", backend: "keithley2450.yaml@sim",
        timeout_s: 2}
  pulser: {driver: keysight33500, resource: "TCPIP::192.0.2.33::INSTR", backend: "keysight33500.yaml@sim",
           timeout_s: 2, limits: {high_v: [0, 2.5]}}
  switch: {driver: scpi-switch, resource: "TCPIP::192.0.2.50::INSTR", backend: "switch.yaml@sim"}
chip:
  limits: {max_amplitude: 2.0, max_width_ns: 1000}
probe_station:
  technology: reram
  g_max_us: 40
  v_read_v: 0.2
  nplc: 1
  devices:
    - {smu: "1101,1201", pulse: "1102,1202"}
    - {smu: "1103,1203", pulse: "1104,1204"}
"""


def station_file(tmp_path, text=STATION):
    p = tmp_path / "station.yaml"
    p.write_text(text)
    return p


def shared_log_factory(log):
    names = iter(["smu", "pulser", "switch"])

    def factory(*args):
        return RecordingTransport(VisaTransport(*args), name=next(names), log=log)
    return factory


def test_probe_station_composes_a_device_array(tmp_path):
    log = []
    ps = open_probe_station(load_station(station_file(tmp_path)), shared_log_factory(log))
    assert isinstance(ps, ProbeStation)
    assert ps.info.n_devices == 2 and ps.info.limits.max_amplitude == 2.0
    assert ps.info.limits.max_width_ns == 1000 and ps.info.pulse_unit == "V"
    log.clear()
    t_end = ps.pulse(np.array([1]), PulseKind.RESET, 1.5, 100.0)
    assert log == [
        ("switch", "ROUT:OPEN:ALL"), ("switch", "ROUT:CLOS (@1104,1204)"), ("switch", "SYST:ERR?"),
        ("pulser", "FUNC:PULS:WIDT 1e-07"), ("pulser", "VOLT:HIGH 1.5"), ("pulser", "OUTP:POL INV"),
        ("pulser", "SYST:ERR?"), ("pulser", "*TRG"), ("pulser", "*OPC?"), ("pulser", "SYST:ERR?"),
    ]
    assert t_end.shape == (1,) and t_end[0] <= ps.now_s()
    log.clear()
    rb = ps.read(np.array([0]), n_reads=2)
    assert log == [
        ("switch", "ROUT:OPEN:ALL"), ("switch", "ROUT:CLOS (@1101,1201)"), ("switch", "SYST:ERR?"),
        ("smu", ":SOUR:VOLT 0.2"), ("smu", "SYST:ERR?"), ("smu", ":OUTP 1"), ("smu", "SYST:ERR?"),
        ("smu", ":MEAS:CURR?"), ("smu", ":MEAS:CURR?"), ("smu", "SYST:ERR?"),
        ("smu", ":OUTP 0"), ("smu", "SYST:ERR?"),
    ]
    np.testing.assert_allclose(rb.g_us, 10.0)  # 2 µA at 0.2 V
    assert rb.t_s.shape == (1, 2) and rb.t_s[0, 1] >= rb.t_s[0, 0]
    ps.close()


def test_probe_station_refuses_before_anything_is_sent(tmp_path):
    log = []
    ps = open_probe_station(load_station(station_file(tmp_path)), shared_log_factory(log))
    log.clear()
    with pytest.raises(LimitError, match="pulse amplitude 2.2 V exceeds the chip limit 2 V"):
        ps.pulse(np.array([0]), PulseKind.SET, 2.2, 100.0)
    with pytest.raises(LimitError, match="cannot limit current"):
        ps.pulse(np.array([0]), PulseKind.SET, 1.0, 100.0, compliance_ua=50.0)
    with pytest.raises(LimitError, match="address 2 is outside"):
        ps.read(np.array([2]))
    assert log == []


def test_probe_station_through_the_chip_url(tmp_path):
    chip = open_visa_chip("probe-station", str(station_file(tmp_path)))
    assert isinstance(chip, ProbeStation) and chip.info.technology == "reram"
    chip.close()
