"""SCPI message plumbing shared by the drivers and the simulated chip server.

IEEE 488.2 definite-length blocks (``#<d><length><payload>``), SCPI error replies
(``<code>,"<text>"``), response units separated by ``;`` (quotes respected), the SCPI header grammar
with short and long forms (``SYSTem:ERRor[:NEXT]?`` accepts ``SYST:ERR?`` and ``system:error:next?``)
and the server-side framer that cuts a byte stream into program messages without being fooled by
newlines inside binary blocks. See docs/chip-protocol.md.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

#: Largest block either side accepts (a 2^24-device batch of float64 values is 128 MiB).
MAX_BLOCK_BYTES = 1 << 28
#: Longest run of ASCII without a newline the server buffers before it gives up on the message.
MAX_LINE_BYTES = 1 << 16

# SCPI standard error codes used by the chip protocol (SCPI-99 volume 2, chapter 21).
NO_ERROR = 0
COMMAND_ERROR = -100
SYNTAX_ERROR = -102
DATA_TYPE_ERROR = -104
PARAMETER_NOT_ALLOWED = -108
MISSING_PARAMETER = -109
UNDEFINED_HEADER = -113
BLOCK_DATA_ERROR = -160
INVALID_BLOCK_DATA = -161
EXECUTION_ERROR = -200
SETTINGS_CONFLICT = -221
DATA_OUT_OF_RANGE = -222
TOO_MUCH_DATA = -223
ILLEGAL_PARAMETER_VALUE = -224
HARDWARE_MISSING = -241
DEVICE_ERROR = -300
QUEUE_OVERFLOW = -350
INPUT_BUFFER_OVERRUN = -363

ERROR_TEXT = {
    NO_ERROR: "No error",
    COMMAND_ERROR: "Command error",
    SYNTAX_ERROR: "Syntax error",
    DATA_TYPE_ERROR: "Data type error",
    PARAMETER_NOT_ALLOWED: "Parameter not allowed",
    MISSING_PARAMETER: "Missing parameter",
    UNDEFINED_HEADER: "Undefined header",
    BLOCK_DATA_ERROR: "Block data error",
    INVALID_BLOCK_DATA: "Invalid block data",
    EXECUTION_ERROR: "Execution error",
    SETTINGS_CONFLICT: "Settings conflict",
    DATA_OUT_OF_RANGE: "Data out of range",
    TOO_MUCH_DATA: "Too much data",
    ILLEGAL_PARAMETER_VALUE: "Illegal parameter value",
    HARDWARE_MISSING: "Hardware missing",
    DEVICE_ERROR: "Device-specific error",
    QUEUE_OVERFLOW: "Queue overflow",
    INPUT_BUFFER_OVERRUN: "Input buffer overrun",
}


class ProtocolError(ValueError):
    """Bytes that do not follow the protocol (a malformed block, error reply or response)."""


# -- blocks ----------------------------------------------------------------------------------------
def encode_block(payload: bytes | memoryview) -> bytes:
    """Wrap ``payload`` in an IEEE 488.2 definite-length block header ``#<d><length>``."""
    payload = memoryview(payload).cast("B")  # a typed view's len() counts items, not bytes
    n = len(payload)
    digits = str(n)
    if len(digits) > 9:
        raise ProtocolError(f"a block of {n} bytes is too long for a definite-length header")
    return b"#" + str(len(digits)).encode() + digits.encode() + bytes(payload)


def array_block(values: np.ndarray, dtype: str) -> bytes:
    """``values`` as a definite-length block of ``dtype`` (e.g. ``'<f8'``, ``'<u4'``)."""
    return encode_block(np.ascontiguousarray(values, dtype=dtype).data)


def parse_block_header(head: bytes) -> int:
    """Number of length digits announced by the two bytes ``#<d>``; raise on anything else."""
    if len(head) != 2 or head[:1] != b"#" or not head[1:2].isdigit() or head[1:2] == b"0":
        raise ProtocolError(f"expected a definite-length block header '#<1-9>', got {head[:16]!r}")
    return int(head[1:2])


def parse_block_length(digits: bytes) -> int:
    """The payload length written in the header's length digits."""
    if not digits.isdigit():
        raise ProtocolError(f"block length {digits[:16]!r} is not a decimal number")
    n = int(digits)
    if n > MAX_BLOCK_BYTES:
        raise ProtocolError(f"block of {n} bytes exceeds the limit of {MAX_BLOCK_BYTES} bytes")
    return n


def block_to_array(payload: bytes | memoryview, dtype: str, count: int | None, what: str) -> np.ndarray:
    """Decode a block payload; ``count`` (values expected) is checked so a short block never passes."""
    item = np.dtype(dtype).itemsize
    if len(payload) % item:
        raise ProtocolError(f"{what}: block of {len(payload)} bytes is not a whole number of "
                            f"{item}-byte values")
    n = len(payload) // item
    if count is not None and n != count:
        raise ProtocolError(f"{what}: block holds {n} values, expected {count}")
    return np.frombuffer(payload, dtype=dtype)  # read-only view; callers copy if they keep it


# -- error replies and response units ----------------------------------------------------------------
_ERROR_RE = re.compile(r'\s*([+-]?\d+)\s*,\s*"((?:[^"]|"")*)"\s*')


def format_error(code: int, text: str = "") -> bytes:
    """``<code>,"<standard text>[;<detail>]"`` as SCPI error queues answer (ASCII, quotes doubled)."""
    msg = ERROR_TEXT.get(code, "Error")
    if text:
        msg = f"{msg};{text}"
    msg = msg.replace("µ", "u").replace('"', '""')
    return f'{code},"{msg}"'.encode("ascii", "replace")


def parse_error(reply: str) -> tuple[int, str]:
    """(code, text) of a ``SYST:ERR?`` reply; raise ProtocolError if it is not one."""
    m = _ERROR_RE.fullmatch(reply)
    if not m:
        raise ProtocolError(f"{reply[:80]!r} is not an error reply '<code>,\"<text>\"'")
    return int(m.group(1)), m.group(2).replace('""', '"')


def split_units(line: str, sep: str = ";") -> list[str]:
    """Split a response line at ``sep`` outside double-quoted strings."""
    out, cur, quoted = [], [], False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


# -- header grammar ------------------------------------------------------------------------------------
def header_forms(pattern: str) -> Iterator[str]:
    """Every accepted spelling (upper case) of a SCPI header pattern such as ``SYSTem:ERRor[:NEXT]?``.

    Upper-case letters of a node are its short form; bracketed nodes are optional.
    """
    query = pattern.endswith("?")
    body = pattern[:-1] if query else pattern
    nodes = re.findall(r"\[:?([^\]]+)\]|:?([^:\[\]]+)", body)
    choices: list[list[str]] = []
    for opt, req in nodes:
        name = opt or req
        short = "".join(c for c in name if c.isupper() or c.isdigit() or c == "*")
        forms = sorted({short, name.upper()})
        choices.append(forms + [""] if opt else forms)
    for combo in itertools.product(*choices):
        head = ":".join(c for c in combo if c)
        yield head + ("?" if query else "")


# -- server-side framing ------------------------------------------------------------------------------
@dataclass
class Block:
    """A definite-length block parameter (zero-copy view of the message)."""

    data: memoryview


@dataclass
class Unit:
    """One message unit: its header (upper case, leading ':' removed) and parameters."""

    header: str
    params: list[str | Block] = field(default_factory=list)


@dataclass
class Message:
    """One program message (up to a newline outside blocks), or the framing error that spoiled it."""

    units: list[Unit]
    error: tuple[int, str] | None = None


_SCAN = re.compile(rb"[\n#]")


class Framer:
    """Cut a byte stream into program messages.

    A newline ends a message unless it lies inside a definite-length block, so the framer reads
    block headers as it goes. It never raises on bad input: a malformed message comes out with
    ``error`` set (the server queues it and carries on), an oversized ASCII run or block is discarded.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pos = 0  # scan position in buf
        self.spans: list[tuple[int, int, int]] = []  # (header, payload start, end) of its blocks
        self.error: tuple[int, str] | None = None
        self.skip = 0  # bytes of an oversized block still to discard

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes; return the messages they complete (possibly none)."""
        out: list[Message] = []
        if self.skip:
            k = min(self.skip, len(data))
            self.skip -= k
            data = data[k:]
        self.buf += data
        while True:
            m = _SCAN.search(self.buf, self.pos)
            if m is None:
                self.pos = len(self.buf)
                if self.pos - (self.spans[-1][2] if self.spans else 0) > MAX_LINE_BYTES:
                    self._fail(INPUT_BUFFER_OVERRUN, f"no newline in {MAX_LINE_BYTES} bytes")
                    self._reset(len(self.buf))
                return out
            i = m.start()
            if self.buf[i] == 0x0A:
                out.append(self._cut(i))
                continue
            # '#': a block if a digit 1-9 follows, else an ordinary character (a syntax error later)
            if i + 2 > len(self.buf):
                self.pos = i
                return out
            d = self.buf[i + 1]
            if not 0x31 <= d <= 0x39:
                if d == 0x30:
                    self._fail(BLOCK_DATA_ERROR, "indefinite-length blocks (#0) are not supported")
                self.pos = i + 1
                continue
            nd = d - 0x30
            if i + 2 + nd > len(self.buf):
                self.pos = i
                return out
            digits = bytes(self.buf[i + 2:i + 2 + nd])
            if not digits.isdigit():
                self._fail(INVALID_BLOCK_DATA, f"block length {digits!r} is not a number")
                self.pos = i + 2
                continue
            length = int(digits)
            start = i + 2 + nd
            if length > MAX_BLOCK_BYTES:
                # the message is lost; discard the announced payload and resynchronise after it
                self._fail(INPUT_BUFFER_OVERRUN, f"block of {length} bytes exceeds {MAX_BLOCK_BYTES}")
                have = len(self.buf) - start
                self.skip = max(length - have, 0)
                out.append(self._cut(min(start + length, len(self.buf)), drop_newline=False))
                continue
            if start + length > len(self.buf):
                self.pos = i
                return out
            self.spans.append((i, start, start + length))
            self.pos = start + length

    def _fail(self, code: int, text: str) -> None:
        if self.error is None:
            self.error = (code, text)

    def _reset(self, upto: int) -> None:
        del self.buf[:upto]
        self.pos = 0
        self.spans = []

    def _cut(self, end: int, drop_newline: bool = True) -> Message:
        raw = bytes(self.buf[:end])
        spans, error = self.spans, self.error
        self._reset(end + 1 if drop_newline else end)
        self.error = None
        if error is not None:
            return Message([], error)
        try:
            return Message(_split_message(raw, spans))
        except ProtocolError as e:
            return Message([], (SYNTAX_ERROR, str(e)))


def _split_message(raw: bytes, spans: list[tuple[int, int, int]]) -> list[Unit]:
    """Units and parameters of one message; blocks are skipped over, never scanned."""
    view = memoryview(raw)
    units: list[Unit] = []
    unit: Unit | None = None
    tok = bytearray()
    in_header = True
    quoted = False
    span_iter = iter(spans)
    nxt = next(span_iter, None)
    i, n = 0, len(raw)

    def close_param() -> None:
        s = tok.decode("ascii", "replace").strip()
        if s:
            unit.params.append(s)
        tok.clear()

    while i < n:
        if nxt is not None and i == nxt[0]:
            if in_header or unit is None or tok.strip():
                raise ProtocolError("a block may only stand as a whole parameter")
            unit.params.append(Block(view[nxt[1]:nxt[2]]))
            i = nxt[2]
            nxt = next(span_iter, None)
            # only whitespace may separate a block from the next ',' or ';'
            while i < n and raw[i] in b" \t\r":
                i += 1
            if i < n and raw[i] not in b",;":
                raise ProtocolError("block length does not match its data: junk follows the block")
            if i < n and raw[i:i + 1] == b",":
                i += 1
            continue
        c = raw[i]
        if c == 0x22:  # '"'
            quoted = not quoted
        if not quoted and c == 0x3B:  # ';' ends the unit
            if unit is not None:
                if not in_header:
                    close_param()
                units.append(unit)
            elif tok.strip():
                units.append(Unit(_header(tok)))
            unit, in_header = None, True
            tok.clear()
            i += 1
            continue
        if in_header:
            if c in b" \t" and tok.strip():
                unit = Unit(_header(tok))
                tok.clear()
                in_header = False
            elif c not in b" \t\r":
                tok.append(c)
        elif not quoted and c == 0x2C:  # ','
            close_param()
        else:
            tok.append(c)
        i += 1
    if in_header and tok.strip():
        unit = Unit(_header(tok))
    elif unit is not None:
        close_param()
    if unit is not None:
        units.append(unit)
    if quoted:
        raise ProtocolError("unterminated string")
    return units


def _header(tok: bytearray) -> str:
    s = tok.decode("ascii", "replace").strip().upper()
    if s.startswith(":"):
        s = s[1:]
    if not s or not re.fullmatch(r"\*?[A-Z][A-Z0-9]*(:[A-Z][A-Z0-9]*)*\??", s):
        raise ProtocolError(f"{s[:40]!r} is not a command header")
    return s

