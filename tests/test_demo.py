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
