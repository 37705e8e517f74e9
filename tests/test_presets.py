"""Published presets wherever a card is taken (docs/model-card.md, "Presets"): `published:pcm`,
`published:reram`, `published:cmo[?option=value]` — in `evaluate`, `validate`, `export`, `card show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from devmodel.commands import main
from devmodel.model.card import DeviceModel, ModelCardError

SESSION = Path(__file__).parent.parent / "calibration_data" / "pcm_sample.h5"


def cli(*args):
    r = CliRunner().invoke(main, [str(a) for a in args])
    return r.exit_code, r.stdout, (r.stderr or "").strip()


@pytest.mark.parametrize("name", ["pcm", "reram", "cmo"])
def test_a_preset_is_the_published_card(name):
    assert DeviceModel.load(f"published:{name}").to_json() == DeviceModel.published(name).to_json()


def test_preset_options_and_refusals():
    assert DeviceModel.load("published:cmo?acceptance=0.002").to_json() == \
        DeviceModel.published("cmo", acceptance=0.002).to_json()
    with pytest.raises(ModelCardError, match="unknown technology 'flash'"):
        DeviceModel.load("published:flash")
    with pytest.raises(ModelCardError, match="unexpected keyword argument 'x'"):
        DeviceModel.load("published:pcm?x=1")
    with pytest.raises(ModelCardError, match="name=number pairs"):
        DeviceModel.load("published:cmo?acceptance=high")


def test_card_show_and_list():
    code, out, _ = cli("card", "list")
    assert code == 0 and out.split() == ["published:cmo", "published:pcm", "published:reram"]
    code, out, _ = cli("card", "show", "published:pcm")
    assert code == 0
    assert out.startswith("device model (pcm, g_max 25 µS, t0 20 s) (published, not fitted here)")
    code, out, _ = cli("card", "show", "published:reram", "--json")
    assert code == 0 and json.loads(out)["technology"] == "reram"
    code, _, err = cli("card", "show", "nothing.json")
    assert code == 2 and err.startswith("devmodel: error: cannot read model card nothing.json")


def test_presets_in_evaluate_validate_and_export(tmp_path):
    code, out, err = cli("evaluate", "--card", "published:pcm", "--network", "digits-mlp-small",
                         "--epochs", 2, "--trials", 2, "--times", "1,86400", "--quiet")
    assert code == 0, err
    assert "network digits-mlp-small on published:pcm (pcm)" in out and "86400" in out
    # seed 000 defaults: PCM compensated, read noise per device from the card's 1/f law
    assert "drift compensation on" in out
    assert "read noise from the card per device (1/f faster than 1/1 s and white: 0.374 µS at 0.1 g_max, " \
           "0.838 µS at g_max)" in out
    code, out, err = cli("evaluate", "--card", "published:reram", "--network", "digits-mlp-small",
                         "--epochs", 2, "--trials", 1, "--times", "86400", "--quiet")
    assert code == 0, err
    assert "drift compensation off" in out and "read noise from the card per device" in out
    code, out, err = cli("evaluate", "--card", "published:reram", "--network", "digits-mlp-small",
                         "--epochs", 2, "--trials", 1, "--times", "86400", "--quiet", "--drift-compensation",
                         "--read-noise", "constant")
    assert code == 0 and "drift compensation on" in out and "read noise constant w_noise 0.0175" in out
    code, _, err = cli("evaluate", "--card", "published:pcm", "--network", "digits-mlp-small",
                       "--epochs", 2, "--input-range", "learned", "--quiet")
    assert code == 2 and "input_range='learned' needs the input ranges" in err
    code, out, err = cli("validate", "published:pcm", SESSION, "--quiet")
    assert code in (0, 1) and "card from another source" in out, err
    code, _, err = cli("export", "published:cmo", "--to", "aihwkit", "--out", tmp_path / "m.py")
    assert code == 0 and (tmp_path / "m.py").exists(), err
