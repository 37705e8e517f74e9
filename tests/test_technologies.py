"""The technology registry: every registered technology brings every part shared code asks for, its
card schema is a valid JSON Schema that its published card passes, and an unknown technology is one
sentence wherever it enters (chip URL, card, session, import)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from devmodel.chips import open_chip
from devmodel.errors import ChipURLError, DevmodelError, UnknownNameError
from devmodel.model.card import DeviceModel, ModelCardError, card_schema
from devmodel.technologies import PARTS, all_technologies, names, technology

REQUIRED = {"physics": ("PHYSICS", "CHIP"), "verify": ("CONFIG", "RUN"), "card": ("CARD", "published"),
            "noise": ("NOISE_MODEL",), "fit": ("OPTIONS", "fit")}


@pytest.mark.parametrize("name", names())
def test_every_technology_brings_its_parts(name):
    tech = technology(name)
    assert tech.package.endswith(name) and tech.t0_s > 0 and tech.g_max_us > 0
    assert tech.pulse_unit in ("uA", "V")
    for part, attrs in REQUIRED.items():
        module = tech.part(part)
        for attr in attrs:
            assert hasattr(module, attr), f"{name}.{part} lacks {attr}"
    assert set(p for p in PARTS if tech.has_part(p)) >= set(REQUIRED)


@pytest.mark.parametrize("name", names())
def test_card_schema_is_valid_and_the_published_card_passes_it(name):
    schema = card_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    card = DeviceModel.published(name)
    assert type(card) is technology(name).part("card").CARD
    again = DeviceModel.from_json(card.to_json())
    assert again.to_json() == card.to_json()
    d = json.loads(card.to_json())
    for key in schema["required"]:
        broken = {k: v for k, v in d.items() if k != key}
        with pytest.raises(ModelCardError, match=key if key != "schema" else "model card"):
            DeviceModel.from_dict(broken)


def test_unknown_technology_is_one_sentence_everywhere(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown technology 'flash'; known: "):
        technology("flash")
    with pytest.raises(ChipURLError, match="unknown simulated technology 'flash'"):
        open_chip("sim:flash")
    d = json.loads(DeviceModel.published("pcm").to_json()) | {"technology": "flash"}
    with pytest.raises(ModelCardError, match="technology"):
        DeviceModel.from_dict(d)
    with pytest.raises(ModelCardError, match="unknown technology"):
        DeviceModel(technology="flash", g_max_us=1.0, t0_s=1.0)
    from devmodel.store.table_import import import_table

    csv = tmp_path / "t.csv"
    csv.write_text("device,target_us,time_s,g_us\n0,1,1,1\n0,1,2,1\n")
    with pytest.raises(DevmodelError, match="--technology: unknown technology 'flash'"):
        import_table(csv, tmp_path / "t.h5", "flash", 25.0)


def test_technology_part_that_does_not_exist_is_one_sentence():
    tech = all_technologies()[0]
    with pytest.raises(ValueError, match="not a technology part"):
        tech.part("nonsense")
