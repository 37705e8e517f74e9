"""CMO/HfOx cards in aihwkit (docs/export.md): ``ReRamCMONoiseModel`` (aihwkit 1.2) with the fitted
programming polynomial for the card's acceptance range, relaxation and read noise.

aihwkit's class has no programming mean offset and no relaxation offset d0: the exported class leaves
them out (the module says how large they are) and ``devmodel_model()`` carries the whole card. Its
coefficient lists are c0 first; it builds its single-device converter over the card's window
[g_min, g_max] itself."""

from __future__ import annotations

import numpy as np

from devmodel.technologies.cmo.card import CmoModel


def check(card: CmoModel) -> None:
    """Every CMO/HfOx card maps onto ReRamCMONoiseModel (its offsets are left out and said so)."""


def left_out(card: CmoModel) -> str:
    """What aihwkit's class cannot express of this card, in words."""
    g = np.linspace(card.window_min_us, card.g_max_us, 50)
    offset = float(np.max(np.abs(card.programming.mean_us(g) - g)))
    return (f"programming mean offset up to {offset:.3g} µS, relaxation offset "
            f"d0 = {card.relaxation.mean_offset_us:.3g} µS")


def arguments(card: CmoModel) -> dict:
    """Constructor arguments of ReRamCMONoiseModel for the card."""
    p, r, rn = card.programming, card.relaxation, card.read_noise
    s0, s1 = r.std_coeffs_us
    return {"coeff_dict": {float(p.acceptance): [float(c) for c in p.poly_coeffs_us]},
            "g_max": float(card.g_max_us), "g_min": float(card.window_min_us),
            "decay_dict": {"mean": [float(r.mean_slope_us)], "std": [float(s1), float(s0)]},
            "read_dict": {"K": float(rn.k), "t_read": float(rn.t_read_s)},
            "acceptance_range": float(p.acceptance)}


def objects(card: CmoModel) -> dict[str, object]:
    """'cmo': aihwkit's own class with the fitted parameters."""
    from aihwkit.inference.noise.reram import ReRamCMONoiseModel

    return {"cmo": ReRamCMONoiseModel(**arguments(card))}


def module_body(card: CmoModel) -> str:
    """The exported module's CMO/HfOx functions (after its shared header)."""
    return f'''

# not expressible in ReRamCMONoiseModel, carried by devmodel_model(): {left_out(card)}
CMO_ARGUMENTS = {arguments(card)!r}


def cmo():
    """Fitted programming noise, relaxation and read noise (aihwkit >= 1.2)."""
    from aihwkit.inference.noise.reram import ReRamCMONoiseModel

    return ReRamCMONoiseModel(**CMO_ARGUMENTS)


noise_model = cmo  # plain aihwkit; devmodel_model() carries the whole card
'''
