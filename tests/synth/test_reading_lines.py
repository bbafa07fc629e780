"""Reading lines (`mmgpt synth --reading`): the instruction data's passages in the plain pretraining text."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from mmgpt.synth.pretrain import passages, reading_lines, word_forms


def test_word_forms_tell_a_word_after_a_space_from_one_opening_a_line():
    assert word_forms("How many?\nYes, it is (a) square.") == {
        (False, "How"),
        (True, "many"),
        (False, "Yes"),
        (True, "it"),
        (True, "is"),
        (True, "a"),
        (True, "square"),
    }


def test_passages_are_whole_sentences_within_the_word_limit():
    text = "One two three. Four five?\nSix seven eight nine. " + " ".join(["long"] * 12) + ". End."
    out = passages(text, max_words=6)
    assert out == [
        "One two three. Four five?",
        "Six seven eight nine.",
        " ".join(["long"] * 12) + ".",
        "End.",
    ]
    assert passages("A b.\nC d.", max_words=6) == ["A b.\nC d."]  # the line break between them is kept
    assert re.sub(r"\s+", " ", " ".join(out)) == re.sub(r"\s+", " ", text.strip())


def test_every_word_form_is_read_as_often_as_asked_where_the_passages_allow():
    rng = random.Random(3)
    words = [f"w{i}" for i in range(60)]
    turns = [" ".join(rng.choices(words, k=rng.randint(1, 8))) + "." for _ in range(400)]
    turns += ["Rare once.", "Yes."]
    lines = reading_lines(turns, random.Random(0), min_count=3, max_words=40)
    read = Counter(f for line in lines for f in word_forms(line))
    holding = Counter(f for p in {p for t in turns for p in passages(t, 40)} for f in word_forms(p))
    assert holding[(False, "Rare")] == 1 and read[(False, "Rare")] == 1
    for form, n in holding.items():
        assert read[form] >= min(3, n), form
    assert len(lines) < len(set(turns)) / 2  # a cover, not the whole data
    assert lines == reading_lines(turns, random.Random(0), min_count=3, max_words=40)


@pytest.fixture(scope="module")
def reading_worlds(tmp_path_factory) -> dict[str, Path]:
    """Quick worlds of seed 0 that read their instructions, and their instructions and responses."""
    from mmgpt.synth import generate_world

    worlds = {}
    for reading in ("instructions", "all"):
        worlds[reading] = tmp_path_factory.mktemp(f"reading-{reading}")
        generate_world(worlds[reading], seed=0, scale="quick", progress=False, reading=reading)
    return worlds


def _text(world: Path) -> list[str]:
    return [json.loads(line)["text"] for line in (world / "pretrain" / "text.jsonl").read_text().splitlines()]


def _passages(world: Path) -> tuple[set[str], set[str]]:
    """(passages of the instructions, passages of the responses that are not also an instruction's)."""
    from mmgpt.data.config import load_data_config
    from mmgpt.data.mixture import turn_texts

    config = load_data_config(world / "datasets.yaml")
    instructions = {p for t in turn_texts(config, responses=False) for p in passages(t)}
    return instructions, {p for t in turn_texts(config) for p in passages(t)} - instructions


def test_a_world_reads_its_instructions_and_never_a_response(reading_worlds):
    from mmgpt.synth.knowledge import kb_facts

    world = reading_worlds["instructions"]
    instructions, responses = _passages(world)
    text = _text(world)
    manifest = json.loads((world / "world.json").read_text())
    assert sum(t in instructions for t in text) >= manifest["counts"]["pretrain_reading"] > 0
    # a fact of the knowledge base may make a line of its own and also answer a question
    assert not [t for t in text if t in responses and t not in kb_facts()]


def test_a_world_reads_its_responses_too_when_asked(reading_worlds):
    _, responses = _passages(reading_worlds["all"])
    assert sum(t in responses for t in _text(reading_worlds["all"])) > 50


def test_the_demo_world_reads_nothing_and_is_the_same_with_or_without_the_option(quick_world, reading_worlds):
    root, manifest = quick_world
    assert "pretrain_reading" not in manifest.counts
    plain = _text(root)
    for world in reading_worlds.values():
        read = _text(world)
        assert len(read) > len(plain) and set(plain) <= set(read)
        for name in (
            "llava/detail.json",
            "dolly/dolly.jsonl",
            "pretrain/interleaved.jsonl",
            "eval/heldout.jsonl",
        ):
            assert (world / name).read_bytes() == (root / name).read_bytes()


def test_the_demo_does_not_reuse_a_world_that_reads(reading_worlds):
    from mmgpt.demo import _world_matches

    assert not _world_matches(reading_worlds["all"], 0, "quick")


def test_reading_must_be_one_of_the_choices(tmp_path):
    from mmgpt.errors import ConfigError
    from mmgpt.synth import generate_world
    from mmgpt.synth.commands import READING_CHOICES as CLI_CHOICES
    from mmgpt.synth.world import READING_CHOICES

    assert CLI_CHOICES == READING_CHOICES
    with pytest.raises(ConfigError, match="reading must be one of"):
        generate_world(tmp_path, scale="quick", reading="some")
