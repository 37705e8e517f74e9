"""The narrow transport layer under every driver: bytes out, a line or an exact count of bytes in.

Drivers never touch pyvisa directly; they talk to a :class:`Transport`. :class:`VisaTransport` is the
real one (any pyvisa backend: ``@py``, ``@sim``, a vendor VISA); :class:`RecordingTransport` wraps any
transport and keeps the transcript (tests assert exact command lists with it, and a recording
transport with no instrument behind it proves that a refused request never reached the wire). The
reliability work slots a fault-injecting transport in at the same place.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class TransportError(Exception):
    """A transport failure; ``kind`` is ``timeout``, ``closed``, ``connect`` or ``io``.

    Drivers turn it into an :class:`instruments.base.InstrumentError` naming the instrument and the
    command, so the message a user sees is one sentence.
    """

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@runtime_checkable
class Transport(Protocol):
    """What a driver needs from a connection."""

    resource: str
    timeout_s: float

    def write(self, data: bytes) -> None:
        """Send ``data`` (the caller appends the termination)."""

    def read_line(self) -> bytes:
        """Bytes up to the read termination, which is removed."""

    def read_exact(self, n: int) -> bytes:
        """Exactly ``n`` bytes (binary data may contain the termination character)."""

    def reopen(self) -> None:
        """Drop the connection and open it again (the reconnect hook)."""

    def close(self) -> None:
        """Release the connection."""


class VisaTransport:
    """A pyvisa resource opened by resource string and backend (``@py``, ``<file.yaml>@sim``, ``@ivi``).

    The read termination is enabled for line reads and switched off around large binary reads, so
    pyvisa-py does not stop at every newline byte inside a block.
    """

    def __init__(self, resource: str, backend: str = "@py", timeout_s: float = 10.0,
                 read_termination: str = "\n", write_termination: str = "\n") -> None:
        self.resource = resource
        self.backend = backend
        self.timeout_s = float(timeout_s)
        self.read_termination = read_termination
        self.write_termination = write_termination
        self._rm = None
        self._res = None
        self.open()

    def open(self) -> None:
        """Open the resource; errors become TransportError('connect')."""
        import pyvisa  # lazy: keeps `devmodel --help` fast

        try:
            if self._rm is None:
                self._rm = pyvisa.ResourceManager(self.backend)
            ms = max(int(self.timeout_s * 1000), 1)
            self._res = self._rm.open_resource(
                self.resource, read_termination=self.read_termination,
                write_termination=self.write_termination, timeout=ms, open_timeout=ms)
            self._res.chunk_size = 1 << 20
            sess = self._session()
            if sess is not None and hasattr(sess, "max_recv_size"):
                sess.max_recv_size = 1 << 20  # pyvisa-py reads sockets 4 kB at a time by default
            sock = getattr(sess, "interface", None)
            if isinstance(sock, socket.socket):
                # pyvisa-py sends a message in 4 kB pieces and its VI_ATTR_TCPIP_NODELAY setter does
                # not reach the socket: with Nagle on, every multi-piece message stalls on the
                # peer's delayed ACK (40 ms), which made a 100k-device sweep 10x slower
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except Exception as e:  # pyvisa raises many types (VisaIOError, OSError, ValueError)
            raise TransportError("connect", f"could not open {self.resource} with backend "
                                 f"{self.backend!r} ({_reason(e)})") from None

    def _session(self):
        """The pyvisa-py session object behind the resource, if this is pyvisa-py (else None)."""
        try:
            return self._rm.visalib.sessions[self._res.session]
        except Exception:
            return None

    def _peer_closed(self) -> bool:
        """True if the socket under a pyvisa-py SOCKET resource was closed by the other end."""
        sock = getattr(self._session(), "interface", None)
        if not isinstance(sock, socket.socket):
            return False
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _fail(self, e: Exception, doing: str) -> TransportError:
        import pyvisa

        if self._res is None:
            return TransportError("closed", "the connection is closed")
        if isinstance(e, pyvisa.errors.VisaIOError) and e.error_code == \
                pyvisa.constants.StatusCode.error_timeout:
            if self._peer_closed():
                return TransportError("closed", f"the connection was closed while {doing}")
            return TransportError("timeout", f"no answer within {self.timeout_s:g} s while {doing}")
        if isinstance(e, (BrokenPipeError, ConnectionResetError, ConnectionRefusedError,
                          ConnectionAbortedError)):
            return TransportError("closed", f"the connection was refused or closed while {doing} "
                                  f"({_reason(e)})")
        return TransportError("io", f"{_reason(e)} while {doing}")

    def write(self, data: bytes) -> None:
        try:
            self._res.write_raw(data + self.write_termination.encode())
        except Exception as e:
            raise self._fail(e, "sending") from None

    def read_line(self) -> bytes:
        try:
            raw = self._res.read_raw()
        except Exception as e:
            raise self._fail(e, "reading") from None
        term = self.read_termination.encode()
        return raw[:-len(term)] if term and raw.endswith(term) else raw

    def read_exact(self, n: int) -> bytes:
        if n <= 0:
            return b""

        big = n > 64 and self._set_termchar(False)
        try:
            try:
                data = self._res.read_bytes(n)
            finally:
                if big:
                    self._set_termchar(True)
        except Exception as e:
            raise self._fail(e, "reading") from None
        if len(data) != n:
            raise TransportError("io", f"read {len(data)} of {n} bytes")
        return data

    def _set_termchar(self, on: bool) -> bool:
        """Best effort (not every backend lets the attribute change); True if it was set."""
        import pyvisa.constants as c

        try:
            self._res.set_visa_attribute(c.VI_ATTR_TERMCHAR_EN, c.VI_TRUE if on else c.VI_FALSE)
            return True
        except Exception:
            return False

    def reopen(self) -> None:
        self.close()
        self.open()

    def close(self) -> None:
        if self._res is not None:
            try:
                self._res.close()
            except Exception:  # closing a broken connection must not mask the error being reported
                pass
            self._res = None


@dataclass
class RecordingTransport:
    """Wraps a transport (or nothing) and records every message written, as text without termination.

    ``log`` may be shared between several instruments (entries are ``(name, command)`` then); with
    ``inner=None`` reads fail, which is what a test of "nothing reaches the wire" wants.
    """

    inner: Transport | None = None
    name: str = ""
    log: list = field(default_factory=list)
    resource: str = "recording"
    timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if self.inner is not None:
            self.resource = self.inner.resource
            self.timeout_s = self.inner.timeout_s

    @property
    def sent(self) -> list[str]:
        """The commands this transport wrote (its own entries of a shared log)."""
        return [c for n, c in self.log if n == self.name] if self.name else list(self.log)

    def write(self, data: bytes) -> None:
        text = data.decode("latin-1")
        self.log.append((self.name, text) if self.name else text)
        if self.inner is not None:
            self.inner.write(data)

    def read_line(self) -> bytes:
        if self.inner is None:
            raise TransportError("closed", "a recording transport has no instrument behind it")
        return self.inner.read_line()

    def read_exact(self, n: int) -> bytes:
        if self.inner is None:
            raise TransportError("closed", "a recording transport has no instrument behind it")
        return self.inner.read_exact(n)

    def reopen(self) -> None:
        if self.inner is not None:
            self.inner.reopen()

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()


def _reason(e: Exception) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__

