"""The replay backend: recorded reads on the recorded clock, bit-for-bit re-runs, policies, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from devmodel.array import DeviceArray, PulseKind
from devmodel.chips import open_chip
from devmodel.errors import ChipURLError, DevmodelError, LimitError
from devmodel.fit.session import card_scalars, fit_session
from devmodel.replay.backend import ReplayChip
from devmodel.replay.procedures import finish_groups, replay_schedule
from devmodel.replay.record import ReplayError
from devmodel.store import SessionWriter, read_session

CALIBRATION = Path(__file__).resolve().parents[1] / "calibration_data"


def _replay(session, out: Path, chip: DeviceArray, procedures=("drift", "bursts"), schedule=None):
    with SessionWriter(out, technology=session.technology, g_max_us=session.g_max_us,
                       t0_s=session.t0_s, chip=session.chip, config=session.config, seed=0) as w:
        summary = replay_schedule(chip, session, w, procedures, schedule)
        w.finish()
    return read_session(out), summary


def _same_reads(a, b, keep=None) -> bool:
    keep = np.ones(a.reads["g_us"].size, bool) if keep is None else keep
    return all(np.array_equal(a.reads[k][keep], b.reads[k]) for k in ("device", "t_s", "age_s", "g_us",
                                                                        "burst"))


def test_replay_chip_is_a_device_array():
    chip = open_chip(f"replay:{CALIBRATION / 'pcm_sample.h5'}")
    assert isinstance(chip, DeviceArray)
    assert chip.info.technology == "pcm" and chip.info.n_devices == 4096
    assert "REPLAY" in chip.info.identity


def test_drift_and_bursts_reproduce_the_fitted_model_bit_for_bit(pcm_session, pcm_card, tmp_path):
    """Acceptance: the Scheduler of a live session, re-run on replay:, gives the recorded reads row for
    row, and the fitted card's parameters are identical (13 levels × 2000 PCM devices)."""
    chip = open_chip(f"replay:{pcm_session.path}")
    new, summary = _replay(pcm_session, tmp_path / "replayed.h5", chip)
    assert summary.n_reads == pcm_session.reads["g_us"].size == 514_800
    assert _same_reads(pcm_session, new)
    assert all(np.array_equal(pcm_session.bursts[k], new.bursts[k]) for k in pcm_session.bursts)
    before, after = card_scalars(pcm_card), card_scalars(fit_session(new.path))
    assert before.keys() == after.keys() and len(before) >= 10
    assert all(before[k] == after[k] for k in before), {k: (before[k], after[k]) for k in before
                                                        if before[k] != after[k]}
    assert chip._index is None  # replayed in recorded order: no search was needed


def test_reram_replay_bit_for_bit(tmp_path):
    src = read_session(CALIBRATION / "reram_sample.h5")
    new, _ = _replay(src, tmp_path / "r.h5", open_chip(f"replay:{src.path}"))
    assert _same_reads(src, new)
    before, after = card_scalars(fit_session(src.path)), card_scalars(fit_session(new.path))
    assert before == after


def test_indexed_path_answers_like_the_sequential_one(tmp_path, monkeypatch):
    src = read_session(CALIBRATION / "pcm_sample.h5")
    chip = ReplayChip(src.path)
    monkeypatch.setattr(chip, "_serve_sequential", lambda rows, n, t: (None, None))
    new, _ = _replay(src, tmp_path / "idx.h5", chip)
    assert _same_reads(src, new)
    assert chip._index is not None


@pytest.mark.parametrize("procedures", [("drift",), ("bursts",)])
def test_one_procedure_alone_gives_its_recorded_reads(tmp_path, procedures):
    """A subset still runs at the recorded times (the chip is busy when it was busy), so the reads of
    the chosen procedure equal the recorded ones — ReRAM's 100 s schedule reads wait for the burst."""
    src = read_session(CALIBRATION / "reram_sample.h5")
    new, summary = _replay(src, tmp_path / "one.h5", open_chip(f"replay:{src.path}"), procedures)
    keep = src.reads["burst"] < 0 if procedures == ("drift",) else src.reads["burst"] >= 0
    assert summary.n_reads == keep.sum() > 0
    assert _same_reads(src, new, keep)


def test_finish_groups_order():
    it = np.array([3, 1, 1, 0, 3, 55, 3])
    stop = np.array([0, 0, 0, 1, 3, 2, 0])  # converged, …, reset-only, pulse-limit, max-iterations
    groups = [g.tolist() for g in finish_groups(it, stop)]
    assert groups == [[3], [1, 2], [0, 6], [4], [5]]


# -- matching, policies, clock ------------------------------------------------------------------
@pytest.fixture(scope="module")
def pcm_sample():
    return read_session(CALIBRATION / "pcm_sample.h5")


def _schedule_read(session, row: int, age: float) -> tuple[float, float]:
    r = session.reads
    sel = np.flatnonzero((r["device"] == row) & (r["burst"] < 0))
    j = sel[np.argmin(np.abs(np.log(r["age_s"][sel] / age)))]
    return float(r["t_s"][j]), float(r["g_us"][j])


def test_read_at_a_recorded_age_returns_the_recorded_read_and_time(pcm_sample):
    chip = ReplayChip(pcm_sample.path)
    row = 5
    addr = int(pcm_sample.devices["address"][row])
    t_rec, g_rec = _schedule_read(pcm_sample, row, 600.0)
    chip.wait(t_rec - 1e-3 - chip.now_s())  # a little early: inside the match window
    rb = chip.read(np.array([addr]))
    assert rb.g_us[0, 0] == g_rec and rb.t_s[0, 0] == t_rec
    assert chip.now_s() >= t_rec  # the clock follows the recorded clock


def test_unrecorded_age_is_an_error_naming_the_device_and_age(pcm_sample):
    chip = ReplayChip(pcm_sample.path)
    addr = int(pcm_sample.devices["address"][5])
    t_last = float(pcm_sample.devices["t_last_pulse_s"][5])
    chip.wait(t_last + 110.0)
    with pytest.raises(ReplayError, match=r"address 5 within 5 % of age 110(\.\d+)? s .*policy=nearest"):
        chip.read(np.array([addr]))


def test_interpolation_policies(pcm_sample):
    row = 7
    addr = int(pcm_sample.devices["address"][row])
    t_last = float(pcm_sample.devices["t_last_pulse_s"][row])
    _, g200 = _schedule_read(pcm_sample, row, 200.0)
    _, g600 = _schedule_read(pcm_sample, row, 600.0)
    r = pcm_sample.reads
    sel = (r["device"] == row) & (r["burst"] < 0)
    a200 = r["age_s"][sel][np.argmin(np.abs(r["age_s"][sel] - 200))]
    a600 = r["age_s"][sel][np.argmin(np.abs(r["age_s"][sel] - 600))]
    age = 300.0
    for policy in ("nearest", "loglinear"):
        chip = ReplayChip(pcm_sample.path, policy=policy)
        chip.wait(t_last + age - chip.now_s() - chip._overhead_s)
        rb = chip.read(np.array([addr]))
        got_age = rb.t_s[0, 0] - t_last
        assert got_age == pytest.approx(age, abs=1e-6)  # interpolated answers carry the asked time
        if policy == "nearest":
            assert rb.g_us[0, 0] == (g200 if abs(np.log(age / a200)) < abs(np.log(age / a600)) else g600)
        else:
            w = np.log(got_age / a200) / np.log(a600 / a200)
            assert rb.g_us[0, 0] == pytest.approx(g200 + w * (g600 - g200), rel=1e-12)


def test_policy_still_serves_recorded_reads_exactly(pcm_sample, tmp_path):
    new, _ = _replay(pcm_sample, tmp_path / "n.h5", ReplayChip(pcm_sample.path, policy="loglinear"))
    assert _same_reads(pcm_sample, new)


def test_other_schedule_with_loglinear(pcm_sample, tmp_path):
    new, summary = _replay(pcm_sample, tmp_path / "s.h5", ReplayChip(pcm_sample.path, policy="loglinear"),
                           ("drift",), (20.0, 100.0, 1000.0))
    assert summary.n_reads == 3 * pcm_sample.n_devices
    ages = new.reads["age_s"]
    assert np.all((ages >= 20.0) & (ages < 1000.0 * 1.05))


def test_burst_request_beyond_the_record_is_refused(pcm_sample):
    chip = ReplayChip(pcm_sample.path)
    b = pcm_sample.bursts
    row = int(b["device"][0])
    chip.wait(float(b["t_start_s"][0]) - 1e-4)
    with pytest.raises(ReplayError, match="300 consecutive reads"):
        chip.read(pcm_sample.devices["address"][[row]], n_reads=300, interval_s=1.0)


def test_refusals(pcm_sample):
    chip = ReplayChip(pcm_sample.path)
    with pytest.raises(ReplayError, match="cannot be pulsed; use emulate:"):
        chip.pulse(np.array([0]), PulseKind.RESET, 100.0, 50.0)
    with pytest.raises(ReplayError, match="address 4000 was not recorded"):
        chip.read(np.array([4000]))
    with pytest.raises(LimitError, match="outside the chip's range"):
        chip.read(np.array([5000]))
    with pytest.raises(DevmodelError, match="n_reads"):
        chip.read(np.array([0]), n_reads=0)


@pytest.mark.parametrize("query, phrase", [
    ("policy=cubic", "replay policy 'cubic' is unknown"),
    ("window=2", "must be a fraction"),
    ("window=abc", "is not a number"),
    ("colour=red", "unknown replay option"),
])
def test_url_options(query, phrase):
    with pytest.raises(ChipURLError, match=phrase):
        open_chip(f"replay:{CALIBRATION / 'pcm_sample.h5'}?{query}")


def test_url_without_file():
    with pytest.raises(ChipURLError, match="names no session file"):
        open_chip("replay:")
