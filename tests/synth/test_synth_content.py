"""Content checks: held-out disjointness, determinism, text agreeing with the scene ground truth."""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmgpt.synth.answers import extract_answer, extract_number, tokens
from mmgpt.synth.scene import Scene
from mmgpt.synth.vocab import COLOUR_NAMES, COLOURS, KINDS, NUMBER_WORDS, SIZE_NAMES

_ATTRIBUTE_WORDS = {*COLOUR_NAMES, *KINDS, *SIZE_NAMES}


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _train_ids_referenced(load) -> set[int]:
    ids = set()
    for name in ("detail", "complex_reasoning", "conversation", "attributes"):
        ids |= {int(r["image"].split(".")[0]) for r in load(f"llava/{name}.json")}
    ids |= {int(r["image_id"]) for r in load("cc_sbu_align/filter_cap.json")["annotations"]}
    ids |= {r["image_id"] for r in load("aokvqa/aokvqa_v1p0_train.json")}
    ids |= {r["cocoid"] for r in load("coco/dataset_coco.json")["images"]}
    ids |= {int(k) for k in load("ocr_vqa/dataset.json")}
    ids |= {q["image_id"] for q in load("vqa/questions.json")["questions"]}
    for line in load("pretrain/interleaved.jsonl"):
        ids |= {int(Path(p).stem) for p in line["images"]}
    return ids


def test_heldout_disjoint_from_training(quick_world, load, scenes):
    root, manifest = quick_world
    heldout = {i for i, s in scenes.items() if s["split"] == "heldout"}
    train = {i for i, s in scenes.items() if s["split"] == "train"}
    assert heldout and train and not heldout & train
    assert _train_ids_referenced(load) <= train
    eval_images = {it["image"] for it in load("eval/heldout.jsonl") if it["image"]}
    assert eval_images == set(manifest.image_files("heldout"))
    train_bytes = {hashlib.sha256((root / p).read_bytes()).digest() for p in manifest.image_files("train")}
    assert not any(hashlib.sha256((root / p).read_bytes()).digest() in train_bytes for p in eval_images)


def test_fresh_scenes_are_new_and_seeded(quick_world):
    from mmgpt.synth.world import fresh_scenes, scene_signature

    _, manifest = quick_world
    scenes = fresh_scenes(manifest, 300)
    signatures = [scene_signature(s) for s in scenes]
    world_signatures = {scene_signature(Scene.from_dict(d)) for d in manifest.scenes}
    assert len(set(signatures)) == 300 and not set(signatures) & world_signatures
    assert {s.split for s in scenes} == {"train"} and {s.image_size for s in scenes} == {manifest.image_size}
    first_id = max(d["image_id"] for d in manifest.scenes) + 1
    assert [s.image_id for s in scenes] == list(range(first_id, first_id + 300))
    assert [s.to_dict() for s in fresh_scenes(manifest, 300)] == [s.to_dict() for s in scenes]
    assert fresh_scenes(manifest, 5, stream="other")[0].to_dict() != scenes[0].to_dict()
    # about as many carry a word as the world's training images do
    assert 0.2 < sum(s.word is not None for s in scenes) / 300 < 0.4


def _arithmetic(question: str) -> tuple[str, int, int] | None:
    """(op, a, b) of an arithmetic question in any of the world's phrasings, else None."""
    if m := re.match(r"Subtract (\d+) from (\d+)", question):
        return "minus", int(m.group(2)), int(m.group(1))
    nums = [int(x) for x in re.findall(r"\d+", question)]
    if len(nums) != 2:
        return None
    op = "plus" if re.search(r"plus|sum|Add", question) else "minus"
    return op, nums[0], nums[1]


def test_reserved_arithmetic_never_trained(load):
    held = {_arithmetic(it["question"]) for it in load("eval/heldout.jsonl") if it["kind"] == "language"}
    held.discard(None)
    assert held
    trained = {_arithmetic(r["instruction"]) for r in load("dolly/dolly.jsonl")}
    for r in load("alpaca/alpaca_gpt4_data.json"):
        op = "plus" if r["instruction"].startswith("Add") else "minus"
        if not r["input"]:
            trained.add(_arithmetic(r["instruction"]))
        elif r["input"] and re.fullmatch(r"\d+ and \d+", r["input"]):
            a, b = (int(x) for x in r["input"].split(" and "))
            trained.add((op, a, b))
    for t in load("pretrain/text.jsonl"):
        trained |= {
            (op, int(a), int(b)) for a, op, b in re.findall(r"(\d+) (plus|minus) (\d+) equals", t["text"])
        }
    asides = {
        _arithmetic(m["value"].removeprefix("<image>\n"))
        for r in load("llava/attributes.json")
        for m in r["conversations"][::2]
    }
    asides.discard(None)
    assert asides  # the attribute conversations' language asides ask sums and differences too
    assert not held & (trained | asides)


def _question_answer_pairs(load) -> list[tuple[str, str]]:
    """(question, answer) of every "Question: ... Answer: ..." pair in the plain pretraining text."""
    pairs = []
    for line in load("pretrain/text.jsonl"):
        pairs += re.findall(r"Question: (.+?) Answer: (.+?)(?= Question: |$)", line["text"])
    return pairs


def test_question_lines_restate_their_question(load):
    from mmgpt.synth.knowledge import arithmetic_statement
    from mmgpt.synth.vocab import POSITIONS

    pairs = _question_answer_pairs(load)
    arithmetic = [(q, a) for q, a in pairs if _arithmetic(q) and not any(k in q for k in KINDS)]
    copies = [(q, a) for q, a in pairs if (q, a) not in arithmetic]
    assert len(arithmetic) > 100 and len(copies) > 100
    for question, answer in arithmetic:
        op, a, b = _arithmetic(question)
        assert answer == arithmetic_statement("sum" if op == "plus" else "difference", a, b), question
    # a copy answer names exactly the colours, kinds, sizes and places its question names, in the same order
    named = {*_ATTRIBUTE_WORDS, *POSITIONS}
    for question, answer in copies:
        asked = [w for w in tokens(question) if w in named]
        assert asked and asked == [w for w in tokens(answer) if w in named], (question, answer)


def test_deterministic_by_hash(quick_world, tmp_path):
    from mmgpt.synth import generate_world

    root, _ = quick_world
    generate_world(tmp_path / "again", seed=0, scale="quick", progress=False)
    assert _digest(tmp_path / "again") == _digest(root)
    generate_world(tmp_path / "other", seed=1, scale="quick", progress=False)
    assert _digest(tmp_path / "other")["llava/detail.json"] != _digest(root)["llava/detail.json"]


@pytest.mark.parametrize("cpus", [1, 3])
def test_the_same_world_from_any_number_of_rendering_workers(quick_world, tmp_path, monkeypatch, cpus):
    from mmgpt import parallel
    from mmgpt.synth import generate_world

    monkeypatch.setattr(parallel, "available_cpus", lambda: cpus)
    generate_world(tmp_path / "again", seed=0, scale="quick", progress=False)
    assert _digest(tmp_path / "again") == _digest(quick_world[0])


def test_scene_geometry(scenes):
    for s in scenes.values():
        assert 1 <= len(s["shapes"]) <= 6
        boxes = []
        for sh in s["shapes"]:
            assert sh["extent"] >= 10
            half = sh["extent"] // 2
            box = (
                sh["cx"] - half,
                sh["cy"] - half,
                sh["cx"] - half + sh["extent"],
                sh["cy"] - half + sh["extent"],
            )
            assert min(box[0], box[1]) >= 0 and max(box[2], box[3]) <= 64
            for other in boxes:
                assert box[2] <= other[0] or other[2] <= box[0] or box[3] <= other[1] or other[3] <= box[1]
            boxes.append(box)


def test_rendered_colours_match_ground_truth(quick_world, scenes):
    root = quick_world[0]
    for s in list(scenes.values())[:60]:
        pixels = np.asarray(Image.open(root / s["paths"][0]).convert("RGB"), dtype=np.int32)
        for sh in s["shapes"]:
            rgb = pixels[sh["cy"], sh["cx"]]
            nearest = min(COLOURS, key=lambda c: int(((np.array(COLOURS[c]) - rgb) ** 2).sum()))
            assert nearest == sh["colour"], (s["image_id"], sh)


def _listing(description: str) -> Counter:
    pattern = r"\b(?:a|an) (small|medium|large) (\w+) (\w+) (?:at|in|on) the ([a-z-]+)"
    return Counter(re.findall(pattern, description))


def test_detail_descriptions_match_scene(load, scenes):
    for rec in load("llava/detail.json"):
        scene = scenes[int(rec["image"].split(".")[0])]
        text = rec["conversations"][1]["value"]
        expected = Counter((s["size"], s["colour"], s["kind"], s["position"]) for s in scene["shapes"])
        assert _listing(text) == expected, text
        assert extract_number(text) == str(len(scene["shapes"]))
        assert (scene["word"] is not None) == ("no text" not in text)
        if scene["word"]:
            assert f"word {scene['word']} " in text


def test_caption_counts_match_scene(load, scenes):
    for rec in load("coco/dataset_coco.json")["images"]:
        scene = scenes[rec["cocoid"]]
        n = len(scene["shapes"])
        with_count = [s["raw"] for s in rec["sentences"] if " shape" in s["raw"].split(":")[0]]
        for raw in with_count:
            if "other shape" in raw:
                assert NUMBER_WORDS[n - 1] in raw or (n == 1)
            else:
                assert extract_number(raw.split(":")[0]) == str(n), raw
        # the grouped caption lists every (colour, kind) with the right multiplicity
        grouped = rec["sentences"][1]["raw"]
        counted = Counter()
        for num, colour, kind in re.findall(
            r"\b(a|an|\w+) (red|green|blue|yellow|purple|orange) (\w+?)s?\b[,. ]", grouped
        ):
            counted[(colour, kind)] += 1 if num in ("a", "an") else int(extract_number(num))
        assert counted == Counter((s["colour"], s["kind"]) for s in scene["shapes"]), grouped


def test_vqa_and_pretrain_counts_match_scene(load, scenes):
    for q, a in zip(
        load("vqa/questions.json")["questions"], load("vqa/annotations.json")["annotations"], strict=True
    ):
        scene = scenes[q["image_id"]]
        m = re.match(r"How many (\w+ )?shapes", q["question"])
        if m:
            colour = (m.group(1) or "").strip() or None
            expected = sum(1 for s in scene["shapes"] if colour in (None, s["colour"]))
            assert a["multiple_choice_answer"] == str(expected), q
    counted = described = totals = 0
    for line in load("pretrain/interleaved.jsonl"):
        for path, chunk in zip(line["images"], line["text"].split("<|endofchunk|>"), strict=False):
            scene = scenes[int(Path(path).stem)]
            # totals in the one form every count takes, as the instruction data answers them
            assert not re.search(r"There (?:is|are) \d+ shapes?\.", chunk), chunk
            totals += len(re.findall(r"The number of shapes is \d+\.", chunk))
            for noun, num in re.findall(r"The number of (\w+ shapes|\w+) is (\d+)\.", chunk):
                assert int(num) == len(_matching(scene, noun)), chunk
                counted += 1
            for ref, attribute in re.findall(r"(The [a-z -]+?) is (?:an? )?(\w+)\.", chunk):
                if not ref.startswith("The number of") and ref != "The word":
                    assert any(attribute in (s["colour"], s["kind"]) for s in _matching(scene, ref)), chunk
                    described += 1
    assert counted > 10 and described > 10 and totals > 10


def _matching(scene: dict, noun: str) -> list[dict]:
    """The scene's shapes that a noun or referent ("red shapes", "stars", "the large circle") can name; a
    position phrase ("the shape at the top-left") is not checked, so it names every shape."""
    named = set(tokens(noun)) & _ATTRIBUTE_WORDS
    return [s for s in scene["shapes"] if named <= {s["colour"], s["kind"], s["size"]}]


def test_counts_are_stated_in_the_pretraining_form(load, scenes):
    # Every count, totals included, as "The number of red shapes is N." / "The number of shapes is N.", N in
    # digits: the form the base learns to read counts of one colour or kind in; a total answered in a form of
    # its own was answered in this one anyway, with a colour the question does not name
    total = re.compile(r"^The number of shapes is \d+\.$")
    referent_first = re.compile(r"^The number of [a-z ]+ is \d+\.$")
    among = re.compile(r"^There (is \d+|are \d+|are no) [a-z ]+ among them\.$")
    seen = Counter()
    for it in load("eval/heldout.jsonl"):
        if it["kind"] == "counting":
            totals = it["question"].startswith(("How many shapes", "Count the shapes", "How many objects"))
            assert (total if totals else referent_first).match(it["reference"]), it
            seen[totals] += 1
        elif it["question"].startswith(("And how many of", "How many of those")):
            assert among.match(it["reference"]), it
    assert seen[True] > 10 and seen[False] > 10


def test_facts_are_stated_in_the_pretraining_form(load, scenes):
    # Sums, differences and colour mixes as the pretraining text states them ("7 plus 5 equals 12.",
    # "Mixing red and blue gives purple."), a read word and a shape's colour or kind as an image's pretraining
    # statements do: the forms the base has learned, which tuning should use rather than teach anew.
    sums = re.compile(r"^(\d+) (plus|minus) (\d+) equals (\d+)\.$")
    arithmetic = 0
    for r in load("alpaca/alpaca_gpt4_data.json"):
        if r["instruction"].startswith(("Add", "Subtract")) or _arithmetic(r["instruction"]):
            m = sums.match(r["output"])
            assert m, r
            a, op, b, result = int(m[1]), m[2], int(m[3]), int(m[4])
            assert result == (a + b if op == "plus" else a - b), r
            arithmetic += 1
        if "mix" in r["instruction"]:
            assert re.match(r"^Mixing \w+ and \w+ gives \w+\.$", r["output"]), r
    assert arithmetic > 10
    read = 0
    for key, rec in load("ocr_vqa/dataset.json").items():
        scene = scenes[int(key)]
        for question, answer in zip(rec["questions"], rec["answers"], strict=True):
            if question == "What word is written in the image?":
                assert answer in (
                    f"The word {scene['word']} is written at the {scene['word_band']}.",
                    f"The text says {scene['word']}.",
                ), rec
                read += 1
    assert read > 5
    pretraining = "".join(line["text"] for line in load("pretrain/interleaved.jsonl"))
    stated = 0
    for it in load("eval/heldout.jsonl"):
        if it["kind"] in ("color", "shape"):
            # "The square is red." / "The red shape is a square.": the referent of the question, then the answer
            m = re.match(r"^The ([a-z -]+) is (?:an? )?(\w+)\.$", it["reference"])
            assert m and m[2] == it["answer"] and f"the {m[1]}" in it["question"], it
            stated += 1
    colours = "|".join(COLOUR_NAMES)
    assert stated > 10 and re.search(rf"The \w+ is ({colours})\.", pretraining)
    assert re.search(r"The \w+ shape is an? \w+\.", pretraining) and "The number of " in pretraining


def test_heldout_references_carry_their_answers(load, scenes):
    for it in load("eval/heldout.jsonl"):
        if it["kind"] in ("caption", "open"):
            continue
        assert extract_answer(it["kind"], it["reference"], it["answer_space"]) == it["answer"], it
        if it["kind"] == "counting" and it["question"].startswith("How many shapes"):
            scene = scenes[int(Path(it["image"]).stem)]
            assert it["answer"] == str(len(scene["shapes"]))


def test_followups_need_the_earlier_answer(load):
    chains = 0
    for rec in load("llava/conversation.json"):
        conv = rec["conversations"]
        for i in range(2, len(conv), 2):
            if conv[i]["value"] in ("And if one more were added?", "What if one more were added?"):
                before = extract_number(conv[i - 1]["value"])
                after = extract_number(conv[i + 1]["value"])
                assert int(after) == int(before) + 1, conv
                chains += 1
    assert chains > 0
    for it in load("eval/heldout.jsonl"):
        if it["kind"] == "followup":
            assert it["question"] not in it["history"][0]["question"]
            assert (
                "that" in tokens(it["question"])
                or "it" in tokens(it["question"])
                or it["question"].startswith(("And", "What if", "How many of"))
                or "its" in tokens(it["question"])
            ), it["question"]


def test_attribute_conversations_drill_every_training_image(load, scenes):
    """llava/attributes.json: one conversation per training image, whose colour, kind and count answers agree
    with the scene, never give one answer twice, and end with a follow-up chain (its question refers back)."""
    records = load("llava/attributes.json")
    train = {i for i, s in scenes.items() if s["split"] == "train"}
    assert sorted(int(r["image"].split(".")[0]) for r in records) == sorted(train)
    checked = 0
    for rec in records:
        scene = scenes[int(rec["image"].split(".")[0])]
        conv = rec["conversations"]
        answers = [m["value"] for m in conv[1::2]]
        assert len(set(answers)) == len(answers), conv
        last_question = conv[-2]["value"]
        assert last_question.startswith(("And", "What", "How", "Which")) and (
            {"that", "it", "its", "them", "those", "one"} & set(re.findall(r"[a-z]+", last_question.lower()))
        ), last_question
        for question, answer in zip(conv[:-2:2], answers[:-1], strict=True):
            text = question["value"]
            colour = re.fullmatch(r"(?:<image>\n)?How many (\w+) shapes .*", text)
            if colour and colour.group(1) in COLOUR_NAMES:
                n = sum(s["colour"] == colour.group(1) for s in scene["shapes"])
                assert extract_number(answer) == str(n), (text, answer, scene)
                checked += 1
    assert checked > 0


def test_some_attribute_conversations_have_a_language_aside_before_their_follow_ups(load, quick_world):
    """About ASIDE_SHARE of the attribute conversations ask one language-only task somewhere before their
    closing follow-up chain, and without it each is the conversation the world drew before asides existed."""
    from mmgpt.synth import records as R
    from mmgpt.synth.knowledge import TRAIN_TASKS, language_task

    train = [Scene.from_dict(s) for s in quick_world[1].scenes if s["split"] == "train"]
    stream = random.Random("0-llava-attributes")  # the world's own stream for these conversations
    plain = [[m["value"] for m in R.llava_attributes(s, stream)["conversations"]] for s in train]
    # the words of every language task's questions, as the Dolly data asks them
    samples = [language_task(t, random.Random(i)) for t in TRAIN_TASKS for i in range(200)]
    task_words = {w for item in samples for w in re.findall(r"[A-Za-z]+", item.question)}
    asides = 0
    for record, kept in zip(load("llava/attributes.json"), plain, strict=True):
        values = [m["value"] for m in record["conversations"]]
        assert values[0].startswith("<image>\n")
        if values == kept:
            continue
        asides += 1
        values, kept = (
            [v.removeprefix("<image>\n") for v in values],
            [v.removeprefix("<image>\n") for v in kept],
        )
        assert len(values) == len(kept) + 2, values
        at = next(i for i in range(0, len(kept), 2) if values[i] != kept[i])
        assert values[:at] + values[at + 2 :] == kept
        assert at < len(kept) - 2, values  # before the closing follow-up question
        assert set(re.findall(r"[A-Za-z]+", values[at])) <= task_words, values[at]
        assert values[at + 1].endswith(".")
    share = asides / len(plain)
    assert abs(share - R.ASIDE_SHARE) < 0.12, share
    with pytest.raises(ValueError, match="asides need"):
        for seed in range(40):
            R.llava_attributes(train[0], random.Random(5), random.Random(seed))


def test_good_responses_are_full_sentences(load):
    """Responses of the instruction datasets (not detailed descriptions) have 4-30 words and end a sentence
    ("The text says hat." is the shortest; the one/two-word VQA answers are what `mmgpt data inspect` flags)."""
    responses = [
        m["value"]
        for name in ("conversation", "complex_reasoning", "attributes")
        for r in load(f"llava/{name}.json")
        for m in r["conversations"]
        if m["from"] == "gpt"
    ]
    responses += [a for r in load("ocr_vqa/dataset.json").values() for a in r["answers"]]
    responses += [r["response"] for r in load("dolly/dolly.jsonl")]
    responses += [r["output"] for r in load("alpaca/alpaca_gpt4_data.json")]
    for text in responses:
        assert 4 <= len(text.split()) <= 30, text
        assert text[0].isupper() or text[0].isdigit(), text
        assert text.endswith("."), text
