"""Hardware in the loop (issue 16; docs/deployment.md): the weight → device map is exact, measured
conductances load into the tiles as the ideal ones would and drift compensation is the ratio of
the summed conductances; a deployment through `serve-chip` + `visa://` killed with SIGKILL and
resumed equals the in-process one value for value, with no read lost or repeated; boundaries fail
in one sentence with no file written; a learned-scale network maps with its own scales."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
from helpers import committed_seq, run_devmodel

from devmodel.deploy.mapping import map_network, mapping_config
from devmodel.deploy.measured import Deployment, load_conductances, measured_config
from devmodel.deploy.session import plan_of
from devmodel.sim.analog import convert
from devmodel.sim.config import CrossbarConfig
from devmodel.sim.networks import build
from devmodel.store import read_session
from instruments.testing import ServerProcess

G_MAX = 25.0
NET = ("--network", "digits-mlp-small", "--epochs", "3", "--seed", "0", "--schedule", "21,200,3620")


def _mapped(tile_rows=32, net=None):
    net = net or build("digits-mlp-small", 0)
    cfg = CrossbarConfig.standard().with_(tile_rows=tile_rows)
    return net, cfg, *map_network(net, cfg, G_MAX)


def test_address_map_is_exact_and_reversible():
    net, _, _, mp = _mapped()
    weights = [m.weight.detach().double() for m in net.modules() if isinstance(m, torch.nn.Linear)]
    plan = plan_of(mp, first_address=100)
    np.testing.assert_array_equal(plan.address, 100 + np.arange(mp.n_devices))  # layer by layer
    assert [lm.first_row for lm in mp.layers] == [0, 2 * weights[0].numel()]
    assert mp.layers[0].scale.shape == (2, 16)  # 64 inputs in tiles of 32
    for i, w in enumerate(weights):
        rows = mp.layer == i
        idx, sign, tile, g = mp.weight_index[rows], mp.sign[rows], mp.tile[rows], mp.target_us[rows]
        np.testing.assert_array_equal(sign, np.tile([1, -1], w.numel()))  # G⁺, G⁻ neighbours
        np.testing.assert_array_equal(np.sort(idx[::2]), np.arange(w.numel()))  # every weight once
        np.testing.assert_array_equal(idx[::2], idx[1::2])
        out, col = np.divmod(idx[::2], w.shape[1])
        np.testing.assert_array_equal(tile[::2], col // 32)
        assert np.all(np.minimum(g[::2], g[1::2]) == 0)  # one device of each pair unused
        scale = mp.layers[i].scale[tile[::2], out]
        w_back = (g[::2] - g[1::2]) / G_MAX * scale
        np.testing.assert_allclose(w_back, w.reshape(-1).numpy()[idx[::2]], rtol=0, atol=1e-6)


def _deployment(mp, g_us) -> Deployment:
    return Deployment(path=None, technology="pcm", network="x", architecture="x", data_seed=0, crossbar={},
                      g_max_us=G_MAX, g_min_us=0.0, layers=[lm.info() for lm in mp.layers], layer=mp.layer,
                      weight_index=mp.weight_index, sign=mp.sign, target_us=mp.target_us,
                      scales=[lm.scale for lm in mp.layers], ages_s=np.array([21.0, 86420.0]), g_us=g_us,
                      converged=np.ones(mp.n_devices, bool),
                      g_verify_us=mp.target_us, chip_url="", _state=None, _module=None)


def test_measured_conductances_load_as_tiles_and_compensation_is_the_sum_ratio():
    net, cfg, ideal, mp = _mapped()
    g = np.stack([mp.target_us, 0.5 * mp.target_us], 1)  # read at the targets, then all halved
    dep = _deployment(mp, g)
    anet = convert(net, None, cfg)
    load_conductances(anet, dep, g[:, 0], None)
    for m, mi in zip(anet.layers, ideal.layers, strict=True):
        for (w,), (wi,) in zip(m._w, mi._w, strict=True):
            torch.testing.assert_close(w, wi, rtol=0, atol=1e-6)
        assert m.alpha == 1.0
    load_conductances(anet, dep, g[:, 1], g[:, 0])
    for m, mi in zip(anet.layers, ideal.layers, strict=True):
        assert m.alpha == pytest.approx(2.0)  # Σ G at the first read / Σ G now
        torch.testing.assert_close(m._w[0][0] * m.alpha, mi._w[0][0], rtol=0, atol=1e-6)
    assert measured_config({"scales": "learned"}).scales == "learned"


def test_learned_scales_of_a_trained_network_are_its_mapping():
    net = build("digits-mlp-small", 0)
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):
            m.register_buffer("out_scale", 2 * m.weight.detach().abs().amax(1))
            m.register_buffer("in_range", torch.tensor(3.0))
    cfg = mapping_config(net)
    assert (cfg.scales, cfg.input_range) == ("learned", "learned")
    _, mp = map_network(net, cfg, G_MAX)
    assert mp.target_us.max() == pytest.approx(G_MAX / 2)  # |w| ≤ out_scale / 2
    np.testing.assert_allclose(mp.input_range, [3.0, 3.0])


@pytest.mark.parametrize(("args", "says"), [
    (("--chip", "sim:pcm?devices=1000"), "does not fit on the chip: its 2 analog layers need 2,368 devices"),
    (("--verify", "tolerance_us=-1"), "tolerance_us"),
    (("--verify", "init_reset_ua=600"), "init_reset_ua"),
    (("--verify", "no_such=1"), "no field 'no_such'"),
])
def test_refusals_are_one_sentence_and_write_nothing(tmp_path, args, says):
    out = tmp_path / "d.h5"
    r = run_devmodel("deploy", "--chip", "sim:pcm?devices=4096", *NET, "--quiet", "--out", out, *args)
    assert r.returncode == 2 and says in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not out.exists() and not (tmp_path / "d.h5.resume").exists()


def _start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "devmodel", "deploy", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _same_tables(a, b) -> None:
    for table in ("reads", "devices", "trace"):
        for col in getattr(b, table):
            np.testing.assert_array_equal(getattr(a, table)[col], getattr(b, table)[col], err_msg=col)


def test_visa_deployment_equals_the_in_process_one_and_survives_sigkill(tmp_path):
    """Through `serve-chip` + `visa://` a deployment is value for value the in-process one (same
    seed). Killed with SIGKILL and resumed, it completes with no read lost or repeated: every
    device read once at every age, no earlier than that age, every device's last pulse as recorded
    equal to the chip's own, no verify pulse twice in the trace. Not value for value: a read whose
    answer was on the wire at the kill is read again (docs/reliability.md), later and with new noise."""
    sim = tmp_path / "sim.h5"
    r = run_devmodel("deploy", "--chip", "sim:pcm?devices=4096&seed=4", *NET, "--quiet", "--out", sim,
                     "--verify", "n_verify_reads=3")
    assert r.returncode == 0, r.stderr
    same, visa = tmp_path / "same.h5", tmp_path / "visa.h5"
    commits = ("--checkpoint-interval", "0", "--durability", "process", "--quiet")
    with ServerProcess("--technology", "pcm", "--seed", "4", "--devices", "4096") as srv:
        r = run_devmodel("deploy", "--chip", f"visa://{srv.resource}", *NET, "--verify", "n_verify_reads=3",
                         "--out", same, *commits, timeout_s=300)
    assert r.returncode == 0, r.stderr
    _same_tables(read_session(same), read_session(sim))
    with ServerProcess("--technology", "pcm", "--seed", "4", "--devices", "4096") as srv:
        proc = _start("--chip", f"visa://{srv.resource}", *NET, "--verify", "n_verify_reads=3", "--out", visa,
                      *commits)
        try:
            t0 = time.monotonic()
            while time.monotonic() - t0 < 60 and proc.poll() is None and committed_seq(visa) < 4:
                time.sleep(0.005)
            assert proc.poll() is None, "the deployment ended before it could be killed"
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.communicate(timeout=30)
        with h5py.File(visa, "r") as f:
            assert f.attrs["status"] == "running" and "deployment" in f
        r = run_devmodel("deploy", "--resume", visa, "--downtime", "paused", "--quiet", timeout_s=300)
    assert r.returncode == 0, r.stderr
    a = read_session(visa)
    assert a.status == "complete" and a.config["verify"]["n_verify_reads"] == 3
    ages = np.array([21.0, 200.0, 3620.0])
    key = a.reads["device"].astype(np.int64) * 8 + np.searchsorted(ages, a.reads["nominal_age_s"])
    assert np.unique(key).size == key.size == 3 * a.n_devices  # every device at every age, once
    assert np.all(a.reads["age_s"] >= a.reads["nominal_age_s"] * (1 - 1e-9))
    truth = a.ground_truth["devices"]
    ok = truth["defect"] == 0  # stuck devices ignore pulses: the chip does not date them
    np.testing.assert_allclose(a.devices["t_last_pulse_s"][ok], truth["t_pulse_s"][ok], rtol=0, atol=1e-5)
    trace = a.trace["device"].astype(np.int64) * 1000 + a.trace["iteration"]
    assert np.unique(trace).size == trace.size  # no verify pulse twice
    with h5py.File(visa, "r") as f, h5py.File(sim, "r") as g:
        for name in ("weight_index", "sign", "target_us", "state_dict"):
            np.testing.assert_array_equal(f["deployment"][name][()], g["deployment"][name][()])
        assert f["gaps/reason"].shape == (1,)
    info = run_devmodel("info", visa)
    assert info.returncode == 0 and "deployment: network digits-mlp-small" in info.stdout
    assert "0-2047" in info.stdout.replace("–", "-")
    ev = run_devmodel("evaluate", "--deployment", visa, "--card", "published:pcm", "--trials", "3", "--quiet")
    assert ev.returncode == 0, ev.stderr
    assert "measured inside the interval at" in ev.stdout and ev.stdout.count("µS") >= 1
    ev = run_devmodel("evaluate", "--deployment", visa, "--card", "published:pcm", "--network", "digits-cnn",
                      "--quiet")
    assert ev.returncode == 2 and ev.stderr.strip() == (
        "devmodel: error: --network does not apply with --deployment: the deployment file fixes the network, "
        "its mapping and the read ages")


def test_verify_settings_from_station_and_options_are_recorded_and_checked(tmp_path):
    """Part 4: the station file's verify: and then --verify apply to characterize (and deploy, above),
    are recorded in /config, and an unknown station field is one sentence naming it."""
    station = tmp_path / "station.yaml"
    station.write_text("station: 1\nverify:\n  tolerance_us: 0.5\n  n_verify_reads: 4\n")
    out = tmp_path / "s.h5"
    r = run_devmodel("characterize", "--chip", "sim:pcm?devices=64", "--devices", "4", "--levels", "5,10",
                     "--schedule", "20", "--burst-devices", "0", "--station", station, "--verify",
                     "n_verify_reads=3", "--quiet", "--durability", "off", "--out", out)
    assert r.returncode == 0, r.stderr
    verify = read_session(out).config["verify"]
    assert (verify["tolerance_us"], verify["n_verify_reads"]) == (0.5, 3)
    station.write_text("station: 1\nverify:\n  tolerance: 0.5\n")
    r = run_devmodel("characterize", "--chip", "sim:pcm?devices=64", "--devices", "4", "--station", station,
                     "--quiet", "--out", tmp_path / "t.h5")
    assert r.returncode == 2 and "verify.tolerance: pcm program-and-verify has no such setting" in r.stderr
    assert not (tmp_path / "t.h5").exists()


def test_unused_devices_are_reset_to_hrs_and_read_once():
    """A target of 0 (the unused device of a pair): PCM one RESET, ReRAM the initial and then the
    full RESET (the initial alone left a median of 2.3 µS); both read once, converged only within
    the tolerance of 0, so a stuck device or a floor above the tolerance shows."""
    from devmodel.chips import open_chip
    from devmodel.procedures.program_verify import program_verify
    from devmodel.store.schema import StopReason

    # PCM's RESET level (≤ 0.1 µS) is well within its 0.25 µS tolerance: only stuck devices fail;
    # ReRAM's HRS floor (median 0.5 µS) lies above its 0.4 µS tolerance: most are flagged, and the
    # prediction of evaluate --deployment takes them at their reading rather than at 0
    for url, pulses, floor_us, failed in (("sim:pcm?devices=400&seed=2", 1, 0.1, (1, 0.2)),
                                          ("sim:reram?devices=400&seed=2", 2, 1.0, (0.3, 0.9))):
        chip = open_chip(url)
        target = np.where(np.arange(400) % 2 == 0, 0.0, 8.0)
        res = program_verify(chip, np.arange(400), target)
        z = target == 0
        assert np.all(res.pulses[z] == pulses) and np.all(res.stop_reason[z] == StopReason.RESET_ONLY)
        assert np.isfinite(res.g_verify_us[z]).all() and np.median(res.g_verify_us[z]) < floor_us
        tol = res.config["tolerance_us"]
        np.testing.assert_array_equal(res.converged[z], np.abs(res.g_verify_us[z]) <= tol)
        assert failed[0] <= (~res.converged[z]).sum() <= failed[1] * z.sum()


def test_deploy_rehearses_instrument_faults_like_characterize(tmp_path):
    """--faults/--retries (shared with characterize) on a visa:// deployment: with 1 % of commands
    timing out, dropped, garbled or cut short the deployment completes, every device read once at
    every age, and the faults and retries are counted in the file and in one line on stderr; on a
    sim: chip the options are refused in one sentence before anything is written."""
    out = tmp_path / "faulty.h5"
    with ServerProcess("--technology", "pcm", "--seed", "4", "--devices", "4096") as srv:
        r = run_devmodel("deploy", "--chip", f"visa://{srv.resource}", *NET, "--quiet", "--out", out,
                         "--faults", "timeout=0.003,drop=0.003,garble=0.002,short=0.002,seed=3",
                         "--retries", "8", "--durability", "off", timeout_s=300)
    assert r.returncode == 0, r.stderr
    assert "operations retried after faults" in r.stderr
    s = read_session(out)
    assert s.status == "complete" and int(s.attrs["instrument_retries"]) > 0
    key = s.reads["device"].astype(np.int64) * 8 + np.searchsorted([21, 200, 3620], s.reads["nominal_age_s"])
    assert np.unique(key).size == key.size == 3 * s.n_devices
    bad = tmp_path / "bad.h5"
    r = run_devmodel("deploy", "--chip", "sim:pcm?devices=4096", *NET, "--quiet", "--out", bad,
                     "--retries", "3")
    assert r.returncode == 2 and "--faults and --retries apply to visa:// chips" in r.stderr
    assert r.stderr.count("\n") == 1 and not bad.exists()
