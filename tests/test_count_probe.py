"""The counting probe's reply analysis (experiments/count_probe.py), on hand-made replies."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scripts import load_script


@pytest.fixture(scope="module")
def probe():
    return load_script("count_probe")


def _item(kind: str, question: str, answer: str, reply: str) -> dict:
    return {"kind": kind, "question": question, "answer": answer, "reply": reply}


def test_replies_are_grouped_by_whether_they_keep_the_question_s_referent(probe):
    items = [
        # counting, colour named: same colour and right; same colour and wrong; another colour but right number
        _item("counting", "How many blue shapes can you see?", "2", "There are 2 blue shapes in the image."),
        _item("counting", "How many blue shapes are there?", "2", "There is 1 blue shape in the picture."),
        _item("counting", "Count the red shapes in the image.", "2", "There are 2 purple shapes in all."),
        # counting, kind named (plural in the question, singular in the reply): same kind
        _item("counting", "How many stars are there?", "1", "There is 1 star in the image."),
        # names neither: in no group
        _item("counting", "How many shapes can you see?", "3", "There are 3 shapes in the image."),
        # colour question naming a kind; the reply talks about another kind, so even a right colour is "not same"
        _item("color", "What colour is the star?", "purple", "The square is purple in colour."),
        _item("color", "Tell me the colour of the circle.", "red", "The circle is green in colour."),
        # another kind of item is ignored
        _item("ocr", "What word is written in the image?", "fox", "The image shows the word fox."),
    ]
    rows = {label: rest for label, *rest in probe.referent_agreement(items)}
    assert rows == {
        "counting questions naming a colour": [3, 2, 0.5, 1.0],
        "counting questions naming a kind": [1, 1, 1.0, 0.0],
        "colour questions naming a kind": [2, 1, 0.0, 1.0],
    }


def test_no_matching_questions_give_no_rows(probe):
    assert probe.referent_agreement([_item("ocr", "Read the word.", "cup", "cup")]) == []


def test_the_default_model_is_the_base_the_worlds_demo_tuned(tmp_path):
    import json

    import yaml

    from mmgpt.demo import base_dir_for

    probe = load_script("count_probe")
    world = tmp_path / "demo" / "world"
    world.mkdir(parents=True)
    (world / "world.json").write_text(json.dumps({"seed": 3, "scale": "quick", "image_size": 64}))
    # a quick world's base, not the default-scale one of the same seed
    assert probe.default_base(world) == base_dir_for(3, True) / "model"
    (world.parent / "tune").mkdir()
    (world.parent / "tune" / "config.yaml").write_text(yaml.safe_dump({"model": {"path": "/bases/b1/model"}}))
    assert probe.default_base(world) == Path("/bases/b1/model")
    assert probe.default_base(None, 5) == base_dir_for(5, False) / "model"
