"""Retention against temperature from bake pairs (real-data issue, part 5): the Arrhenius fit
recovers a known activation energy from simulated pairs, refuses to call a threshold-like rise
Arrhenius, and the command reads a lab's header-less table."""

import gzip

import numpy as np
import pytest
from helpers import run_devmodel

from devmodel.fit.bake import K_B_EV_PER_K, bake_pairs, fit_bake

TEMPS_C = (100.0, 140.0, 180.0, 220.0, 260.0)


def _pairs(sigma_of_t, n=3000, seed=0):
    rng = np.random.default_rng(seed)
    before, after, temp = [], [], []
    for t in TEMPS_C:
        g0 = rng.uniform(10, 90, n)
        before.append(g0)
        after.append(g0 + sigma_of_t(t) * rng.standard_normal(n))
        temp.append(np.full(n, t))
    return np.concatenate(before), np.concatenate(after), np.concatenate(temp)


def test_a_known_activation_energy_is_recovered():
    ea = 0.25
    b, a, t = _pairs(lambda tc: np.sqrt(4e3 * np.exp(-ea / (K_B_EV_PER_K * (tc + 273.15)))))
    for band in fit_bake(b, a, t, 100.0, bands=2):
        assert abs(band.ea_ev - ea) < 3 * band.ea_se_ev, (band.ea_ev, band.ea_se_ev)
        assert band.arrhenius


def test_a_threshold_is_not_called_arrhenius():
    b, a, t = _pairs(lambda tc: 2.0 if tc < 200 else 12.0)
    assert not any(band.arrhenius for band in fit_bake(b, a, t, 100.0, bands=2))


def test_pairs_take_the_first_and_last_read_per_device_and_temperature():
    dev = np.array([1, 1, 2, 2, 1, 1, 3])
    time = np.array([0.0, 10, 0, 12, 0, 11, 0])
    g = np.array([5.0, 4, 7, 6, 9, 8, 3])
    temp = np.array([100.0, 100, 100, 100, 140, 140, 140])
    before, after, t = bake_pairs(dev, time, g, temp)
    assert before.tolist() == [5, 9, 7] and after.tolist() == [4, 8, 6] and t.tolist() == [100, 140, 100]


def test_bake_command_on_a_lab_table(tmp_path):
    b, a, t = _pairs(lambda tc: 1 + tc / 100, n=400, seed=2)
    dev = np.arange(b.size)
    rows = [f"{d}\t0\t1\t{x * 1e-6:.9e}\t{tc:g}\n{d}\t3600\t1\t{y * 1e-6:.9e}\t{tc:g}\n"
            for d, x, y, tc in zip(dev, b, a, t, strict=True)]
    src = tmp_path / "bake.tsv.gz"
    src.write_bytes(gzip.compress("".join(rows).encode()))
    r = run_devmodel("bake", src, "--g-max-us", "100", "--bands", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("E_a =") == 2 and "260 °C" in r.stdout


@pytest.mark.parametrize("text, phrase", [
    ("1\t0\t1\t5e-6\n", "line 1: 4 cells where --columns has 5"),
    ("1\t0\t1\tx\t100\n", "column g_us: 'x' is not a number"),
])
def test_bad_bake_tables_fail_in_one_sentence(tmp_path, text, phrase):
    src = tmp_path / "bad.tsv"
    src.write_text(text)
    r = run_devmodel("bake", src, "--g-max-us", "100")
    assert r.returncode == 2 and phrase in r.stderr and "Traceback" not in r.stderr
