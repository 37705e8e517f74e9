"""The simulated chip server: a simulated chip behind the SCPI test-chip protocol on a TCP socket.

One thread, a selector over the listening socket and every client connection; commands run one at a
time against one shared chip (a chip has one state, whoever talks to it), while format settings,
the address selection and the error queue belong to each connection. Bad input of any kind ends as
an entry in that connection's error queue (docs/chip-protocol.md), never as an exception that stops
the server; limits are checked here again with :func:`devmodel.array.check_pulses`, whatever the
client claims to have checked.
"""

from __future__ import annotations

import io
import json
import selectors
import socket
import sys
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable

import numpy as np

from devmodel.array import HasGroundTruth, PulseKind, as_addresses, check_pulses
from devmodel.errors import DevmodelError, LimitError
from instruments import scpi
from instruments.scpi import Block, Framer, Message, encode_block, format_error, header_forms
from instruments.station import outside_range

PROTOCOL = "DEVMODEL-CHIP,1"
ERROR_QUEUE_DEPTH = 32
#: Per-client bounds (docs/chip-protocol.md, "Sharing the chip"): answers not yet read by the
#: client — beyond this its queued commands wait, and its input is not read — …
MAX_PENDING_OUTPUT = 1 << 25
#: … and received messages not yet run (beyond this its input is not read).
MAX_QUEUED_MESSAGES = 4
#: Addresses one CHIP:PULSe? or CHIP:READ? may carry, and addresses × reads one CHIP:READ? may ask
#: (-223 beyond): the longest single command then holds the one chip ≤ ≈ 0.35 s (PCM, the slowest
#: to read, measured in docs/chip-protocol.md "Sharing the chip"), so another client's command waits
#: at most that per busy client, whatever it asks. Declared as CHIP:LIMit:ADDResses? and
#: CHIP:LIMit:VALues?; clients split larger batches by address.
MAX_ADDRESSES_PER_REQUEST = 1 << 16
MAX_VALUES_PER_REQUEST = 1 << 18
RECV_BYTES = 1 << 20
#: A client's turn: its command units run until this much time is used (cheap units, such as a
#: selection, an error query or a small read, share one turn; an expensive one ends it).
TURN_S = 0.02


class ScpiError(Exception):
    """An error to queue: SCPI code and detail text."""

    def __init__(self, code: int, text: str = "") -> None:
        super().__init__(text)
        self.code, self.text = code, text


class Connection:
    """Per-client state: framing, pending output, error queue, formats, address selection."""

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock, self.peer = sock, peer
        self.framer = Framer()
        self.out = bytearray()
        self.errors: deque[bytes] = deque()
        self.queue: deque[Message] = deque()  # received, not yet run
        self.closing = False  # the client hung up: finish what it waits for, then forget it
        self.last_turn = 0.0  # monotonic time its last turn ended
        self.running: tuple[Message, int, list[bytes]] | None = None  # message, next unit, replies
        self.reset()

    def has_work(self) -> bool:
        """Commands to run, and room for their answers."""
        return bool(self.queue or self.running) and len(self.out) < MAX_PENDING_OUTPUT

    def reset(self) -> None:
        self.real_bytes = 8  # FORMat:DATA REAL,64
        self.ascii = False
        self.order = "<"  # FORMat:BORDer SWAPped (little-endian)
        self.selection: np.ndarray | None = None

    def push_error(self, code: int, text: str = "") -> None:
        if len(self.errors) >= ERROR_QUEUE_DEPTH:
            # SCPI: a full queue keeps its entries and turns the newest into "Queue overflow"
            self.errors[-1] = format_error(scpi.QUEUE_OVERFLOW)
            return
        self.errors.append(format_error(code, text))


# -- parameter decoding ------------------------------------------------------------------------------
def _number(p: str | Block, what: str) -> float:
    if isinstance(p, Block):
        raise ScpiError(scpi.DATA_TYPE_ERROR, f"{what} must be a number, not a block")
    try:
        v = float(p)
    except ValueError:
        raise ScpiError(scpi.DATA_TYPE_ERROR, f"{what} {p[:40]!r} is not a number") from None
    if not np.isfinite(v):
        raise ScpiError(scpi.DATA_OUT_OF_RANGE, f"{what} must be finite")
    return v


def _integer(p: str | Block, what: str) -> int:
    v = _number(p, what)
    if not v.is_integer():
        raise ScpiError(scpi.DATA_TYPE_ERROR, f"{what} {p!r} is not an integer")
    return int(v)


def _nparams(params: list, lo: int, hi: int, header: str) -> None:
    if len(params) < lo:
        raise ScpiError(scpi.MISSING_PARAMETER, f"{header} needs {lo} parameter{'s' * (lo > 1)}")
    if len(params) > hi:
        raise ScpiError(scpi.PARAMETER_NOT_ALLOWED, f"{header} takes at most {hi} parameters")


def _check_request(m: int, n_reads: int) -> None:
    if m > MAX_ADDRESSES_PER_REQUEST:
        raise ScpiError(scpi.TOO_MUCH_DATA, f"{m} addresses exceed the {MAX_ADDRESSES_PER_REQUEST} one "
                        "request may carry (CHIP:LIMit:ADDResses?)")
    if m * n_reads > MAX_VALUES_PER_REQUEST:
        raise ScpiError(scpi.TOO_MUCH_DATA, f"{m} addresses × {n_reads} reads exceed the "
                        f"{MAX_VALUES_PER_REQUEST} values one request may carry (CHIP:LIMit:VALues?)")


class ChipServer:
    """Serve ``chip`` (a simulated device array) on ``host:port`` (port 0: the OS picks one)."""

    def __init__(self, chip, host: str = "127.0.0.1", port: int = 5025, max_clients: int = 16,
                 log: Callable[[str], None] | None = None,
                 address_range: tuple[int, int] | None = None) -> None:
        self.chip = chip
        # a new id every time the server starts: its chip's states and clock start afresh, and a
        # client that reconnects must not take it for the chip it was talking to
        self.boot_id = uuid.uuid4().hex[:16]
        self.address_range = address_range  # a station's first and last address that may be touched
        self.max_clients = max_clients
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.listener = socket.create_server((host, port), reuse_port=False, backlog=16)
        self.listener.setblocking(False)
        self.host, self.port = self.listener.getsockname()[:2]
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.clients: dict[int, Connection] = {}
        self.served = 0
        self._stop = False
        self.commands = self._command_table()

    # -- loop -----------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to finish (safe from a signal handler)."""
        self._stop = True

    def serve_forever(self, poll_s: float = 0.2) -> None:
        """Serve until ``stop()``; then close every connection and the listening socket.

        Each round reads what arrived and then runs one command unit per client with work
        (round-robin), so a client that pipelines many long commands delays another client's
        command by at most one unit of each (docs/chip-protocol.md, "Sharing the chip")."""
        try:
            while not self._stop:
                busy = any(c.has_work() for c in self.clients.values())
                for key, events in self.sel.select(timeout=0 if busy else poll_s):
                    if key.data is None:
                        self._accept()
                    else:
                        self._io(key.data, events)
                # least recently served first: a client that just sent its message goes next
                for conn in sorted(self.clients.values(), key=lambda c: c.last_turn):
                    if conn.has_work():
                        self._turn(conn)
        finally:
            for conn in list(self.clients.values()):
                self._drop(conn)
            self.sel.close()
            self.listener.close()

    def _accept(self) -> None:
        try:
            sock, addr = self.listener.accept()
        except OSError:
            return
        if len(self.clients) >= self.max_clients:
            sock.close()  # the client sees a closed connection at once rather than a silent wait
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Connection(sock, f"{addr[0]}:{addr[1]}")
        self.clients[sock.fileno()] = conn
        self.served += 1
        self.sel.register(sock, selectors.EVENT_READ, conn)

    def _drop(self, conn: Connection) -> None:
        """Forget a client and the work it queued (nobody is left to read the answers)."""
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        self.clients.pop(conn.sock.fileno(), None)
        conn.queue.clear()
        conn.running = None
        conn.sock.close()

    def _io(self, conn: Connection, events: int) -> None:
        """Receive into the client's queue and send what is pending."""
        try:
            full = len(conn.queue) >= MAX_QUEUED_MESSAGES or len(conn.out) >= MAX_PENDING_OUTPUT
            if events & selectors.EVENT_READ and not full and not conn.closing:
                data = conn.sock.recv(RECV_BYTES)
                if not data:
                    self._hung_up(conn)
                    if conn.sock.fileno() in self.clients:
                        self._interest(conn)
                    return
                conn.queue.extend(conn.framer.feed(data))
            self._flush(conn)
            if self._finished(conn):
                return
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # reset by peer, broken pipe: that client is gone, the others are not
            self._drop(conn)
            return
        self._interest(conn)

    def _flush(self, conn: Connection) -> None:
        if conn.out:
            sent = conn.sock.send(conn.out)
            del conn.out[:sent]

    def _interest(self, conn: Connection) -> None:
        if conn.closing:  # its input is at end of file (always "readable"): wait to write only
            if conn.sock.fileno() in self.clients:
                self.sel.modify(conn.sock, selectors.EVENT_WRITE, conn)
            return
        want = selectors.EVENT_WRITE if conn.out else 0
        if len(conn.out) < MAX_PENDING_OUTPUT and len(conn.queue) < MAX_QUEUED_MESSAGES:
            want |= selectors.EVENT_READ
        if conn.sock.fileno() in self.clients:
            # a selector needs some interest; with none, the client's queue is full, so the loop
            # is running its work anyway and _io does not read
            self.sel.modify(conn.sock, want or selectors.EVENT_READ, conn)

    def _hung_up(self, conn: Connection) -> None:
        """The client closed its side. It can wait only for the answer to its last message (a
        client that sends and half-closes): that one runs, everything queued before it is dropped,
        so a client that pipelines work and leaves costs the chip at most one more message."""
        conn.closing = True
        if conn.running is not None:
            conn.queue.clear()
        elif conn.queue:
            conn.queue = deque([conn.queue[-1]])
        self._finished(conn)

    def _finished(self, conn: Connection) -> bool:
        """Drop a hung-up client with nothing left to run or send; True if dropped."""
        if conn.closing and not conn.running and not conn.queue and not conn.out:
            self._drop(conn)
            return True
        return False

    def _gone(self, conn: Connection) -> bool:
        """The client closed its side (its input is not being read while its queue is full)."""
        try:
            return conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def _turn(self, conn: Connection) -> None:
        """Run the client's units until its turn (TURN_S) is used or it has no more work; a unit
        is never cut, so a turn lasts at most TURN_S plus one request (≤ ≈ 0.4 s)."""
        t_end = time.monotonic() + TURN_S
        while conn.has_work() and conn.sock.fileno() in self.clients:
            self._run_one(conn)
            if time.monotonic() >= t_end:
                break
        conn.last_turn = time.monotonic()

    def _run_one(self, conn: Connection) -> None:
        """Run the client's next command unit; a finished message's answer goes out."""
        if conn.running is None and not conn.closing and self._gone(conn):
            self._hung_up(conn)  # noticed at a message boundary, its input not being read
            if conn.sock.fileno() not in self.clients:
                return
        if conn.running is None:
            msg = conn.queue.popleft()
            if msg.error is not None:
                conn.push_error(*msg.error)
                self._interest(conn)
                return
            conn.running = (msg, 0, [])
        msg, i, replies = conn.running
        if i < len(msg.units):
            out = self.execute_unit(conn, msg.units[i])
            if out is not None:
                if sum(map(len, replies)) + len(out) > MAX_PENDING_OUTPUT:
                    conn.push_error(scpi.TOO_MUCH_DATA, f"the answers of one message exceed "
                                                        f"{MAX_PENDING_OUTPUT} bytes")
                else:
                    replies.append(out)
            conn.running = (msg, i + 1, replies)
        if conn.running[1] >= len(msg.units):
            conn.running = None
            conn.out += self.respond(conn, msg, b";".join(replies) + b"\n" if replies else b"")
        try:
            self._flush(conn)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(conn)
            return
        if not self._finished(conn):
            self._interest(conn)

    # -- execution ------------------------------------------------------------------------------
    def respond(self, conn: Connection, msg: Message, reply: bytes) -> bytes:
        """The response message that goes out for ``msg`` (a hook: test servers spoil it)."""
        return reply

    def execute_unit(self, conn: Connection, unit) -> bytes | None:
        """Run one command unit; its reply, or None (no reply, or an error queued)."""
        entry = self.commands.get(unit.header)
        if entry is None:
            conn.push_error(scpi.UNDEFINED_HEADER, unit.header[:40])
            return None
        try:
            return entry(conn, unit.params, unit.header)
        except ScpiError as e:
            conn.push_error(e.code, e.text)
        except LimitError as e:
            conn.push_error(scpi.DATA_OUT_OF_RANGE, str(e))
        except DevmodelError as e:
            conn.push_error(scpi.EXECUTION_ERROR, str(e))
        except Exception as e:  # a bug must not take the chip down for every client
            self.log(f"serve-chip: internal error on {unit.header}: "
                     + "".join(traceback.format_exception_only(type(e), e)).strip())
            conn.push_error(scpi.DEVICE_ERROR, f"internal error in {unit.header}")
        return None

    def _command_table(self) -> dict[str, Callable]:
        chip, info = self.chip, self.chip.info
        lim = info.limits

        def const(text: str) -> Callable:
            def h(conn, params, header):
                _nparams(params, 0, 0, header)
                return text.encode()
            return h

        table = {
            "*IDN?": const(info.identity),
            "CHIP:BOOT?": const(self.boot_id),
            "*OPC?": const("1"),
            "SYSTem:PROTocol?": const(PROTOCOL),
            "CHIP:TECHnology?": const(info.technology.upper()),
            "CHIP:DEVices?": const(str(info.n_devices)),
            "CHIP:GMAX?": const(repr(float(info.g_max_us))),
            "CHIP:UNIT?": const(info.pulse_unit.upper()),
            "CHIP:RCYCle?": const(repr(float(info.read_cycle_s))),
            "CHIP:CLOCk:MODE?": const("VIRT"),
            "CHIP:LIMit:AMPLitude?": const(repr(float(lim.max_amplitude))),
            "CHIP:LIMit:WIDTh?": const(repr(float(lim.max_width_ns))),
            "CHIP:LIMit:COMPliance?": const(
                "NONE" if lim.max_compliance_ua is None else repr(float(lim.max_compliance_ua))),
            "CHIP:LIMit:PULSes?": const(
                "NONE" if lim.max_pulses_per_device is None else str(lim.max_pulses_per_device)),
            "CHIP:LIMit:READs?": const(str(lim.max_reads_per_request)),
            "CHIP:LIMit:ADDResses?": const(str(MAX_ADDRESSES_PER_REQUEST)),
            "CHIP:LIMit:VALues?": const(str(MAX_VALUES_PER_REQUEST)),
            "*RST": self._rst,
            "*CLS": self._cls,
            "*WAI": self._noop,
            "SYSTem:ERRor[:NEXT]?": self._err_next,
            "SYSTem:ERRor:COUNt?": self._err_count,
            "FORMat[:DATA]": self._form_data,
            "FORMat[:DATA]?": self._form_data_q,
            "FORMat:BORDer": self._form_border,
            "FORMat:BORDer?": self._form_border_q,
            "CHIP:ADDRess": self._addr,
            "CHIP:ADDRess:RANGe": self._addr_range,
            "CHIP:ADDRess:COUNt?": self._addr_count,
            "CHIP:PULSe?": self._pulse,
            "CHIP:READ?": self._read,
            "CHIP:CLOCk?": lambda conn, params, header: repr(float(chip.now_s())).encode(),
            "CHIP:CLOCk:ADVance": self._advance,
            "SIMulation:TRUTh?": self._truth,
        }
        out = {}
        for pattern, handler in table.items():
            for form in header_forms(pattern):
                out[form] = handler
        return out

    # -- handlers -------------------------------------------------------------------------------
    def _rst(self, conn, params, header):
        _nparams(params, 0, 0, header)
        conn.reset()

    def _cls(self, conn, params, header):
        _nparams(params, 0, 0, header)
        conn.errors.clear()

    def _noop(self, conn, params, header):
        _nparams(params, 0, 0, header)

    def _err_next(self, conn, params, header):
        _nparams(params, 0, 0, header)
        return conn.errors.popleft() if conn.errors else format_error(scpi.NO_ERROR)

    def _err_count(self, conn, params, header):
        _nparams(params, 0, 0, header)
        return str(len(conn.errors)).encode()

    def _form_data(self, conn, params, header):
        _nparams(params, 1, 2, header)
        kind = str(params[0]).upper()
        if kind in ("ASC", "ASCII") and len(params) == 1:
            conn.ascii = True
            return
        if kind == "REAL":
            size = _integer(params[1], "REAL length") if len(params) == 2 else 64
            if size in (32, 64):
                conn.ascii, conn.real_bytes = False, size // 8
                return
        raise ScpiError(scpi.ILLEGAL_PARAMETER_VALUE, "data format must be REAL,32, REAL,64 or ASCii")

    def _form_data_q(self, conn, params, header):
        _nparams(params, 0, 0, header)
        return b"ASC" if conn.ascii else f"REAL,{conn.real_bytes * 8}".encode()

    def _form_border(self, conn, params, header):
        _nparams(params, 1, 1, header)
        v = str(params[0]).upper()
        if v in ("NORM", "NORMAL"):
            conn.order = ">"
        elif v in ("SWAP", "SWAPPED"):
            conn.order = "<"
        else:
            raise ScpiError(scpi.ILLEGAL_PARAMETER_VALUE, "byte order must be NORMal or SWAPped")

    def _form_border_q(self, conn, params, header):
        _nparams(params, 0, 0, header)
        return b"SWAP" if conn.order == "<" else b"NORM"

    def _addr(self, conn, params, header):
        conn.selection = None  # a failed selection must not leave the previous one in place
        _nparams(params, 1, 1, header)
        if not isinstance(params[0], Block):
            raise ScpiError(scpi.DATA_TYPE_ERROR, "CHIP:ADDRess takes a block of uint32 addresses")
        try:
            raw = scpi.block_to_array(params[0].data, conn.order + "u4", None, "address block")
        except scpi.ProtocolError as e:
            raise ScpiError(scpi.INVALID_BLOCK_DATA, str(e)) from None
        conn.selection = as_addresses(raw.astype(np.int64), self.chip.info.n_devices)

    def _addr_range(self, conn, params, header):
        conn.selection = None
        _nparams(params, 2, 2, header)
        first, count = _integer(params[0], "first address"), _integer(params[1], "address count")
        n = self.chip.info.n_devices
        if count < 0 or first < 0 or first + count > n:
            raise ScpiError(scpi.DATA_OUT_OF_RANGE,
                            f"addresses {first}..{first + count - 1} are outside 0..{n - 1}")
        conn.selection = np.arange(first, first + count, dtype=np.int64)

    def _addr_count(self, conn, params, header):
        _nparams(params, 0, 0, header)
        return str(-1 if conn.selection is None else conn.selection.size).encode()

    def _selected(self, conn) -> np.ndarray:
        if conn.selection is None:
            raise ScpiError(scpi.SETTINGS_CONFLICT, "no addresses selected (CHIP:ADDRess)")
        a, rng = conn.selection, self.address_range
        bad = outside_range(a, rng)
        if bad is not None:
            raise ScpiError(scpi.DATA_OUT_OF_RANGE,
                            f"address {bad} is outside the station's range {rng[0]}..{rng[1]}")
        return a

    def _per_address(self, conn, p, m: int, dtype: str, what: str):
        """A parameter given as one number for all addresses or a block with one value each."""
        if not isinstance(p, Block):
            return _number(p, what)
        try:
            return scpi.block_to_array(p.data, conn.order + dtype, m, what).astype(float)
        except scpi.ProtocolError as e:
            raise ScpiError(scpi.INVALID_BLOCK_DATA, str(e)) from None

    def _pulse(self, conn, params, header):
        _nparams(params, 3, 4, header)
        a = self._selected(conn)
        m = a.size
        _check_request(m, 1)
        k = params[0]
        if isinstance(k, Block):
            kind = self._per_address(conn, k, m, "u1", "kind block").astype(np.int8)
            if np.any((kind != PulseKind.SET) & (kind != PulseKind.RESET)):
                raise ScpiError(scpi.ILLEGAL_PARAMETER_VALUE, "pulse kinds must be 0 (SET) or 1 (RESET)")
        else:
            names = {"SET": PulseKind.SET, "0": PulseKind.SET, "RES": PulseKind.RESET,
                     "RESET": PulseKind.RESET, "1": PulseKind.RESET}
            if k.upper() not in names:
                raise ScpiError(scpi.ILLEGAL_PARAMETER_VALUE, f"pulse kind {k[:20]!r} is not SET or RESet")
            kind = names[k.upper()]
        amp = self._per_address(conn, params[1], m, "f8", "amplitude")
        width = self._per_address(conn, params[2], m, "f8", "width")
        comp = self._per_address(conn, params[3], m, "f8", "compliance") if len(params) == 4 else None
        # the server's own check: a client that skipped its limits is refused here, before the chip
        check_pulses(self.chip.info, a, amp, width, comp)
        t_end = self.chip.pulse(a, kind, amp, width, comp) if m else np.empty(0)
        return self._values(conn, t_end, 8)

    def _read(self, conn, params, header):
        _nparams(params, 1, 2, header)
        a = self._selected(conn)
        n_reads = _integer(params[0], "read count")
        interval = _number(params[1], "read interval") if len(params) == 2 else 0.0
        if not 1 <= n_reads <= self.chip.info.limits.max_reads_per_request:
            raise ScpiError(scpi.DATA_OUT_OF_RANGE, f"read count {n_reads} is outside "
                            f"1..{self.chip.info.limits.max_reads_per_request}")
        if interval < 0:
            raise ScpiError(scpi.DATA_OUT_OF_RANGE, "read interval must be ≥ 0 s")
        _check_request(a.size, n_reads)
        rb = self.chip.read(a, n_reads, interval)
        return self._values(conn, rb.g_us, conn.real_bytes) + b"," + self._values(conn, rb.t_s, 8)

    def _values(self, conn, arr: np.ndarray, nbytes: int) -> bytes:
        """Values as a block (conductances in the chosen REAL width, times always REAL,64) or ASCII."""
        flat = np.asarray(arr, dtype=float).ravel()
        if conn.ascii:
            return ",".join(map(repr, flat.tolist())).encode() if flat.size else b"NONE"
        return encode_block(flat.astype(f"{conn.order}f{nbytes}").data)

    def _advance(self, conn, params, header):
        _nparams(params, 1, 1, header)
        dt = _number(params[0], "clock advance")
        if dt < 0:
            raise ScpiError(scpi.DATA_OUT_OF_RANGE, "the chip clock cannot go back")
        self.chip.wait(dt)

    def _truth(self, conn, params, header):
        _nparams(params, 0, 0, header)
        if not isinstance(self.chip, HasGroundTruth):
            raise ScpiError(scpi.HARDWARE_MISSING, "this chip has no ground truth")
        truth = self.chip.ground_truth()
        buf = io.BytesIO()
        arrays = {f"devices/{k}": np.asarray(v) for k, v in truth.get("devices", {}).items()}
        np.savez(buf, model=np.array(str(truth.get("model", ""))),
                 params_json=np.array(json.dumps(truth.get("params", {}), default=_jsonable)), **arrays)
        return encode_block(buf.getbuffer())


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (tuple, set)):
        return list(o)
    raise TypeError(type(o).__name__)
