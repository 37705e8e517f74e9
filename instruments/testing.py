"""Helpers for tests and benchmarks: run ``devmodel serve-chip`` as a real subprocess, or a
:class:`~instruments.server.ChipServer` in a thread, on a free loopback port.

Every wait is bounded; the process is killed if it does not stop by itself, so a failing test never
leaves a server behind.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time

from instruments.server import ChipServer

_PORT_RE = re.compile(r"listening on ([0-9.]+):(\d+)")


class ServerProcess:
    """``devmodel serve-chip --port 0 …`` in a subprocess; ``resource`` is its VISA resource string."""

    def __init__(self, *args: str, startup_s: float = 30.0) -> None:
        self.args = ["--port", "0", *args]
        self.startup_s = startup_s
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.banner = ""

    @property
    def resource(self) -> str:
        return f"TCPIP::127.0.0.1::{self.port}::SOCKET"

    def start(self) -> ServerProcess:
        """Start the server and wait (bounded) for the line that names its port."""
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "devmodel", "serve-chip", *self.args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + self.startup_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                m = _PORT_RE.search(line)
                if m:
                    self.banner, self.port = line.strip(), int(m.group(2))
                    return self
                if not line:
                    break
            if self.proc.poll() is not None:
                break
        err = self.proc.stderr.read() if self.proc.poll() is not None else ""
        self.kill()
        raise RuntimeError(f"serve-chip did not start: {err.strip()[-500:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int:
        """Send ``sig`` and wait for the exit status (killed after ``timeout_s``)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self.kill()
            for f in (self.proc.stdout, self.proc.stderr):
                f.close()


class ThreadedServer:
    """A ChipServer (or a subclass that misbehaves on purpose) served from a daemon thread."""

    def __init__(self, server: ChipServer) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_s": 0.05}, daemon=True)

    @property
    def resource(self) -> str:
        return f"TCPIP::127.0.0.1::{self.server.port}::SOCKET"

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
        self.thread.join(5)
