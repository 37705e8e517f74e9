"""Program-and-verify: convergence, bounds, per-device records and the pulse trace."""

import numpy as np
import pytest

from devmodel.array import PulseKind
from devmodel.errors import DevmodelError
from devmodel.procedures.program_verify import program_verify
from devmodel.store import StopReason
from devmodel.technologies.pcm.physics import DEFECT_NONE, SimulatedPCM
from devmodel.technologies.pcm.verify import PcmVerifyConfig
from devmodel.technologies.reram.physics import SimulatedReRAM
from devmodel.technologies.reram.verify import ReramVerifyConfig

program_verify_pcm = program_verify_reram = program_verify  # the chip's technology picks the loop

LEVELS = np.array([0.5, 1, 2, 3, 5, 7.5, 10, 12.5, 15, 17.5, 20, 22.5, 25.0])


class RecordingChip:
    """Wraps a chip and records every pulse, to check what the loop sends."""

    def __init__(self, chip):
        self.inner, self.info, self.pulses = chip, chip.info, []

    def pulse(self, addresses, kind, amplitude, width_ns, compliance_ua=None):
        self.pulses.append((np.array(addresses), kind, np.broadcast_to(amplitude, len(addresses))))
        return self.inner.pulse(addresses, kind, amplitude, width_ns, compliance_ua)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_pcm_converges_records_and_respects_amplitude_bounds():
    chip = RecordingChip(SimulatedPCM(n_devices=13 * 300, seed=2))
    addr = np.arange(13 * 300)
    tgt = LEVELS[addr % 13]
    res = program_verify_pcm(chip, addr, tgt)
    ok = chip.inner.defect[addr] == DEFECT_NONE
    assert res.converged[ok].mean() >= 0.98
    conv = res.converged
    assert np.all(np.abs(res.g_verify_us[conv] - tgt[conv]) <= 0.25)
    assert np.all(res.iterations <= 55) and np.all(res.stop_reason >= 0)
    assert np.all(res.stop_reason[conv] == StopReason.CONVERGED)
    assert np.all(np.isfinite(res.t_last_pulse_s))
    # init: one 450 µA RESET, six SET pulses 160 → 60 µA; then RESET pulses within 80–400 µA
    kinds = [p[1] for p in chip.pulses]
    assert kinds[:7] == [PulseKind.RESET] + [PulseKind.SET] * 6
    assert chip.pulses[0][2][0] == 450.0
    assert [p[2][0] for p in chip.pulses[1:7]] == [160, 140, 120, 100, 80, 60]
    verify_amps = np.concatenate([p[2] for p in chip.pulses[7:]])
    assert verify_amps.min() >= 80 and verify_amps.max() <= 400
    assert res.pulses.sum() == sum(len(p[0]) for p in chip.pulses)


def test_trace_links_each_pulse_to_the_readings_around_it():
    chip = SimulatedPCM(n_devices=500, seed=5)
    res = program_verify_pcm(chip, np.arange(500), np.full(500, 10.0))
    tr = res.trace
    assert len(tr) == res.pulses.sum() - 7 * 500  # verify-driven pulses only
    for dev in np.flatnonzero(res.pulses > 9)[:20]:
        rows = np.flatnonzero(tr.row == dev)
        assert np.all(np.diff(tr.iteration[rows]) == 1)
        np.testing.assert_array_equal(tr.g_after_us[rows[:-1]], tr.g_before_us[rows[1:]])
        assert tr.g_after_us[rows[-1]] == res.g_verify_us[dev]


def test_zero_targets_get_one_reset_pulse_only():
    chip = SimulatedPCM(n_devices=100, seed=1)
    tgt = np.where(np.arange(100) % 2 == 0, 0.0, 8.0)
    res = program_verify_pcm(chip, np.arange(100), tgt)
    z = tgt == 0
    assert np.all(res.pulses[z] == 1)
    assert np.all(res.stop_reason[z] == StopReason.RESET_ONLY)
    ok = z & (chip.defect[:100] == DEFECT_NONE)
    assert np.median(chip.g20[ok]) < 0.1 and np.percentile(chip.g20[ok], 90) < 0.2


def test_loops_are_bounded_by_iterations_and_pulses():
    chip = SimulatedPCM(n_devices=200, seed=1)
    cfg = PcmVerifyConfig(tolerance_us=1e-4, max_iterations=7)
    res = program_verify_pcm(chip, np.arange(200), np.full(200, 12.0), cfg)
    assert res.iterations.max() == 7
    assert np.all(res.stop_reason[~res.converged] == StopReason.MAX_ITERATIONS)
    cfg = PcmVerifyConfig(tolerance_us=1e-4, max_pulses_per_device=10)
    res = program_verify_pcm(chip, np.arange(200), np.full(200, 12.0), cfg)
    assert res.pulses.max() <= 10
    assert np.all(res.stop_reason[~res.converged] == StopReason.PULSE_LIMIT)
    cfg = PcmVerifyConfig(tolerance_us=1e-4, max_duration_s=5.0)
    res = program_verify_pcm(chip, np.arange(200), np.full(200, 12.0), cfg)
    assert np.all(res.stop_reason[~res.converged] == StopReason.TIME_LIMIT)
    # wall time bounds the loop too (a virtual clock need not advance): one iteration, then stop
    cfg = PcmVerifyConfig(tolerance_us=1e-4, max_wall_s=1e-9)
    res = program_verify_pcm(chip, np.arange(200), np.full(200, 12.0), cfg)
    assert res.iterations.max() == 1
    assert np.all(res.stop_reason[~res.converged] == StopReason.TIME_LIMIT)


def test_reram_write_verify_converges_with_alternating_loops():
    chip = SimulatedReRAM(n_devices=13 * 200, seed=3)
    addr = np.arange(13 * 200)
    tgt = (np.arange(1, 14) * 3.0)[addr % 13]
    res = program_verify_reram(chip, addr, tgt)
    ok = chip.defect[addr] == 0
    assert res.converged[ok].mean() >= 0.98
    tr = res.trace
    assert set(np.unique(tr.kind)) == {int(PulseKind.SET), int(PulseKind.RESET)}
    sets = tr.kind == PulseKind.SET
    assert np.all(np.isfinite(tr.compliance_ua[sets])) and np.all(np.isnan(tr.compliance_ua[~sets]))
    cfg = ReramVerifyConfig()
    assert tr.amplitude[sets].max() <= cfg.set_max_v + 1e-9
    assert tr.amplitude[~sets].max() <= cfg.reset_max_v + 1e-9


def test_targets_are_validated():
    chip = SimulatedPCM(n_devices=10, seed=1)
    with pytest.raises(DevmodelError, match="g_max"):
        program_verify_pcm(chip, np.arange(3), np.array([1.0, 30.0, 2.0]))
    with pytest.raises(DevmodelError, match="one target"):
        program_verify_pcm(chip, np.arange(3), np.array([1.0, 2.0]))
