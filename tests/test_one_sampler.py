"""One sampler (real-data issue, part 2): validation and reports draw through the card's NumPy front
(``sample_conductance``), analog inference and training through the torch noise model; both must
give one distribution, clamping at 0 included. And the relaxation law exports to aihwkit as a
generated ``BaseNoiseModel`` subclass whose draws are the native model's, draw for draw."""

import numpy as np
import pytest
import torch
from scipy import stats

from devmodel.fit.session import fit_session
from devmodel.model.card import DeviceModel
from devmodel.model.noise import NativeNoiseModel
from devmodel.model.sample import sample_conductance
from devmodel.technologies.reram.synthetic import synthesize_reram_session

N = 20_000  # per side: two-sample KS of a correct pair exceeds 0.02 with p ≈ 4e-4


@pytest.fixture(scope="module")
def law_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("law") / "r.h5"
    return synthesize_reram_session(path, levels_us=(0.6, 2.0, 6.0, 12.0, 20.0, 30.0, 40.0),
                                    devices_per_level=400, seed=9)


@pytest.fixture(scope="module")
def law_card(law_path):
    card = fit_session(law_path)
    assert card.form == "relaxation"
    return card


@pytest.fixture(scope="module")
def knots_card(law_path):
    """The law with every level kept as its measured quantiles at the measured ages."""
    card = fit_session(law_path, {"time_form": "knots"})
    assert card.relaxation.n_knot_levels() == 7
    return card


def _cards(law_card):
    return {"pcm": DeviceModel.published("pcm"), "reram snapshots": DeviceModel.published("reram"),
            "reram law": law_card, "cmo": DeviceModel.published("cmo")}


def _native(card, g_us, t_s, seed):
    m = NativeNoiseModel(card, torch.Generator().manual_seed(seed), extrapolate=True)
    g = torch.full((N,), g_us, dtype=torch.float64)
    coeff = m.drift_coefficients(g)
    return m.read(m.at_time(m.program(g, coeff), coeff, t_s)).numpy()


@pytest.mark.parametrize("which", ["pcm", "reram snapshots", "reram law", "cmo"])
def test_numpy_front_and_torch_model_give_one_distribution(law_card, which):
    """At a low level (where clamping at 0 bites) and a high one, 1 s … 1 day: KS < 0.02 and the
    same share of reads at exactly 0 (within 4 binomial standard errors)."""
    card = _cards(law_card)[which]
    rng = np.random.default_rng(3)
    for k, g_us in enumerate((0.6, 0.6 * card.g_max_us)):
        for j, t_s in enumerate((1.0, 3600.0, 86400.0)):
            a = sample_conductance(card, np.full(N, g_us), t_s, rng, extrapolate=True)
            b = _native(card, g_us, t_s, 100 * k + j)
            assert stats.ks_2samp(a, b).statistic < 0.02, (which, g_us, t_s)
            p = (np.mean(a == 0) + np.mean(b == 0)) / 2
            assert abs(np.mean(a == 0) - np.mean(b == 0)) <= 4 * np.sqrt(2 * p * (1 - p) / N) + 1e-12
            assert np.all(a >= 0) or card.white_read_noise_us > 0  # clamped before the read noise


@pytest.mark.filterwarnings("ignore::devmodel.model.noise.ExtrapolationWarning")
@pytest.mark.parametrize("which", ["law_card", "knots_card"])
def test_relaxation_law_exports_as_a_generated_aihwkit_class(which, request, aihwkit):
    """Same generator, same draws as the native model, at, between, before and after the fitted
    ages (polynomial and knot levels); the exported module's source builds the same class."""
    from aihwkit.inference.noise.base import BaseNoiseModel

    from devmodel.export.aihwkit import module_source, to_aihwkit

    law_card = request.getfixturevalue(which)
    model = to_aihwkit(law_card)["relaxation_law"]
    assert isinstance(model, BaseNoiseModel)
    g = torch.linspace(0.5, 40.0, 4000, dtype=torch.float64)
    for t_s in (0.1, 1.0, 5000.0, 86400.0, 3.15e7):
        model.generator = torch.Generator().manual_seed(4)
        u = model.generate_drift_coefficients(g)
        ours = model.apply_drift_noise_to_conductance(model.apply_programming_noise_to_conductance(g),
                                                      u, t_s)
        native = NativeNoiseModel(law_card, torch.Generator().manual_seed(4), extrapolate=True)
        c = native.drift_coefficients(g)
        ref = native.at_time(native.program(g, c), c, t_s)
        torch.testing.assert_close(ours, ref, rtol=0, atol=1e-9)
    namespace: dict = {}
    exec(compile(module_source(law_card), "exported.py", "exec"), namespace)
    exported = namespace["noise_model"]()
    assert type(exported).__name__ == "RelaxationLawNoiseModel"
    w = torch.full((2, 3), 0.5)
    assert exported.apply_noise(w, 86400.0).shape == (2, 3)
