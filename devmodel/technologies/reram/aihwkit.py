"""ReRAM cards in aihwkit (docs/export.md): ``ReRamWan2022NoiseModel`` with the fitted snapshots
(aihwkit accepts only those times as ``t_inference``; the whole card interpolates between them)."""

from __future__ import annotations

from devmodel.technologies.reram.card import ReramModel


def check(card: ReramModel) -> None:
    """Every ReRAM card maps onto the Wan 2022 model."""


def objects(card: ReramModel) -> dict[str, object]:
    """'wan2022': the fitted snapshots."""
    from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
    from aihwkit.inference.noise.reram import ReRamWan2022NoiseModel

    coeffs = {float(s.t_s): list(s.poly_coeffs_us) for s in card.snapshots}
    conv = SinglePairConductanceConverter(g_max=card.g_max_us)
    return {"wan2022": ReRamWan2022NoiseModel(coeff_dic=coeffs, g_converter=conv)}


def module_body(card: ReramModel) -> str:
    """The exported module's ReRAM functions (after its shared header)."""
    coeffs = {float(s.t_s): list(s.poly_coeffs_us) for s in card.snapshots}
    return f'''

COEFF_DIC = {coeffs!r}


def wan2022():
    """Fitted snapshots; aihwkit accepts t_inference equal to one of COEFF_DIC's keys only."""
    from aihwkit.inference.noise.reram import ReRamWan2022NoiseModel

    return ReRamWan2022NoiseModel(coeff_dic={{k: list(v) for k, v in COEFF_DIC.items()}},
                                  g_converter=converter())


noise_model = wan2022  # plain aihwkit; devmodel_model() interpolates between snapshots
'''
