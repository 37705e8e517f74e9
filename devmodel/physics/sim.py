"""``sim:<technology>`` chip URLs: the technology's simulated chip with its ground truth overridden
by the URL's options (see :mod:`devmodel.chips`)."""

from __future__ import annotations

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
    physics = part.PHYSICS()
    for key, value in opts.items():
        physics = override(url, physics, key, value)
    return part.CHIP(n_devices=n, seed=chip_seed, physics=physics)
