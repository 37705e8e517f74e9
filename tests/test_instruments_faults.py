"""Bad answers from an instrument: malformed replies, wrong block lengths, a wrong *IDN? model, a
timeout, a connection closed mid-batch. Each is one sentence naming the instrument and the command;
the driver refuses to go on out of step until it reconnects, and a session stops with nothing
half-written."""

import socket

import h5py
import numpy as np
import pytest
from helpers import run_devmodel

from devmodel.technologies.pcm.physics import SimulatedPCM
from instruments.base import InstrumentConnectionError, InstrumentError, InstrumentTimeoutError
from instruments.chip import ScpiChip
from instruments.scpi import encode_block
from instruments.server import ChipServer
from instruments.testing import ThreadedServer
from instruments.transport import VisaTransport


class FaultyServer(ChipServer):
    """A chip server that spoils its answer to the ``after``-th message containing ``header``."""

    def __init__(self, mode: str, header: str = "CHIP:READ?", after: int = 1, times: int = 1) -> None:
        super().__init__(SimulatedPCM(n_devices=4096, seed=1), port=0)
        self.mode, self.header, self.after, self.times = mode, header, after, times
        self.seen = 0

    def respond(self, conn, msg, out):
        if not any(u.header == self.header for u in msg.units):
            return out
        self.seen += 1
        if not self.after <= self.seen < self.after + self.times:
            return out
        if self.mode == "idn":
            return b"ACME Instruments,TCC-9000,0042,1.0\n"
        if self.mode == "garbage":
            return b"\x00garbage\n"
        if self.mode == "silent":
            return b""
        if self.mode == "fewer_values":  # properly framed, one value short
            g = out[out.index(b"#"):]
            nd = int(g[1:2])
            n = int(g[2:2 + nd])
            return encode_block(g[2 + nd:2 + nd + n - 8]) + g[2 + nd + n:]
        if self.mode == "short_length":  # header claims fewer bytes than follow
            nd = int(out[1:2])
            n = int(out[2:2 + nd])
            return b"#" + str(len(str(n - 8))).encode() + str(n - 8).encode() + out[2 + nd:]
        if self.mode == "long_length":  # header claims more bytes than will ever come
            nd = int(out[1:2])
            n = int(out[2:2 + nd])
            return b"#" + str(len(str(n + 100))).encode() + str(n + 100).encode() + out[2 + nd:]
        if self.mode == "close":  # half an answer, then the connection drops
            conn.sock.sendall(out[: len(out) // 2])
            conn.sock.shutdown(socket.SHUT_RDWR)
            return b""
        raise AssertionError(self.mode)


def connect(srv: ThreadedServer, timeout_s: float = 1.0) -> ScpiChip:
    return ScpiChip(VisaTransport(srv.resource, "@py", timeout_s))


@pytest.mark.parametrize("mode, error, phrase", [
    ("garbage", InstrumentError, r"answered CHIP:READ\? with a malformed reply: expected an error reply"),
    ("fewer_values", InstrumentError, r"answered CHIP:READ\? badly: conductances: block holds 9 values, "
                                      r"expected 10"),
    ("short_length", InstrumentError, r"answered CHIP:READ\? with a malformed reply: expected ',#' between"),
    ("long_length", InstrumentTimeoutError, r"did not answer CHIP:READ\?: no answer within 1 s"),
    ("silent", InstrumentTimeoutError, r"did not answer CHIP:READ\?: no answer within 1 s"),
    ("close", InstrumentConnectionError, r"failed during CHIP:READ\?: the connection was closed"),
])
def test_bad_answers_are_one_sentence_naming_instrument_and_command(mode, error, phrase):
    with ThreadedServer(FaultyServer(mode)) as srv:
        chip = connect(srv)
        who = rf"^instrument chip \(TCPIP::127\.0\.0\.1::{srv.server.port}::SOCKET\) "
        with pytest.raises(error, match=who + phrase) as e:
            chip.read(np.arange(10))
        assert "\n" not in str(e.value)
        if mode != "fewer_values":  # the stream is out of step: nothing more goes out until reconnect
            with pytest.raises(InstrumentConnectionError, match="out of step.*reconnect before sending"):
                chip.now_s()
        chip.reconnect()  # the hook the reliability work builds on
        assert chip.read(np.arange(10)).g_us.shape == (10, 1)
        chip.close()


def test_wrong_idn_model_is_refused():
    with ThreadedServer(FaultyServer("idn", header="*IDN?")) as srv:
        with pytest.raises(InstrumentError, match=r"answered \*IDN\? with model 'TCC-9000' "
                                                  r"\(ACME Instruments\); ScpiChip drives .*SIM-PCM"):
            connect(srv)


def test_nothing_listening_is_one_sentence(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nobody listens there
    r = run_devmodel("characterize", "--chip", f"visa://TCPIP::127.0.0.1::{port}::SOCKET", "--devices", "5",
                     "--quiet", "--out", tmp_path / "x.h5", timeout_s=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert f"instrument chip (TCPIP::127.0.0.1::{port}::SOCKET)" in r.stderr and "*IDN?" in r.stderr


def test_a_session_cut_mid_batch_stops_cleanly_with_nothing_half_written(tmp_path):
    out = tmp_path / "cut.h5"
    station = tmp_path / "station.yaml"  # a short timeout: pyvisa-py sees a closed socket only then
    station.write_text("station: 1\ninstruments:\n  chip: {driver: scpi-chip, timeout_s: 1}\n")
    with ThreadedServer(FaultyServer("close", after=40)) as srv:
        r = run_devmodel("characterize", "--chip", f"visa://{srv.resource}", "--station", station,
                         "--devices", "20", "--schedule", "20,600", "--burst-devices", "0", "--quiet",
                         "--out", out, timeout_s=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "instrument chip" in r.stderr and "CHIP:READ?" in r.stderr and "connection was closed" in r.stderr
    with h5py.File(out) as f:
        assert f.attrs["status"] == "failed" and "CHIP:READ?" in f.attrs["status_reason"]
        for table in ("reads", "trace"):
            n = int(f[table].attrs["n_rows"])
            assert all(ds.shape == (n,) for ds in f[table].values())  # whole batches only


def test_a_limit_violation_is_refused_before_anything_is_sent_or_written(tmp_path):
    """The verify settings' largest pulse is checked against the station's limits before the session
    file exists (issue 16, part 4); before that check the session started, its first pulse was refused
    by the driver and the file recorded the failure."""
    station = tmp_path / "station.yaml"
    station.write_text("station: 1\nchip:\n  limits: {max_amplitude: 300}\n")
    out = tmp_path / "limited.h5"
    with ThreadedServer(FaultyServer("none", header="never")) as srv:
        r = run_devmodel("characterize", "--chip", f"visa://{srv.resource}", "--station", station,
                         "--devices", "5", "--burst-devices", "0", "--quiet", "--out", out, timeout_s=120)
        chip_time_s = srv.server.chip.now_s()
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "pulse amplitude 450 uA exceeds the chip limit 300 uA; nothing was sent" in r.stderr
    assert not out.exists()  # refused before the file was written
    assert chip_time_s == 0.0  # no pulse (and no read) reached the chip
