"""Readers on tiny fixtures in each public format, bad input accounting, sampling, sharding and resume."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from mmgpt.data.config import DataConfig
from mmgpt.data.dataset import ExampleBuilder, read_dataset
from mmgpt.data.mixture import SampleStream, build_joint_stream
from mmgpt.data.templates import encode_conversation, supervised_spans
from mmgpt.errors import ConfigError, DataError
from mmgpt.model.image_processing import FlamingoImageProcessor


def image(path: Path, colour="red") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path)
    return path


def write(path: Path, data) -> Path:
    """Write bytes as they are, a string as UTF-8 text, anything else as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def read(tmp_path, **spec):
    config = DataConfig.from_dict({"data_root": str(tmp_path), "vision_language": [spec]})
    return read_dataset(config.vision_language[0], config)


def responses(tok, sample):
    enc = encode_conversation(sample.conversation, tok)
    return [tok.decode(s) for s in supervised_spans(enc)]


def test_llava_pairs_every_gpt_message_as_target(tmp_path, tiny_tokenizer):
    image(tmp_path / "img" / "1.jpg")
    record = {
        "id": "a",
        "image": "1.jpg",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat is it?"},
            {"from": "gpt", "value": "A square."},
            {"from": "human", "value": "What colour?"},
            {"from": "gpt", "value": "Red."},
            {"from": "human", "value": "Is it big?"},
            {"from": "gpt", "value": "It is small."},
        ],
    }
    write(tmp_path / "llava.json", [record])
    result = read(tmp_path, type="llava", ann_path="llava.json", image_root="img")
    (sample,) = result.samples
    assert responses(tiny_tokenizer, sample) == ["A square.</s>", "Red.</s>", "It is small.</s>"]
    assert sample.conversation.turns[0].num_images == 1 and sample.conversation.turns[0].user == "What is it?"


def test_conversation_format_multi_image(tmp_path):
    image(tmp_path / "a.png")
    image(tmp_path / "b.png", "blue")
    record = {
        "id": "m",
        "image": ["a.png", "b.png"],
        "conversations": [
            {"from": "human", "value": "<image> Look."},
            {"from": "gpt", "value": "Red."},
            {"from": "human", "value": "And <image>?"},
            {"from": "gpt", "value": "Blue."},
        ],
    }
    write(tmp_path / "own.json", [record])
    (sample,) = read(tmp_path, type="conversation", ann_path="own.json").samples
    assert [t.num_images for t in sample.conversation.turns] == [1, 1]
    assert [p.name for p in sample.images] == ["a.png", "b.png"]


def test_bad_records_are_skipped_and_counted(tmp_path):
    image(tmp_path / "ok.jpg")
    records = [
        {
            "id": "good",
            "image": "ok.jpg",
            "conversations": [{"from": "human", "value": "<image>Q"}, {"from": "gpt", "value": "A"}],
        },
        {
            "id": "noimg",
            "image": "missing.jpg",
            "conversations": [{"from": "human", "value": "<image>Q"}, {"from": "gpt", "value": "A"}],
        },
        {
            "id": "empty",
            "image": "ok.jpg",
            "conversations": [{"from": "human", "value": "<image>Q"}, {"from": "gpt", "value": " "}],
        },
        {
            "id": "order",
            "image": "ok.jpg",
            "conversations": [{"from": "gpt", "value": "A"}, {"from": "human", "value": "Q"}],
        },
        {
            "id": "count",
            "image": "ok.jpg",
            "conversations": [{"from": "human", "value": "<image><image>Q"}, {"from": "gpt", "value": "A"}],
        },
        {"id": "type", "image": 5, "conversations": []},
    ]
    write(tmp_path / "d.json", records)
    result = read(tmp_path, type="llava", ann_path="d.json")
    assert [s.id for s in result.samples] == ["good"]
    assert dict(result.skips.counts) == {
        "missing_image": 1,
        "empty_response": 1,
        "bad_turn_order": 1,
        "image_count_mismatch": 1,
        "malformed": 1,
    }
    assert any("d.json:noimg" in e for e in result.skips.examples["missing_image"])
    with pytest.raises(DataError, match=r"d\.json:noimg: missing_image"):
        config = DataConfig.from_dict(
            {
                "data_root": str(tmp_path),
                "strict": True,
                "vision_language": [{"type": "llava", "ann_path": "d.json"}],
            }
        )
        read_dataset(config.vision_language[0], config)


def test_invalid_json_names_file_and_line(tmp_path):
    write(tmp_path / "bad.json", '[\n{"id": 1,\n oops}\n]')
    with pytest.raises(DataError, match=r"bad\.json:3"):
        read(tmp_path, type="llava", ann_path="bad.json")
    write(tmp_path / "bad.jsonl", '{"instruction": "a", "response": "b"}\nnot json\n')
    config = DataConfig.from_dict(
        {"data_root": str(tmp_path), "language": [{"type": "dolly", "ann_path": "bad.jsonl"}]}
    )
    with pytest.raises(DataError, match=r"bad\.jsonl:2"):
        read_dataset(config.language[0], config)


def test_minigpt4_aokvqa_coco_ocr_vqa_formats(tmp_path, tiny_tokenizer):
    image(tmp_path / "cc" / "image" / "7.jpg")
    write(tmp_path / "cc" / "filter_cap.json", {"annotations": [{"image_id": "7", "caption": "A red card."}]})
    (s,) = read(tmp_path, type="minigpt4", ann_path="cc/filter_cap.json", image_root="cc/image").samples
    assert responses(tiny_tokenizer, s) == ["A red card.</s>"] and s.conversation.turns[0].num_images == 1

    image(tmp_path / "coco" / "train2017" / "000000000042.jpg")
    aok = [
        {
            "split": "train",
            "image_id": 42,
            "question_id": "q1",
            "question": "What is it?",
            "choices": ["cat", "dog", "card", "cup"],
            "correct_choice_idx": 2,
            "direct_answers": ["card"] * 10,
            "difficult_direct_answer": False,
            "rationales": ["It is flat.", "It is red."],
        }
    ]
    write(tmp_path / "aok.json", aok)
    (s,) = read(tmp_path, type="aokvqa", ann_path="aok.json", image_root="coco/train2017").samples
    assert responses(tiny_tokenizer, s) == ["The answer is card. Because It is flat. It is red.</s>"]

    image(tmp_path / "coco" / "val2014" / "x.jpg")
    karpathy = {
        "images": [
            {
                "filepath": "val2014",
                "filename": "x.jpg",
                "split": "test",
                "cocoid": 1,
                "sentences": [{"raw": "A red thing.", "tokens": []}],
            },
            {
                "filepath": "val2014",
                "filename": "x.jpg",
                "split": "restval",
                "cocoid": 2,
                "sentences": [{"raw": "Red.", "tokens": []}],
            },
        ]
    }
    write(tmp_path / "coco" / "dataset_coco.json", karpathy)
    assert [
        s.id
        for s in read(
            tmp_path, type="coco_caption", ann_path="coco/dataset_coco.json", image_root="coco", split="test"
        ).samples
    ] == ["1"]
    assert [
        s.id
        for s in read(
            tmp_path, type="coco_caption", ann_path="coco/dataset_coco.json", image_root="coco", split="train"
        ).samples
    ] == ["2"]
    write(tmp_path / "coco" / "lavis.json", [{"image": "val2014/x.jpg", "caption": "A red thing."}])
    assert (
        len(read(tmp_path, type="coco_caption", ann_path="coco/lavis.json", image_root="coco").samples) == 1
    )

    image(tmp_path / "ocr" / "images" / "b1.gif")
    ocr = {
        "b1": {
            "imageURL": "http://x/b1.gif",
            "questions": ["Who wrote this book?", "What is the title?"],
            "answers": ["Ann Lee", "Red Book"],
            "title": "Red Book",
            "authorName": "Ann Lee",
            "genre": "Art",
            "split": 1,
        },
        "b2": {"imageURL": "http://x/b2.jpg", "questions": ["Q"], "answers": ["A"], "split": 3},
    }
    write(tmp_path / "ocr" / "dataset.json", ocr)
    (s,) = read(
        tmp_path, type="ocr_vqa", ann_path="ocr/dataset.json", image_root="ocr/images", split="train"
    ).samples
    assert responses(tiny_tokenizer, s) == ["Ann Lee</s>", "Red Book</s>"]

    image(tmp_path / "vqa" / "COCO_train2014_000000000042.jpg")
    write(
        tmp_path / "vqa" / "q.json",
        {"questions": [{"image_id": 42, "question": "Colour?", "question_id": 5}]},
    )
    answers = [{"answer": a, "answer_id": i} for i, a in enumerate(["red"] * 6 + ["pink"] * 4)]
    write(
        tmp_path / "vqa" / "a.json", {"annotations": [{"question_id": 5, "image_id": 42, "answers": answers}]}
    )
    (s,) = read(
        tmp_path, type="vqa", ann_path="vqa/a.json", question_path="vqa/q.json", image_root="vqa"
    ).samples
    assert responses(tiny_tokenizer, s) == ["red</s>"]


def test_language_formats(tmp_path, tiny_tokenizer):
    write(
        tmp_path / "d.jsonl",
        '{"instruction": "Sum?", "context": "1 and 2", "response": "3.", "category": "x"}\n',
    )
    write(tmp_path / "a.json", [{"instruction": "Say hi.", "input": "", "output": "Hi."}])
    config = DataConfig.from_dict(
        {
            "data_root": str(tmp_path),
            "language": [
                {"type": "dolly", "ann_path": "d.jsonl"},
                {"type": "alpaca_gpt4", "ann_path": "a.json"},
            ],
        }
    )
    dolly, alpaca = (read_dataset(s, config).samples[0] for s in config.language)
    assert dolly.conversation.turns[0].input == "1 and 2" and responses(tiny_tokenizer, dolly) == ["3.</s>"]
    assert alpaca.conversation.turns[0].input is None and responses(tiny_tokenizer, alpaca) == ["Hi.</s>"]


def test_config_validation_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.vision_language\[0\]\.colour"):
        DataConfig.from_dict({"vision_language": [{"type": "llava", "ann_path": "x", "colour": 1}]})
    with pytest.raises(ConfigError, match=r"sample"):
        DataConfig.from_dict({"vision_language": [{"type": "llava", "ann_path": "x", "sample": -1}]})
    with pytest.raises(ConfigError, match=r"unknown key data\.bogus"):
        DataConfig.from_dict({"bogus": 1})
    with pytest.raises(ConfigError, match=r"unknown dataset type"):
        DataConfig.from_dict({"vision_language": [{"type": "nope", "ann_path": "x"}]})


def _language_corpus(tmp_path, n=40):
    rows = [{"instruction": f"Item {i}?", "input": "", "output": f"Answer {i}."} for i in range(n)]
    write(tmp_path / "a.json", rows)
    return DataConfig.from_dict(
        {"data_root": str(tmp_path), "seed": 3, "language": [{"type": "alpaca_gpt4", "ann_path": "a.json"}]}
    )


def test_sample_subset_is_seeded(tmp_path):
    config = _language_corpus(tmp_path)
    config.language[0].sample = 7
    first = [s.id for s in read_dataset(config.language[0], config).samples]
    again = [s.id for s in read_dataset(config.language[0], config).samples]
    assert first == again and len(first) == 7


def test_rank_shards_are_disjoint_and_resume_is_exact(tmp_path, tiny_tokenizer):
    config = _language_corpus(tmp_path)
    samples = read_dataset(config.language[0], config).samples
    proc = FlamingoImageProcessor(32)
    shards = [
        SampleStream(samples, ExampleBuilder(tiny_tokenizer, proc), 4, seed=1, rank=r, world_size=2)
        for r in range(2)
    ]
    seen = [{e.id for _ in range(5) for e in s.next_examples()} for s in shards]
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 40
    stream = SampleStream(samples, ExampleBuilder(tiny_tokenizer, proc), 3, seed=1)
    for _ in range(17):  # crosses an epoch boundary
        stream.next_examples()
    state = stream.state_dict()
    expected = [[e.id for e in stream.next_examples()] for _ in range(5)]
    resumed = SampleStream(samples, ExampleBuilder(tiny_tokenizer, proc), 3, seed=1)
    resumed.load_state_dict(state)
    assert [[e.id for e in resumed.next_examples()] for _ in range(5)] == expected


def test_joint_stream_batches_and_corrupt_images(tmp_path, tiny_tokenizer):
    image(tmp_path / "1.jpg")
    write(tmp_path / "2.jpg", "not an image")
    image(tmp_path / "3.jpg", "green")
    recs = [
        {
            "id": str(i),
            "image": f"{i}.jpg",
            "conversations": [{"from": "human", "value": "<image>Q?"}, {"from": "gpt", "value": f"A{i}."}],
        }
        for i in (1, 2, 3)
    ]
    write(tmp_path / "v.json", recs)
    _language_corpus(tmp_path, 5)
    config = DataConfig.from_dict(
        {
            "data_root": str(tmp_path),
            "vision_language": [{"type": "llava", "ann_path": "v.json"}],
            "language": [{"type": "alpaca_gpt4", "ann_path": "a.json"}],
        }
    )
    joint = build_joint_stream(config, tiny_tokenizer, FlamingoImageProcessor(32), batch_size=2)
    for _ in range(3):
        vl, lang = joint.next()
        assert vl["vision_x"].shape == (2, 1, 1, 3, 32, 32) and lang["vision_x"] is None
        assert vl["labels"][vl["attention_mask"] == 0].eq(-100).all()
    assert joint.vision_language.builder.skips.counts["corrupt_image"] >= 1


def test_no_usable_samples_is_an_error(tmp_path, tiny_tokenizer):
    write(
        tmp_path / "v.json",
        [
            {
                "id": "x",
                "image": "gone.jpg",
                "conversations": [{"from": "human", "value": "<image>Q"}, {"from": "gpt", "value": "A"}],
            }
        ],
    )
    config = DataConfig.from_dict(
        {"data_root": str(tmp_path), "vision_language": [{"type": "llava", "ann_path": "v.json"}]}
    )
    with pytest.raises(DataError, match="no usable vision-language samples"):
        build_joint_stream(config, tiny_tokenizer, FlamingoImageProcessor(32))


def test_dataset_weight_repeats_its_samples_in_the_joint_stream(tmp_path, tiny_tokenizer):
    rows = [{"instruction": f"Other {i}?", "input": "", "output": f"Reply {i}."} for i in range(10)]
    write(tmp_path / "b.json", rows)
    _language_corpus(tmp_path, 20)  # a.json: 20 samples

    def pass_ids(weight_a: float) -> Counter:
        config = DataConfig.from_dict(
            {
                "data_root": str(tmp_path),
                "language": [
                    {"type": "alpaca_gpt4", "ann_path": "a.json", "name": "a", "weight": weight_a},
                    {"type": "alpaca_gpt4", "ann_path": "b.json", "name": "b"},
                ],
            }
        )
        joint = build_joint_stream(config, tiny_tokenizer, FlamingoImageProcessor(32), batch_size=5)
        stream = joint.language
        assert stream.num_samples == round(20 * weight_a) + 10
        # one whole pass: every sample as often as its dataset's weight says
        return Counter(
            (e.dataset, e.id) for _ in range(stream.num_samples // 5) for e in stream.next_examples()
        )

    plain = pass_ids(1.0)
    assert set(plain.values()) == {1} and len(plain) == 30
    tripled = pass_ids(3.0)
    assert {k: v for k, v in tripled.items() if k[0] == "a"} == {k: 3 for k in plain if k[0] == "a"}
    assert all(tripled[k] == 1 for k in plain if k[0] == "b")
    half_again = pass_ids(1.5)
    counts_a = Counter(v for k, v in half_again.items() if k[0] == "a")
    assert counts_a == {1: 10, 2: 10}
    assert len([k for k in pass_ids(0.5) if k[0] == "a"]) == 10
