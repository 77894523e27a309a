"""Model cards: huggingface_hub's ModelCard front matter, escaped; hostile titles, data set names and
licences stay data; the shipped cards are what the card code makes of their configs."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from huggingface_hub.repocard import REGEX_YAML_BLOCK

import msgen
from msgen import checkpoint as ckpt
from msgen.card import model_card
from tests.conftest import make_tiny_model

ROOT = Path(__file__).resolve().parent.parent
FRONT = {"library_name": "msgen", "pipeline_tag": "unconditional-image-generation",
         "tags": ["msgen", "msggan", "multi-scale"]}
HOSTILE = {
    "title": 'pwned"\n---\nlicense: mit\ntags: [evil]\n---\n# Injected heading',
    "dataset": "x\n## Fake section\n- Data licence: public domain\u2028--- \nlibrary_name: evil",
    "license": "mit\n---\nlibrary_name: pwned\n---",
    "data_license": "a: b\n\n# also not a heading",
    "description": "A model.",
}


@pytest.mark.parametrize("field", sorted(HOSTILE))
def test_a_hostile_field_cannot_break_or_inject_front_matter(tmp_path, field):
    meta = {"title": "t", "dataset": "d"}
    meta[field] = HOSTILE[field]
    path = make_tiny_model(tmp_path / "m", resolution=16)
    g = msgen.load(path)
    ckpt.save_model(path, g, meta=meta)
    text = (path / "README.md").read_text()
    card = ModelCard.load(path / "README.md")  # huggingface_hub's own parser, as the Hub reads it
    want = FRONT | {"license": HOSTILE["license"] if field == "license" else "other"}
    assert card.data.to_dict() == want
    assert REGEX_YAML_BLOCK.search(text).group(2) == card.data.to_yaml(original_order=["license", "library_name", "pipeline_tag", "tags"])
    headings = [line for line in card.text.splitlines() if line.startswith("#")]
    assert headings[0].startswith("# ") and headings[1:] == ["## Data", "## Training", "## Config", "## Use"]
    assert msgen.load(path).meta[field] == HOSTILE[field]  # the config keeps the value as given


def test_hostile_title_is_one_heading_line_with_its_text():
    from msgen.models import make_config

    card = ModelCard(model_card(make_config("msggan", resolution=16), {"title": HOSTILE["title"]}))
    title = [line for line in card.text.splitlines() if line.startswith("# ")]
    assert title == ["# " + " ".join(HOSTILE["title"].splitlines())]
    assert card.data.license == "other" and card.data.tags == FRONT["tags"]


def test_shipped_cards_are_exactly_what_the_card_code_makes_of_their_configs():
    folders = sorted(p.parent for p in (ROOT / "weights").glob("*/config.json"))
    assert len(folders) == 8  # three msggan, two hvae, three var
    for folder in folders:
        config, meta = ckpt.read_config(folder)
        assert model_card(config, meta) == (folder / "README.md").read_text(), folder.name
        assert ModelCard.load(folder / "README.md").data.library_name == "msgen"
