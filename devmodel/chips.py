"""Chip URLs: one string picks the backend, as PyVISA's resource strings pick an instrument.

A URL is ``scheme:target?option=value&…``; the scheme names an entry of :data:`SCHEMES`, a registry
whose openers are imported only when used (so this module, low in the layers, can name backends that
live above it: docs/architecture.md). The built-in schemes:

* ``sim:<technology>`` — the built-in simulated chips (``sim:pcm``, ``sim:reram``, …); options
  ``devices`` (array size), ``seed``, and any ground-truth parameter of the chip's physics by its
  dotted name (``sim:pcm?c2c_spread=0.08&stat.q_s.amp=0.01``);
* ``visa://<VISA resource>`` — a test-chip controller behind a VISA instrument (``instruments``);
* ``replay:<session.h5>`` / ``emulate:<session.h5>`` — recorded data.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from devmodel.array import DeviceArray
from devmodel.errors import ChipURLError
from devmodel.registry import Registry, load_object

#: Opener signature: (url, target, options, seed, station file) → device array.
Opener = Callable[[str, str, dict[str, str], "int | None", "str | None"], DeviceArray]


@dataclass(frozen=True)
class Scheme:
    """A chip URL scheme: its usage (shown in help and errors) and where its opener lives."""

    usage: str
    opener: str  # "package.module:function"

    def open(self, url: str, target: str, opts: dict[str, str], seed: int | None,
             station: str | None) -> DeviceArray:
        return load_object(self.opener)(url, target, opts, seed, station)


SCHEMES: Registry[Scheme] = Registry("chip URL scheme")
SCHEMES.register("sim", Scheme("sim:<technology>[?devices=N&seed=S&<parameter>=value]",
                               "devmodel.physics.sim:open_sim"))
SCHEMES.register("visa", Scheme("visa://<VISA resource>[?retries=N&faults=...]",
                                "instruments.chip:open_visa_url"))
SCHEMES.register("replay", Scheme("replay:<session.h5>", "devmodel.replay.backend:open_replay_url"))
SCHEMES.register("emulate", Scheme("emulate:<session.h5>", "devmodel.replay.emulator:open_emulator_url"))


def usages() -> str:
    """Every scheme's usage, for help texts and error messages."""
    return ", ".join(SCHEMES.get(n).usage for n in SCHEMES.names())


def parse_chip_url(url: str) -> tuple[str, str, dict[str, str]]:
    """Split ``scheme:target?opt=value&…`` into (scheme, target, options)."""
    if not isinstance(url, str) or ":" not in url:
        raise ChipURLError(f"chip URL {url!r} has no scheme; known: {usages()}")
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
    if scheme not in SCHEMES:
        raise ChipURLError(f"unknown chip URL scheme {scheme!r} in {url!r}; known: {usages()}")
    return SCHEMES.get(scheme).open(url, target, opts, seed, station)


def input_file(url: str) -> str | None:
    """The file a chip URL reads (a replay:/emulate: session), so a command never writes over it."""
    try:
        target = parse_chip_url(url)[1]
    except ChipURLError:
        return None
    return target if target and os.path.isfile(target) else None


def int_option(url: str, opts: dict[str, str], key: str, default: int, lo: int, hi: int) -> int:
    """Pop the integer option ``key`` (``default`` when absent), refused outside ``lo..hi``."""
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


def override(url: str, obj: Any, dotted: str, raw: str) -> Any:
    """A copy of the (nested, frozen) dataclass ``obj`` with field ``dotted`` set to the finite
    number ``raw``."""
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
        return dataclasses.replace(obj, **{head: override(url, current, tail, raw)})
    if dataclasses.is_dataclass(current) or isinstance(current, tuple):
        raise ChipURLError(f"parameter {dotted!r} in {url!r} is not a scalar")
    try:
        value = float(raw)
    except ValueError:
        raise ChipURLError(f"parameter {dotted}={raw!r} in {url!r} is not a number") from None
    if not math.isfinite(value):
        raise ChipURLError(f"parameter {dotted}={raw!r} in {url!r} is not a finite number")
    return dataclasses.replace(obj, **{head: value})
