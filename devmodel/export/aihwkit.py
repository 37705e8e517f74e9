"""Export a device model card to IBM aihwkit's inference noise models (export issue, part 2).

``to_aihwkit(card)`` returns aihwkit objects (needs aihwkit importable); ``module_source(card)`` the
text of a small Python module that builds them (``devmodel export --to aihwkit``).

* PCM → ``PCMLikeNoiseModel`` with the fitted programming polynomial (ν and Q_s stay aihwkit's
  published forms), ``CustomDriftPCMLikeNoiseModel`` with the fitted ν(G) (the card's clipped-log
  forms tabulated densely; aihwkit interpolates linearly in µS), and the card's everything through
  :class:`devmodel.export.aihwkit_model.DevmodelNoiseModel` (fitted Q_s law, programming mean
  offset, drift–programming coupling).
* ReRAM → ``ReRamWan2022NoiseModel`` with the fitted snapshots (aihwkit accepts only those times)
  and ``DevmodelNoiseModel`` (any time, interpolated in ln t).

Supported aihwkit: 1.0.0 – 1.2.0. Tested against 1.2.0; the modules used here (noise base, pcm,
reram, custom and the conductance converter) are identical in 1.0.0 and 1.1.0 apart from their
copyright line (compared file by file, docs/export.md). The 1.2.0
constructor pitfalls are avoided: coefficients are passed already expressed against the converter's
g_max and ``prog_coeff_g_max_reference`` / ``coeff_g_max_reference`` are never passed; the converter
is given explicitly (aihwkit ignores ``g_max`` when a converter is passed and the Wan model defaults
to 25 µS); custom-drift lists are lists (not tuples) covering [0, g_max].
"""

from __future__ import annotations

import json

import numpy as np

from devmodel import __version__
from devmodel.errors import DevmodelError
from devmodel.model.card import DeviceModel

SUPPORTED_AIHWKIT = ("1.0.0", "1.1.0", "1.2.0")
_TABLE_POINTS = 64


def custom_drift_table(card: DeviceModel) -> dict[str, list[float]]:
    """ν mean/std on a dense grid over [0, g_max] (log-spaced above 0.1 % of g_max) from the
    card's clipped-log forms, for ``CustomDriftPCMLikeNoiseModel`` (linear interpolation in µS)."""
    g = np.concatenate([[0.0], np.geomspace(1e-3, 1.0, _TABLE_POINTS - 1)]) * card.g_max_us
    x = np.maximum(g / card.g_max_us, 1e-7)  # aihwkit clamps x at 1e-7 too
    return {"g_lst": g.tolist(), "nu_mean_lst": card.drift.nu_mean(x).tolist(),
            "nu_std_lst": card.drift.nu_std(x).tolist()}


def check_exportable(card: DeviceModel, g_max_us: float | None = None) -> None:
    """Refuse what aihwkit cannot take (one sentence)."""
    if card.technology not in ("pcm", "reram"):
        raise DevmodelError(f"aihwkit has no noise model for technology {card.technology!r}")
    if g_max_us is not None and abs(g_max_us - card.g_max_us) > 1e-9 * card.g_max_us:
        raise DevmodelError(
            f"the card was fitted with g_max {card.g_max_us:g} µS; exporting it at {g_max_us:g} µS "
            "would rescale fitted noise: refit at that range or drop --g-max-us"
        )
    if card.technology == "pcm" and card.drift.nu_distribution != "folded_normal":
        raise DevmodelError("aihwkit draws ν = |N(μ, σ)|; this card's ν distribution differs")


def to_aihwkit(card: DeviceModel) -> dict[str, object]:
    """aihwkit noise-model objects for the card (keys: 'pcm_like', 'custom_drift', 'devmodel' for
    PCM; 'wan2022', 'devmodel' for ReRAM)."""
    check_exportable(card)
    try:
        from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
        from aihwkit.inference.noise.pcm import CustomDriftPCMLikeNoiseModel, PCMLikeNoiseModel
        from aihwkit.inference.noise.reram import ReRamWan2022NoiseModel

        from devmodel.export.aihwkit_model import DevmodelNoiseModel
    except ImportError as e:
        raise DevmodelError(f"aihwkit is not importable here ({e})") from None
    conv = SinglePairConductanceConverter(g_max=card.g_max_us)
    if card.technology == "pcm":
        rn = card.read_noise
        common = dict(prog_coeff=list(card.programming.poly_coeffs_us), g_converter=conv,
                      t_read=rn.t_read_s, t_0=card.t0_s)
        return {
            "pcm_like": PCMLikeNoiseModel(**common),
            "custom_drift": CustomDriftPCMLikeNoiseModel(custom_drift_table(card), **common),
            "devmodel": DevmodelNoiseModel(card),
        }
    coeffs = {float(s.t_s): list(s.poly_coeffs_us) for s in card.snapshots}
    return {"wan2022": ReRamWan2022NoiseModel(coeff_dic=coeffs, g_converter=conv),
            "devmodel": DevmodelNoiseModel(card)}


def module_source(card: DeviceModel) -> str:
    """A Python module that builds the aihwkit objects for this card."""
    check_exportable(card)
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
    if card.technology == "pcm":
        table = custom_drift_table(card)
        body = f'''

PROG_COEFF = {list(card.programming.poly_coeffs_us)!r}
T_READ_S = {card.read_noise.t_read_s!r}
CUSTOM_DRIFT = {{
    "g_lst": {table["g_lst"]!r},
    "nu_mean_lst": {table["nu_mean_lst"]!r},
    "nu_std_lst": {table["nu_std_lst"]!r},
}}


def pcm_like():
    """Fitted programming noise; aihwkit's published ν(G) and Q_s."""
    from aihwkit.inference.noise.pcm import PCMLikeNoiseModel

    return PCMLikeNoiseModel(prog_coeff=list(PROG_COEFF), g_converter=converter(),
                             t_read=T_READ_S, t_0=T0_S)


def custom_drift():
    """Fitted programming noise and fitted ν(G); aihwkit's published Q_s."""
    from aihwkit.inference.noise.pcm import CustomDriftPCMLikeNoiseModel

    table = {{k: list(v) for k, v in CUSTOM_DRIFT.items()}}
    return CustomDriftPCMLikeNoiseModel(table, prog_coeff=list(PROG_COEFF),
                                        g_converter=converter(), t_read=T_READ_S, t_0=T0_S)


noise_model = custom_drift  # plain aihwkit; devmodel_model() carries the whole card
'''
    else:
        coeffs = {float(s.t_s): list(s.poly_coeffs_us) for s in card.snapshots}
        body = f'''

COEFF_DIC = {coeffs!r}


def wan2022():
    """Fitted snapshots; aihwkit accepts t_inference equal to one of COEFF_DIC's keys only."""
    from aihwkit.inference.noise.reram import ReRamWan2022NoiseModel

    return ReRamWan2022NoiseModel(coeff_dic={{k: list(v) for k, v in COEFF_DIC.items()}},
                                  g_converter=converter())


noise_model = wan2022  # plain aihwkit; devmodel_model() interpolates between snapshots
'''
    return head + body
