"""Device technologies as plug-ins: one package per technology, found through one registry.

Everything that differs between PCM, ReRAM and the next device lives in that technology's package
(``devmodel/technologies/<name>/``), in modules with fixed names, one per layer of the toolkit
(docs/architecture.md, "Adding a technology"):

========== ========== ===========================================================================
part        layer      what it holds
========== ========== ===========================================================================
physics     chip       ``PHYSICS`` (ground-truth parameters) and ``CHIP`` (the simulated chip)
verify      procedures ``CONFIG`` (program-and-verify settings) and ``RUN`` (the verify loop)
card        model      ``CARD`` (the model-card class, a DeviceModel) and ``published()``
noise       model      ``NOISE_MODEL`` (the torch noise model of the card)
fit         fit        ``OPTIONS`` (fit settings) and ``fit(data, options) -> CARD``; optionally
                       ``device_estimates`` and ``fit_levels`` (out-of-core fit, docs/scale.md)
aihwkit     export     ``check``, ``objects`` and ``module_body`` (optional part)
figures     report     ``figures(card, data, out)`` and ``versus_ground_truth`` (optional)
========== ========== ===========================================================================

plus ``published`` (chip layer, the published model's constants) and ``synthetic`` (procedures
layer, sessions drawn from the published model) where a technology has them. The package's own
``__init__`` holds only its :class:`Technology` declaration (plain data: names, units, defaults), so
listing the technologies costs nothing. Shared code asks :func:`technology` and never branches on a
technology's name; an unknown technology is one clear error.

A technology is registered by being a sub-package of this package with a ``TECHNOLOGY`` declaration:
adding one touches nothing else.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass, field
from types import ModuleType

from devmodel.errors import DevmodelError
from devmodel.registry import Registry

#: Part module → the layer it belongs to (checked by tests/test_architecture.py).
PARTS: dict[str, str] = {
    "published": "chip", "physics": "chip",
    "verify": "procedures", "synthetic": "procedures",
    "card": "model", "noise": "model",
    "fit": "fit",
    "aihwkit": "export",
    "figures": "report",
}


@dataclass(frozen=True)
class SweepDefaults:
    """The characterisation session a technology runs unless told otherwise (docs/physics.md)."""

    levels_us: tuple[float, ...]
    schedule_s: tuple[float, ...]
    burst_devices_per_level: int = 100
    burst_reads: int = 256
    burst_interval_s: float = 1.0
    burst_age_s: float = 1000.0
    age_tolerance: float = 0.01  # cohort width as a fraction of the first schedule age


@dataclass(frozen=True)
class Technology:
    """A device technology's declaration: plain data, and where its parts live."""

    name: str
    title: str
    pulse_unit: str  # "uA" (current-mode pulses) | "V" (voltage-mode pulses)
    g_max_us: float  # conductance range of the published model
    t0_s: float  # reference age: programming noise is read this long after the last pulse
    sweep: SweepDefaults
    #: legacy CLI flags of ``devmodel fit`` → field of the fit part's OPTIONS
    fit_flags: dict[str, str] = field(default_factory=dict)
    package: str = ""  # filled in at registration

    def part(self, name: str) -> ModuleType:
        """The technology's ``name`` module (imported on first use); one sentence if it has none."""
        if name not in PARTS:
            raise ValueError(f"{name!r} is not a technology part; parts: {', '.join(PARTS)}")
        try:
            return importlib.import_module(f"{self.package}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{self.package}.{name}":
                raise
            raise DevmodelError(f"technology {self.name} has no {name} part "
                                f"({PARTS[name]} layer)") from None

    def has_part(self, name: str) -> bool:
        return importlib.util.find_spec(f"{self.package}.{name}") is not None


_REGISTRY: Registry[Technology] = Registry("technology")
_discovered = False


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    found = [f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__) if m.ispkg]
    for pkg in found:
        tech = importlib.import_module(pkg).TECHNOLOGY
        object.__setattr__(tech, "package", tech.package or pkg)
        _REGISTRY.register(tech.name, tech)


def technology(name: str) -> Technology:
    """The registered technology ``name`` (an UnknownNameError listing the known ones otherwise)."""
    _discover()
    return _REGISTRY.get(name)


def names() -> tuple[str, ...]:
    """Names of the registered technologies."""
    _discover()
    return _REGISTRY.names()


def all_technologies() -> list[Technology]:
    _discover()
    return [_REGISTRY.get(n) for n in _REGISTRY.names()]
