"""The quick world writes every file, in the exact record shapes of the public datasets."""

from __future__ import annotations

import yaml
from PIL import Image

VL_ENTRIES = [
    {"type": "llava", "ann_path": "llava/detail.json", "image_root": "llava/images", "name": "llava_detail"},
    {
        "type": "llava",
        "ann_path": "llava/complex_reasoning.json",
        "image_root": "llava/images",
        "name": "llava_reasoning",
    },
    {
        "type": "llava",
        "ann_path": "llava/conversation.json",
        "image_root": "llava/images",
        "name": "llava_conversation",
    },
    {
        "type": "llava",
        "ann_path": "llava/attributes.json",
        "image_root": "llava/images",
        "name": "llava_attributes",
        "weight": 3,
    },
    {"type": "minigpt4", "ann_path": "cc_sbu_align/filter_cap.json", "image_root": "cc_sbu_align/image"},
    {"type": "aokvqa", "ann_path": "aokvqa/aokvqa_v1p0_train.json", "image_root": "coco/train2017"},
    {"type": "coco_caption", "ann_path": "coco/dataset_coco.json", "image_root": "coco", "split": "train"},
    {"type": "ocr_vqa", "ann_path": "ocr_vqa/dataset.json", "image_root": "ocr_vqa/images", "split": "train"},
]
VQA_ENTRY = {
    "type": "vqa",
    "ann_path": "vqa/annotations.json",
    "question_path": "vqa/questions.json",
    "image_root": "vqa/images",
    "options": {"image_pattern": "{image_id:012d}.jpg"},
}
LANGUAGE = [
    {"type": "dolly", "ann_path": "dolly/dolly.jsonl"},
    {"type": "alpaca_gpt4", "ann_path": "alpaca/alpaca_gpt4_data.json"},
]
HEADER = {"data_root": ".", "max_length": 512, "strict": False, "seed": 0}


def _keys_types(record: dict, spec: dict) -> None:
    assert set(record) == set(spec), (sorted(record), sorted(spec))
    for key, typ in spec.items():
        assert isinstance(record[key], typ), (key, record[key])


def test_every_file_written(quick_world):
    root, manifest = quick_world
    for rel in manifest.files:
        assert (root / rel).is_file(), rel
    images = manifest.image_files()
    assert len(images) >= manifest.counts["train_images"] + manifest.counts["heldout_images"]
    for rel in images[:: max(1, len(images) // 25)]:
        with Image.open(root / rel) as im:
            assert im.format == "JPEG" and im.size == (64, 64) and im.mode == "RGB"


def test_recipes_exact(quick_world):
    root, _ = quick_world
    main = yaml.safe_load((root / "datasets.yaml").read_text())
    assert main == {**HEADER, "vision_language": VL_ENTRIES, "language": LANGUAGE}
    with_vqa = yaml.safe_load((root / "datasets_with_vqa.yaml").read_text())
    assert with_vqa == {**HEADER, "vision_language": [*VL_ENTRIES, VQA_ENTRY], "language": LANGUAGE}
    vl_only = yaml.safe_load((root / "datasets_vl_only.yaml").read_text())
    assert vl_only == {**HEADER, "vision_language": VL_ENTRIES}


def test_llava(load, quick_world):
    root = quick_world[0]
    for name in ("detail", "complex_reasoning", "conversation", "attributes"):
        data = load(f"llava/{name}.json")
        assert isinstance(data, list) and data
        for rec in data:
            _keys_types(rec, {"id": str, "image": str, "conversations": list})
            assert (root / "llava/images" / rec["image"]).is_file()
            conv = rec["conversations"]
            assert len(conv) % 2 == 0
            assert [m["from"] for m in conv] == ["human", "gpt"] * (len(conv) // 2)
            assert all(set(m) == {"from", "value"} and isinstance(m["value"], str) for m in conv)
            assert conv[0]["value"].startswith("<image>\n")
            assert all("<image>" not in m["value"] for m in conv[1:])
            if name == "conversation":
                assert 2 <= len(conv) // 2 <= 4
            if name == "detail":
                assert len(conv) == 2
            if name == "attributes":
                assert 3 <= len(conv) // 2 <= 8  # with a language aside


def test_cc_sbu(load, quick_world):
    data = load("cc_sbu_align/filter_cap.json")
    assert set(data) == {"annotations"}
    for rec in data["annotations"]:
        _keys_types(rec, {"image_id": str, "caption": str})
        assert (quick_world[0] / f"cc_sbu_align/image/{rec['image_id']}.jpg").is_file()


def test_aokvqa(load, quick_world):
    spec = {
        "split": str,
        "image_id": int,
        "question_id": str,
        "question": str,
        "choices": list,
        "correct_choice_idx": int,
        "direct_answers": list,
        "difficult_direct_answer": bool,
        "rationales": list,
    }
    for rec in load("aokvqa/aokvqa_v1p0_train.json"):
        _keys_types(rec, spec)
        assert len(rec["choices"]) == 4 and len(set(rec["choices"])) == 4
        assert rec["choices"][rec["correct_choice_idx"]] == rec["direct_answers"][0]
        assert len(rec["direct_answers"]) == 10 and len(rec["rationales"]) == 3
        assert all(isinstance(x, str) for x in rec["choices"] + rec["direct_answers"] + rec["rationales"])
        assert (quick_world[0] / f"coco/train2017/{rec['image_id']:012d}.jpg").is_file()


def test_coco_karpathy(load, quick_world):
    data = load("coco/dataset_coco.json")
    assert isinstance(data["images"], list) and data["images"]
    spec = {
        "filepath": str,
        "sentids": list,
        "filename": str,
        "imgid": int,
        "split": str,
        "sentences": list,
        "cocoid": int,
    }
    for rec in data["images"]:
        _keys_types(rec, spec)
        assert rec["split"] == "train"
        assert (quick_world[0] / "coco" / rec["filepath"] / rec["filename"]).is_file()
        assert len(rec["sentences"]) == 5
        for sent in rec["sentences"]:
            _keys_types(sent, {"tokens": list, "raw": str, "imgid": int, "sentid": int})
            assert sent["tokens"] and all(t == t.lower() for t in sent["tokens"])
        assert rec["sentids"] == [s["sentid"] for s in rec["sentences"]]


def test_ocr_vqa(load, quick_world):
    data = load("ocr_vqa/dataset.json")
    assert isinstance(data, dict) and data
    spec = {
        "imageURL": str,
        "questions": list,
        "answers": list,
        "title": str,
        "authorName": str,
        "genre": str,
        "split": int,
    }
    for key, rec in data.items():
        _keys_types(rec, spec)
        assert rec["split"] in (1, 2, 3)
        assert len(rec["questions"]) == len(rec["answers"]) >= 1
        ext = rec["imageURL"].rsplit(".", 1)[-1]
        assert rec["imageURL"].endswith(f"/{key}.{ext}")
        assert (quick_world[0] / f"ocr_vqa/images/{key}.{ext}").is_file()
    assert any("Is there text in the image?" in r["questions"] for r in data.values())


def test_language_files(load):
    dolly = load("dolly/dolly.jsonl")
    assert dolly
    for rec in dolly:
        _keys_types(rec, {"instruction": str, "context": str, "response": str, "category": str})
    alpaca = load("alpaca/alpaca_gpt4_data.json")
    assert alpaca
    for rec in alpaca:
        _keys_types(rec, {"instruction": str, "input": str, "output": str})


def test_vqa(load, quick_world):
    questions = load("vqa/questions.json")["questions"]
    annotations = load("vqa/annotations.json")["annotations"]
    assert len(questions) == len(annotations) > 0
    by_id = {q["question_id"]: q for q in questions}
    assert len(by_id) == len(questions)
    for q in questions:
        _keys_types(q, {"image_id": int, "question": str, "question_id": int})
        assert (quick_world[0] / f"vqa/images/{q['image_id']:012d}.jpg").is_file()
    for a in annotations:
        assert {"question_id", "image_id", "multiple_choice_answer", "answers"} <= set(a)
        assert by_id[a["question_id"]]["image_id"] == a["image_id"]
        assert len(a["answers"]) == 10
        assert all({"answer", "answer_id"} <= set(x) for x in a["answers"])
        assert len(a["multiple_choice_answer"].split()) <= 2


def test_pretrain_corpus(load, quick_world):
    for line in load("pretrain/interleaved.jsonl"):
        assert set(line) == {"images", "text"}
        assert 1 <= len(line["images"]) <= 2
        assert line["text"].count("<image>") == len(line["images"])
        assert line["text"].count("<|endofchunk|>") == len(line["images"])
        assert all((quick_world[0] / p).is_file() for p in line["images"])
    text = load("pretrain/text.jsonl")
    assert text and all(set(t) == {"text"} and t["text"] for t in text)


def test_heldout_items(load, quick_world):
    items = load("eval/heldout.jsonl")
    kinds = {"counting", "color", "shape", "ocr", "caption", "language", "followup", "open"}
    assert {it["kind"] for it in items} == kinds
    assert len({it["id"] for it in items}) == len(items)
    for it in items:
        assert set(it) == {
            "id", "kind", "image", "history", "question", "answer", "answer_space", "keywords", "reference"
        }  # fmt: skip
        assert it["kind"] in kinds
        assert (it["image"] is None) == (it["kind"] == "language")
        if it["image"]:
            assert (quick_world[0] / it["image"]).is_file()
        assert (len(it["history"]) > 0) == (it["kind"] == "followup")
        if it["kind"] in ("caption", "open"):
            assert it["answer_space"] is None and it["keywords"]
        else:
            assert it["answer"] in it["answer_space"]
