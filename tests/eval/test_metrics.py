"""Metrics against hand-computed values, and the held-out evaluator on a tiny model."""

from __future__ import annotations

import json
import math

import pytest

from mmgpt.eval.metrics import (
    caption_tokens,
    cider_d,
    exact_match,
    normalize_vqa,
    response_words,
    vqa_accuracy,
)
from mmgpt.eval.runner import chance, most_frequent, score, vqa_answer
from mmgpt.synth.answers import is_correct


def test_vqa_normalisation_and_accuracy():
    assert normalize_vqa("Two dogs!") == "2 dogs"
    assert normalize_vqa("The cat") == "cat"
    assert normalize_vqa("dont") == "don't"
    # 3 of 10 humans said "2": leave-one-out gives 7 subsets with 3 matches (1.0) and 3 with 2 (2/3).
    assert vqa_accuracy("two", ["2"] * 3 + ["3"] * 7) == pytest.approx((7 * 1.0 + 3 * 2 / 3) / 10)
    assert vqa_accuracy("2", ["2"] * 10) == 1.0 and vqa_accuracy("5", ["2"] * 10) == 0.0
    assert exact_match("A Red.", "red") == 1.0 and response_words("a b  c") == 3


def test_vqa_punctuation_rules_and_partial_credit():
    # Punctuation next to a space is deleted, inside a word it becomes a space; a digit comma is always deleted.
    assert normalize_vqa("hello-world") == "hello world"
    assert normalize_vqa("yes , sir") == "yes sir"
    assert normalize_vqa("1,000") == "1000"
    # A period is stripped unless it sits between digits.
    assert normalize_vqa("Yes.") == "yes" and normalize_vqa("3.5") == "3.5"
    assert normalize_vqa("An Apple") == "apple" and normalize_vqa("none") == "0"
    # 2 of 10 humans: 2 leave-one-out subsets keep one match (1/3), 8 keep both (2/3): (2/3 + 16/3) / 10 = 0.6.
    assert vqa_accuracy("2", ["2", "2"] + ["3"] * 8) == pytest.approx(0.6)
    assert vqa_accuracy("anything", []) == 0.0


def test_vqa_normalisation_follows_the_official_tables_and_order():
    # A mark is deleted everywhere when it touches a space somewhere in the answer as given; the slash turning
    # into a space must not make the hyphens deleted too ("c-d" stays two words).
    assert normalize_vqa("x/-y c-d") == "x y c d"
    assert normalize_vqa("x -y c-d") == "x y cd"
    # The official contraction table: "hes" and "couldnt've" are in it; "its" and "im" are not (its "Im" entry
    # is capitalised and words are lowercased first).
    assert normalize_vqa("hes") == "he's" and normalize_vqa("couldnt've") == "couldn't've"
    assert normalize_vqa("its") == "its" and normalize_vqa("Im") == "im"
    assert vqa_accuracy("its red", ["it's red"] * 10) == 0.0


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
    # By hand: unseen n-grams get idf log(N) like the seen ones, so every weight is log 2 and cancels. Unigrams:
    # 3 shared of 5 vs 3 -> 3/sqrt(15); bigrams 2/sqrt(8); trigrams 1/sqrt(3); 4-grams 0 (empty reference).
    expected_a = 10 / 4 * math.exp(-4 / 72) * (3 / math.sqrt(15) + 2 / math.sqrt(8) + 1 / math.sqrt(3))
    assert score_long == pytest.approx((expected_a + 5.0) / 2)
    # Clipping: "red red" against "red circle" counts "red" once: 1 / (2 * sqrt(2)) on unigrams, 0 on bigrams.
    clipped = cider_d(["red red", "blue square"], [["red circle"], ["blue square"]])
    assert clipped == pytest.approx((10 / 4 / (2 * math.sqrt(2)) + 5.0) / 2)
    # Several references: the score is their mean.
    two_refs = cider_d(["a b", "c d"], [["a b", "x y"], ["c d"]])
    assert two_refs == pytest.approx((10 / 4 * 2 / 2 + 10 / 4 * 2) / 2)


def test_caption_tokens_split_like_the_coco_evaluation():
    # Clitics are tokens of their own, hyphenated words and numbers stay whole, punctuation is dropped.
    assert caption_tokens("A dog's T-shirt, don't (1,000 / 3.5)!") == [
        "a",
        "dog",
        "'s",
        "t-shirt",
        "do",
        "n't",
        "1,000",
        "3.5",
    ]
    assert caption_tokens("It\u2019s red,blue.") == ["it", "'s", "red", "blue"]
    # So "don't" shares its "do" with "do not": unigram overlap 1 of 2 words each, no higher n-grams shared.
    assert cider_d(["don't", "x"], [["do not"], ["x"]]) == pytest.approx(
        (10 / 4 * (1 / 2) + 10 / 4) / 2, rel=1e-6
    )


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
    assert chance(items)["mean_response_words"] == 0.0


def test_a_reply_about_another_shape_is_wrong_even_with_the_right_answer():
    colour = {"kind": "color", "question": "What colour is the star?", "answer": "red", "answer_space": None}
    follow = {
        "kind": "followup",
        "history": [{"question": "How many circles are there?", "answer": "The number of circles is 2."}],
        "question": "And if we added one more?",
        "answer": "3",
        "answer_space": ["1", "2", "3", "4"],
    }
    count = {"kind": "counting", "question": "How many purple triangles are there?", "answer": "1"}
    items = [colour, colour, colour, follow, follow, count, count]
    replies = [
        "The star is red.",  # right
        "The triangle is red.",  # the right colour, said of another shape
        "Red.",  # a bare answer names nothing else: right
        "Then there would be 3 circles.",  # the earlier round named the circles: right
        "Then there would be 3 squares.",
        "The number of purple triangles is 1.",
        "The number of purple diamonds is 1.",
    ]
    metrics = score(items, replies)
    assert metrics["color_acc"] == round(2 / 3, 4)
    assert metrics["followup_acc"] == 0.5 and metrics["counting_acc"] == 0.5
    # scored on the short answer alone the wrong shape's reply counts
    assert is_correct("color", replies[1], "red") and not is_correct(
        "color", replies[1], "red", "What colour is the star?"
    )


def test_chance_caption_uses_another_images_caption():
    items = [
        {"kind": "caption", "image": "a.jpg", "keywords": ["red", "circle"], "reference": "A red circle."},
        {"kind": "caption", "image": "b.jpg", "keywords": ["red", "square"], "reference": "A red square."},
    ]
    # Each item draws the other's caption: one keyword of two right, one of two said wrong -> F1 0.5.
    assert chance(items)["caption_f1"] == pytest.approx(0.5)


def test_most_frequent_answers_the_commonest_answer_of_each_kind():
    items = [
        {"kind": "counting", "answer": "1", "answer_space": ["0", "1", "2"]},
        {"kind": "counting", "answer": "One", "answer_space": ["0", "1", "2"]},  # normalised: the same answer
        {"kind": "counting", "answer": "2", "answer_space": ["0", "1", "2"]},
        {"kind": "color", "answer": "red", "answer_space": ["red", "blue"]},
        {"kind": "shape", "answer": "star", "answer_space": ["star", "circle"]},
        {"kind": "shape", "answer": "circle", "answer_space": ["star", "circle"]},
        {"kind": "shape", "answer": "circle", "answer_space": ["star", "circle"]},
        {"kind": "caption", "keywords": ["red", "circle"], "reference": "A red circle."},
        {"kind": "caption", "keywords": ["red", "circle"], "reference": "A red circle."},
        {"kind": "caption", "keywords": ["blue", "square"], "reference": "A blue square."},
        {"kind": "open", "answer": "", "answer_space": None},
    ]
    metrics = most_frequent(items)
    assert metrics["counting_acc"] == pytest.approx(2 / 3, abs=1e-4)  # always "1"
    # colour and shape share a metric but not a constant: "red" for colour items, "circle" for shape items
    assert metrics["color_acc"] == pytest.approx(3 / 4, abs=1e-4)
    assert metrics["caption_f1"] == pytest.approx(2 / 3, abs=1e-4)  # "A red circle." for all three images
    assert metrics["mean_response_words"] == 0.0
    assert metrics["language_acc"] is None  # no items of the kind


@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_eval_cli_on_a_tiny_model(make_tiny_model, tmp_path, capsys, dtype):
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
            *(["--dtype", dtype] if dtype else []),
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["dtype"] == (dtype or "float32")  # the precision the replies were computed in
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
    assert report["most_frequent"]["counting_acc"] >= report["chance"]["counting_acc"]
    # the baselines are printed beside the model's metrics, not only written to the report
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == ["model", "chance", "most", "frequent"]
    counting = next(line for line in printed if line.startswith("counting_acc")).split()
    assert float(counting[2]) == report["chance"]["counting_acc"]


def test_eval_cli_chance_and_real_formats(make_tiny_model, tmp_path, capsys):
    from mmgpt.cli import main
    from mmgpt.synth import generate_world

    world = tmp_path / "w"
    generate_world(world, seed=0, scale="quick", progress=False)
    heldout = world / "eval" / "heldout.jsonl"
    assert main(["eval", "--model", "chance", "--data", str(heldout), "--out", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["metrics"]["counting_acc"] > 0
    assert (
        main(["eval", "--model", "most-frequent", "--data", str(heldout), "--out", str(tmp_path / "f.json")])
        == 0
    )
    assert json.loads((tmp_path / "f.json").read_text())["model"] == "most-frequent"

    make_tiny_model(image_size=64).save_pretrained(tmp_path / "m")
    images = sorted((world / "eval" / "images").glob("*.jpg"))[:3]
    ids = [int(p.stem) for p in images]
    (tmp_path / "q.json").write_text(
        json.dumps(
            {"questions": [{"image_id": i, "question": "What colour?", "question_id": i} for i in ids]}
        )
    )
    annotations = [{"question_id": i, "answers": [{"answer": "red"}] * 10} for i in ids]
    (tmp_path / "a.json").write_text(json.dumps({"annotations": annotations}))
    spec = f"vqa:questions={tmp_path / 'q.json'},annotations={tmp_path / 'a.json'},images={world / 'eval' / 'images'}"
    spec += ",pattern={image_id:012d}.jpg"
    args = ["--model", str(tmp_path / "m"), "--max-new-tokens", "3", "--batch-size", "2"]
    assert main(["eval", *args, "--data", spec, "--out", str(tmp_path / "v.json")]) == 0
    vqa_report = json.loads((tmp_path / "v.json").read_text())
    vqa = vqa_report["metrics"]
    assert vqa["items"] == 3 and 0.0 <= vqa["vqa_accuracy"] <= 100.0
    # every item's reply, the short answer scored and its accuracy are in the report
    assert [r["id"] for r in sorted(vqa_report["items"], key=lambda r: r["id"])] == ids
    assert all(r["answer"] == vqa_answer(r["reply"]) for r in vqa_report["items"])
    assert vqa["vqa_accuracy"] == pytest.approx(
        round(100 * sum(r["accuracy"] for r in vqa_report["items"]) / 3, 2)
    )

    karpathy = {
        "images": [
            {
                "filepath": "images",
                "filename": p.name,
                "split": "test",
                "cocoid": int(p.stem),
                "sentences": [{"raw": "A red circle."}, {"raw": "Shapes on a light background."}],
            }
            for p in images
        ]
    }
    (tmp_path / "k.json").write_text(json.dumps(karpathy))
    spec = f"coco:ann={tmp_path / 'k.json'},images={world / 'eval'},split=test"
    assert main(["eval", *args, "--data", spec, "--out", str(tmp_path / "k_out.json")]) == 0
    coco_report = json.loads((tmp_path / "k_out.json").read_text())
    coco = coco_report["metrics"]
    assert coco["items"] == 3 and coco["cider"] >= 0.0
    assert len(coco_report["items"]) == 3 and coco_report["items"][0]["references"][0] == "A red circle."
    assert main(["eval", "--model", "chance", "--data", spec]) != 0  # chance needs answer spaces


def test_vqa_answer_takes_the_short_answer_of_a_sentence():
    assert vqa_answer("The answer is red. Because it is ripe.") == "red"
    assert vqa_answer("Answer: two dogs") == "two dogs" and vqa_answer("red because it is ripe") == "red"
    assert vqa_answer("Yes.") == "Yes" and vqa_answer("3.5") == "3.5" and vqa_answer("") == ""
    assert vqa_answer("two\nQuestion: what next?") == "two"
    assert vqa_accuracy(vqa_answer("The answer is two. Because I count them."), ["2"] * 10) == 1.0


def test_vqa_eval_skips_missing_images_and_rejects_a_wrong_split(make_tiny_model, tmp_path, caplog):
    from mmgpt.cli import main
    from mmgpt.errors import DataError
    from mmgpt.eval.runner import evaluate_vqa
    from mmgpt.model.checkpoints import load_model
    from mmgpt.synth import generate_world

    world = tmp_path / "w"
    generate_world(world, seed=0, scale="quick", progress=False)
    make_tiny_model(image_size=64).save_pretrained(tmp_path / "m")
    model = load_model(tmp_path / "m")
    ids = [int(p.stem) for p in sorted((world / "eval" / "images").glob("*.jpg"))[:2]] + [999999]
    questions, annotations = tmp_path / "q.json", tmp_path / "a.json"
    questions.write_text(
        json.dumps({"questions": [{"image_id": i, "question": "Colour?", "question_id": i} for i in ids]})
    )
    annotations.write_text(
        json.dumps({"annotations": [{"question_id": i, "answers": [{"answer": "red"}] * 10} for i in ids]})
    )
    run = dict(pattern="{image_id:012d}.jpg", limit=None, batch_size=2, max_new_tokens=2)
    metrics, records = evaluate_vqa(model, questions, annotations, world / "eval" / "images", **run)
    # the question whose image file does not exist is skipped and counted, the others scored
    assert metrics["items"] == 2 and metrics["skipped_missing_image"] == 1 and len(records) == 2
    assert "missing and skipped" in caplog.text
    with pytest.raises(DataError, match="none of the 3 images exist"):
        evaluate_vqa(model, questions, annotations, tmp_path, **run)
    annotations.write_text(json.dumps({"annotations": [{"question_id": 5, "answers": [{"answer": "red"}]}]}))
    with pytest.raises(DataError, match="answers for none of the 3 questions"):
        evaluate_vqa(model, questions, annotations, world / "eval" / "images", **run)
    # a prompt without the question is refused before the model is loaded
    spec = f"vqa:questions={questions},annotations={annotations},images={world},prompt=Say yes."
    assert main(["eval", "--model", str(tmp_path / "m"), "--data", spec]) != 0


def test_a_metric_no_item_measures_is_none_not_zero(capsys, tmp_path):
    from mmgpt.cli import main

    items = [{"kind": "counting", "question": "How many shapes?", "answer": "2", "answer_space": ["1", "2"]}]
    metrics = score(items, ["The number of shapes is 2."])
    assert metrics["counting_acc"] == 1.0 and metrics["ocr_em"] is None and metrics["caption_f1"] is None
    heldout = tmp_path / "eval" / "heldout.jsonl"
    heldout.parent.mkdir()
    heldout.write_text(json.dumps({"id": "c", **items[0]}) + "\n")
    assert main(["eval", "--model", "most-frequent", "--data", str(heldout)]) == 0
    printed = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()}
    assert printed["counting_acc"] == "1.0" and printed["ocr_em"] == "—"
