"""Reading lines: the instruction data's passages in the plain pretraining text."""

from __future__ import annotations

import random
import re
from collections import Counter

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
    assert out == ["One two three. Four five?", "Six seven eight nine.", " ".join(["long"] * 12) + ".", "End."]
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


def test_the_world_reads_passages_of_its_training_mix_and_never_a_question_beside_its_answer(
    load, quick_world
):
    from mmgpt.data.config import load_data_config
    from mmgpt.data.mixture import read_all, turn_texts

    root = quick_world[0]
    config = load_data_config(root / "datasets.yaml")
    all_passages = {p for t in turn_texts(config) for p in passages(t)}
    text = [row["text"] for row in load("pretrain/text.jsonl")]
    read = [t for t in text if t in all_passages]
    assert len(read) >= quick_world[1].counts["pretrain_reading"] > 0
    vision_language, language = read_all(config)
    for result in vision_language + language:
        for sample in result.samples:
            for turn in sample.conversation.turns:
                assert not any(turn.user in line and (turn.assistant or "") in line for line in read)
