"""experiments/language_after_image.py: language items asked after a round about an image."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "language_after_image.py"
ITEMS = [
    {
        "id": "c1",
        "kind": "counting",
        "image": "eval/images/1.jpg",
        "history": [],
        "question": "How many shapes can you see?",
        "answer": "2",
        "reference": "The number of shapes is 2.",
    },
    {
        "id": "f1",
        "kind": "followup",
        "image": "eval/images/2.jpg",
        "history": [{"question": "How many stars are there?", "answer": "The number of stars is 1."}],
        "question": "And if one more were added?",
        "answer": "2",
        "reference": "Then there would be 2 stars.",
    },
    {
        "id": "c2",
        "kind": "color",
        "image": "eval/images/1.jpg",
        "history": [],
        "question": "Which colour is the star?",
        "answer": "red",
        "reference": "The star is red.",
    },
    {"id": "l1", "kind": "language", "image": None, "history": [], "question": "Add 2 and 3.", "answer": "5"},
    {
        "id": "l2",
        "kind": "language",
        "image": None,
        "history": [],
        "question": "Reverse star.",
        "answer": "rats",
    },
]


def test_each_language_item_is_asked_after_an_images_opening_rounds(tmp_path):
    script = load_script("language_after_image")
    items = [{**item, "_root": str(tmp_path)} for item in ITEMS]
    mixed = script.after_an_image(items, tmp_path, random.Random(0))
    assert [m["id"] for m in mixed] == ["l1-after-1", "l2-after-1"]
    for record, item in zip(mixed, ITEMS[3:], strict=True):
        # the one image with an opening question (the other's only question has a history of its own)
        assert record["history"] == [
            {"question": "How many shapes can you see?", "answer": "The number of shapes is 2."}
        ]
        assert record["image"] == str((tmp_path / "eval/images/1.jpg").resolve())
        assert (record["question"], record["answer"], record["kind"]) == (
            item["question"],
            item["answer"],
            "language",
        )
        assert "_root" not in record
    two = script.after_an_image(items, tmp_path, random.Random(0), rounds=2)
    assert [h["question"] for h in two[0]["history"]] == [
        "How many shapes can you see?",
        "Which colour is the star?",
    ]
    with pytest.raises(SystemExit, match="no held-out image has 3 questions"):
        script.after_an_image(items, tmp_path, random.Random(0), rounds=3)


def test_the_command_writes_the_items_and_refuses_a_world_without_them(tmp_path):
    world = tmp_path / "world"
    (world / "eval").mkdir(parents=True)
    (world / "eval" / "heldout.jsonl").write_text("".join(json.dumps(i) + "\n" for i in ITEMS))

    def run(*extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, str(SCRIPT), "--world", str(world), "--out", str(tmp_path / "out"), *extra]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    written = run("--rounds", "1", "2")
    assert written.returncode == 0, written.stderr
    for rounds in (1, 2):
        lines = (tmp_path / "out" / f"after_{rounds}" / "eval" / "heldout.jsonl").read_text().splitlines()
        assert [json.loads(line)["id"] for line in lines] == [f"l1-after-{rounds}", f"l2-after-{rounds}"]
    alone = (tmp_path / "out" / "alone" / "eval" / "heldout.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in alone] == ["l1", "l2"]
    assert run("--rounds", "0").returncode == 2
    missing = subprocess.run(
        [sys.executable, str(SCRIPT), "--world", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "no held-out items" in missing.stderr


def test_a_model_is_scored_on_the_language_items_both_ways(make_tiny_model, tmp_path):
    from PIL import Image

    world = tmp_path / "world"
    (world / "eval" / "images").mkdir(parents=True)
    for name in ("1.jpg", "2.jpg"):
        Image.new("RGB", (64, 64), "red").save(world / "eval" / "images" / name)
    (world / "eval" / "heldout.jsonl").write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    make_tiny_model(image_size=64).save_pretrained(tmp_path / "model")
    command = [sys.executable, str(SCRIPT), "--world", str(world), "--out", str(tmp_path / "out")]
    run = subprocess.run(
        [*command, "--model", str(tmp_path / "model"), "--rounds", "1", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    rows = dict(line.rsplit(maxsplit=1) for line in run.stdout.splitlines()[3:])
    assert set(rows) == {"on their own", "after 1 round about an image", "after 2 rounds about an image"}
    assert all(0.0 <= float(value) <= 1.0 for value in rows.values())
