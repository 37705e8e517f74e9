"""The pulse-response emulator: agreement with the live chip on the recorded algorithm, the same
direction of change for a retuned tolerance, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from devmodel.array import DeviceArray, PulseKind
from devmodel.chips import open_chip
from devmodel.errors import ChipURLError
from devmodel.replay.emulator import EmulatedChip, fit_response_model
from devmodel.replay.procedures import (
    ConvergenceStats,
    emulate_program_verify,
    recorded_stats,
    verify_config_of,
)
from devmodel.replay.record import ReplayError

CALIBRATION = Path(__file__).resolve().parents[1] / "calibration_data"
PCM_URL = "sim:pcm?devices=65536&seed=7"  # the chip of the pcm_session fixture (tests/conftest.py)


def _stats(res) -> ConvergenceStats:
    return ConvergenceStats.of(res.target_us, res.converged, res.iterations, res.pulses)


@pytest.fixture(scope="module")
def pcm_model(pcm_session):
    return fit_response_model(pcm_session.path)


def _emulated(session, model, tolerance_us=None, seed=0) -> ConvergenceStats:
    over = {} if tolerance_us is None else {"tolerance_us": str(tolerance_us)}
    cfg = verify_config_of(session, over)
    chip = EmulatedChip(session.path, seed, model)
    d = session.devices
    return _stats(emulate_program_verify(chip, d["address"], d["target_us"], cfg))


def _live(session, url, tolerance_us) -> ConvergenceStats:
    cfg = verify_config_of(session, {"tolerance_us": str(tolerance_us)})
    d = session.devices
    return _stats(emulate_program_verify(open_chip(url), d["address"], d["target_us"], cfg))


def test_emulator_is_a_device_array(pcm_session, pcm_model):
    chip = EmulatedChip(pcm_session.path, 0, pcm_model)
    assert isinstance(chip, DeviceArray) and chip.info.technology == "pcm"
    assert [g.kind for g in pcm_model.groups] == [PulseKind.RESET]
    # the recorded stuck devices are found (ground truth: defect 1 or 2), few others
    stuck = pcm_model.unresponsive
    defect = pcm_session.ground_truth["devices"]["defect"]
    assert stuck[defect > 0].mean() > 0.9 and stuck[defect == 0].mean() < 0.001


@pytest.mark.parametrize("seed", [0, 1])
def test_recorded_algorithm_agrees_with_the_live_session(pcm_session, pcm_model, seed):
    """Acceptance: 13 levels × 2000 PCM devices, the recorded P&V (±0.25 µS) on emulate: — converged
    fraction within 1 point, median iterations within 10 % of the live session."""
    live = recorded_stats(pcm_session)
    emu = _emulated(pcm_session, pcm_model, seed=seed)
    assert abs(emu.converged_fraction - live.converged_fraction) <= 0.01, (emu, live)
    assert abs(emu.median_iterations - live.median_iterations) <= 0.1 * live.median_iterations, (emu, live)
    assert abs(emu.mean_iterations - live.mean_iterations) <= 0.1 * live.mean_iterations, (emu, live)


@pytest.mark.parametrize("tolerance_us", [0.4, 0.15])
def test_changed_tolerance_moves_emulator_and_live_chip_the_same_way(pcm_session, pcm_model,
                                                                     tolerance_us):
    """Acceptance: a retuned tolerance changes converged fraction and iterations in the same direction
    on the emulator (built from the ±0.25 µS session) and on the live chip the session came from."""
    live0, emu0 = recorded_stats(pcm_session), _emulated(pcm_session, pcm_model)
    live1, emu1 = _live(pcm_session, PCM_URL, tolerance_us), _emulated(pcm_session, pcm_model, tolerance_us)
    for attr in ("median_iterations", "mean_iterations", "converged_fraction"):
        d_live = getattr(live1, attr) - getattr(live0, attr)
        d_emu = getattr(emu1, attr) - getattr(emu0, attr)
        assert np.sign(d_live) == np.sign(d_emu) != 0, (attr, live0, live1, emu0, emu1)
    # and not only the direction: the retuned statistics agree as the recorded ones do
    assert abs(emu1.converged_fraction - live1.converged_fraction) <= 0.01, (emu1, live1)
    assert abs(emu1.median_iterations - live1.median_iterations) <= 0.1 * live1.median_iterations


def test_reram_emulator_on_the_calibration_sample():
    """ReRAM (SET and RESET depend on the state before the pulse): the recorded write-verify on the
    3,900-device sample agrees with the record, and a looser tolerance converges faster on both."""
    from devmodel.store import read_session

    s = read_session(CALIBRATION / "reram_sample.h5")
    model = fit_response_model(s.path)
    assert {g.kind for g in model.groups} == {PulseKind.SET, PulseKind.RESET}
    # the data say the state before matters: at every SET voltage, and for the gentle RESETs
    set_, reset = sorted(model.groups, key=lambda g: g.kind)
    assert set_.history.all() and reset.history[reset.a_knots < 0.95].all()
    live, emu = recorded_stats(s), _emulated(s, model)
    assert abs(emu.converged_fraction - live.converged_fraction) <= 0.01, (emu, live)
    assert abs(emu.median_iterations - live.median_iterations) <= 0.1 * live.median_iterations
    loose = _emulated(s, model, 0.6)
    assert loose.mean_iterations < emu.mean_iterations


def test_pcm_partial_reset_is_modelled_history_free(pcm_model):
    g = pcm_model.groups[0]
    mid = (g.a_knots > 200) & (g.a_knots < 350)
    assert not g.history[mid].any()


def test_reads_centre_noise_over_the_verify_window(pcm_session, pcm_model):
    chip = EmulatedChip(pcm_session.path, 0, pcm_model)
    a = np.arange(100)
    rb = chip.read(a, 5)
    assert np.allclose(rb.g_us.mean(axis=1), chip.state_us[a])
    assert rb.g_us.std() > 0  # single reads carry the recorded read noise
    one = chip.read(a, 1).g_us[:, 0]
    assert not np.allclose(one, chip.state_us[a])


def test_init_pulses_restore_the_recorded_initial_state(pcm_session, pcm_model):
    chip = EmulatedChip(pcm_session.path, 0, pcm_model)
    a = np.arange(50)
    chip.pulse(a, PulseKind.RESET, 250.0, 50.0)
    moved = chip.state_us[a].copy()
    chip.pulse(a, PulseKind.RESET, 450.0, 50.0)
    for amp in (160.0, 140.0, 120.0, 100.0, 80.0, 60.0):
        chip.pulse(a, PulseKind.SET, amp, 1000.0)
    assert np.array_equal(chip.state_us[a], chip.post_init[a])
    assert not np.array_equal(moved, chip.post_init[a])


def test_unrecorded_pulses_are_refused(pcm_session, pcm_model):
    chip = EmulatedChip(pcm_session.path, 0, pcm_model)
    with pytest.raises(ReplayError, match="records no SET pulses of 500 ns.*recorded: RESET 50 ns"):
        chip.pulse(np.arange(3), PulseKind.SET, 100.0, 500.0)


def test_same_seed_same_emulation(pcm_session, pcm_model):
    a = _emulated(pcm_session, pcm_model, seed=3)
    b = _emulated(pcm_session, pcm_model, seed=3)
    assert a == b


@pytest.mark.parametrize("query, phrase", [("seed=x", "not an integer"), ("seed=-1", "must be ≥ 0"),
                                           ("policy=exact", "unknown emulate option")])
def test_url_options(query, phrase):
    with pytest.raises(ChipURLError, match=phrase):
        open_chip(f"emulate:{CALIBRATION / 'pcm_sample.h5'}?{query}")
