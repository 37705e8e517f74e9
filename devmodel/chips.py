"""Chip URLs: one string picks the backend, as PyVISA's resource strings pick an instrument.

* ``sim:pcm``, ``sim:reram`` — the built-in simulated chips; options after ``?``:
  ``devices`` (array size), ``seed``, and any ground-truth parameter of the chip's physics by its
  dotted name (``sim:pcm?c2c_spread=0.08&stat.q_s.amp=0.01``).
* ``visa://<VISA resource>`` — a test-chip controller behind a VISA instrument (``instruments``).
* ``replay:<session.h5>`` / ``emulate:<session.h5>`` — recorded data.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import parse_qsl

from devmodel.array import DeviceArray
from devmodel.errors import ChipURLError

SIM_TECHNOLOGIES = ("pcm", "reram")
DEFAULT_SIM_DEVICES = 1 << 20  # 1,048,576 devices, the size of the seed's PCM test chip


def parse_chip_url(url: str) -> tuple[str, str, dict[str, str]]:
    """Split ``scheme:target?opt=value&…`` into (scheme, target, options)."""
    if not isinstance(url, str) or ":" not in url:
        raise ChipURLError(f"chip URL {url!r} has no scheme; try sim:pcm or sim:reram")
    scheme, rest = url.split(":", 1)
    target, _, query = rest.partition("?")
    try:
        opts = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise ChipURLError(f"chip URL {url!r} has a malformed option list after '?'") from None
    return scheme.lower(), target, opts


def open_chip(url: str, seed: int | None = None, station: str | None = None) -> DeviceArray:
    """Open the device array named by ``url``; ``seed`` applies when the URL names none.

    ``station`` is a station file (instruments, backends, timeouts, safety limits) for ``visa://``.
    """
    scheme, target, opts = parse_chip_url(url)
    if scheme == "sim":
        return _open_sim(url, target.lower(), opts, seed)
    if scheme == "visa":
        return _open_visa(url, target.removeprefix("//"), opts, station)
    if scheme in ("replay", "emulate"):
        return _open_record(url, scheme, target, opts, seed)
    raise ChipURLError(
        f"unknown chip URL scheme {scheme!r} in {url!r}; known: sim:pcm, sim:reram, "
        f"replay:<session.h5>, emulate:<session.h5>"
    )


def _open_visa(url: str, resource: str, opts: dict[str, str], station: str | None) -> DeviceArray:
    """The only place devmodel imports ``instruments`` (DESIGN.md seam 1)."""
    try:
        from instruments.chip import open_visa_chip
    except ImportError:
        raise ChipURLError(f"chip URL {url!r}: the instruments package is not installed") from None
    # VISA resource strings hold no '?': what follows one are this toolkit's options (reliability)
    unknown = sorted(set(opts) - {"faults", "retries"})
    if unknown:
        raise ChipURLError(f"chip URL {url!r} sets unknown option {unknown[0]!r}; visa:// URLs take "
                           f"faults and retries")
    return open_visa_chip(resource, station, faults=opts.get("faults"), retry=opts.get("retries"))


def _open_record(url: str, scheme: str, target: str, opts: dict[str, str],
                 seed: int | None) -> DeviceArray:
    """``replay:<session.h5>`` (recorded reads) and ``emulate:<session.h5>`` (pulse response)."""
    if not target:
        raise ChipURLError(f"chip URL {url!r} names no session file; try {scheme}:session.h5")
    if scheme == "replay":
        from devmodel.replay.backend import open_replay

        return open_replay(target, opts)
    from devmodel.replay.emulator import open_emulator

    return open_emulator(target, opts, seed)


def _open_sim(url: str, tech: str, opts: dict[str, str], seed: int | None) -> DeviceArray:
    from devmodel.physics.pcm import PcmPhysics, SimulatedPCM
    from devmodel.physics.reram import ReramPhysics, SimulatedReRAM

    if tech not in SIM_TECHNOLOGIES:
        raise ChipURLError(f"unknown simulated technology {tech!r} in {url!r}; use pcm or reram")
    n = _int_opt(url, opts, "devices", DEFAULT_SIM_DEVICES, lo=1, hi=1 << 26)
    if seed is not None and not 0 <= seed <= 2**63 - 1:
        raise ChipURLError(f"seed {seed} for {url!r} is outside 0..{2**63 - 1}")
    chip_seed = _int_opt(url, opts, "seed", 0 if seed is None else seed, lo=0, hi=2**63 - 1)
    physics_cls, chip_cls = (
        (PcmPhysics, SimulatedPCM) if tech == "pcm" else (ReramPhysics, SimulatedReRAM)
    )
    physics = physics_cls()
    for key, value in opts.items():
        physics = _override(url, physics, key, value)
    return chip_cls(n_devices=n, seed=chip_seed, physics=physics)


def _int_opt(url: str, opts: dict[str, str], key: str, default: int, lo: int, hi: int) -> int:
    if key not in opts:
        return default
    raw = opts.pop(key)
    try:
        value = int(raw)
    except ValueError:
        raise ChipURLError(f"option {key}={raw!r} in {url!r} is not an integer") from None
    if not lo <= value <= hi:
        raise ChipURLError(f"option {key}={value} in {url!r} is outside {lo}..{hi}")
    return value


def _override(url: str, obj: Any, dotted: str, raw: str) -> Any:
    """Return a copy of the (nested, frozen) dataclass ``obj`` with field ``dotted`` set."""
    head, _, tail = dotted.partition(".")
    names = {f.name for f in dataclasses.fields(obj)}
    if head not in names:
        raise ChipURLError(
            f"chip URL {url!r} sets unknown parameter {dotted!r}; known: {', '.join(sorted(names))}"
        )
    current = getattr(obj, head)
    if tail:
        if not dataclasses.is_dataclass(current):
            raise ChipURLError(f"parameter {head!r} in {url!r} has no field {tail!r}")
        return dataclasses.replace(obj, **{head: _override(url, current, tail, raw)})
    if dataclasses.is_dataclass(current) or isinstance(current, tuple):
        raise ChipURLError(f"parameter {dotted!r} in {url!r} is not a scalar")
    try:
        value = float(raw)
    except ValueError:
        raise ChipURLError(f"parameter {dotted}={raw!r} in {url!r} is not a number") from None
    return dataclasses.replace(obj, **{head: value})
