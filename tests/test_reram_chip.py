"""The simulated ReRAM chip: SET/RESET physics, relaxation without mean drift, read noise."""

import numpy as np
import pytest

from devmodel.array import PulseKind
from devmodel.technologies.reram.physics import DEFECT_NONE, ReramPhysics, SimulatedReRAM

N = 5000


def _chip():
    chip = SimulatedReRAM(n_devices=N, seed=4)
    return chip, np.flatnonzero(chip.defect == DEFECT_NONE)


def test_set_is_limited_by_compliance_and_reset_lowers_exponentially():
    chip, a = _chip()
    chip.pulse(a, PulseKind.RESET, 2.0, 100.0)
    low = np.median(chip.g_prog[a])
    assert low < 1.0
    chip.pulse(a, PulseKind.SET, 2.0, 100.0, compliance_ua=6.0)
    g_cc = 6.0 / chip.physics.v_lrs_v  # G ≈ I_cc / V
    assert np.median(chip.g_prog[a]) == pytest.approx(g_cc, rel=0.25)
    # lognormal spread per SET of 10–30 %
    assert 0.1 < np.std(np.log(chip.g_prog[a])) < 0.35
    g = chip.g_prog[a].copy()
    chip.pulse(a, PulseKind.RESET, 1.0, 100.0)
    mild = chip.g_prog[a].copy()
    chip.pulse(a, PulseKind.SET, 2.0, 100.0, compliance_ua=6.0)
    chip.pulse(a, PulseKind.RESET, 1.4, 100.0)
    strong = chip.g_prog[a].copy()
    assert np.median(strong) < np.median(mild) < np.median(g)


def test_relaxation_grows_in_log_time_saturates_and_has_no_mean_drift():
    chip, a = _chip()
    chip.pulse(a, PulseKind.RESET, 2.0, 100.0)
    t_end = chip.pulse(a, PulseKind.SET, 2.0, 100.0, compliance_ua=3.6)  # ~12 µS, x ≈ 0.3
    g0 = chip.g_prog[a].copy()
    spreads, means = [], []
    for age in (1.0, 100.0, 86400.0, 172800.0):
        chip.wait(max(0.0, t_end.max() + age - chip.now_s()))
        r = chip.read(a, 16).g_us.mean(1) - g0
        spreads.append(r.std())
        means.append(r.mean())
    assert spreads[0] < spreads[1] < spreads[2]
    assert spreads[3] == pytest.approx(spreads[2], rel=0.05)  # saturated by a day
    assert max(abs(m) for m in means) < 0.02 * 40  # no mean drift beyond 2 % of g_max
    p = ReramPhysics()
    x = np.median(g0) / 40
    expected_day = np.sqrt(p.relax_variance(np.array([x]), np.array([86400.0]))[0])
    assert spreads[2] == pytest.approx(expected_day, rel=0.15)


def test_read_noise_is_one_percent_of_g_max_and_conductance_independent():
    chip, a = _chip()
    r = chip.read(a, 32).g_us
    sd = r.std(axis=1, ddof=1)
    assert np.median(sd) == pytest.approx(0.4, rel=0.05)
    lo, hi = chip.g_prog[a] < 10, chip.g_prog[a] > 30
    assert np.median(sd[lo]) == pytest.approx(np.median(sd[hi]), rel=0.1)


def test_stuck_fraction():
    chip = SimulatedReRAM(n_devices=100_000, seed=0)
    assert 0.015 < np.mean(chip.defect != DEFECT_NONE) < 0.025
