"""`mmgpt demo --quick`: every stage runs and writes results.json and a usable model directory."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

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
    # The base is cached across output directories: a second run skips pretraining. --tune-steps sets the tuning
    # run's length (and a bad value is refused before any work).
    assert main(["demo", "--out", str(tmp_path / "demo2"), "--quick", "--tune-steps", "6", *cache]) == 0
    assert "using the cached base model" in capsys.readouterr().out
    metrics = (tmp_path / "demo2" / "tune" / "metrics.jsonl").read_text().splitlines()
    tuned_steps = [json.loads(line)["step"] for line in metrics]
    assert tuned_steps == list(range(1, 7))
    assert main(["demo", "--out", str(tmp_path / "demo3"), "--quick", "--tune-steps", "0", *cache]) == 1
    assert "--tune-steps must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "demo3").exists()
    assert main(["demo", "--out", str(tmp_path / "demo3"), "--quick", "--base-steps", "-1", *cache]) == 1
    assert "--base-steps must be at least 1, got -1" in capsys.readouterr().err
    assert not (tmp_path / "demo3").exists()
    # the counting probe reads the demo's model, world and replies
    demo = tmp_path / "demo"
    out = _run_experiment(
        "count_probe.py",
        "--model",
        demo / "model",
        "--world",
        demo / "world",
        "--limit",
        "4",
        "--eval-items",
        demo / "eval_items.jsonl",
    )
    rows = re.findall(
        r"^(all shapes|shapes of one colour|shapes of one kind)\s+([\d.]+)\s+([\d.]+)$", out, re.M
    )
    assert len(rows) == 3 and all(0 <= float(v) <= 1 for row in rows for v in row[1:]), out
    assert "4 held-out images" in out and "questions counting all shapes" in out
    assert "counting questions naming a colour" in out
    binding = re.findall(r"^(?:colour|kind) of a named shape\s+\d+((?:\s+[\d.]+){4})$", out, re.M)
    assert "binding probe" in out and all(0 <= float(v) <= 1 for row in binding for v in row.split()), out
    # the binding probe fits its readers on the image features of the demo's base and scores them
    base = next((tmp_path / "cache").glob("base-*/model"))
    out = _run_experiment(
        "binding_probe.py",
        *("--model", base, "--world", demo / "world"),
        *("--train-images", "60", "--limit", "20", "--steps", "5"),
    )
    rows = re.findall(r"^(patch tokens|perceiver latents)\s+\d+x\d+((?:\s+[\d.]+){3})$", out, re.M)
    assert len(rows) == 2 and all(0 <= float(v) <= 1 for row in rows for v in row[1].split()), out
    # and the arithmetic probe, text only
    out = _run_experiment("arithmetic_probe.py", "--model", demo / "model", "--pairs", "2")
    rows = re.findall(
        r"^(.+?\.)(?: \(pretraining's\))?\s+(trained|held out)\s+([\d.]+)\s+([\d.]+)$", out, re.M
    )
    assert len(rows) == 8 and all(0 <= float(v) <= 1 for row in rows for v in row[2:]), out
    # the precision benchmark times and scores the demo's evaluation in fp32 and bf16
    heldout = demo / "world" / "eval" / "heldout.jsonl"
    out = _run_experiment(
        "eval_precision.py", "--model", demo / "model", "--data", heldout, "--limit", "2", folder="bench"
    )
    assert re.search(r"16 items, float32 [\d.]+ s, bfloat16 [\d.]+ s", out), out
    assert len(re.findall(r"^  (counting_acc|language_acc)\s+[\d.]+\s+[\d.]+", out, re.M)) == 2, out


def _run_experiment(script: str, *args, folder: str = "experiments") -> str:
    """Run `folder`/`script` with `args` in a fresh interpreter; returns its stdout (fails on an error)."""
    path = Path(__file__).resolve().parents[1] / folder / script
    run = subprocess.run(
        [sys.executable, str(path), *map(str, args)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_a_failing_training_stage_is_reported(tmp_path):
    from mmgpt.demo import CONFIG_DIR, train_in_fresh_process
    from mmgpt.errors import ConfigError, TrainingError

    base = CONFIG_DIR / "synthetic_base.yaml"
    with pytest.raises(ConfigError, match="no_such_key"):  # checked before a process is started
        train_in_fresh_process(base, ["optim.no_such_key=1"])
    run = [f"data.world={tmp_path / 'no-world'}", f"output_dir={tmp_path / 'run'}", "optim.max_steps=1"]
    with pytest.raises(TrainingError, match="synthetic_base.yaml failed .exit code 1"):
        train_in_fresh_process(base, run)


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


def test_base_steps_pick_their_own_cached_base():
    from mmgpt import demo
    from mmgpt.errors import ConfigError

    # the default is the base config's own 550 steps, so bases cached before the option existed are reused
    assert demo.base_cache_key(0, False, 550) == demo.base_cache_key(0, False)
    assert demo.base_cache_key(0, False, 1100) != demo.base_cache_key(0, False)
    assert demo.base_overrides(False, 1100) == ["optim.max_steps=1100", "logging.save_every=550"]
    quick = demo.base_overrides(True, 7)
    assert quick[: len(demo.QUICK_BASE)] == demo.QUICK_BASE and quick[-2:] == [
        "optim.max_steps=7",
        "logging.save_every=7",
    ]
    with pytest.raises(ConfigError, match="--base-steps must be at least 1, got 0"):
        demo.base_overrides(False, 0)


def test_a_comment_in_the_base_config_keeps_the_cached_base(tmp_path, monkeypatch):
    from mmgpt import demo

    key = demo.base_cache_key(0, False)
    text = (demo.CONFIG_DIR / "synthetic_base.yaml").read_text()
    monkeypatch.setattr(demo, "CONFIG_DIR", tmp_path)
    (tmp_path / "synthetic_base.yaml").write_text("# a new note on the recipe\n" + text)
    assert demo.base_cache_key(0, False) == key
    (tmp_path / "synthetic_base.yaml").write_text(text.replace("max_steps: 550", "max_steps: 551"))
    assert demo.base_cache_key(0, False) != key
