"""Crash-safe, resumable session files (docs/reliability.md).

An HDF5 file modified in place is not crash-safe: a process killed while HDF5 writes leaves chunk
indices pointing at half-written or reused space (measured: 18 of 40 files unreadable after SIGKILL
mid-write), and a file opened for writing with ``libver="latest"`` carries superblock flags that make
every later plain ``h5py.File(path)`` fail until ``h5clear`` is run. SWMR orders writes so the file
stays consistent, but it keeps those flags set after a crash and forbids new groups and attributes.

So the session file is never written in place. :class:`DurableSessionWriter` keeps two copies: the
*live* file at the session's path, which no process ever has open for writing, and a *spare* in the
sidecar folder ``<session>.resume/``. A commit applies the operations since the spare was last
brought up to date (the previous commit's and this one's) to the spare, closes it (a clean HDF5
close), optionally fsyncs it, and renames it over the live path (``link`` + ``rename``: the path
always names a complete file). The old live file becomes the new spare. Every byte is thus written
twice, but chunks are compressed once (``write_direct_chunk`` with our own shuffle + deflate, the
same encoding the gzip/shuffle filters read), so the second copy costs file I/O, not compression.

Commits happen only at the procedure's safe points, together with a snapshot of the procedure's state
(and the simulated chip's) written to ``state-<seq>.npz`` before the file that names it, so the rows
in the file and the state that produced them always agree. A row is *acknowledged* once committed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import threading
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from devmodel.errors import DevmodelError, SessionFileError
from devmodel.store.schema import (
    BURST_COLUMNS,
    COMPRESSION,
    DEVICE_COLUMNS,
    SCHEMA,
    STOP_REASONS,
    TABLES,
    append_rows,
    header_attrs,
    provenance,
    to_json,
    utc_now,
)

SIDE_SUFFIX = ".resume"
#: Rows per chunk. A commit recompresses the partial last chunk of every column, so chunks are smaller
#: than the plain writer's 64k rows: a commit every safe point stays cheap (16k f8 rows = 128 kB).
_CHUNK_ROWS = 1 << 14
#: Largest share of wall time commits may take: a commit copies the whole procedure state (for 10^5
#: PCM devices ~100 MB with their 1/f banks), so the interval stretches to ≥ 20× the last commit's cost.
MAX_COMMIT_SHARE = 0.05
_LEVEL = COMPRESSION["compression_opts"]  # gzip level of both writers' filter
#: v0/v2 superblocks: no write-access flags that would lock plain readers out after a crash.
_LIBVER = ("earliest", "v108")
GAP_COLUMNS: dict[str, tuple[str, str]] = {
    "t_stop_s": ("f8", "s, chip time of the last commit before the gap"),
    "t_resume_s": ("f8", "s, chip time when the session resumed"),
    "downtime_s": ("f8", "s of wall time between the last commit and the resume"),
    "reads_row": ("i8", "rows of /reads committed before the gap"),
    "trace_row": ("i8", "rows of /trace committed before the gap"),
}


def sidecar(path: str | Path) -> Path:
    """The folder beside a session file that holds its spare copy and resume state."""
    p = Path(path)
    return p.with_name(p.name + SIDE_SUFFIX)


def encode_chunk(raw: np.ndarray, level: int = _LEVEL) -> bytes:
    """One chunk as HDF5's shuffle + deflate filters store it (byte planes, then a zlib stream)."""
    b = np.ascontiguousarray(raw).view(np.uint8).reshape(raw.size, raw.itemsize)
    return zlib.compress(b.T.tobytes(), level)


def _chunks_of(arr: np.ndarray, first_row: int, tail: np.ndarray | None, chunk: int
               ) -> tuple[list[tuple[int, bytes]], np.ndarray]:
    """Compressed chunks covering rows first_row … first_row+len(arr)-1; returns them and the new tail.

    ``tail`` holds the rows already in the partial chunk at ``first_row`` (which is rewritten whole).
    """
    c0, off = divmod(first_row, chunk)
    n_chunks = -(-(off + arr.size) // chunk)
    span = np.zeros(n_chunks * chunk, dtype=arr.dtype)
    if off and tail is not None:
        span[:off] = tail[:off]
    span[off:off + arr.size] = arr
    out = [(c0 + i, encode_chunk(span[i * chunk:(i + 1) * chunk])) for i in range(n_chunks)]
    return out, span[(n_chunks - 1) * chunk:].copy()


def _in_use(path: Path) -> bool:
    """True if another open file description holds a lock on ``path`` (an HDF5 reader does)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases our probe lock
    return False


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Array:
    """A fixed-size dataset, compressed once and written identically into both copies."""

    def __init__(self, data: np.ndarray, unit: str | None, compress: bool = True) -> None:
        self.data = np.ascontiguousarray(data)
        self.unit = unit
        n = self.data.shape[0] if self.data.ndim else 0
        # string and empty arrays go in as they are (HDF5 cannot chunk them usefully)
        self.chunk = min(n, _CHUNK_ROWS) if (compress and n and self.data.ndim == 1
                                             and self.data.dtype.kind in "biuf") else 0
        self.chunks = [] if not self.chunk else _chunks_of(self.data, 0, None, self.chunk)[0]

    def create(self, g: h5py.Group, name: str) -> None:
        if not self.chunk:
            ds = g.create_dataset(name, data=self.data)
        else:
            ds = g.create_dataset(name, shape=self.data.shape, dtype=self.data.dtype,
                                  chunks=(self.chunk,), **COMPRESSION)
            for ci, b in self.chunks:
                ds.id.write_direct_chunk((ci * self.chunk,), b)
        if self.unit is not None:
            ds.attrs["unit"] = self.unit


@contextlib.contextmanager
def _interrupts_deferred():
    """Hold SIGINT/SIGTERM (main thread only) until the block ends, then deliver the first one to
    the handler that was in place (Ctrl-C: KeyboardInterrupt)."""
    sigs = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not None]
    if threading.current_thread() is not threading.main_thread() or not sigs:
        yield
        return
    caught: list[int] = []
    saved = {sig: signal.signal(sig, lambda signum, frame: caught.append(signum)) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    if caught:
        signal.raise_signal(caught[0])


def _apply(f: h5py.File, op: tuple) -> None:
    """Replay one recorded operation on an open copy."""
    kind = op[0]
    if kind == "group":
        f.require_group(op[1])
    elif kind == "attrs":
        obj = f[op[1]]
        for k, v in op[2].items():
            obj.attrs[k] = v
    elif kind == "array":
        _, group, name, arr = op
        g = f.require_group(group)
        if name in g:
            del g[name]
        arr.create(g, name)
    elif kind == "table":  # an empty extendable table
        g = f.require_group(op[1])
        g.attrs["n_rows"] = 0
        for col, (dtype, unit) in op[2].items():
            ds = g.create_dataset(col, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(_CHUNK_ROWS,),
                                  **COMPRESSION)
            ds.attrs["unit"] = unit
    elif kind == "rows":
        _, table, n_rows, cols, chunk = op
        g = f[table]
        for col, chunks in cols.items():
            ds = g[col]
            if ds.shape[0] != n_rows:
                ds.resize((n_rows,))
            for ci, b in chunks:
                ds.id.write_direct_chunk((ci * chunk,), b)
        g.attrs["n_rows"] = n_rows
    else:  # pragma: no cover - programming error
        raise ValueError(f"unknown operation {kind!r}")


class DurableSessionWriter:
    """SessionWriter's interface, crash-safe: every commit atomically replaces the session file.

    Rows appended between commits are buffered; :meth:`checkpoint` commits them together with the
    state that produced them at most every ``commit_interval_s`` (the procedures call it at their safe
    points). ``fsync`` makes a commit survive power loss, not just the death of the process.
    """

    def journal_path(self, seq: int | None = None) -> Path:
        """Where the chip journal of commit ``seq`` (default: the last) lives."""
        return self.side / f"journal-{self._seq if seq is None else seq}.bin"

    def __init__(self, path: str | Path, *, technology: str, g_max_us: float, t0_s: float, chip: dict,
                 config: dict, seed: int | None, command: str = "", overwrite: bool = False,
                 commit_interval_s: float = 2.0, fsync: bool = True) -> None:
        self.path = Path(path)
        self.side = sidecar(self.path)
        if self.path.exists() and not overwrite:
            raise SessionFileError(f"{self.path} already exists; choose another --out, pass --overwrite "
                                   f"or continue it with --resume")
        if not self.path.parent.exists():
            raise SessionFileError(f"the folder of {self.path} does not exist")
        if self.side.exists():
            if not overwrite and self.path.exists():
                raise SessionFileError(f"{self.side} holds the resume data of an earlier session; continue "
                                       f"it with --resume {self.path} or pass --overwrite")
            # refuse to remove the sidecar of a session another process is running; without its file
            # (a kill before the first commit) a sidecar holds nothing to resume
            self._lock_side()
            os.close(self._lock_fd)
            shutil.rmtree(self.side)
        self.side.mkdir()
        self._init_common(commit_interval_s, fsync)
        self._lock_side()
        ops: list[tuple] = [("attrs", "/", header_attrs(technology, g_max_us, t0_s))]
        for name, attrs in (("provenance", provenance(seed, command)), ("chip", {"json": to_json(chip)}),
                            ("config", {"json": to_json(config)}),
                            ("resume", {"seq": 0, "durable": 1, "resumes": 0, "sidecar": self.side.name,
                                        "commit_utc": utc_now(), "commit_chip_s": np.nan})):
            ops += [("group", name), ("attrs", name, attrs)]
        ops += [("table", name, cols) for name, cols in TABLES.items()]
        # both copies start from the same operations; the live one appears by an atomic rename
        tmp = self.side / "initial.h5"
        for target in (tmp, self._spare_path):
            with h5py.File(target, "w", libver=_LIBVER, locking=False) as f:
                for op in ops:
                    _apply(f, op)
            if self.fsync:
                _fsync_path(target)
        os.replace(tmp, self.path)
        self._sync_dirs()
        self._open_spare()

    # -- construction helpers ----------------------------------------------------------------------
    def _init_common(self, commit_interval_s: float, fsync: bool) -> None:
        self.commit_interval_s = float(commit_interval_s)
        self.fsync = bool(fsync)
        self._spare_path = self.side / "spare.h5"
        self._ops: list[tuple] = []  # since the last commit
        self._prev_ops: list[tuple] = []  # of the last commit, not yet in the spare
        self._buffer: dict[str, list[dict[str, np.ndarray]]] = {t: [] for t in TABLES}
        self._n = dict.fromkeys(TABLES, 0)  # committed rows
        self._tail: dict[str, dict[str, np.ndarray]] = {t: {} for t in TABLES}
        self._chunk = dict.fromkeys(TABLES, _CHUNK_ROWS)  # rows per chunk (a resumed file's own)
        self.resumes = 0
        self._last_commit = time.monotonic()
        self._last_commit_cost = 0.0
        self._seq = 0
        self._spare: h5py.File | None = None
        self._closed = False
        self.n_commits = 0
        self.n_copies = 0  # commits that found a reader on the old file and copied instead
        self.commit_s = 0.0  # wall time spent committing (for the benchmark and docs)
        self.on_commit = None  # called with the new seq after each state commit (journal rotation)

    def _lock_side(self) -> None:
        """An exclusive lock on the sidecar for the life of this writer (released by any death)."""
        self._lock_fd = os.open(self.side / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise SessionFileError(f"{self.path} is being written by another running devmodel process") \
                from None
        os.ftruncate(self._lock_fd, 0)
        os.write(self._lock_fd, str(os.getpid()).encode())

    def _open_spare(self) -> None:
        self._spare = h5py.File(self._spare_path, "r+", libver=_LIBVER, locking=False)

    def _sync_dirs(self) -> None:
        if self.fsync:
            for d in {self.path.parent, self.side}:
                _fsync_path(d)

    @classmethod
    def reopen(cls, path: str | Path, *, commit_interval_s: float = 2.0, fsync: bool = True
               ) -> tuple[DurableSessionWriter, dict[str, np.ndarray] | None]:
        """Continue a session left by a killed or failed process; returns the writer and the state of
        its last commit (None if it never got past its header)."""
        path = Path(path)
        info = inspect_resumable(path)
        self = cls.__new__(cls)
        self.path, self.side = path, sidecar(path)
        self._init_common(commit_interval_s, fsync)
        self._lock_side()
        try:
            state = self._reopen(info)
        except BaseException:
            os.close(self._lock_fd)  # a refused resume leaves the session free for the next one
            raise
        return self, state

    def _reopen(self, info: dict) -> dict[str, np.ndarray] | None:
        path = self.path
        self._seq = info["seq"]
        # whatever a kill left half-done in the sidecar is discarded: the live file is the truth
        keep = (f"state-{self._seq}.npz", f"journal-{self._seq}.bin")
        for p in self.side.iterdir():
            if p.name != "lock" and p.name not in keep:
                p.unlink()
        state = None
        if self._seq:
            try:
                with np.load(self.side / keep[0], allow_pickle=False) as z:
                    state = {k: z[k] for k in z.files}
            except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # damaged
                raise SessionFileError(f"{self.side / keep[0]}: the resume state is unreadable "
                                       f"({type(e).__name__})") from None
        shutil.copyfile(path, self._spare_path)
        if self.fsync:
            _fsync_path(self._spare_path)
        with h5py.File(path, "r", locking=False) as f:
            for table, cols in TABLES.items():
                absent = [c for c in cols if c not in f[table]]
                if absent:
                    raise SessionFileError(f"{path} was written by an older devmodel (no /{table}/"
                                           f"{absent[0]} column); continue it with that version")
                n = int(f[table].attrs["n_rows"])
                self._n[table] = n
                chunk = self._chunk[table] = f[table][next(iter(cols))].chunks[0]
                start = n - n % chunk
                for col, (dtype, _) in cols.items():
                    tail = np.zeros(chunk, dtype=dtype)
                    tail[:n - start] = f[table][col][start:n]
                    self._tail[table][col] = tail
            self.resumes = int(f["resume"].attrs.get("resumes", 0))
        self._open_spare()
        return state

    # -- SessionWriter interface ----------------------------------------------------------------------
    def write_levels(self, targets_us: np.ndarray) -> None:
        self._ops.append(("array", "levels", "target_us",
                          _Array(np.asarray(targets_us, float), "uS", compress=False)))

    def write_devices(self, columns: dict[str, np.ndarray]) -> None:
        self._fixed_table("devices", DEVICE_COLUMNS, columns)
        self._ops.append(("attrs", "devices", {"stop_reasons": to_json(STOP_REASONS)}))

    def write_bursts(self, columns: dict[str, np.ndarray]) -> None:
        self._fixed_table("bursts", BURST_COLUMNS, columns)

    def write_ground_truth(self, truth: dict, rows_addresses: np.ndarray) -> None:
        self._ops += [("group", "ground_truth"), ("attrs", "ground_truth", {
            "model": truth.get("model", ""), "params_json": to_json(truth.get("params", {}))})]
        for name, arr in truth.get("devices", {}).items():
            self._ops.append(("array", "ground_truth", name,
                              _Array(np.asarray(arr)[rows_addresses], None)))

    def write_group(self, name: str, attrs: dict[str, Any], datasets: dict[str, np.ndarray]) -> None:
        """A group of extra datasets (a deployment's network and map), committed with the next rows."""
        self._ops += [("group", name), ("attrs", name, dict(attrs))]
        for key, data in datasets.items():
            self._ops.append(("array", name, key, _Array(np.asarray(data), None)))

    def append(self, table: str, columns: dict[str, np.ndarray]) -> None:
        """Buffer rows for ``reads`` or ``trace``; they are acknowledged at the next commit."""
        spec = TABLES[table]
        if append_rows(table, columns):
            self._buffer[table].append({c: np.asarray(columns[c]).ravel() for c in spec})

    def set_attr(self, key: str, value: Any) -> None:
        self._ops.append(("attrs", "/", {key: value}))

    def flush(self) -> None:
        """Nothing: rows are written only at commits, with the state that produced them."""

    def finish(self, status: str = "complete", reason: str = "") -> None:
        """Commit the end of the session; a complete one no longer needs its sidecar."""
        self._ops += [("attrs", "/", {"status": status, "status_reason": reason}),
                      ("attrs", "provenance", {"end_utc": utc_now()})]
        if status == "complete":
            self._commit(None, with_rows=True)
            self.close()
            shutil.rmtree(self.side, ignore_errors=True)
        else:
            self.fail(reason, status)

    def fail(self, reason: str, status: str = "failed") -> None:
        """Stop resumably: rows since the last commit are dropped (the resumed run redoes that work),
        the status and reason are committed, the state of the last commit stays the one to resume."""
        if self._closed:
            return
        for parts in self._buffer.values():
            parts.clear()
        # whatever the interrupted step had queued belongs to work the resumed run redoes
        self._ops = [("attrs", "/", {"status": status, "status_reason": reason}),
                      ("attrs", "provenance", {"end_utc": utc_now()})]
        self._commit(None, with_rows=False)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._spare is not None and self._spare.id.valid:
            self._spare.close()
        os.close(self._lock_fd)

    def __enter__(self) -> DurableSessionWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and not self._closed:
            if issubclass(exc_type, DevmodelError):
                reason = str(exc)
            elif issubclass(exc_type, KeyboardInterrupt):
                reason = "interrupted by the user"
            else:
                reason = f"{exc_type.__name__}: {exc}" if str(exc) else exc_type.__name__
            try:
                self.fail(reason)
            except Exception:  # reporting the failure must not hide the error that caused it
                pass
        self.close()

    # -- durability ------------------------------------------------------------------------------------
    def due(self) -> bool:
        """True once ``commit_interval_s`` has passed since the last commit, and long enough that
        commits take at most ``MAX_COMMIT_SHARE`` of the time (interval 0: every safe point)."""
        gap = self.commit_interval_s
        if gap > 0:
            gap = max(gap, self._last_commit_cost / MAX_COMMIT_SHARE)
        return time.monotonic() - self._last_commit >= gap

    def checkpoint(self, state: Any, force: bool = False) -> bool:
        """At a safe point: commit buffered rows with ``state()`` (a callable, only called when a commit
        is due, or a dict) if the interval has passed or ``force``; returns whether it committed."""
        if not (force or self.due()):
            return False
        self._commit(state() if callable(state) else state, with_rows=True)
        return True

    def commit_now(self) -> None:
        """Commit queued operations (not rows) without a new state, e.g. the gap note of a resume."""
        self._commit(None, with_rows=False)

    def record_gap(self, reason: str, t_stop_s: float, t_resume_s: float, downtime_s: float,
                   stop_utc: str) -> None:
        """Note in the file where a session stopped and resumed, and why (table /gaps)."""
        old: dict[str, np.ndarray] = {}
        with h5py.File(self.path, "r", locking=False) as f:
            if "gaps" in f:
                old = {k: f["gaps"][k][()] for k in f["gaps"]}
        new = {"t_stop_s": t_stop_s, "t_resume_s": t_resume_s, "downtime_s": downtime_s,
               "reads_row": self._n["reads"], "trace_row": self._n["trace"]}
        for col, (dtype, unit) in GAP_COLUMNS.items():
            arr = np.append(old.get(col, np.empty(0, dtype)), new[col]).astype(dtype)
            self._ops.append(("array", "gaps", col, _Array(arr, unit, compress=False)))
        for col, value in (("reason", reason), ("stop_utc", stop_utc), ("resume_utc", utc_now())):
            arr = np.append(np.asarray(old.get(col, np.empty(0, object)), dtype=object).astype(str),
                            value).astype(object)
            self._ops.append(("array", "gaps", col, _Array(arr.astype(h5py.string_dtype()), None,
                                                           compress=False)))
        self.resumes += 1
        self._ops.append(("attrs", "resume", {"resumes": self.resumes}))

    def _row_ops(self) -> None:
        for table, parts in self._buffer.items():
            if not parts:
                continue
            n0 = self._n[table]
            cols = {}
            n1 = n0
            for col, (dtype, _) in TABLES[table].items():
                arr = np.concatenate([p[col] for p in parts]).astype(dtype, copy=False)
                n1 = n0 + arr.size
                cols[col], self._tail[table][col] = _chunks_of(arr, n0, self._tail[table].get(col),
                                                               self._chunk[table])
            self._ops.append(("rows", table, n1, cols, self._chunk[table]))
            self._n[table] = n1
            parts.clear()

    def _commit(self, state: dict[str, np.ndarray] | None, with_rows: bool) -> None:
        # a Ctrl-C or SIGTERM inside a commit (half swapped, spare closed) would leave nothing to
        # record the stop with: it is held until the commit is whole, then raised
        with _interrupts_deferred():
            self._commit_now(state, with_rows)

    def _commit_now(self, state: dict[str, np.ndarray] | None, with_rows: bool) -> None:
        t = time.perf_counter()
        if state is not None:
            self._seq += 1
            state_path = self.side / f"state-{self._seq}.npz"
            tmp = state_path.with_suffix(".tmp")
            with open(tmp, "wb") as fh:
                np.savez(fh, **state)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, state_path)
            clock = state.get("chip/clock_s", state.get("sweep/t_chip_s", np.nan))
            self._ops.append(("attrs", "resume", {"seq": self._seq, "commit_utc": utc_now(),
                                                  "commit_chip_s": float(np.asarray(clock))}))
        if with_rows:
            self._row_ops()
        ops = self._ops
        for op in self._prev_ops + ops:
            _apply(self._spare, op)
        self._spare.close()
        if self.fsync:
            _fsync_path(self._spare_path)
        # the swap: at every instant self.path names a complete, cleanly closed file
        previous = self.side / "previous.h5"
        if previous.exists():
            previous.unlink()
        os.link(self.path, previous)
        os.replace(self._spare_path, self.path)
        os.replace(previous, self._spare_path)
        self._sync_dirs()
        self._prev_ops, self._ops = ops, []
        if _in_use(self._spare_path):
            # a reader opened the old file before the swap and still holds it (HDF5 readers keep a
            # shared lock): leave it that inode and take a fresh copy of the new file as the spare
            tmp = self.side / "spare.tmp"
            shutil.copyfile(self.path, tmp)
            os.replace(tmp, self._spare_path)
            self._prev_ops = []
            self.n_copies += 1
        self._open_spare()
        if state is not None:
            if self.on_commit is not None:
                self.on_commit(self._seq)
            keep = (f"state-{self._seq}.npz", f"journal-{self._seq}.bin")
            for p in [*self.side.glob("state-*.npz"), *self.side.glob("journal-*.bin")]:
                if p.name not in keep:
                    p.unlink()
        self._last_commit = time.monotonic()
        self.n_commits += 1
        cost = time.perf_counter() - t
        self.commit_s += cost
        if state is not None:
            self._last_commit_cost = cost

    def _fixed_table(self, name: str, spec: dict, columns: dict[str, np.ndarray]) -> None:
        self._ops.append(("group", name))
        for col, (dtype, unit) in spec.items():
            self._ops.append(("array", name, col, _Array(np.asarray(columns[col]).astype(dtype), unit)))


def inspect_resumable(path: str | Path) -> dict:
    """What a resume needs from a session file; one sentence if it cannot be resumed."""
    path = Path(path)
    if not path.exists():
        raise SessionFileError(f"{path} does not exist")
    try:
        f = h5py.File(path, "r", locking=False)
    except OSError as e:
        raise SessionFileError(f"{path} is not a readable HDF5 file ({e.__class__.__name__})") from None
    with f:
        if f.attrs.get("schema") != SCHEMA:
            raise SessionFileError(f"{path} is not a devmodel session file (no '{SCHEMA}' schema)")
        status = str(f.attrs.get("status", ""))
        if status == "complete":
            raise SessionFileError(f"{path} is a complete session; there is nothing to resume")
        if "resume" not in f or not int(f["resume"].attrs.get("durable", 0)):
            raise SessionFileError(f"{path} was not written by a resumable session (it has no /resume "
                                   f"group); it cannot be continued")
        r = f["resume"].attrs
        try:
            info = {
                "seq": int(r["seq"]), "status": status,
                "status_reason": str(f.attrs.get("status_reason", "")),
                "commit_utc": str(r.get("commit_utc", "")),
                "commit_chip_s": float(r.get("commit_chip_s", np.nan)),
                "chip": json.loads(f["chip"].attrs["json"]), "config": json.loads(f["config"].attrs["json"]),
                "seed": int(f["provenance"].attrs.get("seed", -1)), "technology": str(f.attrs["technology"]),
                "g_max_us": float(f.attrs["g_max_us"]), "t0_s": float(f.attrs["t0_s"]),
            }
        except (KeyError, ValueError, TypeError) as e:
            raise SessionFileError(f"{path} has damaged resume information ({type(e).__name__}: {e})") \
                from None
    side = sidecar(path)
    if not side.is_dir():
        raise SessionFileError(f"{path} cannot be resumed: its resume folder {side} is missing")
    state = side / f"state-{info['seq']}.npz"
    if info["seq"] and not state.is_file():
        raise SessionFileError(f"{path} cannot be resumed: its saved state {state} is missing")
    return info
