"""experiments/language_replies.py: language replies split into recall, sums and differences."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from tests.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "language_replies.py"


def test_every_held_out_arithmetic_question_is_read_back_with_its_operands():
    from mmgpt.synth.heldout import language_items
    from mmgpt.synth.knowledge import reserved_pairs

    split = load_script("language_replies")
    reserved = reserved_pairs(0)
    items = language_items(400, random.Random(1), reserved)
    arithmetic = 0
    for item in items:
        asked = split.operation(item["question"])
        statement = item["reference"]
        if " plus " not in statement and " minus " not in statement:
            assert asked is None, item["question"]
            continue
        arithmetic += 1
        name, a, b = asked
        word = "plus" if name == "sum" else "minus"
        # the reference states the operation in order, whatever the question's phrasing
        assert statement == f"{a} {word} {b} equals {item['answer']}.", item
        assert (a, b) in reserved[name]
    assert 100 < arithmetic < 300
    groups = {split.language_group(item["question"], reserved["sum"]) for item in items}
    assert groups == set(split.GROUPS)


def test_sums_are_told_apart_by_whether_their_other_order_is_trained():
    split = load_script("language_replies")
    held = {(3, 5), (4, 4), (2, 9), (9, 2)}
    assert split.language_group("What is 3 plus 5?", held) == "sums, the other order trained"
    assert split.language_group("Add 2 and 9.", held) == "sums held out both ways"
    assert split.language_group("What is the sum of 4 and 4?", held) == "sums held out both ways"
    assert split.language_group("Subtract 9 from 16.", held) == "differences"
    assert split.operation("Subtract 9 from 16.") == ("difference", 16, 9)
    assert split.language_group("What is the first letter of the word star?", held) == "facts and word tasks"


def _item(name: str, question: str, answer: str) -> dict:
    space = [str(n) for n in range(41)] if answer.isdigit() else [answer, "other"]
    return {"id": name, "kind": "language", "question": question, "answer": answer, "answer_space": space}


def test_the_table_and_a_world_without_language_replies(tmp_path):
    from mmgpt.synth.knowledge import reserved_pairs
    from mmgpt.synth.world import WorldManifest

    a, b = sorted(reserved_pairs(0)["sum"] - {(y, x) for x, y in reserved_pairs(0)["sum"]})[0]
    items = [
        _item("f", "Reverse the word star.", "rats"),
        _item("s", f"What is {a} plus {b}?", str(a + b)),
        _item("d", "Subtract 9 from 16.", "7"),
        {"id": "c", "kind": "counting", "question": "How many shapes?", "answer": "2", "answer_space": ["2"]},
    ]
    replies = {
        "f": "The word star reversed is rats.",
        "s": f"{a} plus {b} equals {a + b + 1}.",
        "d": "7",
        "c": "2",
    }
    world = tmp_path / "world"
    (world / "eval").mkdir(parents=True)
    (world / "world.json").write_text(
        json.dumps(WorldManifest(seed=0, scale="quick", image_size=64).to_dict())
    )
    (world / "eval" / "heldout.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    path = tmp_path / "eval_items.jsonl"
    path.write_text("".join(json.dumps({"id": k, "reply": v}) + "\n" for k, v in replies.items()))

    def run() -> subprocess.CompletedProcess:
        command = [sys.executable, str(SCRIPT), "--world", str(world), "--replies", str(path)]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    table = run()
    assert table.returncode == 0, table.stderr
    rows = [line.rsplit(maxsplit=3) for line in table.stdout.splitlines()[1:]]
    assert rows == [
        ["facts and word tasks", "1", "1", "1.000"],
        ["sums, the other order trained", "1", "0", "0.000"],
        ["sums held out both ways", "0", "0", "0.000"],
        ["differences", "1", "1", "1.000"],
    ]
    path.write_text(json.dumps({"id": "c", "reply": "2"}) + "\n")
    none = run()
    assert none.returncode == 1 and "no reply to a language item" in none.stderr
