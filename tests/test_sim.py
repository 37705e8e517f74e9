"""Analog inference driven by fitted device models (analog-inference issue)."""


import numpy as np
import pytest
import torch
from helpers import run_devmodel as devmodel
from torch import nn

from devmodel.model.card import DeviceModel
from devmodel.sim import CrossbarConfig, accuracy, convert, evaluate_over_time
from devmodel.sim.networks import ResNet32, digits_cnn, digits_mlp, train_fp

TRIALS = 10


@pytest.fixture(scope="module")
def cnn(digits_data):
    return train_fp(digits_cnn(), digits_data, epochs=20, seed=0)


@pytest.mark.parametrize("make, shape", [(digits_mlp, (32, 1, 8, 8)), (digits_cnn, (32, 1, 8, 8)),
                                         (ResNet32, (4, 3, 32, 32))])
def test_every_non_ideality_off_equals_digital(make, shape):
    torch.manual_seed(0)
    net = make().eval()
    x = torch.randn(shape)
    for cfg in (CrossbarConfig.ideal(), CrossbarConfig.ideal().with_(tile_rows=18, tile_cols=8),
                CrossbarConfig.ideal().with_(differential="two_columns", scales="tile")):
        a = convert(net, DeviceModel.published("pcm"), cfg)
        a.calibrate(x)
        a.program(0)
        a.set_time(86400.0)
        with torch.no_grad():
            torch.testing.assert_close(a(x), net(x), rtol=1e-4, atol=1e-5)


def test_tiles_split_inputs_into_whole_channels_and_sum_partial_sums():
    conv = nn.Conv2d(8, 4, 3, padding=1)
    a = convert(nn.Sequential(conv), None, CrossbarConfig.ideal().with_(tile_rows=18))
    layer = a.layers[0]
    assert [s.stop - s.start for s in layer.in_tiles] == [2, 2, 2, 2]  # 2 channels × 9 = 18 rows
    lin = convert(nn.Sequential(nn.Linear(100, 7)), None,
                  CrossbarConfig.ideal().with_(tile_rows=32, tile_cols=4)).layers[0]
    assert len(lin.in_tiles) == 4 and len(lin.out_tiles) == 2


@pytest.mark.parametrize("dac_bits", [None, 8])
@pytest.mark.parametrize("grad", [False, True])
def test_short_term_weight_and_output_noise_have_their_variance(dac_bits, grad):
    """Output-referred equivalent: Var y = w_noise²·Σ(x/r)² + out_noise² per output (normalised
    units), re-drawn at every product; the same in the inference and the training path."""
    lin = nn.Linear(50, 1000, bias=False)
    nn.init.uniform_(lin.weight, -1, 1)
    cfg = CrossbarConfig(device_noise=False, w_noise=0.05, out_noise=0.04, dac_bits=dac_bits)
    a = convert(nn.Sequential(lin), None, cfg)
    x = torch.rand(1, 50)
    a.calibrate(torch.rand(256, 50))
    a.program(0)
    with torch.set_grad_enabled(grad):
        ys = torch.stack([a(x) for _ in range(200)]).detach()
    m = a.layers[0]
    r = float(m.input_range)
    var = ((ys - ys.mean(0)) / (m._scale[0] * r)).var(dim=0).mean()
    expected = 0.05**2 * float(((x / r) ** 2).sum()) + 0.04**2
    assert float(var) == pytest.approx(expected, rel=0.05)
    assert not torch.equal(ys[0], ys[1])


def test_adc_quantises_and_bounds_outputs():
    lin = nn.Linear(20, 200, bias=False)
    cfg = CrossbarConfig(device_noise=False, adc_bits=4, out_bound=2.0)
    a = convert(nn.Sequential(lin), None, cfg)
    a.calibrate(torch.rand(64, 20))
    a.program(0)
    with torch.no_grad():
        y = a(torch.rand(64, 20))
    norm = y / (a.layers[0]._scale[0] * a.layers[0].input_range)
    levels = torch.unique(torch.round(norm * 1e4))
    assert levels.numel() <= 2**4 - 1 and float(norm.abs().max()) <= 2.0 + 1e-6


def test_same_seed_same_trial(cnn, digits_data, pcm_card):
    a = convert(cnn, pcm_card, CrossbarConfig.standard())
    r1 = evaluate_over_time(a, digits_data.x_test, digits_data.y_test, [3600.0], 2, seed=3,
                            calibration=digits_data.x_train)
    r2 = evaluate_over_time(a, digits_data.x_test, digits_data.y_test, [3600.0], 2, seed=3,
                            calibration=digits_data.x_train)
    np.testing.assert_array_equal(r1, r2)


def test_drift_compensation_and_column_scales_on_the_chip_card(cnn, digits_data, pcm_card):
    """The seeds' qualitative results on digits: without global drift compensation accuracy falls
    with time; with it most of the loss at 1 day is recovered (001); column-wise output scales do
    at least as well as tile-wise at 1 day (000 Supplementary Table 6). 10 trials each."""
    times = [1.0, 86400.0]

    def run(**kw):
        a = convert(cnn, pcm_card, CrossbarConfig.standard().with_(**kw))
        acc = evaluate_over_time(a, digits_data.x_test, digits_data.y_test, times, TRIALS, seed=0,
                                 calibration=digits_data.x_train)
        return acc.mean(0), acc.std(0, ddof=1) / np.sqrt(TRIALS)

    (off_1s, off_1d), (off_se_1s, off_se_1d) = run(drift_compensation=False)
    (on_1s, on_1d), (_, on_se_1d) = run()
    (_, tile_1d), (_, tile_se_1d) = run(scales="tile")
    loss = off_1s - off_1d
    assert loss > 3 * np.hypot(off_se_1s, off_se_1d) and loss > 0.01
    assert (on_1d - off_1d) >= 0.5 * loss
    assert on_1d >= tile_1d - 2 * np.hypot(on_se_1d, tile_se_1d)
    assert accuracy(cnn, digits_data.x_test, digits_data.y_test) > 0.97


def test_resnet32_is_the_seed_network():
    from devmodel.sim.networks import analog_weight_count

    net = ResNet32()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len([c for c in convs if c.kernel_size == (3, 3)]) == 31  # 1 + 3 stages × 5 blocks × 2
    assert len([c for c in convs if c.kernel_size == (1, 1)]) == 2  # the two width changes
    assert len([m for m in net.modules() if isinstance(m, nn.Linear)]) == 1
    assert analog_weight_count(net) == 361_722  # seed 001, Sec. II
    assert analog_weight_count(ResNet32(widths=(16, 32, 64))) == 464_442  # He et al.'s widths
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)




def test_evaluate_cli(tmp_path, published_pcm_card):
    card = tmp_path / "card.json"
    card.write_text(published_pcm_card.to_json())
    plot = tmp_path / "acc.png"
    r = devmodel("evaluate", "--card", str(card), "--network", "digits-mlp", "--times",
                 "1,3600,86400", "--trials", "2", "--epochs", "10", "--plot", str(plot), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "accuracy %" in r.stdout and "floating point" in r.stdout and plot.stat().st_size > 1000
    # 1 year: beyond the fitted day; extrapolated by the fitted laws with one note, or refused
    r = devmodel("evaluate", "--card", str(card), "--network", "digits-mlp", "--times",
                 "86400,31536000", "--trials", "1", "--epochs", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("devmodel: note: t = 3.1536e+07 s (age t0 + t, t0 = 20 s) lies outside") == 1
    assert "Warning" not in r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["86400", "3.1536e+07"] and rows[1][-1] == "*" != rows[0][-1]
    r = devmodel("evaluate", "--card", str(card), "--network", "digits-mlp", "--times",
                 "31536000", "--trials", "1", "--epochs", "1", "--quiet", "--no-extrapolate")
    assert r.returncode == 2 and "outside the ages this card was fitted on" in r.stderr
    assert "--no-extrapolate" in r.stderr and "Traceback" not in r.stderr
    r = devmodel("evaluate", "--card", str(card), "--network", "digits-mlp", "--times", "3600",
                 "--trials", "1", "--epochs", "1", "--bit-serial", "--energy", "--quiet")
    assert r.returncode == 0 and "7 reads per matrix-vector product" in r.stdout, r.stderr
    assert "read energy per inference (seed 004" in r.stdout
    assert "bit-serial / standard energy: 0." in r.stdout
    r = devmodel("evaluate", "--card", str(card), "--epochs", "0", "--quiet")
    assert r.returncode == 2 and r.stderr.startswith("devmodel: error: invalid value for '--epochs'")
    r = devmodel("evaluate", "--card", str(card), "--network", "nonsense", "--times", "3600", "--quiet")
    assert r.returncode == 2 and "neither digits-mlp" in r.stderr
    r = devmodel("evaluate", "--card", str(card), "--times", "-5", "--quiet")
    assert r.returncode == 2 and "positive" in r.stderr


def test_quantile_by_selection_equals_torch_quantile():
    """Calibration and tile-003 take percentiles by two kthvalue selections instead of a sort."""
    from devmodel.sim.analog import quantile

    g = torch.Generator().manual_seed(0)
    for n in (1, 2, 7, 1000, 12_345):
        v = torch.randn(n, generator=g)
        for q in (0.0, 0.25, 0.5, 0.999, 1.0):
            assert quantile(v, q) == pytest.approx(float(torch.quantile(v, q)), rel=1e-5, abs=1e-6)  # float32


def test_calibration_keeps_each_layers_own_configuration(digits_data, pcm_card):
    """fluct-004 reads each layer with noise ∝ 1/ρ by giving it its own config; calibrating (which
    runs with the periphery off) must hand every layer back its own, not the network's."""
    net = digits_mlp().eval()
    anet = convert(net, pcm_card, CrossbarConfig.standard())
    anet.layers[0].config = anet.layers[0].config.with_(w_noise=0.5)
    anet.calibrate(digits_data.x_train)
    assert anet.layers[0].config.w_noise == 0.5
    assert anet.layers[1].config.w_noise == CrossbarConfig.standard().w_noise


def test_read_energy_as_seed_004_accounts_it():
    """Eq. 19–20: a cell read with input code x costs ρ·x·|w|, read bit-serially ρ·Σ_p δ_p·|w|; by
    hand on a 2 × 3 linear layer, then on a CNN whose convolutions count every output position."""
    from devmodel.sim.energy import format_energy, layer_energy, network_energy

    lin = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -1.0, 0.25], [1.0, 0.0, -0.5]]))
    cfg = CrossbarConfig.standard().with_(scales="column")
    anet = convert(nn.Sequential(lin), None, cfg)
    layer = anet.layers[0]
    layer.input_range.fill_(1.0)
    s_in = 2 ** (cfg.dac_bits - 1) - 1  # 127
    x = torch.tensor([[1.0, 3 / s_in, -6 / s_in]])  # codes 127 (7 bits set), 3 (2 bits), 6 (2 bits)
    w_abs = torch.tensor([[0.5, 1.0, 0.25], [1.0, 0.0, 0.5]])  # |w| / column scale (scales 1 and 1)
    e = layer_energy(layer, x)
    assert e.energy_standard == pytest.approx(float((w_abs @ torch.tensor([127.0, 3, 6])).sum()) / s_in)
    assert e.energy_bit_serial == pytest.approx(float((w_abs @ torch.tensor([7.0, 2, 2])).sum()) / s_in)
    assert e.energy_bit_serial < e.energy_standard and e.positions == 1 and e.cells == 12
    ones = torch.tensor([[1 / s_in, 0.0, -1 / s_in]])  # codes of one bit: the two modes cost the same
    e1 = layer_energy(layer, ones)
    assert e1.energy_bit_serial == pytest.approx(e1.energy_standard)

    cnn = digits_cnn().eval()
    an = convert(cnn, None, CrossbarConfig.standard().with_(bit_serial=True))
    rows = network_energy(an, torch.randn(4, 1, 8, 8))
    assert [r.positions for r in rows] == [64, 64, 1, 1]  # 8 × 8 outputs per convolution (padding 1)
    assert all(r.reads_per_product == 7 for r in rows)
    assert an.reads_per_inference(torch.randn(1, 1, 8, 8)) == sum(r.cells * r.positions * 7 for r in rows)
    assert sum(r.energy_bit_serial for r in rows) < sum(r.energy_standard for r in rows)
    assert "bit-serial / standard energy: 0." in format_energy(rows)


def test_integer_output_scales_and_noise_exempt_columns(published_pcm_card):
    """Seed 000: N = 1 integer scale is the tile scale (B.3.1, Eq. 1) and N integers give at most N
    scale values, each ≥ the FP scale; every column exempt (B.4) reads the ideal weights at 1 day."""
    from devmodel.sim.exempt import column_sensitivity, exempt_columns

    torch.manual_seed(0)
    net = digits_cnn().eval()
    std = CrossbarConfig.standard().with_(device_noise=False)
    one = convert(net, None, std.with_(scales="column", scale_levels=1))
    tile = convert(net, None, std.with_(scales="tile"))
    for a, b in zip(one.layers, tile.layers, strict=True):
        for k in range(len(a.in_tiles)):
            (sa, wa), (sb, wb) = a._normalised(k), b._normalised(k)
            assert torch.allclose(sa, sb) and torch.allclose(wa, wb, atol=1e-6)
    fp = convert(net, None, std)
    q4 = convert(net, None, std.with_(scale_levels=4))
    for a, b in zip(q4.layers, fp.layers, strict=True):
        (q, wq), (g, wg) = a._normalised(0), b._normalised(0)
        assert len(torch.unique(q)) <= 4 and bool((q >= g - 1e-7).all())
        shape = (-1,) + (1,) * (wq.dim() - 1)
        assert torch.allclose(wq * q.reshape(shape), wg * g.reshape(shape), atol=1e-6)  # same weights

    x = torch.randn(64, 1, 8, 8)
    y = torch.randint(0, 10, (64,))
    sens = column_sensitivity(net, x, y, batch=16, batches=4)
    noisy = convert(net, published_pcm_card, CrossbarConfig.standard())
    assert exempt_columns(noisy, sens, 1.0) == sum(s.numel() for s in sens)
    noisy.program(3)
    noisy.set_time(86400.0)
    ideal = convert(net, published_pcm_card, CrossbarConfig.standard())
    ideal.program(3)
    for a, b in zip(noisy.layers, ideal.layers, strict=True):
        b.set_ideal()
        for wa, wb in zip(a._w, b._w, strict=True):
            assert torch.allclose(wa[0], wb[0], atol=1e-6)
    half = exempt_columns(noisy, sens, 0.5)
    flat = torch.cat(sens)
    marked = torch.cat([m.exempt for m in noisy.layers])
    assert half == int(marked.sum()) == round(0.5 * flat.numel())
    assert flat[marked].min() >= flat[~marked].max()  # the largest mean |gradient| are exempt


@pytest.mark.parametrize("layer, phrase", [
    (nn.Conv2d(8, 8, 3, groups=8), "layer 1 is a depthwise convolution (groups=8)"),
    (nn.Conv2d(8, 8, 3, groups=2), "layer 1 is a grouped convolution (groups=2)"),
])
def test_layers_without_an_analog_counterpart_are_refused_by_name(layer, phrase):
    import re

    from devmodel.errors import DevmodelError

    with pytest.raises(DevmodelError, match=re.escape(phrase)):
        convert(nn.Sequential(nn.Conv2d(3, 8, 3), layer), None)


def test_a_recurrent_layer_is_refused_by_name():
    from devmodel.errors import DevmodelError

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(8, 16, batch_first=True)
            self.head = nn.Linear(16, 4)

    with pytest.raises(DevmodelError, match=r"layer lstm \(LSTM\) has weights but no analog counterpart"):
        convert(Tagger(), None)
