"""experiments/count_replies.py: counting replies split by what the question counts and by its answer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "count_replies.py"
NUMBERS = [str(n) for n in range(7)]


def _item(name: str, answer: str, reference: str, kind: str = "counting") -> dict:
    return {"id": name, "kind": kind, "answer": answer, "answer_space": NUMBERS, "reference": reference}


ITEMS = [
    _item("a", "3", "The number of shapes is 3."),
    _item("b", "1", "The number of shapes is 1."),
    _item("c", "1", "The number of red shapes is 1."),
    _item("d", "2", "The number of squares is 2."),
    _item("e", "0", "The number of blue shapes is 0."),
    _item("f", "red", "The square is red.", kind="color"),
]
REPLIES = {
    "a": "The number of shapes is 3.",  # right
    "b": "The number of shapes is 2.",  # wrong
    "c": "The number of red shapes is 1.",  # right
    "d": "The number of squares is 1.",  # wrong: the commonest answer
    "e": "The number of blue shapes is 0.",  # right
    "f": "The square is red.",  # not a counting question
}


def test_counting_replies_are_grouped_by_what_they_count_and_their_answer():
    counts = load_script("count_replies")
    assert counts.count_group(ITEMS[0]) == "all shapes, other answers"
    assert counts.count_group(ITEMS[2]) == "one colour or kind, answer 1"
    groups = counts.split_counts(ITEMS, REPLIES)
    assert groups == {
        "all shapes, answer 1": (1, 0),
        "all shapes, other answers": (1, 1),
        "one colour or kind, answer 1": (1, 1),
        "one colour or kind, other answers": (2, 1),
    }
    # an item without a reply is left out, not counted wrong
    assert sum(asked for asked, _ in counts.split_counts(ITEMS, {"a": REPLIES["a"]}).values()) == 1


def test_the_table_and_a_world_without_counting_replies(tmp_path):
    world = tmp_path / "world"
    (world / "eval").mkdir(parents=True)
    (world / "eval" / "heldout.jsonl").write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    replies = tmp_path / "eval_items.jsonl"
    replies.write_text("".join(json.dumps({"id": k, "reply": v}) + "\n" for k, v in REPLIES.items()))

    def run(path: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, str(SCRIPT), "--world", str(world), "--replies", str(path)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    table = run(replies)
    assert table.returncode == 0, table.stderr
    rows = [line.rsplit(maxsplit=2) for line in table.stdout.splitlines()[1:]]
    assert rows == [
        ["all shapes, answer 1", "1", "0.000"],
        ["all shapes, other answers", "1", "1.000"],
        ["one colour or kind, answer 1", "1", "1.000"],
        ["one colour or kind, other answers", "2", "0.500"],
    ]
    replies.write_text(json.dumps({"id": "f", "reply": "The square is red."}) + "\n")
    none = run(replies)
    assert none.returncode == 1 and "no reply to a counting question" in none.stderr
