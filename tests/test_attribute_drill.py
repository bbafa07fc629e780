"""experiments/attribute_drill.py: a world copy whose tuning mixture drills attribute questions, and a fit check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mmgpt.data.config import load_data_config
from mmgpt.data.mixture import read_all
from tests.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "attribute_drill.py"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from mmgpt.synth import generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, seed=0, scale="quick", progress=False)
    return out


@pytest.fixture(scope="module")
def drill():
    return load_script("attribute_drill")


def _scenes(world: Path) -> dict[int, dict]:
    return {scene["image_id"]: scene for scene in json.loads((world / "world.json").read_text())["scenes"]}


def test_the_drill_is_added_to_the_world_s_mixture_and_read_by_its_readers(world, drill, tmp_path):
    out = tmp_path / "drill_world"
    counts = drill.write_drill_world(world, out, weight=3.0, seed=7)
    scenes = _scenes(world)
    train = [s for s in scenes.values() if s["split"] == "train"]
    assert counts["conversations"] == len(train) and counts["rounds"] >= 3 * len(train)
    # every other file of the world is a link, the world itself is untouched
    assert (out / "llava").is_symlink() and (out / "world.json").is_symlink()
    assert "drill" not in (world / "datasets.yaml").read_text()

    conversations = json.loads((out / drill.DRILL_FILE).read_text())
    for conversation in conversations:
        scene = scenes[int(conversation["id"])]
        assert scene["split"] == "train" and f"llava/images/{conversation['image']}" in scene["paths"]
        turns = conversation["conversations"]
        assert turns[0]["value"].startswith("<image>\n") and all(
            "<image>" not in t["value"] for t in turns[1:]
        )
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        # an answer names a colour, kind or number the scene has (or 0 for an absent colour or kind)
        for answer in turns[1::2]:
            words = set(answer["value"].lower().rstrip(".").replace("s ", " ").split())
            named = {s["colour"] for s in scene["shapes"]} | {s["kind"] for s in scene["shapes"]}
            assert words & (named | {str(n) for n in range(7)}), answer["value"]

    config = load_data_config(out / "datasets.yaml")
    original = load_data_config(world / "datasets.yaml")
    assert len(config.vision_language) == len(original.vision_language) + 1
    assert config.vision_language[-1].weight == 3.0
    vision_language, _ = read_all(config)
    drilled = vision_language[-1]
    assert len(drilled.samples) == len(conversations) and drilled.skips.total == 0


def test_only_the_drill_and_a_fit_check_on_training_images(world, drill, tmp_path):
    out = tmp_path / "only"
    counts = drill.write_drill_world(world, out, only=True, seed=7)
    config = load_data_config(out / "datasets.yaml")
    assert [spec.name for spec in config.vision_language] == ["drill"]
    assert config.vision_language[0].weight == 1.0
    assert len(config.language) == len(load_data_config(world / "datasets.yaml").language)

    items = [json.loads(line) for line in (out / drill.FIT_FILE).read_text().splitlines()]
    assert len(items) == counts["fit_items"] > 0
    scenes = _scenes(world)
    for item in items:
        scene = scenes[int(item["id"].split("-")[1])]
        assert scene["split"] == "train" and item["image"] in scene["paths"]
        assert (out / item["image"]).exists()  # resolved against the copy, as `mmgpt eval` resolves it
        assert item["kind"] in {"color", "shape", "counting"} and item["answer"] in item["answer_space"]
        if item["kind"] == "color":
            assert item["answer"] in {s["colour"] for s in scene["shapes"]}
    # the same seed draws the same drill
    again = tmp_path / "again"
    drill.write_drill_world(world, again, only=True, seed=7)
    assert (again / drill.DRILL_FILE).read_text() == (out / drill.DRILL_FILE).read_text()


def test_the_command_line(world, tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
        )

    done = run("--world", str(world), "--out", str(tmp_path / "cli"))
    assert done.returncode == 0, done.stderr
    assert "drill conversations" in done.stdout and "fit-check items" in done.stdout
    assert run("--world", str(tmp_path / "none"), "--out", str(tmp_path / "x")).stderr.endswith(
        "world.json: not found; pass a world written by `mmgpt synth` or `mmgpt demo`\n"
    )
    same = run("--world", str(world), "--out", str(world))
    assert same.returncode == 1 and "--out must differ from --world" in same.stderr
    assert "--weight must be > 0" in run("--out", str(tmp_path / "y"), "--weight", "0").stderr
