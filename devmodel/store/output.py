"""Writing an output file safely (docs/reliability.md, "Writing outputs").

Every command that writes a file goes through :func:`atomic_output`: the data go to a temporary file
beside the target, created exclusively with a unique name (``mkstemp``: ``O_CREAT | O_EXCL``, so an
existing file or a planted symbolic link is never opened or followed), and the temporary file
replaces the target in one rename only when it is complete. On any failure — an exception, disk
full, Ctrl-C, SIGTERM — the temporary file is removed; after a SIGKILL the next write to the same
target removes the leftovers of processes that no longer run (the name holds the writer's PID).
A command never writes over one of its own inputs, ``--overwrite`` or not.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from devmodel.errors import DevmodelError

_SUFFIX = ".partial"
_NOTHING = " (nothing was written)"


class OutputError(DevmodelError):
    """An output that cannot or must not be written (exists, is an input, no space, read-only)."""


def check_output(path: Path, overwrite: bool, inputs: Iterable[str | Path] = (),
                 option: str = "--out") -> None:
    """Refuse, before any work, an output that exists (without ``overwrite``), that is one of the
    command's inputs, or whose folder does not exist."""
    path = Path(path)
    for src in inputs:
        if src is not None and _same_file(Path(src), path):
            raise OutputError(f"{option} {path} is the command's own input {src}; write elsewhere "
                              "(an input is never overwritten, --overwrite or not)")
    if path.is_dir():
        raise OutputError(f"{option} {path} is a folder; name a file")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputError(f"{path} already exists; choose another {option} or pass --overwrite")
    if not path.parent.is_dir():
        raise OutputError(f"the folder of {path} does not exist")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


@contextlib.contextmanager
def atomic_output(path: str | Path, overwrite: bool = False, inputs: Iterable[str | Path] = (),
                  option: str = "--out") -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; when the block ends without an exception it
    replaces ``path``, otherwise it is removed. Errors are one sentence (:class:`OutputError`)."""
    path = Path(path)
    check_output(path, overwrite, inputs, option)
    _remove_stale(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=_SUFFIX, dir=path.parent)
    except OSError as e:
        raise OutputError(_explain(e, path) + _NOTHING) from None
    os.close(fd)
    tmp = Path(name)
    _readable_by_others(tmp)  # mkstemp makes 0600; outputs are shared like any file the user writes
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError((write_error(e, path) or _explain(e, path)) + _NOTHING) from None
    except RuntimeError as e:  # HDF5 reports a failed write as RuntimeError, the C errno in its text
        message = write_error(e, path)
        if message is None:
            raise
        raise OutputError(message + _NOTHING) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_text_atomically(path: str | Path, text: str, overwrite: bool = False,
                          inputs: Iterable[str | Path] = (), option: str = "--out") -> None:
    """``text`` (UTF-8) to ``path`` through :func:`atomic_output`."""
    with atomic_output(path, overwrite, inputs, option) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_figure(fig, path: str | Path, dpi: int = 120, overwrite: bool = True) -> None:
    """A matplotlib figure to ``path`` through :func:`atomic_output` (format from the suffix); the
    figure is closed either way."""
    import matplotlib.pyplot as plt

    try:
        with atomic_output(path, overwrite, option="figure") as tmp:
            fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)


def write_error(e: BaseException, path: str | Path) -> str | None:
    """One sentence for a failed write that is the storage's doing (full, read-only, not
    permitted), from an OSError or from HDF5's RuntimeError (the C errno in its text); else None."""
    code = getattr(e, "errno", None) if isinstance(e, OSError) else None
    if code is None:
        found = re.search(r"errno = (\d+)", str(e))
        code = int(found[1]) if found else None
    if code not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
        return None
    return _explain(OSError(code, os.strerror(code)), Path(path))


def _explain(e: OSError, path: Path) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"cannot write {path}: no space left on the device"
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write {path}: its folder is read-only or not writable ({e.strerror})"
    return f"cannot write {path}: {e.strerror or e}"


def _readable_by_others(tmp: Path) -> None:
    umask = os.umask(0)
    os.umask(umask)
    with contextlib.suppress(OSError):
        os.chmod(tmp, 0o666 & ~umask)


def _remove_stale(path: Path) -> None:
    """Temporary files of this target left by writers that were killed (their PID is gone)."""
    with contextlib.suppress(OSError):
        for p in path.parent.glob(f".{glob.escape(path.name)}.*{_SUFFIX}"):
            parts = p.name[len(path.name) + 2:].split(".")
            if parts and parts[0].isdigit() and not _alive(int(parts[0])) and not p.is_symlink():
                with contextlib.suppress(OSError):
                    p.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
