"""Export a device model card to IBM aihwkit's inference noise models (docs/export.md).

``to_aihwkit(card)`` returns aihwkit objects (needs aihwkit importable); ``module_source(card)`` the
text of a small Python module that builds them (``devmodel export --to aihwkit``). What aihwkit class
a technology maps to lives in that technology's ``aihwkit`` part (``check``, ``objects``,
``module_body``); every card also exports whole as
:class:`devmodel.export.aihwkit_model.DevmodelNoiseModel`.

Supported aihwkit: 1.0.0 – 1.2.0. Tested against 1.2.0; the modules used here (noise base, pcm,
reram, custom and the conductance converter) are identical in 1.0.0 and 1.1.0 apart from their
copyright line (compared file by file, docs/export.md). The 1.2.0 constructor pitfalls are avoided:
coefficients are passed already expressed against the converter's g_max and
``prog_coeff_g_max_reference`` / ``coeff_g_max_reference`` are never passed; the converter is given
explicitly (aihwkit ignores ``g_max`` when a converter is passed and the Wan model defaults to
25 µS).
"""

from __future__ import annotations

import json
from types import ModuleType

from devmodel import __version__
from devmodel.errors import DevmodelError
from devmodel.export import check_g_max
from devmodel.model.card import DeviceModel
from devmodel.technologies import technology

SUPPORTED_AIHWKIT = ("1.0.0", "1.1.0", "1.2.0")


def aihwkit_part(card: DeviceModel) -> ModuleType:
    """The card's technology's ``aihwkit`` part, after its own checks of the card."""
    tech = technology(card.technology)
    if not tech.has_part("aihwkit"):
        raise DevmodelError(f"aihwkit has no noise model for technology {card.technology!r} "
                            f"(devmodel has no aihwkit part for {tech.title})")
    part = tech.part("aihwkit")
    part.check(card)
    return part


def check_exportable(card: DeviceModel, g_max_us: float | None = None) -> None:
    """Refuse what aihwkit cannot take (one sentence)."""
    check_g_max(card, g_max_us)
    aihwkit_part(card)


def to_aihwkit(card: DeviceModel) -> dict[str, object]:
    """aihwkit noise-model objects for the card: the technology's own classes (e.g. 'pcm_like',
    'custom_drift' for PCM; 'wan2022' for ReRAM) and 'devmodel', the whole card."""
    part = aihwkit_part(card)
    try:
        from devmodel.export.aihwkit_model import DevmodelNoiseModel

        objects = part.objects(card)
    except ImportError as e:
        raise DevmodelError(f"aihwkit is not importable here ({e})") from None
    return {**objects, "devmodel": DevmodelNoiseModel(card)}


def module_source(card: DeviceModel, g_max_us: float | None = None) -> str:
    """A Python module that builds the aihwkit objects for this card."""
    check_g_max(card, g_max_us)
    part = aihwkit_part(card)
    src = card.provenance.get("source", "?")
    sha = card.provenance.get("source_sha256", "")
    card_json = card.to_json(indent=None)
    head = f'''"""aihwkit noise models for the devmodel card of {src}
(source SHA-256 {sha or 'n/a'}; written by devmodel {__version__}).

Supported aihwkit versions: {", ".join(SUPPORTED_AIHWKIT)}. Coefficients are already expressed
against g_max and no *_g_max_reference argument is passed (aihwkit 1.2.0 raises AttributeError on
first use when both are given); the converter is explicit (aihwkit ignores g_max next to one).
"""

from aihwkit.inference.converter.conductance import SinglePairConductanceConverter

G_MAX_US = {card.g_max_us!r}
T0_S = {card.t0_s!r}
CARD_JSON = {json.dumps(card_json)}


def converter():
    return SinglePairConductanceConverter(g_max=G_MAX_US)


def devmodel_model():
    """The whole card (needs devmodel installed)."""
    from devmodel.export.aihwkit_model import DevmodelNoiseModel
    from devmodel.model.card import DeviceModel

    return DevmodelNoiseModel(DeviceModel.from_json(CARD_JSON))
'''
    return head + part.module_body(card)
