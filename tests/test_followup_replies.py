"""experiments/followup_replies.py: follow-up replies split by the question's form."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "followup_replies.py"
NUMBERS = [str(n) for n in range(8)]


def _item(name: str, question: str, answer: str, earlier: str, earlier_answer: str) -> dict:
    history = [{"question": earlier, "answer": earlier_answer}]
    return {"id": name, "kind": "followup", "question": question, "answer": answer, "answer_space": NUMBERS,
            "history": history}  # fmt: skip


ITEMS = [
    _item(
        "a", "And if one more were added?", "2", "How many squares are there?", "The number of squares is 1."
    ),
    _item("b", "And if one more were added?", "3", "How many stars are there?", "The number of stars is 2."),
    _item(
        "c", "How many of those are red?", "1", "How many squares are there?", "The number of squares is 2."
    ),
    _item("d", "How many of those are blue?", "1", "How many stars are there?", "The number of stars is 3."),
    {
        "id": "e",
        "kind": "counting",
        "question": "How many shapes are there?",
        "answer": "1",
        "answer_space": NUMBERS,
    },
]
REPLIES = {
    "a": "Then there would be 2 squares.",  # right
    "b": "Then there would be 2 stars.",  # wrong: the earlier count, not one more
    "c": "There is 1 red square among them.",  # right
    "d": "There is 1 green star among them.",  # wrong: another colour than the one asked
    "e": "The number of shapes is 1.",  # not a follow-up
}


def test_forms_write_colours_and_kinds_as_letters():
    probe = load_script("followup_replies")
    assert probe.question_form("How many of those are red?") == "How many of those are C?"
    assert probe.question_form("And how many stars are purple?") == "And how many K are C?"
    assert probe.question_form("What is its first letter?") == "What is its first letter?"


def test_followups_are_split_by_form_and_scored_as_the_evaluation_scores_them():
    probe = load_script("followup_replies")
    assert probe.split_followups(ITEMS, REPLIES) == {
        "And if one more were added?": (2, 1, 2),  # no colour asked: every reply names it
        "How many of those are C?": (2, 1, 1),
    }
    assert probe.split_followups(ITEMS, {"a": REPLIES["a"]}) == {"And if one more were added?": (1, 1, 1)}
    assert probe.names_asked_colours("How many of those are red?", "There is 1 red square among them.")
    assert not probe.names_asked_colours("How many of those are red?", "There are 2 reddish squares.")


def test_the_script_prints_the_table(tmp_path):
    world = tmp_path / "world"
    (world / "eval").mkdir(parents=True)
    (world / "eval" / "heldout.jsonl").write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    replies = tmp_path / "eval_items.jsonl"
    replies.write_text("".join(json.dumps({"id": k, "reply": v}) + "\n" for k, v in REPLIES.items()))
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--replies", str(replies), "--world", str(world)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines()[-1].split() == ["all", "4", "0.500"]
    rows = {line[:30].strip(): line[30:].split() for line in out.splitlines()[1:]}
    assert rows["How many of those are C?"] == ["2", "0.500", "0.500"]
    assert rows["And if one more were added?"] == ["2", "0.500", "-"]
