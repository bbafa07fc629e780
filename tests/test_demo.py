"""`mmgpt demo --quick`: every stage runs and writes results.json and a usable model directory."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_quick_demo(tmp_path, capsys):
    from mmgpt.cli import main
    from mmgpt.model.checkpoints import load_model

    cache = ["--cache-dir", str(tmp_path / "cache")]
    assert main(["demo", "--out", str(tmp_path / "demo"), "--quick", *cache]) == 0
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert set(results) == {"seconds", "tuned", "base", "chance", "most_frequent"}
    for key in (
        "counting_acc",
        "color_acc",
        "ocr_em",
        "caption_f1",
        "language_acc",
        "followup_acc",
        "mean_response_words",
    ):
        assert all(key in results[k] for k in ("tuned", "base", "chance", "most_frequent"))
    out = capsys.readouterr().out
    assert "transcript" in out and "tuned" in out and "most frequent" in out
    # the base's vision tower was pretrained to parse scenes first (its held-out scores are kept beside it)
    assert len(list((tmp_path / "cache").glob("base-*/vision_tower.json"))) == 1
    assert "vision tower, held-out scene parsing accuracy: colour" in out
    model = load_model(tmp_path / "demo" / "model")
    assert model.chat(max_new_tokens=3).ask("Hello?") is not None
    # The base is cached across output directories: a second run skips pretraining.
    assert main(["demo", "--out", str(tmp_path / "demo2"), "--quick", *cache]) == 0
    assert "using the cached base model" in capsys.readouterr().out
    # the counting probe reads the demo's model, world and replies
    import re
    import subprocess
    import sys
    from pathlib import Path

    probe = Path(__file__).resolve().parents[1] / "experiments" / "count_probe.py"
    demo = tmp_path / "demo"
    run = subprocess.run(
        [sys.executable, str(probe), "--model", str(demo / "model"), "--world", str(demo / "world")]
        + ["--limit", "4", "--eval-items", str(demo / "eval_items.jsonl")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    rows = re.findall(
        r"^(all shapes|shapes of one colour|shapes of one kind)\s+([\d.]+)\s+([\d.]+)$", run.stdout, re.M
    )
    assert len(rows) == 3 and all(0 <= float(v) <= 1 for row in rows for v in row[1:]), run.stdout
    assert "4 held-out images" in run.stdout and "questions counting all shapes" in run.stdout
    assert "counting questions naming a colour" in run.stdout
    # and the arithmetic probe, text only
    probe = probe.with_name("arithmetic_probe.py")
    run = subprocess.run(
        [sys.executable, str(probe), "--model", str(demo / "model"), "--pairs", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    rows = re.findall(
        r"^(.+?\.)(?: \(pretraining's\))?\s+(trained|held out)\s+([\d.]+)\s+([\d.]+)$", run.stdout, re.M
    )
    assert len(rows) == 8 and all(0 <= float(v) <= 1 for row in rows for v in row[2:]), run.stdout


def test_worlds_and_bases_from_an_older_generator_are_not_reused(tmp_path, monkeypatch):
    from mmgpt import demo
    from mmgpt.synth import world

    written_before_versioning = {"seed": 0, "scale": "default", "image_size": 64}
    (tmp_path / "world.json").write_text(json.dumps(written_before_versioning))
    assert not demo._world_matches(tmp_path, 0, "default")
    current = {**written_before_versioning, "generator": world.GENERATOR_VERSION}
    (tmp_path / "world.json").write_text(json.dumps(current))
    assert demo._world_matches(tmp_path, 0, "default")
    key = demo.base_cache_key(0, False)
    # the base's tokenizer learns the world's text, so a new generator means a new base
    monkeypatch.setattr(world, "GENERATOR_VERSION", world.GENERATOR_VERSION + 1)
    assert demo.base_cache_key(0, False) != key
