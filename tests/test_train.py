"""Hardware-aware training with the seeds' methods, driven by a card fitted from the simulated PCM
chip (hardware-aware training issue)."""


import numpy as np
import pytest
import torch
from helpers import run_devmodel as devmodel
from torch import nn

from devmodel.errors import DevmodelError
from devmodel.sim import CrossbarConfig, accuracy, convert
from devmodel.sim.networks import build, train_fp
from devmodel.train import METHODS, TrainOptions, evaluate_hwa, method_options, train_hwa
from devmodel.train.hwa import HWALayer, unwrap, wrap
from devmodel.train.methods import representative_eta

SEEDS = (0, 1, 2)
TRIALS = 25  # programming trials per evaluation (the acceptance: ≥ 3 seeds × 25 trials)
ONE_DAY_S = 86400.0


@pytest.fixture(scope="module")
def mlp(digits_data):
    return train_fp(build("digits-mlp-small", 0), digits_data, epochs=10, seed=0)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_trains_checkpoints_and_returns_a_plain_network(method, mlp, digits_data, pcm_card,
                                                                     tmp_path):
    opts = TrainOptions(epochs=2, seed=0)
    r = train_hwa(mlp, pcm_card, method, digits_data, opts, checkpoint_dir=tmp_path)
    assert not any(isinstance(m, HWALayer) for m in r.net.modules())
    assert [type(m) for m in r.net.modules()] == [type(m) for m in mlp.modules()]
    levels = 3 if method == "tile-003" else 1
    assert len(r.history) == 2 * levels and all(np.isfinite(h["loss"]) for h in r.history)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["method"] == method and ckpt["epoch"] == 1 and ckpt["options"]["seed"] == 0
    assert not list(tmp_path.glob("*.part"))
    # fine-tuning keeps the FP model's skill
    assert accuracy(r.net, digits_data.x_test, digits_data.y_test) > 0.8
    acc = evaluate_hwa(r, pcm_card, digits_data, [1.0], 2, seed=0)
    assert acc.shape == (2, 1) and (acc > 0.5).all()
    again = train_hwa(mlp, pcm_card, method, digits_data, opts)  # same seed, same network
    for a, b in zip(r.net.state_dict().values(), again.net.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_noise_injection_clips_weights_and_leaves_inference_clean(mlp, digits_data, pcm_card):
    """001: weights clipped to ±α·σ_W after every update; noise only in the training forward."""
    r = train_hwa(mlp, pcm_card, "noise-001", digits_data, TrainOptions(epochs=1), {"clip_alpha": 1.5})
    for m in r.net.modules():
        if isinstance(m, nn.Linear):
            w = m.weight.detach()
            # the clip uses σ_W before clamping, which clamping can only lower by a little
            assert float(w.abs().max()) <= 1.5 * float(w.std()) * 1.1
    assert r.report["eta"] == pytest.approx(2 * representative_eta(pcm_card))  # noise_scale 2 (001)


def test_hasgd_averages_the_gradient_over_L_perturbations(mlp, digits_data, pcm_card):
    calls = []
    mlp.register_forward_hook(lambda *a: calls.append(1))
    try:
        r = train_hwa(mlp, pcm_card, "hasgd-002", digits_data, TrainOptions(epochs=1, batch=256),
                      {"n_perturb": 3})
    finally:
        mlp._forward_hooks.clear()
    batches = -(-digits_data.x_train.shape[0] // 256)
    assert len(calls) == 3 * batches and r.report["L"] == 3
    assert 0 < r.report["sigma_dn"] < 0.2 and abs(r.report["mu_ds"]) < 0.05


def test_tile_aware_runs_three_pipelines_and_evaluates_on_the_tiled_crossbar(mlp, digits_data, pcm_card):
    r = train_hwa(mlp, pcm_card, "tile-003", digits_data, TrainOptions(epochs=1))
    assert [h["level"] for h in r.history] == [1, 2, 3] and r.report["level"] == 3
    cfg = r.method.eval_config()
    assert (cfg.differential, cfg.tile_rows, cfg.tile_cols, cfg.adc_bits, cfg.scales) == \
        ("two_columns", 256, 64, 8, "tile")


def test_tile_aware_level_3_without_variation_is_the_network_it_unwraps_to(pcm_card):
    """003: at level 3 every array's output is digitised and scaled by its trained multiplier;
    with no variation and fine quantisation that forward is the unwrapped digital network (the
    multipliers folded into the rows of their arrays). 300 inputs → arrays of 256 + 44 rows."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(300, 5))
    m = METHODS["tile-003"](pcm_card, TrainOptions(),
                            method_options("tile-003", {"variation": 0.0, "bits": 16}))
    m.level = 3
    wrapped = wrap(net, m)
    layer = wrapped[0]
    with torch.no_grad():
        layer.multiplier.copy_(torch.tensor([1.5, 0.5]))
    x = torch.rand(64, 300)
    wrapped.train()
    y = wrapped(x).detach()
    digital = unwrap(wrapped)
    torch.testing.assert_close(y, digital(x), rtol=2e-3, atol=2e-3)
    w = digital[0].weight.detach()
    torch.testing.assert_close(w[:, :256], 1.5 * net[0].weight[:, :256].detach())
    torch.testing.assert_close(w[:, 256:], 0.5 * net[0].weight[:, 256:].detach())


def test_energy_regulariser_lowers_the_read_energy(mlp, digits_data, pcm_card):
    """004: λ·Σ α_t·ρ·|w| with trainable ρ; a larger λ ends at a lower energy, and bit-serial
    inputs read every device once per input bit."""
    low = train_hwa(mlp, pcm_card, "fluct-004", digits_data, TrainOptions(epochs=3), {"energy_lambda": 0.0})
    high = train_hwa(mlp, pcm_card, "fluct-004", digits_data, TrainOptions(epochs=3), {"energy_lambda": 1e-2})
    assert high.report["energy"] < 0.8 * low.report["energy"], (high.report, low.report)
    assert max(high.report["rho"]) < 1.0  # the trainable energy coefficient gave way
    assert min(low.report["rho"]) > 1.0  # without it, ρ grows: read fluctuation only costs loss
    assert low.report["reads_per_mvm"] == 7  # 8-bit signed inputs: 7 magnitude bits
    anet = convert(low.net, pcm_card, low.method.eval_config())
    n_devices = sum(m.weight.numel() * 2 for m in low.net.modules() if isinstance(m, nn.Linear))
    # two devices per weight (differential pair); an MLP's products are one per layer
    assert anet.reads_per_inference(digits_data.x_test) == 7 * n_devices


def test_energy_regulariser_counts_reads_per_inference_as_the_energy_table(digits_data, pcm_card):
    """004, Eq. 13: α_t is the number of reads of the cell holding w_t per inference — a convolution
    reads each kernel once per output position, each bit-serial product 7 times — the same count
    `evaluate --energy` (devmodel.sim.energy) prints per layer."""
    from devmodel.sim.energy import network_energy

    cnn = train_fp(build("digits-cnn-small", 0), digits_data, epochs=1, seed=0)
    res = train_hwa(cnn, pcm_card, "fluct-004", digits_data, TrainOptions(epochs=1))
    anet = convert(res.net, pcm_card, res.method.eval_config())
    rows = network_energy(anet, digits_data.x_test[:1])
    assert res.report["alpha_t"] == [r.array_reads for r in rows]
    assert res.report["alpha_t"][0] == 7 * 64  # first convolution: 8 × 8 output positions × 7 bits


@pytest.mark.parametrize("seed", [0, 1])
def test_bit_serial_lowers_the_output_spread_as_predicted(seed):
    """004: with every input bit read separately, read noise adds per read and the outputs are
    summed with weights 2^p, so the output std falls from w_noise·√Σ_i c_i² to
    w_noise·√(Σ_p 4^p Σ_i δ_{p,i}²) (codes c_i = Σ_p 2^p δ_{p,i}). 2000 reads × 64 outputs."""
    torch.manual_seed(seed)
    lin = nn.Linear(64, 64, bias=False)
    x = torch.rand(1, 64) * 2 - 1
    base = CrossbarConfig(device_noise=False, w_noise=0.05, dac_bits=8)
    stds = []
    for cfg in (base, base.with_(bit_serial=True)):
        a = convert(nn.Sequential(lin), None, cfg)
        a.calibrate(x)
        a.program(seed)
        with torch.no_grad():
            ys = torch.cat([a(x.expand(200, -1)) for _ in range(10)])
        stds.append(ys.std(0).mean())
    layer = a.layers[0]
    code = torch.round((x / layer.input_range).clamp(-1, 1) * 127).abs()
    bits = torch.stack([torch.remainder(torch.floor(code / 2**p), 2) for p in range(7)])
    predicted = float(torch.sqrt((4.0 ** torch.arange(7)[:, None, None] * bits).sum() / (code**2).sum()))
    measured = float(stds[1] / stds[0])
    assert predicted < 0.9  # the option matters
    assert measured == pytest.approx(predicted, rel=0.03)  # the issue allows 20 %
    assert layer.reads_per_mvm == 7


def test_noise_injection_cuts_the_one_day_accuracy_loss(digits_data, pcm_card):
    """The seeds' central claim (000, 001): on digits at 1 day with global drift compensation,
    device-shaped injection and weight-noise injection each cut the loss of the FP network mapped
    directly by ≥ 30 %; mean over 3 training seeds × 25 programming trials. Loss = FP digital
    accuracy − analog accuracy; digits-cnn-small, whose direct-mapping loss (≈ 1–2 points) is large
    enough to resolve (the larger digits networks lose < 0.6 points)."""
    fp_loss, cut = [], {"noise-001": [], "device-000": []}
    for seed in SEEDS:
        fp = train_fp(build("digits-cnn-small", seed), digits_data, epochs=40, seed=seed)
        ref = accuracy(fp, digits_data.x_test, digits_data.y_test)
        fp_loss.append(ref - evaluate_hwa(fp, pcm_card, digits_data, [ONE_DAY_S], TRIALS, seed=100).mean())
        for method, losses in cut.items():
            r = train_hwa(fp, pcm_card, method, digits_data, TrainOptions(seed=seed))
            losses.append(ref - evaluate_hwa(r, pcm_card, digits_data, [ONE_DAY_S], TRIALS, seed=100).mean())
    assert np.mean(fp_loss) > 0.005  # a loss worth cutting
    for method, losses in cut.items():
        reduction = 1 - np.mean(losses) / np.mean(fp_loss)
        assert reduction >= 0.30, (method, fp_loss, losses)




def test_train_hwa_cli(tmp_path, pcm_card):
    path = tmp_path / "card.json"
    path.write_text(pcm_card.to_json())
    out, ckpt = tmp_path / "hwa.pt", tmp_path / "ckpt"
    r = devmodel("train-hwa", "--card", str(path), "--network", "digits-mlp-small", "--method",
                 "fluct-004", "--epochs", "1", "--fp-epochs", "2", "--trials", "2", "--times",
                 "1,86400", "--out", str(out), "--checkpoint-dir", str(ckpt), "--quiet")
    assert r.returncode == 0, r.stderr
    assert "fluct-004 (004 (" in r.stdout and "reads_per_mvm = 7" in r.stdout
    assert "86400" in r.stdout and (ckpt / "checkpoint.pt").exists()
    for m, code, phrase in (("fluct-004", 0, "fluct-004 (004 ("),  # one more epoch from the checkpoint
                            ("noise-001", 2, "written by method fluct-004, not noise-001")):
        r2 = devmodel("train-hwa", "--card", str(path), "--network", "digits-mlp-small", "--method", m,
                      "--epochs", "2", "--fp-epochs", "2", "--times", "1", "--trials", "1",
                      "--resume", str(ckpt / "checkpoint.pt"), "--quiet")
        assert r2.returncode == code and phrase in (r2.stdout + r2.stderr), r2.stderr
    net = torch.load(out, weights_only=False)
    assert isinstance(net, nn.Module) and net(torch.zeros(1, 64)).shape == (1, 10)
    r = devmodel("train-hwa", "--card", str(path), "--method", "noise-001", "--out", str(out))
    assert r.returncode == 2 and "already exists" in r.stderr and "Traceback" not in r.stderr
    r = devmodel("train-hwa", "--card", str(path), "--method", "noise-001", "--times", "1e9",
                 "--epochs", "1", "--fp-epochs", "1", "--trials", "1", "--network", "digits-mlp-small",
                 "--quiet", "--no-extrapolate")
    assert r.returncode == 2 and "--no-extrapolate" in r.stderr
    for bad in (["--perturbations", "-3"], ["--lr", "0"], ["--noise-scale", "-2"], ["--epochs", "-1"]):
        r = devmodel("train-hwa", "--card", str(path), "--method", "hasgd-002", *bad, "--quiet")
        assert r.returncode == 2 and f"invalid value for '{bad[0]}'" in r.stderr, (bad, r.stderr)


def test_a_checkpoint_resumes_to_the_uninterrupted_network(mlp, digits_data, pcm_card, tmp_path):
    """device-000 (ramp, drop-connect draws, remapping): 3 epochs straight equal 2 epochs, a stop,
    and a resumed third epoch, weight for weight; a checkpoint of other options is refused."""
    straight = train_hwa(mlp, pcm_card, "device-000", digits_data, TrainOptions(epochs=3, seed=4))
    train_hwa(mlp, pcm_card, "device-000", digits_data, TrainOptions(epochs=2, seed=4),
              checkpoint_dir=tmp_path)
    resumed = train_hwa(mlp, pcm_card, "device-000", digits_data, TrainOptions(epochs=3, seed=4),
                        resume=tmp_path / "checkpoint.pt")
    for a, b in zip(straight.net.state_dict().values(), resumed.net.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    with pytest.raises(DevmodelError, match="option seed was 4"):
        train_hwa(mlp, pcm_card, "device-000", digits_data, TrainOptions(epochs=3, seed=5),
                  resume=tmp_path / "checkpoint.pt")
    with pytest.raises(DevmodelError, match="written by method device-000, not noise-001"):
        train_hwa(mlp, pcm_card, "noise-001", digits_data, TrainOptions(epochs=3, seed=4),
                  resume=tmp_path / "checkpoint.pt")


def test_device_000_learns_output_scales_the_simulator_can_use(mlp, digits_data, pcm_card):
    """Seed 000: codes stay within ±1 (g_max) while γ is learned; the unwrapped network carries γ
    as `out_scale`, and `scales="learned"` maps W/γ onto the devices (clipped) instead of abs-max."""
    r = train_hwa(mlp, pcm_card, "device-000", digits_data, TrainOptions(epochs=2, seed=0))
    layers = [m for m in r.net.modules() if isinstance(m, nn.Linear)]
    assert all(hasattr(m, "out_scale") and m.out_scale.shape == (m.weight.shape[0],) for m in layers)
    for m in layers:
        codes = m.weight / m.out_scale[:, None]
        assert codes.abs().max() <= 1 + 1e-5  # no weight beyond its learned scale
    ideal = CrossbarConfig.ideal()
    learned = convert(r.net, pcm_card, ideal.with_(scales="learned"))
    x = digits_data.x_test[:64]
    learned.calibrate(x)
    assert torch.allclose(learned(x), r.net(x), atol=1e-5)  # ideal devices: the digital network
    assert torch.equal(learned.layers[0]._scales(learned.layers[0].weight), layers[0].out_scale)
    # a shrunken scale clips: the weights beyond it are programmed at g_max
    layers[0].out_scale.mul_(0.5)
    clipped = convert(r.net, pcm_card, ideal.with_(scales="learned"))
    clipped.calibrate(x)
    assert not torch.allclose(clipped(x), r.net(x), atol=1e-3)
    with pytest.raises(DevmodelError, match="scales='learned' needs"):
        convert(mlp, pcm_card, ideal.with_(scales="learned")).calibrate(x)


def test_training_knobs_of_the_seeds():
    """SGD with momentum, weight decay and the seeds' learning-rate schedules (issue 18, part 5)."""
    from devmodel.errors import ConfigError
    from devmodel.train import TrainOptions

    sgd = TrainOptions(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, epochs=8, schedule="step")
    opt = sgd.make_optimizer([torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(opt, torch.optim.SGD)
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 5e-4
    assert [sgd.lr_at(e) for e in range(8)] == pytest.approx([0.1] * 4 + [0.01] * 2 + [0.001] * 2)
    cos = TrainOptions(lr=1.0, epochs=4, schedule="cosine")
    assert [cos.lr_at(e) for e in range(4)] == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466])
    assert isinstance(TrainOptions().make_optimizer([torch.nn.Parameter(torch.zeros(2))]), torch.optim.Adam)
    with pytest.raises(ConfigError, match="optimizer"):
        TrainOptions(optimizer="rmsprop").check()


def test_noise_sweep_grid_figure_and_refusals(tmp_path, digits_data, pcm_card):
    """Seed 001 Fig. 2 as a command: the η_train × η_inference grid (best η_train per column marked),
    the figure written; η_inf = 0 is the network's clean accuracy and the weights come back unchanged."""
    from devmodel.train.sweep import perturbed_accuracy, sweep_noise

    fp = train_fp(build("digits-mlp-small", 0), digits_data, epochs=3, seed=0)
    clean = accuracy(fp, digits_data.x_test, digits_data.y_test)
    before = [p.detach().clone() for p in fp.parameters()]
    assert np.all(perturbed_accuracy(fp, digits_data, 0.0, 3, seed=1) == clean)
    noisy = perturbed_accuracy(fp, digits_data, 0.3, 5, seed=1)
    assert noisy.std() > 0 and noisy.mean() < clean
    assert all(torch.equal(a, b) for a, b in zip(before, fp.parameters(), strict=True))
    res = sweep_noise(fp, pcm_card, digits_data, [0.0, 0.1], [0.0, 0.1, 0.3], TrainOptions(epochs=1),
                      training_runs=1, inference_runs=3)
    assert res.accuracy.shape == (2, 3, 1, 3) and len(res.best_train()) == 3
    assert res.table().splitlines()[0].split()[-3:] == ["0", "0.1", "0.3"]
    plot = tmp_path / "sweep.png"
    r = devmodel("train-hwa", "--card", "published:pcm", "--method", "noise-001", "--network",
                 "digits-mlp-small", "--epochs", "1", "--fp-epochs", "2", "--sweep-noise", "0,0.1",
                 "--sweep-inference", "0,0.2", "--trials", "2", "--plot", str(plot), "--quiet")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("seed 001 noise sweep on digits-mlp-small") and "η_train \\ η_inf" in lines[1]
    assert len(lines) == 5 and sum(line.count("*") for line in lines[2:4]) == 2
    assert plot.stat().st_size > 10_000
    r = devmodel("train-hwa", "--card", "published:pcm", "--method", "device-000", "--sweep-noise", "0,0.1")
    assert r.returncode == 2 and "--sweep-noise is seed 001's sweep and trains noise-001" in r.stderr
    r = devmodel("train-hwa", "--card", "published:pcm", "--method", "noise-001", "--sweep-noise", "0,-1")
    assert r.returncode == 2 and "between 0 and 10" in r.stderr


def test_multistate_fluctuation_matches_the_gaussian_variance_not_its_shape(pcm_card):
    """004, Eq. 7–11: a two-state (random-telegraph) cell read once returns w ± σ with 50 % each; the
    output noise over many inputs and reads has the Gaussian form's variance (4000 samples × 8 outputs,
    bit-serial: 7 reads per product; the relative s.d. of a variance from 32,000 draws is 0.8 %,
    the test allows 5 %), for a Linear and a Conv2d."""
    from devmodel.train.fluctuation import multistate_noise, state_offsets
    from devmodel.train.hwa import make_method

    assert torch.allclose(state_offsets(2), torch.tensor([-1.0, 1.0]))
    d3 = state_offsets(3)
    assert float(d3.mean()) == pytest.approx(0, abs=1e-7) and float(d3.square().mean()) == pytest.approx(1)
    gen = torch.Generator().manual_seed(3)
    single = wrap(nn.Sequential(nn.Linear(1, 1)), make_method("fluct-004", pcm_card, TrainOptions()))[0]
    values = multistate_noise(single, [(1.0, torch.full((500, 1), 2.0))], 2, gen).unique()
    assert values.tolist() == [-2.0, 2.0]
    for module, x in ((nn.Linear(16, 8), torch.rand(4000, 16)),
                      (nn.Conv2d(2, 8, 3, padding=1), torch.rand(4000, 2, 1, 1))):
        variances = {}
        for kind in ("gaussian", "multistate"):
            m = make_method("fluct-004", pcm_card, TrainOptions(), {"fluctuation": kind, "read_noise": 0.05})
            layer = wrap(nn.Sequential(module), m)[0]
            layer.train()
            with torch.no_grad():
                noise = layer(x) - layer.op(x, layer.weight, layer.bias)
            variances[kind] = float(noise.var())
        assert variances["multistate"] == pytest.approx(variances["gaussian"], rel=0.05), variances
