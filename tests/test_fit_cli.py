"""`devmodel fit | validate | report` as real subprocesses, and model-card refusals."""

import json

import pytest
from helpers import run_devmodel as devmodel

from devmodel.model.card import DeviceModel, ModelCardError


def test_fit_validate_report(published_pcm_session, tmp_path):
    card = tmp_path / "model.json"
    r = devmodel("fit", str(published_pcm_session), "--out", str(card), "--holdout-fraction",
                 "0.3", "--bootstrap", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "read_noise.q_s_exp" in r.stdout and "95 % bootstrap" in r.stdout
    d = json.loads(card.read_text())
    assert d["provenance"]["holdout"]["fraction"] == 0.3
    assert d["fit_quality"]["bootstrap"]["n"] == 2
    r = devmodel("validate", str(card), str(published_pcm_session), "--gate-ages", "86400",
                 "--max-ks", "0.08")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASSED" in r.stdout and "card's own split" in r.stdout
    r = devmodel("validate", str(card), str(published_pcm_session), "--max-ks", "0.001")
    assert r.returncode == 0 and "within sampling noise" in r.stdout  # a correct card, small n
    r = devmodel("validate", str(card), str(published_pcm_session), "--max-ks", "0.001",
                 "--alpha", "1")
    assert r.returncode == 1 and "FAILED" in r.stdout
    rep = tmp_path / "report"
    r = devmodel("report", str(card), str(published_pcm_session), "--out", str(rep))
    assert r.returncode == 0, r.stderr
    for name in ("index.html", "cdf_t0.png", "sigma_prog.png", "drift.png", "nu.png", "q_s.png"):
        assert (rep / name).stat().st_size > 1000
    assert "Validation" in (rep / "index.html").read_text()
    r = devmodel("fit", str(published_pcm_session), "--out", str(card))
    assert r.returncode == 2 and "already exists" in r.stderr


def test_card_from_the_future_or_broken_is_refused(tmp_path):
    d = json.loads(DeviceModel.published("pcm").to_json())
    d["schema"] = "devmodel.model/2"
    with pytest.raises(ModelCardError, match="devmodel.model/2.*upgrade devmodel"):
        DeviceModel.from_dict(d)
    d["schema"] = "devmodel.model/1"
    d["read_noise"]["q_s_amp"] = "big"
    with pytest.raises(ModelCardError, match="field read_noise/q_s_amp"):
        DeviceModel.from_dict(d)
    del d["drift"]
    with pytest.raises(ModelCardError, match="'drift' is a required property"):
        DeviceModel.from_dict(d)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = devmodel("validate", str(bad), str(bad))
    assert r.returncode == 2 and "is not valid JSON" in r.stderr and "Traceback" not in r.stderr
