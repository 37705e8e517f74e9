"""ReRAM cards in aihwkit (docs/export.md), by the card's form:

* snapshots (Wan 2022): ``ReRamWan2022NoiseModel`` with the fitted snapshots (aihwkit accepts only
  those times as ``t_inference``; the whole card interpolates between them);
* relaxation law: no aihwkit class holds a quantile law (``ReRamCMONoiseModel`` is Gaussian with
  one mean slope), so the export generates one — ``RelaxationLawNoiseModel``, a ``BaseNoiseModel``
  subclass in plain torch with the card's tables written into its module, needing neither devmodel
  nor anything but aihwkit's pure-Python ``aihwkit.inference``. Its draws equal the native torch
  model's for the same generator (a test).
"""

from __future__ import annotations

from devmodel.technologies.reram.card import ReramModel

#: The generated class (plain Python; the tables it reads are prepended by :func:`law_source`).
#: It mirrors ``RelaxationLaw.table`` and ``interpolate_quantiles`` of the card module.
_LAW_CLASS = '''
import math

import torch
from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
from aihwkit.inference.noise.base import BaseNoiseModel


def law_table(t_s):
    """(levels, probabilities) quantiles of G - G_T (uS) at age t_s: each level's polynomial in
    ln(t / LAW_T_REF_S) -- or, at a level with knots, its measured quantiles linear in ln t between
    the measured ages -- held at its first age before it and continued linearly in ln t after its
    last; sorted along the probabilities."""
    lt = math.log(t_s / LAW_T_REF_S)
    rows = []
    for j, (coeffs, (first, last)) in enumerate(zip(LAW_COEFFS_US, LAW_AGES_S)):
        if LAW_KNOT_AGES_S[j]:
            rows.append(sorted(_knot_row(j, lt)))
            continue
        lo, hi = math.log(first / LAW_T_REF_S), math.log(last / LAW_T_REF_S)
        x = min(max(lt, lo), hi)
        row = []
        for c in coeffs:
            value = sum(ci * x**i for i, ci in enumerate(c))
            slope = sum(i * ci * x ** (i - 1) for i, ci in enumerate(c) if i)
            row.append(value + slope * max(lt - hi, 0.0))
        rows.append(sorted(row))
    return torch.tensor(rows, dtype=torch.float64)


def _knot_row(j, lt):
    x = [math.log(a / LAW_T_REF_S) for a in LAW_KNOT_AGES_S[j]]
    v = LAW_KNOT_QUANTILES_US[j]
    xe = min(max(lt, x[0]), x[-1])
    k = max(0, min(sum(1 for xi in x if xi < xe) - 1, len(x) - 2))
    return [v[k][p] + (v[k + 1][p] - v[k][p]) / (x[k + 1] - x[k]) * (xe - x[k])
            + (v[-1][p] - v[-2][p]) / (x[-1] - x[-2]) * max(lt - x[-1], 0.0)
            for p in range(len(v[0]))]


def law_quantile(table, levels, probabilities, g_target, u):
    """Quantile u of the law at each target: linear in probability, then linear in G_T between
    the two levels around it (the nearest level beyond them)."""
    n_lv, n_p = table.shape
    idx = torch.searchsorted(probabilities, u.contiguous()).clamp(1, n_p - 1)
    p0, p1 = probabilities[idx - 1], probabilities[idx]
    wp = ((u - p0) / (p1 - p0)).clamp(0.0, 1.0)
    if n_lv == 1:
        return table[0, idx - 1] * (1 - wp) + table[0, idx] * wp
    jl = torch.searchsorted(levels, g_target.contiguous()).clamp(1, n_lv - 1)
    g0, g1 = levels[jl - 1], levels[jl]
    wg = ((g_target - g0) / (g1 - g0)).clamp(0.0, 1.0)
    lower = table[jl - 1, idx - 1] * (1 - wp) + table[jl - 1, idx] * wp
    upper = table[jl, idx - 1] * (1 - wp) + table[jl, idx] * wp
    return lower * (1 - wg) + upper * wg


class RelaxationLawNoiseModel(BaseNoiseModel):
    """A devmodel ReRAM relaxation law: each device keeps its rank u ~ U(0, 1) in the distribution
    (drawn at programming, as its drift coefficient); at inference time t (s after programming)
    its conductance is G_T + q(u; G_T, t), clamped at 0. Programming returns the targets: every
    deviation from them is in the law."""

    def __init__(self, g_converter=None, generator=None):
        super().__init__(g_converter or SinglePairConductanceConverter(g_max=LAW_G_MAX_US))
        self.generator = generator

    def __str__(self):
        return f"RelaxationLawNoiseModel({len(LAW_LEVELS_US)} levels, {LAW_SOURCE})"

    @torch.no_grad()
    def apply_programming_noise_to_conductance(self, g_target):
        return g_target.clone()

    @torch.no_grad()
    def generate_drift_coefficients(self, g_target):
        u = torch.rand(g_target.shape, generator=self.generator, dtype=g_target.dtype)
        return u.to(g_target.device)

    @torch.no_grad()
    def apply_drift_noise_to_conductance(self, g_prog, drift_noise_param, t_inference):
        kw = {"dtype": g_prog.dtype, "device": g_prog.device}
        table = law_table(max(float(t_inference), 1e-9)).to(**kw)
        delta = law_quantile(table, torch.tensor(LAW_LEVELS_US, **kw),
                             torch.tensor(LAW_PROBABILITIES, **kw), g_prog, drift_noise_param)
        return (g_prog + delta).clamp(min=0.0)

    @torch.no_grad()
    def apply_noise(self, weights, t_inference):
        if t_inference <= 0:  # aihwkit 1.2.0's base class returns nothing here
            return self.apply_programming_noise(weights)[0]
        return super().apply_noise(weights, t_inference)
'''


def law_source(card: ReramModel) -> str:
    """Python source of ``RelaxationLawNoiseModel`` for a card holding the relaxation law."""
    law = card.relaxation
    n = len(law.levels_us)
    knots = [[float(a) for a in (law.knot_ages_s[j] if j < len(law.knot_ages_s) else [])]
             for j in range(n)]
    values = [[[float(q) for q in row] for row in (law.knot_quantiles_us[j] if knots[j] else [])]
              for j in range(n)]
    data = (f"LAW_G_MAX_US = {float(card.g_max_us)!r}\n"
            f"LAW_SOURCE = {str(card.provenance.get('source', 'devmodel card'))!r}\n"
            f"LAW_T_REF_S = {float(law.t_ref_s)!r}\n"
            f"LAW_PROBABILITIES = {[float(p) for p in law.probabilities]!r}\n"
            f"LAW_LEVELS_US = {[float(g) for g in law.levels_us]!r}\n"
            f"LAW_AGES_S = {[[float(a) for a in span] for span in law.ages_s]!r}\n"
            f"LAW_COEFFS_US = {[[[float(c) for c in q] for q in lv] for lv in law.coeffs_us]!r}\n"
            f"LAW_KNOT_AGES_S = {knots!r}\n"
            f"LAW_KNOT_QUANTILES_US = {values!r}\n")
    return data + _LAW_CLASS


def check(card: ReramModel) -> None:
    """Every ReRAM card exports: snapshots to aihwkit's Wan 2022 class, a law to a generated one."""


def objects(card: ReramModel) -> dict[str, object]:
    """'wan2022' (snapshot cards) or 'relaxation_law' (the generated class, law cards)."""
    from aihwkit.inference.converter.conductance import SinglePairConductanceConverter

    conv = SinglePairConductanceConverter(g_max=card.g_max_us)
    if card.relaxation is not None:
        namespace: dict = {"__name__": "devmodel_relaxation_law"}
        exec(compile(law_source(card), "<devmodel relaxation law>", "exec"), namespace)  # noqa: S102
        return {"relaxation_law": namespace["RelaxationLawNoiseModel"](conv)}
    from aihwkit.inference.noise.reram import ReRamWan2022NoiseModel

    coeffs = {float(s.t_s): list(s.poly_coeffs_us) for s in card.snapshots}
    return {"wan2022": ReRamWan2022NoiseModel(coeff_dic=coeffs, g_converter=conv)}


def module_body(card: ReramModel) -> str:
    """The exported module's ReRAM functions (after its shared header)."""
    if card.relaxation is not None:
        return f'''

# -- the relaxation law as an aihwkit BaseNoiseModel (generated by devmodel) --
{law_source(card)}

def relaxation_law(generator=None):
    """The fitted relaxation law; any t_inference (s after programming)."""
    return RelaxationLawNoiseModel(converter(), generator)


noise_model = relaxation_law
'''
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
