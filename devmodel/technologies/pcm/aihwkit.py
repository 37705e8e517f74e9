"""PCM cards in aihwkit (docs/export.md): ``PCMLikeNoiseModel`` with the fitted programming polynomial
(ν and Q_s stay aihwkit's published forms) and ``CustomDriftPCMLikeNoiseModel`` with the fitted ν(G)
(the card's clipped-log forms tabulated densely; aihwkit interpolates linearly in µS). Custom-drift
lists are lists (not tuples) covering [0, g_max]."""

from __future__ import annotations

import numpy as np

from devmodel.errors import DevmodelError
from devmodel.technologies.pcm.card import PcmModel

_TABLE_POINTS = 64


def custom_drift_table(card: PcmModel) -> dict[str, list[float]]:
    """ν mean/std on a dense grid over [0, g_max] (log-spaced above 0.1 % of g_max) from the
    card's clipped-log forms, for ``CustomDriftPCMLikeNoiseModel`` (linear interpolation in µS)."""
    g = np.concatenate([[0.0], np.geomspace(1e-3, 1.0, _TABLE_POINTS - 1)]) * card.g_max_us
    x = np.maximum(g / card.g_max_us, 1e-7)  # aihwkit clamps x at 1e-7 too
    return {"g_lst": g.tolist(), "nu_mean_lst": card.drift.nu_mean(x).tolist(),
            "nu_std_lst": card.drift.nu_std(x).tolist()}


def check(card: PcmModel) -> None:
    """Refuse what aihwkit's PCM models cannot take."""
    if card.drift.nu_distribution != "folded_normal":
        raise DevmodelError("aihwkit draws ν = |N(μ, σ)|; this card's ν distribution differs")


def objects(card: PcmModel) -> dict[str, object]:
    """'pcm_like' (fitted programming noise) and 'custom_drift' (and fitted ν(G))."""
    from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
    from aihwkit.inference.noise.pcm import CustomDriftPCMLikeNoiseModel, PCMLikeNoiseModel

    conv = SinglePairConductanceConverter(g_max=card.g_max_us)
    common = dict(prog_coeff=list(card.programming.poly_coeffs_us), g_converter=conv,
                  t_read=card.read_noise.t_read_s, t_0=card.t0_s)
    return {"pcm_like": PCMLikeNoiseModel(**common),
            "custom_drift": CustomDriftPCMLikeNoiseModel(custom_drift_table(card), **common)}


def module_body(card: PcmModel) -> str:
    """The exported module's PCM functions (after its shared header)."""
    table = custom_drift_table(card)
    return f'''

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
