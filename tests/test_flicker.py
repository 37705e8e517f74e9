"""The 1/f process: variance, variogram and correlations against the closed forms of docs/physics.md."""

import numpy as np
import pytest

from devmodel.physics.flicker import FlickerBank

N = 20_000  # devices; SE of a variance estimate is var·sqrt(2/N) = 1 %


def _fresh(n=N):
    bank = FlickerBank(n)
    return bank, np.arange(n), np.random.default_rng(5)


@pytest.mark.parametrize("age", [1e-5, 1e-2, 20.0, 1e3, 86400.0, 3.15e7])
def test_variance_after_reset_follows_log_law(age):
    bank, idx, rng = _fresh()
    eta = bank.sample(idx, np.full(N, age), rng)
    expected = np.log(age / (2 * 250e-9))  # docs/physics.md: Q_s²·ln(t/(2 t_read)) in units of Q_s²
    assert eta.var() == pytest.approx(expected, rel=0.04)
    assert abs(eta.mean()) < 4 * np.sqrt(expected / N)


def test_drift_schedule_reads_have_the_ou_covariance():
    bank, idx, rng = _fresh()
    ages = [20.0, 60.0, 200.0, 600.0, 3600.0, 10800.0, 86400.0]
    E = np.array([bank.sample(idx, np.full(N, a), rng) for a in ages])
    for i, a in enumerate(ages):
        assert E[i].var() == pytest.approx(bank.variance(a), rel=0.04)
    lam, v = bank.lam, bank.var_k
    for i, j in [(0, 1), (3, 4), (5, 6)]:
        a1, a2 = ages[i], ages[j]
        cov = (v * np.exp(-lam * (a2 - a1)) * -np.expm1(-2 * lam * a1)).sum()
        # SE of a covariance ≈ sqrt(var1·var2/N) ≈ 0.15
        assert np.mean(E[i] * E[j]) == pytest.approx(cov, abs=0.6)



def test_exact_schedule_law_matches_the_stepped_bank():
    """``sample_fresh`` (the drift-fit Monte Carlo's draw) has the covariance the stepped bank
    produces at a read schedule, entry by entry within 5 SE (SE ≈ sqrt((C_ii·C_jj + C_ij²)/N))."""
    bank, idx, rng = _fresh()
    ages = np.array([20.0, 60.0, 200.0, 600.0, 3600.0, 10800.0, 86400.0])
    C = bank.covariance(ages)
    np.testing.assert_allclose(np.diag(C), bank.variance(ages), rtol=1e-12)
    se = np.sqrt((np.outer(np.diag(C), np.diag(C)) + C**2) / N)
    stepped = np.array([bank.sample(idx, np.full(N, a), rng) for a in ages])
    fresh = FlickerBank(1).sample_fresh(N, ages, np.random.default_rng(6)).T
    for E in (stepped, fresh):
        assert np.all(np.abs(np.cov(E) - C) < 5 * se)
    assert np.abs(np.cov(fresh) - np.cov(stepped)).max() > 0  # two draws, not one path

def test_burst_variogram_slope_is_two_q_squared():
    """docs/physics.md: D(τ) regressed on ln τ has slope 2·Q_s² (here Q_s = 1)."""
    bank, idx, rng = _fresh(4000)
    B = np.array([bank.sample(idx, np.full(4000, 1000.0 + k), rng) for k in range(256)])
    taus = np.array([1, 2, 4, 8, 16, 32, 64])
    D = np.array([np.mean((B[t:] - B[:-t]) ** 2) for t in taus])
    slope = np.polyfit(np.log(taus), D, 1)[0]
    assert slope == pytest.approx(2.0, abs=0.1)


def test_consecutive_verify_reads_are_correlated_as_theory():
    """µs-spaced reads share everything but the fastest components."""
    bank, idx, rng = _fresh()
    age, dt = 0.1, 2e-6
    V = bank.sample_run(idx, np.full(N, age), 5, dt, rng)
    lam, v = bank.lam, bank.var_k
    diff_var = 2 * (v * -np.expm1(-lam * dt) * -np.expm1(-2 * lam * age)).sum()
    assert np.var(V[:, 1] - V[:, 0]) == pytest.approx(diff_var, rel=0.05)
    assert V[:, 4].var() == pytest.approx(bank.variance(age), rel=0.04)
    # a later read after the run continues the same process
    later = bank.sample(idx, np.full(N, 20.0), rng)
    assert later.var() == pytest.approx(bank.variance(20.0), rel=0.04)


def test_reset_restarts_the_process():
    bank, idx, rng = _fresh()
    bank.sample(idx, np.full(N, 1e4), rng)
    bank.reset(idx, 2e4)
    eta = bank.sample(idx, np.full(N, 2e4 + 1e-3), rng)
    assert eta.var() == pytest.approx(bank.variance(1e-3), rel=0.04)


def test_same_seed_same_noise():
    a = FlickerBank(100).sample(np.arange(100), np.full(100, 5.0), np.random.default_rng(1))
    b = FlickerBank(100).sample(np.arange(100), np.full(100, 5.0), np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
