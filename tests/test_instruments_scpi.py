"""The SCPI plumbing: blocks, error replies, header forms and the server's framer."""

import numpy as np
import pytest

from instruments import scpi
from instruments.scpi import (
    Block,
    Framer,
    ProtocolError,
    array_block,
    block_to_array,
    encode_block,
    format_error,
    header_forms,
    parse_error,
    split_units,
)


def test_block_round_trip_and_header():
    payload = np.arange(5, dtype="<f8")
    blk = array_block(payload, "<f8")
    assert blk[:4] == b"#240" and len(blk) == 4 + 40
    assert encode_block(b"") == b"#10"
    np.testing.assert_array_equal(block_to_array(blk[4:], "<f8", 5, "x"), payload)
    with pytest.raises(ProtocolError, match="holds 4 values, expected 5"):
        block_to_array(blk[4:-8], "<f8", 5, "x")
    with pytest.raises(ProtocolError, match="not a whole number"):
        block_to_array(blk[4:-3], "<f8", None, "x")


def test_error_replies_quote_and_parse():
    raw = format_error(scpi.DATA_OUT_OF_RANGE, 'amplitude 600 µA; limit "500"')
    assert raw == b'-222,"Data out of range;amplitude 600 uA; limit ""500"""'
    assert parse_error(raw.decode()) == (-222, 'Data out of range;amplitude 600 uA; limit "500"')
    assert parse_error('+0,"No error"') == (0, "No error")
    with pytest.raises(ProtocolError):
        parse_error("garbage")
    assert split_units('1.5;-222,"a;b";x') == ["1.5", '-222,"a;b"', "x"]


def test_header_forms_short_long_optional():
    forms = set(header_forms("SYSTem:ERRor[:NEXT]?"))
    assert {"SYST:ERR?", "SYSTEM:ERROR?", "SYST:ERR:NEXT?", "SYSTEM:ERROR:NEXT?"} <= forms
    assert set(header_forms("*IDN?")) == {"*IDN?"}


def test_framer_keeps_newlines_inside_blocks_and_across_feeds():
    addr = np.array([10, 11, 12], dtype="<u4")  # 10 is a newline byte
    msg = b"chip:addr " + array_block(addr, "<u4") + b";:CHIP:PULS? SET,450,50;:SYST:ERR?\n"
    f = Framer()
    out = []
    for i in range(len(msg)):  # one byte at a time: the worst a socket can do
        out += f.feed(msg[i:i + 1])
    assert len(out) == 1 and out[0].error is None
    units = out[0].units
    assert [u.header for u in units] == ["CHIP:ADDR", "CHIP:PULS?", "SYST:ERR?"]
    assert isinstance(units[0].params[0], Block)
    assert np.frombuffer(units[0].params[0].data, "<u4").tolist() == [10, 11, 12]
    assert units[1].params == ["SET", "450", "50"]


@pytest.mark.parametrize("raw, code", [
    (b"CHIP:ADDR #15abcdefgh\n", scpi.SYNTAX_ERROR),  # declared length shorter than the data
    (b"CHIP:ADDR #0abc\n", scpi.BLOCK_DATA_ERROR),  # indefinite block
    (b"CHIP:ADDR #2xyabc\n", scpi.INVALID_BLOCK_DATA),  # length digits are not digits
    (b"\xff\xfe\x00garbage\n", scpi.SYNTAX_ERROR),
    (b'*IDN? "unterminated\n', scpi.SYNTAX_ERROR),
    (b"CHIP:ADDR#13abc\n", scpi.SYNTAX_ERROR),
])
def test_framer_turns_garbage_into_errors(raw, code):
    f = Framer()
    msgs = f.feed(raw)
    assert len(msgs) == 1 and msgs[0].error is not None and msgs[0].error[0] == code
    # and the next message is understood again
    nxt = f.feed(b"*IDN?\n")
    assert nxt[0].error is None and nxt[0].units[0].header == "*IDN?"


def test_framer_discards_oversized_input_and_recovers():
    f = Framer()
    msgs = f.feed(b"A" * (scpi.MAX_LINE_BYTES + 10))
    assert msgs == []  # the ASCII run was dropped; its message ends at the next newline
    out = f.feed(b"AAA\n*IDN?\n")
    assert out[0].error[0] == scpi.INPUT_BUFFER_OVERRUN and out[1].units[0].header == "*IDN?"
    assert len(f.buf) == 0
    huge = b"CHIP:ADDR #9" + str(scpi.MAX_BLOCK_BYTES + 1).zfill(9).encode() + b"abc"
    out = f.feed(huge)
    assert out and out[0].error[0] == scpi.INPUT_BUFFER_OVERRUN
