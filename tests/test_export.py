"""Export: the native torch model and aihwkit's own classes give the same distributions (KS < 0.02
at 20,000 samples per level), the round trip card → samples → fit → card holds, and bad input is
refused. aihwkit's ``aihwkit.inference`` comes from its pinned source distribution (aihwkit_ref)."""

import warnings

import numpy as np
import pytest
import torch
from helpers import load_module
from helpers import run_devmodel as devmodel
from scipy import stats

from devmodel.model.card import DeviceModel
from devmodel.model.noise import ExtrapolationError, NativeNoiseModel, global_drift_compensation

N = 20_000
LEVELS = [0.5, 1, 2, 3, 5, 7.5, 10, 12.5, 15, 17.5, 20, 22.5, 25.0]
T_INF = [1.0, 3600.0, 86400.0, 31_536_000.0]  # aihwkit t_inference: 1 s, 1 h, 1 day, 1 year


def _native_pcm(card, g, t_age, seed, extrapolate=False):
    m = NativeNoiseModel(card, torch.Generator().manual_seed(seed), extrapolate)
    nu = m.drift_coefficients(g)
    return m.at_time(m.program(g, nu), nu, t_age)


def _aihwkit_pcm(model, g, t_inf, seed):
    """The hooks in the order and with the arguments aihwkit's apply_programming_noise uses
    (one target tensor; CustomDrift clips it in place, so it gets a copy of ours)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        target = g.clone()
        gp = model.apply_programming_noise_to_conductance(target)
        nu = model.generate_drift_coefficients(target)
        return model.apply_drift_noise_to_conductance(gp, nu, t_inf)


def _assert_same(a, b, what):
    ks = stats.ks_2samp(a.numpy(), b.numpy()).statistic
    assert ks < 0.02, f"{what}: KS {ks:.4f}"


def test_published_pcm_matches_aihwkit_defaults(aihwkit):
    from aihwkit.inference.noise.pcm import PCMLikeNoiseModel

    card, ref = DeviceModel.published("pcm"), PCMLikeNoiseModel()
    for i, lv in enumerate(LEVELS):
        g = torch.full((N,), float(lv))
        for j, t in enumerate(T_INF):
            _assert_same(_native_pcm(card, g, t + card.t0_s, 100 * i + j),
                         _aihwkit_pcm(ref, g, t, 7 + 100 * i + j), f"{lv} µS at {t:g} s")


def test_fitted_pcm_card_through_aihwkit(aihwkit, published_pcm_card):
    from devmodel.export.aihwkit import to_aihwkit

    models = to_aihwkit(published_pcm_card)
    dm = models["devmodel"]
    dm.native.extrapolate = True  # 1 year is beyond the fitted day
    for i, lv in enumerate(LEVELS):
        g = torch.full((N,), float(lv))
        for j, t in enumerate(T_INF):
            with warnings.catch_warnings(record=True) as seen:  # 1 year: said, not refused
                warnings.simplefilter("always")
                native = _native_pcm(published_pcm_card, g, t + 20.0, i + 50 * j, True)
                through = _aihwkit_pcm(dm, g, t, 3 + i + 50 * j)
            assert all("extrapolating" in str(w.message) for w in seen)
            assert bool(seen) == (t + 20.0 > 86400.0 * 1.001)
            _assert_same(native, through, f"{lv} µS at {t:g} s")
    # through aihwkit's converter and apply_noise on weights
    w = torch.randn(64, 32)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        w_day = dm.apply_noise(w, 86400.0)
        w_0 = dm.apply_noise(w, 0.0)  # aihwkit 1.2.0's base class returns nothing at t = 0
    assert w_day.shape == w.shape and w_0.shape == w.shape
    assert torch.corrcoef(torch.stack([w.ravel(), w_day.ravel()]))[0, 1] > 0.9


def test_custom_drift_export_carries_the_fitted_nu_table(aihwkit, published_pcm_card):
    from devmodel.export.aihwkit import to_aihwkit

    card = DeviceModel.from_json(published_pcm_card.to_json())
    ref = DeviceModel.published("pcm")
    card.read_noise = ref.read_noise  # what CustomDrift cannot change
    card.programming.mean_offset_coeffs_us = [0.0]  # aihwkit programs without a mean offset
    card.programming.level_offsets_g_us, card.programming.level_offsets_us = [], []
    card.provenance.pop("age_range_s")
    model = to_aihwkit(card)["custom_drift"]
    for i, lv in enumerate(LEVELS):
        g = torch.full((N,), float(lv))
        for j, t in enumerate(T_INF):
            _assert_same(_native_pcm(card, g, t + 20.0, 11 + i + 50 * j),
                         _aihwkit_pcm(model, g, t, 13 + i + 50 * j), f"{lv} µS at {t:g} s")


@pytest.mark.parametrize("t_s", [1.0, 86400.0, 172800.0])
def test_published_reram_matches_aihwkit_wan2022(aihwkit, t_s):
    from devmodel.export.aihwkit import to_aihwkit

    card = DeviceModel.published("reram")
    ref = to_aihwkit(card)["wan2022"]
    for i, lv in enumerate([1.0, 4.0, 8.0, 16.0, 24.0, 32.0, 40.0]):
        g = torch.full((N,), float(lv))
        m = NativeNoiseModel(card, torch.Generator().manual_seed(i))
        native = m.at_time(m.program(g), m.drift_coefficients(g), t_s)
        with torch.random.fork_rng():
            torch.manual_seed(100 + i)
            other = ref.apply_drift_noise_to_conductance(ref.apply_programming_noise_to_conductance(
                g.clone()), ref.generate_drift_coefficients(g.clone()), t_s)
        _assert_same(native, other, f"{lv} µS at {t_s:g} s")


def test_round_trip_card_samples_fit_card(tmp_path):
    """Published card → native model (programming, ν, correlated 1/f reads, bursts) → session →
    fit → card within the fitting issue's tolerances."""
    from devmodel.fit.session import fit_session
    from devmodel.store import SessionWriter
    from devmodel.technologies.pcm.published import PcmStatModel

    card = DeviceModel.published("pcm")
    m = NativeNoiseModel(card, torch.Generator().manual_seed(5))
    levels = torch.tensor(LEVELS, dtype=torch.float64)
    n_per = 2000
    target = levels.repeat(n_per)
    nu = m.drift_coefficients(target)
    g_prog = m.program(target, nu)
    ages = [20.0, 60, 200, 600, 3600, 10800, 86400]
    reads = m.read_series(g_prog, nu, ages)
    rows = torch.arange(target.numel())
    burst_rows = rows[:13 * 100]
    t_b = torch.arange(256, dtype=torch.float64) + 1000.0
    bursts = m.read_series(g_prog[burst_rows], nu[burst_rows], t_b)
    n = target.numel()
    with SessionWriter(tmp_path / "rt.h5", technology="pcm", g_max_us=25.0, t0_s=20.0, chip={},
                       config={}, seed=5) as w:
        w.write_levels(levels.numpy())
        w.write_devices({"address": rows.numpy(), "level": (rows % 13).numpy(),
                         "target_us": target.numpy(), "converged": np.ones(n),
                         "iterations": np.ones(n), "pulses": np.ones(n),
                         "g_verify_us": target.numpy(), "t_last_pulse_s": np.zeros(n),
                         "stop_reason": np.zeros(n)})
        for j, a in enumerate(ages):
            w.append("reads", {"device": rows.numpy(), "t_s": np.full(n, a), "age_s": np.full(n, a),
                               "g_us": reads[:, j].numpy(), "burst": np.full(n, -1)})
        k = burst_rows.numel()
        w.write_bursts({"burst": np.arange(k), "device": burst_rows.numpy(),
                        "n_reads": np.full(k, 256), "interval_s": np.ones(k),
                        "t_start_s": np.full(k, 1000.0)})
        w.append("reads", {"device": np.repeat(burst_rows.numpy(), 256),
                           "t_s": np.tile(t_b.numpy(), k), "age_s": np.tile(t_b.numpy(), k),
                           "g_us": bursts.numpy().ravel(), "burst": np.repeat(np.arange(k), 256)})
        w.finish()
    fit = fit_session(tmp_path / "rt.h5")
    truth = PcmStatModel()
    x = np.linspace(0.05, 1, 50)
    rel = fit.programming.sigma_us(x * 25) / truth.sigma_prog_us(x * 25) - 1
    assert np.sqrt(np.mean(rel**2)) < 0.03
    used = np.array(fit.fit_quality["levels"]["g_us"])[np.array(fit.fit_quality["levels"]["nu_in_fit"])]
    xs = np.concatenate([np.geomspace(used.min() / 25, 0.3, 8), np.linspace(0.3, 1, 5)])
    np.testing.assert_allclose(fit.drift.nu_mean(xs), truth.nu_mean(xs), atol=0.003)
    np.testing.assert_allclose(fit.drift.nu_std(xs), truth.nu_std(xs), atol=0.004)
    assert fit.read_noise.q_s_exp == pytest.approx(0.65, abs=0.05)
    assert fit.read_noise.q_s_amp == pytest.approx(0.0088, rel=0.1)


def test_native_model_conventions():
    card = DeviceModel.published("pcm")
    g = torch.linspace(0, 25, 1000, dtype=torch.float64)
    a = NativeNoiseModel(card, torch.Generator().manual_seed(3))
    b = NativeNoiseModel(card, torch.Generator().manual_seed(3))
    nu_a, nu_b = a.drift_coefficients(g), b.drift_coefficients(g)
    assert torch.equal(nu_a, nu_b) and nu_a.dtype == torch.float64
    ga, gb = a.at_time(a.program(g), nu_a, 3600.0), b.at_time(b.program(g), nu_b, 3600.0)
    assert torch.equal(ga, gb) and (ga >= 0).all()
    # weights ↔ conductances on a differential pair, per output channel
    w = torch.randn(8, 5, dtype=torch.float64)
    gp, gm, scale = a.weights_to_conductances(w)
    assert (gp * gm == 0).all() and gp.max() <= 25 + 1e-9 and torch.allclose(
        a.conductances_to_weights(gp, gm, scale), w)
    # global drift compensation: drift alone is undone exactly
    w_t = w * 0.8
    assert float(global_drift_compensation(w, w_t)) == pytest.approx(1.25)
    stuck = a.stuck_at(torch.full((100_000,), 10.0, dtype=torch.float64), 0.01, 0.02)
    assert float((stuck == 0).double().mean()) == pytest.approx(0.01, abs=0.002)
    assert float((stuck == 25).double().mean()) == pytest.approx(0.02, abs=0.002)


def test_extrapolation_is_explicit(published_pcm_card):
    g = torch.full((10,), 5.0)
    m = NativeNoiseModel(published_pcm_card, torch.Generator().manual_seed(0))
    nu = m.drift_coefficients(g)
    with pytest.raises(ExtrapolationError, match="outside the ages this card was fitted on"):
        m.at_time(m.program(g), nu, 3.15e7)
    m.extrapolate = True
    with pytest.warns(UserWarning, match="extrapolating"):
        m.at_time(m.program(g), nu, 3.15e7)
    r = NativeNoiseModel(DeviceModel.published("reram"))
    with pytest.raises(ExtrapolationError):
        r.at_time(g, g, 1e6)




def test_export_cli(aihwkit, published_pcm_card, tmp_path):
    card = tmp_path / "card.json"
    card.write_text(published_pcm_card.to_json())
    out = tmp_path / "noise_model.py"
    r = devmodel("export", str(card), "--to", "aihwkit", "--out", str(out))
    assert r.returncode == 0, r.stderr
    mod = load_module(out)
    model = mod.noise_model()
    assert type(model).__name__ == "CustomDriftPCMLikeNoiseModel"
    assert mod.devmodel_model().card.to_json() == published_pcm_card.to_json()
    r = devmodel("export", str(card), "--to", "summary")
    assert r.returncode == 0 and '"sigma_prog_rel_g_max"' in r.stdout and "on_off_ratio" in r.stdout
    r = devmodel("export", str(card), "--to", "json")
    assert r.returncode == 0 and DeviceModel.from_json(r.stdout).to_json() == card.read_text()
    r = devmodel("export", str(card), "--to", "aihwkit", "--g-max-us", "30")
    assert r.returncode == 2 and "fitted with g_max 25 µS" in r.stderr
    bad = tmp_path / "future.json"
    bad.write_text(card.read_text().replace("devmodel.model/1", "devmodel.model/2"))
    r = devmodel("export", str(bad), "--to", "json")
    assert r.returncode == 2 and "upgrade devmodel" in r.stderr and "Traceback" not in r.stderr
    r = devmodel("export", str(card), "--to", "crosssim")
    assert r.returncode == 2


def test_coupled_card_through_aihwkit(aihwkit):
    """A card with a verify age: aihwkit asks for programming before ν; the subclass draws both
    together and hands ν over, so distributions still match the native model."""
    from devmodel.export.aihwkit import to_aihwkit

    card = DeviceModel.published("pcm")
    card.programming.verify_age_s = 1.0
    dm = to_aihwkit(card)["devmodel"]
    for i, lv in enumerate([1.0, 5.0, 12.5, 25.0]):
        g = torch.full((N,), lv)
        _assert_same(_native_pcm(card, g, 86400.0 + 20.0, 70 + i),
                     _aihwkit_pcm(dm, g, 86400.0, 80 + i), f"{lv} µS at 1 day")
    assert dm._nu_pending is None  # nothing left behind
