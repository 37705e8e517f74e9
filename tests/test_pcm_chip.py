"""The simulated PCM chip: programming regimes, drift statistics, defects, limits, determinism."""

import numpy as np
import pytest
from scipy import stats

from devmodel.array import PulseKind
from devmodel.chips import open_chip
from devmodel.errors import ChipURLError, LimitError
from devmodel.technologies.pcm.physics import DEFECT_NONE, SimulatedPCM
from devmodel.technologies.pcm.published import PcmStatModel

N = 5000


def _set_chip(seed=3):
    chip = SimulatedPCM(n_devices=N, seed=seed)
    a = np.flatnonzero(chip.defect == DEFECT_NONE)
    chip.pulse(a, PulseKind.RESET, 450.0, 50.0)
    for amp in (160, 140, 120, 100, 80, 60):
        chip.pulse(a, PulseKind.SET, amp, 1000.0)
    return chip, a


def test_set_staircase_crystallises_and_full_reset_amorphises():
    chip, a = _set_chip()
    assert np.median(chip.g20[a]) == pytest.approx(35.0, rel=0.05)
    chip.pulse(a, PulseKind.RESET, 480.0, 50.0)
    # docs/physics.md: at or above full RESET, G ≈ 0.1 µS or less
    assert np.percentile(chip.g20[a], 95) <= 0.12


def test_partial_reset_falls_monotonically_with_current_and_is_history_free():
    chip, a = _set_chip()
    medians = []
    for amp in (150.0, 200.0, 250.0, 300.0, 350.0):
        chip.pulse(a, PulseKind.RESET, amp, 50.0)
        medians.append(np.median(chip.g20[a]))
    assert np.all(np.diff(medians) < 0)
    # the melt-quench erases history: 250 µA after 350 µA ≈ 250 µA after SET (KS, 2 × ~4950)
    after_low = chip.g20[a].copy()
    chip.pulse(a, PulseKind.RESET, 250.0, 50.0)
    from_reset = chip.g20[a].copy()
    chip2, a2 = _set_chip(seed=3)
    chip2.pulse(a2, PulseKind.RESET, 250.0, 50.0)
    assert stats.ks_2samp(from_reset, chip2.g20[a2]).pvalue > 0.01
    assert np.median(after_low) < np.median(from_reset)
    # cycle-to-cycle spread at one amplitude is docs/physics.md's 10–20 % in the mid range
    rel = np.std(np.log(from_reset))
    assert 0.05 < rel < 0.3


def test_sub_melt_pulses_creep_up_cumulatively_and_noisily():
    chip, a = _set_chip()
    chip.pulse(a, PulseKind.RESET, 300.0, 50.0)
    g = [chip.g20[a].copy()]
    for _ in range(5):
        chip.pulse(a, PulseKind.RESET, 75.0, 50.0)  # below the ~90 µA melting threshold
        g.append(chip.g20[a].copy())
    steps = np.diff(np.array(g), axis=0)
    assert np.all(steps >= 0)
    assert np.all(np.median(g, axis=1)[1:] > np.median(g, axis=1)[:-1])
    # noisy: σ of ΔG comparable to its mean
    step = steps.ravel()
    assert 0.5 < step.std() / step.mean() < 1.5


def test_drift_exponent_follows_published_distribution_at_each_pulse():
    chip, a = _set_chip()
    chip.pulse(a, PulseKind.RESET, 330.0, 50.0)
    st = PcmStatModel()
    x = chip.g20[a] / 25.0
    z = (chip.nu[a] - st.nu_mean(x)) / st.nu_std(x)
    # |N(μ, σ)| folding is negligible where μ/σ > 3 (x > 0.3); compare with N(0, 1) by KS
    sel = x > 0.3
    assert stats.kstest(z[sel], "norm").pvalue > 0.01


def test_read_is_drift_times_one_plus_flicker():
    chip, a = _set_chip()
    chip.pulse(a, PulseKind.RESET, 250.0, 50.0)
    chip.wait(86400.0)
    rb = chip.read(a)
    g_drift = chip.drift_free_g_us(a, rb.t_s[:, 0])
    rel = (rb.g_us[:, 0] - g_drift) / (g_drift * chip.q_s[a])
    assert rel.std() == pytest.approx(np.sqrt(chip.bank.variance(86400.0)), rel=0.05)
    assert abs(rel.mean()) < 0.2


def test_defect_fraction_and_stuck_devices_ignore_pulses():
    chip = SimulatedPCM(n_devices=200_000, seed=1)
    frac = np.mean(chip.defect != DEFECT_NONE)
    assert 0.006 < frac < 0.010  # docs/physics.md: ~0.5–1 % stuck
    bad = np.flatnonzero(chip.defect != DEFECT_NONE)[:50]
    before = chip.g20[bad].copy()
    chip.pulse(bad, PulseKind.RESET, 450.0, 50.0)
    np.testing.assert_array_equal(chip.g20[bad], before)


def test_virtual_clock_charges_realistic_time_and_jumps_on_wait():
    chip = SimulatedPCM(n_devices=1000, seed=0)
    t0 = chip.now_s()
    chip.read(np.arange(1000), 5)
    spent = chip.now_s() - t0
    assert 5e-3 < spent < 5e-2  # 5000 reads of order µs each
    chip.wait(86400.0)
    assert chip.now_s() - t0 == pytest.approx(86400.0 + spent)


def test_limits_are_refused_before_anything_happens():
    chip = SimulatedPCM(n_devices=100, seed=0)
    g = chip.g20.copy()
    with pytest.raises(LimitError, match="exceeds the chip limit"):
        chip.pulse(np.arange(10), PulseKind.RESET, 600.0, 50.0)
    with pytest.raises(LimitError, match="outside the chip's range"):
        chip.pulse(np.array([5, 100]), PulseKind.RESET, 100.0, 50.0)
    with pytest.raises(LimitError, match="width"):
        chip.pulse(np.arange(3), PulseKind.SET, 100.0, 1e6)
    np.testing.assert_array_equal(chip.g20, g)


def test_same_seed_same_chip_and_reads():
    def run(seed):
        chip = open_chip(f"sim:pcm?devices=2000&seed={seed}")
        chip.pulse(np.arange(2000), PulseKind.RESET, 250.0, 50.0)
        return chip.read(np.arange(2000), 3).g_us
    np.testing.assert_array_equal(run(4), run(4))
    assert not np.array_equal(run(4), run(5))


def test_chip_url_options_set_ground_truth():
    chip = open_chip("sim:pcm?devices=10&seed=2&c2c_spread=0.1&stat.q_s.amp=0.01")
    assert chip.info.n_devices == 10 and chip.seed == 2
    assert chip.physics.c2c_spread == 0.1 and chip.physics.stat.q_s.amp == 0.01


@pytest.mark.parametrize("url, msg", [
    ("pcm", "no scheme"),
    ("sim:flash", "unknown simulated technology"),
    ("ftp:x", "unknown chip URL scheme"),
    ("sim:pcm?devices=abc", "not an integer"),
    ("sim:pcm?devices=0", "outside"),
    ("sim:pcm?wibble=3", "unknown parameter"),
    ("sim:pcm?c2c_spread=x", "not a number"),
])
def test_bad_chip_urls_say_what_is_wrong(url, msg):
    with pytest.raises(ChipURLError, match=msg):
        open_chip(url)
