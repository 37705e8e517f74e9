"""The simulated chip server as a real subprocess on 127.0.0.1, driven through pyvisa-py: the
device-array protocol end to end, limits on both sides, garbage, many clients, clean shutdown."""

import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from devmodel.array import PulseKind
from devmodel.chips import open_chip
from devmodel.errors import LimitError
from instruments.base import InstrumentError
from instruments.chip import ScpiChip, open_visa_chip
from instruments.station import ChipLimits
from instruments.testing import ServerProcess
from instruments.transport import RecordingTransport, VisaTransport


@pytest.fixture(scope="module")
def server():
    with ServerProcess("--seed", "3", "--devices", "4096") as s:
        yield s


def raw(port: int, message: bytes, timeout_s: float = 5.0) -> bytes:
    """Send one message on a fresh socket and return the reply line (without the newline)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(message)
        return _line(s)


def _line(s: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf[:-1]


def test_banner_names_the_bound_port(server):
    assert f"listening on 127.0.0.1:{server.port}" in server.banner and server.port > 0
    assert "SIM-PCM" in server.banner
    assert raw(server.port, b"*IDN?\n") == b"devmodel,SIM-PCM,3,0.1.0"


def test_visa_chip_is_the_simulated_chip_call_for_call():
    """Same seed, same calls: the chip behind the socket answers exactly what the in-process one does
    (float64 on the wire, times in repr: the protocol loses nothing)."""
    with ServerProcess("--seed", "11", "--devices", "2048") as s:
        remote = open_visa_chip(s.resource)
        local = open_chip("sim:pcm?devices=2048&seed=11")
        try:
            # the same chip, but the server has a boot of its own (a restart changes it)
            assert remote.info.to_dict() | {"boot_id": ""} == local.info.to_dict()
            assert len(remote.info.boot_id) == 16
            for chip in (remote, local):
                chip.wait(2.5)
            a = np.array([5, 7, 100, 3])  # not contiguous: travels as a uint32 block
            amps = np.array([120.0, 250.0, 400.0, 90.0])
            np.testing.assert_array_equal(remote.pulse(a, PulseKind.RESET, amps, 50.0),
                                          local.pulse(a, PulseKind.RESET, amps, 50.0))
            kinds = np.array([0, 1, 0, 1], np.int8)
            np.testing.assert_array_equal(remote.pulse(a, kinds, 100.0, [50, 60, 70, 80]),
                                          local.pulse(a, kinds, 100.0, [50, 60, 70, 80]))
            for args in ((np.arange(10, 20), 1, 0.0), (a, 4, 0.0), (a, 3, 0.5), (np.empty(0, int), 1, 0.0)):
                rr, rl = remote.read(*args), local.read(*args)
                np.testing.assert_array_equal(rr.g_us, rl.g_us)
                np.testing.assert_array_equal(rr.t_s, rl.t_s)
                assert rr.g_us.shape == (len(args[0]), args[1])
            assert remote.now_s() == local.now_s()
            gt = remote.ground_truth()
            np.testing.assert_array_equal(gt["devices"]["nu"], local.ground_truth()["devices"]["nu"])
        finally:
            remote.close()


def test_real32_format_is_accepted(server):
    t = VisaTransport(server.resource, "@py", 5.0)
    chip = ScpiChip(t, real_bits=32)
    rb = chip.read(np.arange(8), 2)
    assert rb.g_us.dtype == np.float64 and rb.g_us.shape == (8, 2) and np.all(np.isfinite(rb.g_us))
    chip.close()


def test_a_pulse_above_the_limit_never_reaches_the_wire(server):
    t = RecordingTransport(VisaTransport(server.resource, "@py", 5.0))
    chip = ScpiChip(t, station_limits=ChipLimits(max_amplitude=300.0, address_range=(0, 99)))
    assert chip.info.limits.max_amplitude == 300.0  # the station narrows the chip's 500 µA
    assert chip.info.limits.max_width_ns == 10_000.0  # and leaves what it does not mention
    sent_before = list(t.sent)
    cases = [
        (lambda: chip.pulse(np.array([1, 2]), PulseKind.RESET, [100.0, 301.0], 50.0),
         "pulse amplitude 301 uA exceeds the chip limit 300 uA; nothing was sent"),
        (lambda: chip.pulse(np.array([1]), PulseKind.RESET, 100.0, 20_000.0), "pulse width 20000 ns"),
        (lambda: chip.pulse(np.array([150]), PulseKind.SET, 100.0, 50.0),
         "address 150 is outside the station's address range 0..99"),
        (lambda: chip.pulse(np.array([5000]), PulseKind.SET, 100.0, 50.0), "outside the chip's range"),
        (lambda: chip.pulse(np.array([1]), PulseKind.SET, np.nan, 50.0), "must be finite"),
        (lambda: chip.read(np.array([120])), "address 120 is outside the station's address range"),
    ]
    for call, phrase in cases:
        with pytest.raises(LimitError, match=phrase):
            call()
    assert t.sent == sent_before  # not a byte
    chip.pulse(np.array([1]), PulseKind.RESET, 300.0, 50.0)
    assert any(c.startswith("CHIP:ADDR:RANG 1,1;:CHIP:PULS? RES,300.0,50.0") for c in t.sent)
    chip.close()


@pytest.mark.parametrize("message, phrase", [
    (b"CHIP:ADDR:RANG 0,4;:CHIP:PULS? RES,600,50;:SYST:ERR?\n",
     b'-222,"Data out of range;pulse amplitude 600 uA exceeds the chip limit 500 uA"'),
    (b"CHIP:ADDR:RANG 0,4;:CHIP:PULS? RES,100,1e9;:SYST:ERR?\n", b"-222,\"Data out of range;pulse width"),
    (b"CHIP:ADDR:RANG 4090,10;:SYST:ERR?\n", b"-222,\"Data out of range;addresses 4090..4099"),
    (b"CHIP:ADDR:RANG 0,1;:CHIP:PULS? BOOM,100,50;:SYST:ERR?\n", b"-224,\"Illegal parameter value"),
    (b"CHIP:ADDR:RANG 0,1;:CHIP:READ? 0;:SYST:ERR?\n", b"-222,\"Data out of range;read count 0"),
    (b"CHIP:CLOC:ADV -1;:SYST:ERR?\n", b"-222,\"Data out of range;the chip clock cannot go back"),
])
def test_the_server_enforces_limits_itself(server, message, phrase):
    """A client that skips its checks (here: raw bytes) is refused by the server: nothing happens."""
    before = raw(server.port, b"CHIP:CLOC?\n")
    assert raw(server.port, message).startswith(phrase)
    assert raw(server.port, b"CHIP:CLOC?\n") == before  # the refused pulse did not run


def test_a_failed_selection_is_not_reused(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"CHIP:ADDR:RANG 0,2;:CHIP:ADDR:RANG 0,99999;:CHIP:PULS? SET,100,50;"
                  b":SYST:ERR?;:SYST:ERR?;:SYST:ERR?\n")
        reply = _line(s)
    # no pulse answer at all: the bad selection cleared the good one before the pulse
    assert not reply.startswith(b"#")
    assert reply.split(b";")[0].startswith(b"-222") and b"-221" in reply


GARBAGE = [
    b"\x00\x01\x02\xff\xfe\n",
    b"NOT:A:COMMAND?\n",
    b"*IDN? extra,params\n",
    b"CHIP:ADDR #3004abcd\n",  # block too short for its length: swallows the newline
    b"\n\n;;;\n",
    b"CHIP:ADDR #0\n",
    b"CHIP:ADDR #9999999999\n",
    b"CHIP:PULS? SET,\"unterminated\n",
    b"CHIP:ADDR:RANG a,b;:CHIP:READ? 1e400\n",
    b"FORM:DATA REAL,16;:FORM:BORD SIDEWAYS\n",
    "CHIP:ADDR:RANG 0,1;:CHIP:PULS? SET,1,5,µ\n".encode(),
    b"SYST:ERR?" * 5000 + b"\n",
]


def test_garbage_is_answered_with_errors_and_the_server_keeps_serving(server):
    rng = np.random.default_rng(5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        for g in GARBAGE[:3]:
            s.sendall(g)
        s.sendall(b"SYST:ERR:COUN?\n")
        count = _line(s)
        assert count.endswith(b"3") or count.split(b";")[-1] == b"3"
    for g in GARBAGE:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(g + b"\n*CLS\n")
    for _ in range(20):  # random bytes, a connection each, closed without reading
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes())
    assert raw(server.port, b"*IDN?;:SYST:ERR?\n") == b'devmodel,SIM-PCM,3,0.1.0;0,"No error"'
    chip = open_visa_chip(server.resource)
    assert chip.read(np.arange(4)).g_us.shape == (4, 1)
    chip.close()


def test_errors_queue_per_connection_with_overflow(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"BOGUS\n" * 40 + b"SYST:ERR:COUN?\n")
        assert _line(s) == b"32"
        replies = []
        for _ in range(32):
            s.sendall(b"SYST:ERR?\n")
            replies.append(_line(s))
        assert replies[0].startswith(b'-113,"Undefined header;BOGUS"') and replies[-1].startswith(b"-350")
        s.sendall(b"SYST:ERR?\n")
        assert _line(s) == b'0,"No error"'
    assert raw(server.port, b"SYST:ERR?\n") == b'0,"No error"'  # another client's queue is its own


def test_many_sequential_clients_share_one_chip(server):
    times = []
    for _ in range(25):
        assert raw(server.port, b"*IDN?\n").startswith(b"devmodel,SIM-PCM")
    for _ in range(3):
        chip = open_visa_chip(server.resource)
        chip.wait(1.0)
        times.append(chip.now_s())
        chip.close()
    assert times[1] >= times[0] + 1.0 and times[2] >= times[1] + 1.0  # the chip's state persists


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_clean_shutdown_on_signals(sig):
    s = ServerProcess("--devices", "64").start()
    try:
        open_visa_chip(s.resource)  # a client still connected must not block the shutdown
        assert s.stop(sig) == 0
        assert "stopped after 1 client connection(s)" in s.proc.stderr.read()
    finally:
        s.kill()
        s.proc.stdout.close()
        s.proc.stderr.close()


def test_binding_beyond_loopback_needs_a_flag_and_a_taken_port_is_one_sentence(server):
    run = [sys.executable, "-m", "devmodel", "serve-chip", "--devices", "64"]
    r = subprocess.run(run + ["--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "pass --allow-remote" in r.stderr and r.stderr.count("\n") == 1
    r = subprocess.run(run + ["--port", str(server.port)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "could not listen" in r.stderr and "Traceback" not in r.stderr


def test_unknown_instrument_on_the_port_is_refused(server):
    with pytest.raises(InstrumentError, match=r"answered \*IDN\? with model 'SIM-PCM'.*drives TCC-1"):
        ScpiChip(VisaTransport(server.resource, "@py", 5.0), models=("TCC-1",))


def test_reram_chip_with_per_address_compliance():
    with ServerProcess("--technology", "reram", "--seed", "4", "--devices", "512") as s:
        remote = open_visa_chip(s.resource)
        local = open_chip("sim:reram?devices=512&seed=4")
        try:
            assert remote.info.pulse_unit == "V" and remote.info.limits.max_compliance_ua == 200.0
            a = np.array([9, 2, 40])
            args = (a, PulseKind.SET, np.array([1.0, 1.2, 1.4]), 100.0, np.array([5.0, 10.0, 20.0]))
            np.testing.assert_array_equal(remote.pulse(*args), local.pulse(*args))
            np.testing.assert_array_equal(remote.read(a, 2).g_us, local.read(a, 2).g_us)
            with pytest.raises(LimitError, match="compliance 250 µA exceeds the chip limit 200 µA"):
                remote.pulse(a[:1], PulseKind.SET, 1.0, 100.0, 250.0)
        finally:
            remote.close()


def test_serve_chip_takes_a_station_files_limits_and_enforces_them_itself(tmp_path):
    """`serve-chip --station` declares the station's narrower limits and refuses, on the server, what
    exceeds them, so a station limit is enforced on both sides of the wire."""
    station = tmp_path / "station.yaml"
    station.write_text("station: 1\nchip:\n  limits:\n    max_amplitude: 300\n    address_range: [0, 99]\n")
    with ServerProcess("--devices", "4096", "--station", str(station)) as s:
        chip = ScpiChip(VisaTransport(s.resource, "@py", 5.0))  # no station on the client side
        assert chip.info.limits.max_amplitude == 300.0
        chip.close()
        assert raw(s.port, b"CHIP:ADDR:RANG 0,4;:CHIP:PULS? RES,400,50;:SYST:ERR?\n").startswith(
            b'-222,"Data out of range;pulse amplitude 400 uA exceeds the chip limit 300 uA"')
        assert raw(s.port, b"CHIP:ADDR:RANG 95,10;:CHIP:READ? 1;:SYST:ERR?\n").startswith(
            b'-222,"Data out of range;address 100 is outside the station\'s range 0..99"')
        assert raw(s.port, b"CHIP:ADDR:RANG 0,4;:CHIP:PULS? RES,300,50;:SYST:ERR?\n").endswith(
            b'0,"No error"')
