"""Station files: schema-validated YAML; one sentence naming the file and the field for each mistake."""


import pytest
from helpers import run_devmodel

from devmodel.array import Limits
from instruments.station import ChipLimits, StationError, load_station

GOOD = """\
station: 1
name: bench 3
instruments:
  chip: {driver: scpi-chip, resource: "TCPIP::127.0.0.1::5025::SOCKET", backend: "@py", timeout_s: 30,
         models: [SIM-PCM, TCC-.*]}
  smu: {driver: keithley2450, resource: "TCPIP::192.0.2.24::INSTR", backend: "keithley2450.yaml@sim",
        limits: {nplc: [0.1, 2]}}
chip:
  limits: {max_amplitude: 450, max_width_ns: 2000, max_compliance_ua: 150, max_pulses_per_device: 80,
           address_range: [0, 65535]}
"""


def write(tmp_path, text):
    p = tmp_path / "station.yaml"
    p.write_text(text)
    return p


def test_a_good_station_loads(tmp_path):
    st = load_station(write(tmp_path, GOOD))
    chip = st.instrument("chip", "scpi-chip")
    assert chip.timeout_s == 30 and chip.models == ("SIM-PCM", "TCC-.*") and st.name == "bench 3"
    assert st.instruments["smu"].limits == {"nplc": (0.1, 2)}
    assert st.chip_limits.address_range == (0, 65535)
    assert st.backend_for(st.instruments["smu"]).endswith("instruments/sim/keithley2450.yaml@sim")
    assert st.backend_for(chip) == "@py"


def test_station_limits_only_ever_narrow():
    declared = Limits(max_amplitude=500.0, max_width_ns=10_000.0, max_compliance_ua=None)
    got = ChipLimits(max_amplitude=600.0, max_width_ns=2000.0, max_compliance_ua=100.0).combine(declared)
    assert got.max_amplitude == 500.0 and got.max_width_ns == 2000.0 and got.max_compliance_ua == 100.0
    assert ChipLimits().combine(declared) == declared


@pytest.mark.parametrize("text, phrase", [
    ("station: 1\ninstruments: {chip: {driver: gpib-magic}}\n",
     "instruments.chip.driver: 'gpib-magic' is not one of"),
    ("station: 1\nchip: {limits: {max_amplitude: -5}}\n",
     "chip.limits.max_amplitude: -5 is less than or equal"),
    ("station: 1\nchip: {limits: {max_width: 5}}\n", "chip.limits: Additional properties are not allowed"),
    ("station: 2\n", "station: 1 was expected"),
    ("instruments: {}\n", "the top level: 'station' is a required property"),
    ("station: 1\nchip: {limits: {address_range: [10, 5]}}\n", "first address 10 is after the last 5"),
    ("station: 1\ninstruments: {chip: {driver: scpi-chip, timeout_s: 0}}\n", "instruments.chip.timeout_s"),
    ("station: [1\n", "is not valid YAML at line"),
    ("station: 1\nprobe_station: {technology: pcm, g_max_us: 25, devices: [{}]}\n",
     "probe_station.smu names instrument 'smu', which is not under instruments"),
])
def test_bad_station_files_are_one_sentence(tmp_path, text, phrase):
    p = write(tmp_path, text)
    with pytest.raises(StationError) as e:
        load_station(p)
    assert phrase in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value)


def test_missing_station_and_missing_sim_file(tmp_path):
    with pytest.raises(StationError, match="does not exist"):
        load_station(tmp_path / "nope.yaml")
    st = load_station(write(tmp_path, "station: 1\ninstruments: {smu: {driver: keithley2450, "
                                      "backend: 'nope.yaml@sim'}}\n"))
    with pytest.raises(StationError, match="pyvisa-sim file 'nope.yaml', which does not exist"):
        st.backend_for(st.instruments["smu"])


def test_the_cli_reports_a_bad_station_and_writes_nothing(tmp_path):
    p = write(tmp_path, "station: 1\nchip: {limits: {max_amplitude: zero}}\n")
    out = tmp_path / "s.h5"
    r = run_devmodel("characterize", "--chip", "visa://TCPIP::127.0.0.1::5025::SOCKET", "--station", p,
                     "--quiet", "--out", out, timeout_s=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "chip.limits.max_amplitude: 'zero' is not of type 'number'" in r.stderr
    assert not out.exists()
