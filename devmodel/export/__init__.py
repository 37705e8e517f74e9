"""Exporters: a device model card → what training and inference simulators take (docs/export.md).

Export targets are registered in :data:`EXPORTERS`; each writes the text of one file and makes its
own checks (``devmodel export --to NAME``). The native torch noise model needs no file: it is
``card.noise_model()`` (:mod:`devmodel.model.noise`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from devmodel.errors import DevmodelError
from devmodel.registry import Registry, load_object

if TYPE_CHECKING:  # the registry itself stays cheap to import (``devmodel --help`` lists it)
    from devmodel.model.card import DeviceModel


def check_g_max(card: DeviceModel, g_max_us: float | None) -> None:
    """Refuse exporting a card at another conductance range than it was fitted at (one sentence)."""
    if g_max_us is not None and abs(g_max_us - card.g_max_us) > 1e-9 * card.g_max_us:
        raise DevmodelError(
            f"the card was fitted with g_max {card.g_max_us:g} µS; exporting it at {g_max_us:g} µS "
            "would rescale fitted noise: refit at that range or drop --g-max-us"
        )


@dataclass(frozen=True)
class Exporter:
    """An export target: what it writes (help text) and the function ``(card, g_max_us) -> text``."""

    help: str
    write: str  # "package.module:function"

    def __call__(self, card: DeviceModel, g_max_us: float | None = None) -> str:
        return load_object(self.write)(card, g_max_us)


def write_json(card: DeviceModel, g_max_us: float | None = None) -> str:
    """The card, validated and normalised."""
    check_g_max(card, g_max_us)
    return card.to_json() + "\n"


def write_summary(card: DeviceModel, g_max_us: float | None = None) -> str:
    """The scalars simpler simulators take (MemTorch, NeuroSim style), averaged uniformly over
    x = G_T/g_max ∈ (0, 1]."""
    check_g_max(card, g_max_us)
    return json.dumps(card.summary(), indent=2) + "\n"


EXPORTERS: Registry[Exporter] = Registry("export target")
EXPORTERS.register("aihwkit", Exporter("a Python module building aihwkit noise models",
                                       "devmodel.export.aihwkit:module_source"))
EXPORTERS.register("json", Exporter("the normalised card", "devmodel.export:write_json"))
EXPORTERS.register("summary", Exporter("the scalars simpler simulators take",
                                       "devmodel.export:write_summary"))
