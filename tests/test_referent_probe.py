"""The referent probe's question selection (experiments/referent_probe.py), on hand-made held-out items."""

from __future__ import annotations

import pytest

from tests.scripts import load_script


@pytest.fixture(scope="module")
def probe():
    return load_script("referent_probe")


def _item(kind: str, question: str, reference: str, history: list | None = None) -> dict:
    return {
        "kind": kind,
        "question": question,
        "reference": reference,
        "history": history or [],
        "image": "x.jpg",
    }


def test_each_named_colour_or_kind_gives_one_probe_cut_after_its_repetition(probe):
    items = [
        _item("color", "What colour is the star?", "The star is purple."),
        _item("counting", "How many yellow triangles are there?", "The number of yellow triangles is 2."),
        # names neither a colour nor a kind
        _item("counting", "How many shapes can you see?", "There are 3 shapes in the picture."),
        # a later round: its question leans on the history, so it is left out
        _item("color", "What colour is the circle?", "The circle is red.", history=[["q", "a"]]),
        # the reference does not repeat the named kind
        _item("color", "What colour is the circle?", "It is red."),
        # another kind of item
        _item("ocr", "What word is written on the star?", "The word is fox."),
    ]
    probes = probe.build_probes(items)
    assert [(p.item["question"], p.attribute, p.value) for p in probes] == [
        ("What colour is the star?", "kind", "star"),
        ("How many yellow triangles are there?", "colour", "yellow"),
        ("How many yellow triangles are there?", "kind", "triangle"),
    ]
    star, yellow, triangle = probes
    assert star.prefixes == ["The circle", "The square", "The triangle", "The diamond", "The star"]
    assert star.prefixes[star.asked] == "The star"
    assert yellow.prefixes[yellow.asked] == "The number of yellow"
    assert len(yellow.prefixes) == 6 and "The number of red" in yellow.prefixes
    # a plural in the reference is replaced by plurals
    assert triangle.prefixes[triangle.asked] == "The number of yellow triangles"
    assert (
        "The number of yellow circles" in triangle.prefixes
        and "The number of yellow circle" not in triangle.prefixes
    )


def test_conditions_tell_the_image_holding_others_from_the_rest(probe):
    assert probe.condition_of("blank", "star", {"star"}) == "blank image"
    assert probe.condition_of("none", "star", {"star", "circle"}) == "no image"
    assert probe.condition_of("image", "star", {"star"}) == "image with it alone"
    assert probe.condition_of("image", "star", {"star", "circle"}) == "image with it and others"
    assert probe.condition_of("image", "star", {"circle"}) == "image without it"


def test_pretraining_rows_share_the_prompt_and_end_with_each_continuation(probe, tiny_tokenizer):
    from mmgpt.model.tokenizer import special_token_ids

    ids = special_token_ids(tiny_tokenizer)
    prompt, rows = probe.pretraining_rows(
        tiny_tokenizer, "What colour is the star?", 1, ["The star", "The circle"]
    )
    assert prompt[0] == ids.bos and prompt.count(ids.media) == 1
    assert tiny_tokenizer.decode(prompt[1:], skip_special_tokens=True).strip() == (
        "Question: What colour is the star? Answer:"
    )
    for row, continuation in zip(rows, ["The star", "The circle"], strict=True):
        assert row[: len(prompt)] == prompt
        assert tiny_tokenizer.decode(row[len(prompt) :]).strip() == continuation
    # without an image: the same text, no media token
    plain, _ = probe.pretraining_rows(tiny_tokenizer, "What colour is the star?", 0, ["The star"])
    assert ids.media not in plain and plain[1:] == prompt[2:]
