"""Seed 000 crossbar fidelity (issue 18, part 2): short-term read noise from the card at every read,
drift compensation off by default for ReRAM, learned input ranges and the periphery in device-000's
training forward pass."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from devmodel.errors import DevmodelError
from devmodel.model.card import DeviceModel
from devmodel.sim import CrossbarConfig, convert
from devmodel.train.periphery import INIT_STD_ALPHA, add_input_range, clip_to_learned_range


@pytest.fixture(scope="module")
def pcm():
    return DeviceModel.published("pcm")


def _programmed_linear(card, cfg, seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(32, 6, bias=False))
    anet = convert(net, card, cfg, extrapolate=True)
    anet.program(seed)
    anet.set_time(3600.0)
    return anet


def _output_variance(card, differential):
    cfg = CrossbarConfig(read_noise="card", read_window_s=1.0, differential=differential)
    anet = _programmed_linear(card, cfg)
    x = torch.linspace(-1, 1, 32).repeat(4000, 1)
    with torch.no_grad():
        y = anet(x).numpy()
    return anet.layers[0], x[0].numpy(), y.var(axis=0)


def test_card_read_noise_has_each_devices_variance(pcm):
    """4000 repeated products of one input: the output variance per column is Σ_j x_j²(σ⁺_j² + σ⁻_j²)
    with σ = |G|·Q_s(|G|/g_max)·sqrt(ln(τ/2 t_read)) of each device at the read, from the card
    (the relative s.d. of a variance from 4000 draws is 2.2 %; the test allows 10 %). Two columns
    digitised apart expose G⁺ and G⁻; a pair (one column, the fused inference path) reads the same
    devices (same seed) and must show the same variance."""
    layer, x, var_two = _output_variance(pcm, "two_columns")
    rn = pcm.read_noise
    short = math.log(1.0 / (2 * rn.t_read_s))
    expected = np.zeros(6)
    for w in layer._w[0]:  # G⁺/span and G⁻/span at the read
        g = w.numpy() * layer._span
        q = np.minimum(rn.q_s_amp / np.maximum(np.abs(g) / pcm.g_max_us, 1e-12) ** rn.q_s_exp, rn.q_s_max)
        expected += ((np.abs(g) * q) ** 2 * short * x**2).sum(axis=1)
    gain = layer._scale[0].numpy() * float(layer.input_range) / layer._span
    ratio = var_two / (expected * gain**2)
    assert np.all(np.abs(ratio - 1) < 0.10), ratio
    _, _, var_pair = _output_variance(pcm, "pair")
    assert np.all(np.abs(var_pair / var_two - 1) < 0.15), var_pair / var_two


def test_total_1f_variance_is_split_not_added(pcm):
    """Frozen part at set_time + short-term part at each read = the card's accumulated 1/f variance."""
    nm = pcm.noise_model()
    t_read = pcm.read_noise.t_read_s
    full = math.log((86400 + t_read) / (2 * t_read))
    assert nm.accumulated_log(86400, t_read) == pytest.approx(full)
    nm.short_term_window_s = 1.0
    assert nm.accumulated_log(86400, t_read) + nm.short_term_log(t_read) == pytest.approx(full)
    assert nm.accumulated_log(0.5, t_read) == 0.0  # inside the window: all of it is short-term


def test_constant_read_noise_unchanged_and_card_mode_ignores_w_noise(pcm):
    """read_noise='constant' keeps the seed's w_noise; 'card' replaces it (w_noise has no effect)."""
    x = torch.linspace(-1, 1, 32).repeat(2000, 1)
    outs = {}
    for name, cfg in {"card": CrossbarConfig(read_noise="card"),
                      "card_w": CrossbarConfig(read_noise="card", w_noise=0.5),
                      "const": CrossbarConfig(w_noise=0.05)}.items():
        anet = _programmed_linear(pcm, cfg)
        with torch.no_grad():
            outs[name] = anet(x).numpy().var(axis=0)
    assert np.allclose(outs["card"], outs["card_w"], rtol=0.15)
    assert not np.allclose(outs["card"], outs["const"], rtol=0.5)


def test_drift_compensation_default_follows_the_technology(pcm, reram_session):
    """Seed 000 B.2: no drift compensation for ReRAM; PCM compensates; an explicit choice wins."""
    from devmodel.fit.session import fit_session

    reram = fit_session(reram_session)
    net = nn.Sequential(nn.Linear(4, 2))
    assert convert(net, pcm, CrossbarConfig.standard()).drift_compensation is True
    assert convert(net, reram, CrossbarConfig.standard()).drift_compensation is False
    forced = CrossbarConfig.standard().with_(drift_compensation=True)
    assert convert(net, reram, forced).drift_compensation is True
    assert convert(net, pcm, forced.with_(drift_compensation=False)).drift_compensation is False


def test_input_range_initialised_from_data_then_learned_from_clipped_inputs():
    """First batch: r = 3·std(x). The gradient of r: Σ min(g, 0) over inputs clipped at +r,
    −Σ max(g, 0) over those at −r; with > 95 % unclipped, + 0.001·r."""
    layer = nn.Module()
    add_input_range(layer)
    x = torch.tensor([-4.0, -0.5, 0.0, 0.5, 4.0] + [0.1] * 95)
    xn, r = clip_to_learned_range(layer, x)
    assert float(layer.in_range.detach()) == pytest.approx(INIT_STD_ALPHA * float(x.std()), rel=1e-6)
    r0 = float(layer.in_range.detach())
    assert torch.allclose(xn, (x.clamp(-r0, r0) / r0))
    g = torch.zeros(100)
    g[0], g[4] = 2.0, -3.0  # both clipped ends want a wider range
    (xn * r).mul(g).sum().backward()
    unclipped = float(((x.abs() < r0)).float().mean())
    expected = -3.0 - 2.0 + (0.001 * r0 if unclipped > 0.95 else 0.0)
    assert float(layer.in_range.grad) == pytest.approx(expected, rel=1e-6)


def test_learned_input_ranges_travel_to_the_analog_layers(pcm, digits_data):
    """A device-000 network trained with its periphery carries `in_range`; converted with
    input_range='learned' the analog layers use exactly those ranges and calibration keeps them."""
    from devmodel.sim.networks import build, train_fp
    from devmodel.train.hwa import train_hwa
    from devmodel.train.methods import TrainOptions

    net = train_fp(build("digits-mlp", 0), digits_data, epochs=3, seed=0)
    res = train_hwa(net, pcm, "device-000", digits_data, TrainOptions(epochs=2))
    learned = [float(m.in_range) for m in res.net.modules() if isinstance(m, nn.Linear)]
    assert all(r > 0 for r in learned)
    cfg = res.method.eval_config()
    assert cfg.input_range == "learned" and cfg.scales == "learned"
    anet = convert(res.net, pcm, cfg)
    anet.program(0)
    anet.calibrate(digits_data.x_train)
    assert [float(m.input_range) for m in anet.layers] == pytest.approx(learned)
    with pytest.raises(DevmodelError, match="input_range='learned' needs"):
        convert(net, pcm, CrossbarConfig(input_range="learned"))
    # the FP network it is compared with maps onto the same crossbar without learned quantities
    plain_cfg = cfg.for_untrained()
    assert (plain_cfg.scales, plain_cfg.input_range, plain_cfg.dac_bits) == ("column", "calibrated", 8)
    convert(net, pcm, plain_cfg).calibrate(digits_data.x_train[:64])
    plain = train_hwa(net, pcm, "device-000", digits_data, TrainOptions(epochs=1), {"periphery": False})
    assert not any(hasattr(m, "in_range") for m in plain.net.modules())


def test_training_forward_includes_the_periphery(pcm, digits_data):
    """With the periphery, device-000's training outputs are ADC codes × scale (quantised) and carry
    output noise; gradients still reach the weights and the input ranges (straight-through)."""
    from devmodel.train.hwa import make_method, wrap
    from devmodel.train.methods import TrainOptions

    torch.manual_seed(0)
    lin = nn.Linear(16, 4, bias=False)
    m = make_method("device-000", pcm, TrainOptions(), {"drop_connect": 0.0, "noise_scale": 0.0})
    layer = wrap(nn.Sequential(lin), m)[0]
    layer.train()
    x = torch.randn(64, 16)
    y1, y2 = layer(x), layer(x)
    assert not torch.allclose(y1, y2)  # output noise re-drawn
    y1.sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert layer.in_range.grad is not None
    r = float(layer.in_range.detach())
    codes = y1.detach() / (layer.gamma.detach() * r)  # normalised outputs on the ADC grid
    step = 10.0 / 127
    assert torch.allclose(codes / step, torch.round(codes / step), atol=1e-3)


def test_noise_management_keeps_small_inputs_above_the_dac_step():
    """Seed 000 B.1, noise management: each input vector is scaled by its own abs-max, so a sample
    100× smaller than the static range keeps 8-bit resolution (static: it rounds to zero)."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(32, 4))
    x = torch.rand(50, 32) * 2 - 1
    x[:25] *= 1e-3  # far below one DAC step of the static range
    ref = net(x).detach()
    static = convert(net, None, CrossbarConfig(dac_bits=8))
    static.program(0)
    static.calibrate(x)
    managed = convert(net, None, CrossbarConfig(dac_bits=8, noise_management=True))
    managed.program(0)
    with torch.no_grad():
        small_static = (static(x)[:25] - ref[:25]).abs().max()
        small_managed = (managed(x)[:25] - ref[:25]).abs().max()
    bias_only = (ref[:25] - net[0].bias.detach()).abs().max()
    assert small_static > 0.5 * bias_only  # the static DAC loses the small samples' signal
    assert small_managed < 0.01 * bias_only


def test_bound_management_halves_clipping_inputs_until_the_output_fits():
    """Seed 000 B.1, bound management: a product whose outputs clip is re-run with the input halved
    (up to N times), undone digitally; without it the outputs saturate at the bound."""
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(64, 10))
    x = torch.randn(200, 64)
    ref = net(x).detach()
    outs = {}
    for bm in (0, 10):
        a = convert(net, None, CrossbarConfig(out_bound=2.0, bound_management=bm))
        a.program(0)
        a.layers[0].input_range.fill_(float(x.abs().max()))
        with torch.no_grad():
            outs[bm] = a(x)
    assert (outs[0] - ref).abs().max() > 1.0
    torch.testing.assert_close(outs[10], ref, rtol=1e-4, atol=1e-4)
    with pytest.raises(DevmodelError, match="noise and bound management are modelled"):
        CrossbarConfig(dac_bits=8, bit_serial=True, noise_management=True)
    with pytest.raises(DevmodelError, match="needs an output bound"):
        CrossbarConfig(bound_management=3)
