"""``sim:<technology>`` chip URLs: the technology's simulated chip with its ground truth overridden
by the URL's options (see :mod:`devmodel.chips`)."""

from __future__ import annotations

import numpy as np

from devmodel.array import DeviceArray
from devmodel.chips import int_option, override
from devmodel.errors import ChipURLError, UnknownNameError
from devmodel.technologies import names, technology

#: Default array size: 1,048,576 devices, the size of the seed's PCM test chip (docs/physics.md).
DEFAULT_SIM_DEVICES = 1 << 20
MAX_SIM_DEVICES = 1 << 26


def open_sim(url: str, target: str, opts: dict[str, str], seed: int | None,
             station: str | None = None) -> DeviceArray:
    """The simulated chip of technology ``target``; ``seed`` applies when the URL names none."""
    try:
        tech = technology(target.lower())
    except UnknownNameError:
        raise ChipURLError(f"unknown simulated technology {target.lower()!r} in {url!r}; use "
                           f"{', '.join(names())}") from None
    part = tech.part("physics")
    n = int_option(url, opts, "devices", DEFAULT_SIM_DEVICES, lo=1, hi=MAX_SIM_DEVICES)
    if seed is not None and not 0 <= seed <= 2**63 - 1:
        raise ChipURLError(f"seed {seed} for {url!r} is outside 0..{2**63 - 1}")
    chip_seed = int_option(url, opts, "seed", 0 if seed is None else seed, lo=0, hi=2**63 - 1)
    chip_index = int_option(url, opts, "chip", -1, lo=-1, hi=10**6)
    spreads = {k[len("spread."):]: opts.pop(k) for k in list(opts) if k.startswith("spread.")}
    physics = part.PHYSICS()
    for key, value in opts.items():
        physics = override(url, physics, key, value)
    if spreads and chip_index < 0:
        raise ChipURLError(f"{url!r} sets a chip-to-chip spread but no chip=K (the chip's index on "
                           "the wafer)")
    if chip_index >= 0:
        physics = wafer_chip(url, physics, chip_seed, chip_index, spreads)
        chip_seed = int(np.random.SeedSequence([chip_seed, chip_index]).generate_state(1, np.uint64)[0]
                        >> np.uint64(1))
    if n > DEFAULT_SIM_DEVICES:
        check_memory(url, part.CHIP, physics, n)
    return part.CHIP(n_devices=n, seed=chip_seed, physics=physics)


def wafer_chip(url: str, physics, seed: int, chip: int, spreads: dict[str, str]):
    """Chip ``chip`` of the wafer of seed ``seed`` (docs/scale.md, "Simulated wafers"): each
    parameter named in ``spreads`` (``spread.stat.q_s.amp=0.2``) is multiplied by the lognormal
    factor exp(σ·z), z ~ N(0, 1) drawn from ``default_rng([seed, chip, crc32(name)])``, so a chip's
    truth depends only on the wafer seed, its index and the parameter; the chip's devices are drawn
    from a seed derived from (seed, chip). The session records the chip's parameters as its ground
    truth."""
    import zlib

    for name, raw in sorted(spreads.items()):
        try:
            sigma = float(raw)
        except ValueError:
            raise ChipURLError(f"spread.{name}={raw!r} in {url!r} is not a number") from None
        if not (np.isfinite(sigma) and 0 <= sigma <= 2):
            raise ChipURLError(f"spread.{name}={raw!r} in {url!r} is outside 0..2 (a lognormal σ)")
        value = _field(url, physics, name)
        z = np.random.default_rng([seed, chip, zlib.crc32(name.encode())]).standard_normal()
        physics = override(url, physics, name, repr(float(value * np.exp(sigma * z))))
    return physics


def _field(url: str, obj, dotted: str) -> float:
    """The current value of the (nested) scalar field ``dotted``."""
    for part in dotted.split("."):
        if not hasattr(obj, part):
            raise ChipURLError(f"chip URL {url!r} spreads unknown parameter {dotted!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, int | float):
        raise ChipURLError(f"parameter {dotted!r} in {url!r} is not a scalar")
    return float(obj)


#: Devices of the probe chip whose arrays measure a technology's bytes per device.
_PROBE_DEVICES = 4096
#: Working memory of the largest request a served chip runs, besides its arrays (docs/chip-protocol.md).
_WORKING_BYTES = 512 << 20


def check_memory(url: str, chip_class, physics, n: int) -> None:
    """Refuse, with one sentence, a simulated chip whose arrays would not fit in the memory this
    machine has available: a probe chip's per-device arrays, scaled to ``n`` devices, plus the
    working memory of one request, against /proc/meminfo's MemAvailable."""
    probe = chip_class(n_devices=_PROBE_DEVICES, seed=0, physics=physics)
    per_device = _array_bytes(probe) / _PROBE_DEVICES
    need = per_device * n + _WORKING_BYTES
    have = available_memory_bytes()
    if have is not None and need > have:
        raise ChipURLError(f"{url!r} needs ≈ {need / 2**30:.1f} GB for {n} devices ({per_device:.0f} bytes "
                           f"each), more than the {have / 2**30:.1f} GB this machine has available; use at "
                           f"most devices={int((have - _WORKING_BYTES) / per_device)}")


def _array_bytes(obj, depth: int = 0, seen: set | None = None) -> int:
    """NumPy array bytes reachable from ``obj`` through attributes, dicts and lists (3 levels)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 3:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        items = obj.values()
    elif isinstance(obj, (list, tuple)):
        items = obj
    elif hasattr(obj, "__dict__"):
        items = vars(obj).values()
    else:
        return 0
    return sum(_array_bytes(v, depth + 1, seen) for v in items)


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where the system does not say."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
