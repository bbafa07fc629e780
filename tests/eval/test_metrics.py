"""Metrics against hand-computed values, and the held-out evaluator on a tiny model."""

from __future__ import annotations

import json
import math

import pytest

from mmgpt.eval.metrics import cider_d, exact_match, normalize_vqa, response_words, vqa_accuracy
from mmgpt.eval.runner import chance, score


def test_vqa_normalisation_and_accuracy():
    assert normalize_vqa("Two dogs!") == "2 dogs"
    assert normalize_vqa("The cat") == "cat"
    assert normalize_vqa("dont") == "don't"
    # 3 of 10 humans said "2": leave-one-out gives 7 subsets with 3 matches (1.0) and 3 with 2 (2/3).
    assert vqa_accuracy("two", ["2"] * 3 + ["3"] * 7) == pytest.approx((7 * 1.0 + 3 * 2 / 3) / 10)
    assert vqa_accuracy("2", ["2"] * 10) == 1.0 and vqa_accuracy("5", ["2"] * 10) == 0.0
    assert exact_match("A Red.", "red") == 1.0 and response_words("a b  c") == 3


def test_cider_by_hand():
    # Two images; each prediction equals its only reference. Every n-gram occurs in one of two documents, so
    # idf = log(2) for all and each n with n-grams has cosine 1 and no length penalty. Image 1 has 1-, 2- and
    # 3-grams (3 of 4 orders): 10 * 3/4; image 2 has 1- and 2-grams: 10 * 2/4. Mean: 6.25.
    assert cider_d(["a red circle", "blue square"], [["a red circle"], ["blue square"]]) == pytest.approx(
        6.25
    )
    # A prediction sharing nothing with its reference scores 0: (0 + 5) / 2.
    assert cider_d(["green", "blue square"], [["a red circle"], ["blue square"]]) == pytest.approx(2.5)
    # Length penalty: same n-grams, 2 extra words -> exp(-4/72) on the matching image's unigram term and below.
    score_long = cider_d(["a red circle x y", "blue square"], [["a red circle"], ["blue square"]])
    assert 2.5 < score_long < 6.25
    assert math.isfinite(score_long)


def test_score_and_chance():
    items = [
        {"kind": "counting", "answer": "3", "answer_space": ["1", "2", "3", "4"]},
        {"kind": "color", "answer": "red", "answer_space": ["red", "blue"]},
        {"kind": "open", "answer": "", "answer_space": None},
        {"kind": "caption", "answer": "", "keywords": ["red", "circle"], "answer_space": None},
    ]
    replies = ["There are three shapes.", "It is blue.", "one two three four", "A red circle."]
    metrics = score(items, replies)
    assert metrics["counting_acc"] == 1.0 and metrics["color_acc"] == 0.0
    assert metrics["mean_response_words"] == 4 and metrics["caption_f1"] == 1.0
    assert chance(items)["counting_acc"] == 0.25 and chance(items)["color_acc"] == 0.5


def test_eval_cli_on_a_tiny_model(make_tiny_model, tmp_path, capsys):
    from mmgpt.cli import main
    from mmgpt.synth import generate_world

    world = tmp_path / "w"
    generate_world(world, seed=0, scale="quick", progress=False)
    make_tiny_model(image_size=64).save_pretrained(tmp_path / "m")
    code = main(
        [
            "eval",
            "--model",
            str(tmp_path / "m"),
            "--data",
            str(world / "eval" / "heldout.jsonl"),
            "--limit",
            "2",
            "--max-new-tokens",
            "4",
            "--out",
            str(tmp_path / "r.json"),
            "--with-chance",
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["metrics"]) == {
        "counting_acc",
        "color_acc",
        "ocr_em",
        "caption_f1",
        "language_acc",
        "followup_acc",
        "mean_response_words",
    }
    assert len(report["items"]) == 16 and report["chance"]["counting_acc"] > 0
