"""The pinned IBM aihwkit source distribution, for tests against aihwkit's own classes.

aihwkit is published on PyPI as a source distribution for Python 3.11 (its C++ simulator must be
compiled), but its ``aihwkit.inference`` package is plain Python + torch. The tests fetch the pinned
sdist (1.2.0) the way users fetch packages, by name with pip (``pip download --no-deps
aihwkit==1.2.0``: pip prepares its metadata, nothing is compiled), check its SHA-256, extract only
``src/aihwkit`` into a cache and put it on ``sys.path``. ``AIHWKIT_SRC`` may point at an existing
checkout's ``src``; with ``DEVMODEL_OFFLINE`` set and nothing cached the tests skip, saying why.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

AIHWKIT_VERSION = "1.2.0"
AIHWKIT_SDIST_SHA256 = "288b00aed52a99f578a2e7ac46fdbf2a9f07e4780c4307eae5827558f1bf2cba"


def _cache_root() -> Path:
    base = os.environ.get("DEVMODEL_CACHE") or os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "devmodel"


def _extract(blob: bytes, dest: Path) -> None:
    prefix = f"aihwkit-{AIHWKIT_VERSION}/src/"
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = member.name
            if not name.startswith(prefix + "aihwkit/") or ".." in Path(name).parts:
                continue
            if not member.isfile():
                continue  # directories are made below; no links or devices
            target = tmp / name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        tmp.replace(dest)
    shutil.rmtree(tmp, ignore_errors=True)


def _pip_download(timeout: float) -> tuple[bytes | None, str]:
    """The sdist's bytes, fetched by name with pip (no dependencies, nothing built)."""
    with tempfile.TemporaryDirectory(prefix="devmodel-aihwkit-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "-q", f"aihwkit=={AIHWKIT_VERSION}", "-d", tmp]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, f"pip download aihwkit=={AIHWKIT_VERSION} took over {timeout:g} s"
        sdists = list(Path(tmp).glob(f"aihwkit-{AIHWKIT_VERSION}.tar.gz"))
        if run.returncode != 0 or not sdists:
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            return None, f"pip download aihwkit=={AIHWKIT_VERSION} failed ({last})"
        return sdists[0].read_bytes(), ""


def aihwkit_src(timeout: float = 600.0) -> tuple[Path | None, str]:
    """(path to put on sys.path, "") or (None, why not)."""
    env = os.environ.get("AIHWKIT_SRC")
    if env:
        p = Path(env).expanduser()
        ok = (p / "aihwkit/inference/noise/pcm.py").is_file()
        return (p, "") if ok else (None, f"AIHWKIT_SRC={env} has no aihwkit/inference/noise/pcm.py")
    dest = _cache_root() / f"aihwkit-{AIHWKIT_VERSION}-src"
    if (dest / "aihwkit/inference/noise/pcm.py").is_file():
        return dest, ""
    if os.environ.get("DEVMODEL_OFFLINE"):
        return None, "DEVMODEL_OFFLINE is set and the aihwkit sdist is not cached"
    blob, why = _pip_download(timeout)
    if blob is None:
        return None, why
    if hashlib.sha256(blob).hexdigest() != AIHWKIT_SDIST_SHA256:
        return None, "the downloaded aihwkit sdist does not match its pinned SHA-256"
    _extract(blob, dest)
    return dest, ""


def import_aihwkit() -> tuple[bool, str]:
    """Make ``aihwkit.inference`` importable; (True, "") or (False, why not)."""
    try:
        import aihwkit.inference  # noqa: F401

        return True, ""
    except ImportError:
        pass
    path, why = aihwkit_src()
    if path is None:
        return False, why
    sys.path.insert(0, str(path))
    try:
        import aihwkit.inference  # noqa: F401
    except ImportError as e:
        return False, f"aihwkit source at {path} does not import ({e})"
    return True, ""
