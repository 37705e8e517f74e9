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
MAX_PENDING_OUTPUT = 1 << 28  # stop reading from a client that does not read its answers
#: Values one CHIP:READ? answer may carry (addresses × reads): a request beyond it would hold the one
#: chip (and every other client) for minutes and allocate gigabytes, so it is refused (-223).
MAX_VALUES_PER_READ = 1 << 24
RECV_BYTES = 1 << 20


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
        self.reset()

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
        """Serve until ``stop()``; then close every connection and the listening socket."""
        try:
            while not self._stop:
                for key, events in self.sel.select(timeout=poll_s):
                    if key.data is None:
                        self._accept()
                    else:
                        self._service(key.data, events)
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
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        self.clients.pop(conn.sock.fileno(), None)
        conn.sock.close()

    def _service(self, conn: Connection, events: int) -> None:
        try:
            if events & selectors.EVENT_READ:
                data = conn.sock.recv(RECV_BYTES)
                if not data:
                    self._drop(conn)
                    return
                for msg in conn.framer.feed(data):
                    conn.out += self.execute(conn, msg)
            if conn.out:
                sent = conn.sock.send(conn.out)
                del conn.out[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # reset by peer, broken pipe: that client is gone, the others are not
            self._drop(conn)
            return
        want = selectors.EVENT_WRITE if conn.out else 0
        if len(conn.out) < MAX_PENDING_OUTPUT:
            want |= selectors.EVENT_READ
        self.sel.modify(conn.sock, want, conn)

    # -- execution ------------------------------------------------------------------------------
    def execute(self, conn: Connection, msg: Message) -> bytes:
        """Run one program message; return its response message (b'' if it has no queries)."""
        if msg.error is not None:
            conn.push_error(*msg.error)
            return b""
        replies: list[bytes] = []
        for unit in msg.units:
            entry = self.commands.get(unit.header)
            if entry is None:
                conn.push_error(scpi.UNDEFINED_HEADER, unit.header[:40])
                continue
            try:
                out = entry(conn, unit.params, unit.header)
            except ScpiError as e:
                conn.push_error(e.code, e.text)
                continue
            except LimitError as e:
                conn.push_error(scpi.DATA_OUT_OF_RANGE, str(e))
                continue
            except DevmodelError as e:
                conn.push_error(scpi.EXECUTION_ERROR, str(e))
                continue
            except Exception as e:  # a bug must not take the chip down for every client
                self.log(f"serve-chip: internal error on {unit.header}: "
                         + "".join(traceback.format_exception_only(type(e), e)).strip())
                conn.push_error(scpi.DEVICE_ERROR, f"internal error in {unit.header}")
                continue
            if out is not None:
                replies.append(out)
        return b";".join(replies) + b"\n" if replies else b""

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
        if a.size * n_reads > MAX_VALUES_PER_READ:
            raise ScpiError(scpi.TOO_MUCH_DATA, f"{a.size} addresses × {n_reads} reads exceed the "
                            f"{MAX_VALUES_PER_READ} values one answer may carry")
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
