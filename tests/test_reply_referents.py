"""experiments/reply_referents.py: subjects read from references, replies split by whether they name them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "reply_referents.py"
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
KINDS = ["circle", "square", "triangle", "diamond", "star"]


def _items() -> list[dict]:
    return [
        {
            "id": "a",
            "kind": "color",
            "answer": "red",
            "answer_space": COLOURS,
            "reference": "The medium square is red.",
        },
        {
            "id": "b",
            "kind": "color",
            "answer": "blue",
            "answer_space": COLOURS,
            "reference": "The star is blue.",
        },
        {
            "id": "c",
            "kind": "color",
            "answer": "green",
            "answer_space": COLOURS,
            "reference": "The shape at the top is green.",
        },
        {
            "id": "d",
            "kind": "shape",
            "answer": "star",
            "answer_space": KINDS,
            "reference": "The red shape is a star.",
        },
        {
            "id": "e",
            "kind": "counting",
            "answer": "2",
            "answer_space": ["1", "2"],
            "reference": "There are 2 shapes.",
        },
    ]


REPLIES = {
    "a": "The medium square is red.",  # names it, right
    "b": "The diamond is blue.",  # another shape, right by chance
    "c": "The shape at the top is red.",  # names it, wrong
    "d": "The red shape is a circle.",  # names it, wrong
    "e": "There are 2 shapes.",  # not a colour or shape question
}


def test_subjects_come_from_the_reference_answers():
    referents = load_script("reply_referents")
    assert referents.asked_subject("The medium square is red.") == "medium square"
    assert referents.asked_subject(" The shape at the top-right is a star.") == "shape at the top-right"
    assert referents.asked_subject("There are 2 red shapes.") is None


def test_replies_are_split_by_whether_they_name_the_asked_subject():
    referents = load_script("reply_referents")
    splits = referents.split_replies(_items(), REPLIES)
    colour, shape = splits["color"], splits["shape"]
    assert (colour.replies, colour.named, colour.right_named, colour.right_other) == (3, 2, 1, 1)
    assert colour.shares() == (2 / 3, 2 / 3, 0.5, 1.0)
    assert (shape.replies, shape.named, shape.right_named, shape.right_other) == (1, 1, 0, 0)
    # an item without a reply is left out, not counted wrong
    assert referents.split_replies(_items(), {"a": REPLIES["a"]})["color"].replies == 1


def _scene(*shapes: tuple[str, str]) -> dict:
    return {"shapes": [{"colour": colour, "kind": kind} for colour, kind in shapes]}


def test_questions_are_split_by_the_colours_or_kinds_their_image_holds():
    referents = load_script("reply_referents")
    items = [{**item, "image": f"eval/images/{item['id']}.jpg"} for item in _items()]
    scenes = {
        "eval/images/a.jpg": _scene(("red", "square"), ("red", "circle")),  # one colour
        # two colours
        "eval/images/b.jpg": _scene(("blue", "star"), ("green", "diamond"), ("blue", "square")),
        "eval/images/c.jpg": _scene(("green", "circle"), ("red", "square")),  # two colours
        "eval/images/d.jpg": _scene(("red", "star"), ("blue", "star")),  # one kind
        "eval/images/e.jpg": _scene(("red", "star")),  # a counting question: left out
    }
    groups = referents.split_by_distinct(items, REPLIES, scenes)
    assert groups == {("color", 1): (1, 1), ("color", 2): (2, 1), ("shape", 1): (1, 0)}
    # an image the world does not list is left out
    del scenes["eval/images/a.jpg"]
    assert ("color", 1) not in referents.split_by_distinct(items, REPLIES, scenes)


def test_the_table_and_bad_files(tmp_path):
    world = tmp_path / "world"
    (world / "eval").mkdir(parents=True)
    (world / "eval" / "heldout.jsonl").write_text("".join(json.dumps(i) + "\n" for i in _items()))
    replies = tmp_path / "eval_items.jsonl"
    replies.write_text("".join(json.dumps({"id": k, "reply": v}) + "\n" for k, v in REPLIES.items()))

    def run(*args: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(SCRIPT), "--world", str(world), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    table = run("--replies", str(replies))
    assert table.returncode == 0, table.stderr
    assert "world.json: not found" in table.stderr  # the second table needs the world's scenes
    rows = {line.split()[0]: line.split()[1:] for line in table.stdout.splitlines()[1:]}
    assert rows == {
        "color": ["3", "0.667", "0.667", "0.500", "1.000"],
        "shape": ["1", "0.000", "1.000", "0.000", "0.000"],
    }
    scenes = [
        {"paths": [f"eval/images/{name}.jpg"], "shapes": [{"colour": c, "kind": "star"} for c in colours]}
        for name, colours in (("a", ["red", "blue"]), ("b", ["blue"]))
    ]
    (world / "world.json").write_text(json.dumps({"scenes": scenes}))
    (world / "eval" / "heldout.jsonl").write_text(
        "".join(json.dumps({**i, "image": f"eval/images/{i['id']}.jpg"}) + "\n" for i in _items())
    )
    by_colours = run("--replies", str(replies))
    assert by_colours.returncode == 0 and not by_colours.stderr, by_colours.stderr
    lines = by_colours.stdout.split("\n\n")[1].splitlines()
    assert "colours or kinds in the image" in lines[0]
    assert [line.split() for line in lines[1:]] == [
        ["color", "1", "1", "1.000", "1.000"],
        ["color", "2", "1", "1.000", "0.500"],
    ]
    missing = run("--replies", str(tmp_path / "none.jsonl"))
    assert missing.returncode == 1 and "none.jsonl: not found" in missing.stderr
    replies.write_text(replies.read_text() + "{oops\n")
    broken = run("--replies", str(replies))
    assert broken.returncode == 1 and "eval_items.jsonl, line 6: not JSON" in broken.stderr


def test_replies_are_read_from_an_eval_report_too(tmp_path):
    referents = load_script("reply_referents")
    records = [{"id": k, "kind": "color", "reply": v} for k, v in REPLIES.items()]
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"model": "m", "metrics": {}, "items": records}))
    lines = tmp_path / "eval_items.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert referents.read_replies(report) == referents.read_replies(lines) == REPLIES
    report.write_text(json.dumps({"metrics": {}}))
    with pytest.raises(SystemExit, match="not a report of `mmgpt eval --out`"):
        referents.read_replies(report)
