"""Bad input as users meet it: encodings, JSON vs JSON Lines, null and non-string fields, odd images, config
mistakes, repeated ids and where skipped records are reported."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from mmgpt.cli import main
from mmgpt.data.config import DataConfig
from mmgpt.data.dataset import ExampleBuilder, load_image, read_dataset
from mmgpt.errors import ConfigError, DataError
from mmgpt.model.image_processing import FlamingoImageProcessor
from tests.data.test_sources import image, write


def read(tmp_path, stream="vision_language", **spec):
    config = DataConfig.from_dict({"data_root": str(tmp_path), stream: [spec]})
    return read_dataset(getattr(config, stream)[0], config)


def turns(sample):
    return [(t.user, t.assistant) for t in sample.conversation.turns]


def chat(question, answer):
    return [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]


# --- files: encodings and layout -------------------------------------------------------------------------------


def test_byte_order_mark_crlf_and_blank_lines_are_read(tmp_path):
    row = {"instruction": "Say hi.", "input": "", "output": "Hi."}
    write(tmp_path / "a.json", b"\xef\xbb\xbf" + json.dumps([row]).encode())
    assert [turns(s) for s in read(tmp_path, "language", type="alpaca_gpt4", ann_path="a.json").samples] == [
        [("Say hi.", "Hi.")]
    ]
    # U+2028 is legal unescaped inside a JSON string and must not split the line
    lines = [
        {"instruction": "One", "context": "", "response": "Eins."},
        {"instruction": "Two", "context": "", "response": "Zwei\u2028zwo."},
    ]
    body = "\r\n\r\n".join(json.dumps(r, ensure_ascii=False) for r in lines) + "\r\n  \r\n"
    write(tmp_path / "d.jsonl", b"\xef\xbb\xbf" + body.encode())
    result = read(tmp_path, "language", type="dolly", ann_path="d.jsonl")
    assert [turns(s) for s in result.samples] == [[("One", "Eins.")], [("Two", "Zwei\u2028zwo.")]]
    assert result.skips.total == 0


def test_file_not_in_utf8_is_an_error_naming_file_and_line(tmp_path):
    text = '[\n{"instruction": "a", "input": "", "output": "caf\u00e9"}\n]'
    write(tmp_path / "a.json", text.encode("latin-1"))
    with pytest.raises(DataError, match=r"a\.json:2: not valid UTF-8"):
        read(tmp_path, "language", type="alpaca_gpt4", ann_path="a.json")


def test_json_array_and_json_lines_mixed_up_are_clear_errors(tmp_path):
    rows = [{"instruction": "a", "context": "", "response": "b"}] * 2
    write(tmp_path / "one_line.jsonl", json.dumps(rows))
    write(tmp_path / "indented.jsonl", json.dumps(rows, indent=2))
    for name in ("one_line.jsonl", "indented.jsonl"):
        with pytest.raises(DataError, match=rf"{name}: the file is a JSON array.*JSON Lines"):
            read(tmp_path, "language", type="dolly", ann_path=name)
    write(tmp_path / "a.json", "\n".join(json.dumps({"instruction": "a", "output": "b"}) for _ in range(2)))
    with pytest.raises(DataError, match=r"a\.json:2: invalid JSON .*looks like JSON Lines"):
        read(tmp_path, "language", type="alpaca_gpt4", ann_path="a.json")


# --- records: null, non-string and empty fields -----------------------------------------------------------------


def test_coco_karpathy_null_or_non_text_fields_are_skipped_not_a_crash(tmp_path):
    image(tmp_path / "coco" / "val2014" / "x.jpg")

    def entry(cocoid, **fields):
        base = {"filepath": "val2014", "filename": "x.jpg", "split": "train", "cocoid": cocoid}
        return {**base, "sentences": [{"raw": "A red card."}], **fields}

    data = {
        "images": [
            entry(1),
            entry(2, sentences=[{"raw": None}, {"raw": 7}, {"raw": "Kept caption."}]),
            entry(3, sentences=[{"raw": 7}]),
            entry(4, filepath=None, filename="val2014/x.jpg"),
            entry(5, filepath=3),
            entry(6, sentences="A caption."),
        ]
    }
    write(tmp_path / "coco" / "k.json", data)
    result = read(tmp_path, type="coco_caption", ann_path="coco/k.json", image_root="coco", split="train")
    assert [(s.id, turns(s)[0][1]) for s in result.samples] == [
        ("1", "A red card."),
        ("2", "Kept caption."),
        ("4", "A red card."),
    ]
    assert dict(result.skips.counts) == {"empty_response": 1, "malformed": 2}
    messages = [m for ms in result.skips.examples.values() for m in ms]
    assert any("k.json:5:" in m and "field 'filepath'" in m for m in messages)
    assert any("k.json:6:" in m and "field 'sentences'" in m for m in messages)


def test_vqa_null_answers_and_a_bad_image_pattern(tmp_path):
    image(tmp_path / "COCO_train2014_000000000042.jpg")
    questions = [{"image_id": 42, "question": f"Q{i}?", "question_id": i} for i in range(4)]
    write(tmp_path / "q.json", {"questions": questions})
    annotations = [
        {"question_id": 0, "multiple_choice_answer": "red"},
        {"question_id": 1, "multiple_choice_answer": None, "answers": [{"answer": None}, {"answer": "blue"}]},
        {"question_id": 2, "answers": [{"answer": None}, {"answer": 5}]},
        {"question_id": 3, "answers": None},
    ]
    write(tmp_path / "a.json", {"annotations": annotations})
    result = read(tmp_path, type="vqa", ann_path="a.json", question_path="q.json")
    assert [turns(s)[0][1] for s in result.samples] == ["red", "blue"]
    assert dict(result.skips.counts) == {"empty_response": 2}
    with pytest.raises(DataError, match=r"options\.image_pattern '\{id\}\.jpg'.*unknown placeholder \{id\}"):
        read(
            tmp_path,
            type="vqa",
            ann_path="a.json",
            question_path="q.json",
            options={"image_pattern": "{id}.jpg"},
        )


def test_ocr_vqa_nulls_are_not_trained_as_text_and_bad_splits_are_named(tmp_path):
    for key in "abcdef":
        image(tmp_path / "images" / f"{key}.jpg")

    def book(split=1, **fields):
        return {
            "imageURL": "http://x/b.jpg",
            "questions": ["Title?"],
            "answers": ["Red Book"],
            "split": split,
            **fields,
        }

    data = {
        "a": book(),
        "b": book(questions=["Title?", None], answers=["Red Book", "Ann"]),
        "c": book(answers=[None]),
        "d": book(split="train"),
        "e": book(split=None),
        "f": book(imageURL="http://x/f.jpg?size=large", answers=[1999]),
    }
    write(tmp_path / "dataset.json", data)
    result = read(tmp_path, type="ocr_vqa", ann_path="dataset.json", image_root="images", split="train")
    assert [(s.id, turns(s)) for s in result.samples] == [
        ("a", [("Title?", "Red Book")]),
        ("f", [("Title?", "1999")]),
    ]
    assert dict(result.skips.counts) == {"malformed": 4}
    assert any("dataset.json:d:" in m and "field 'split'" in m for m in result.skips.examples["malformed"])
    assert len(read(tmp_path, type="ocr_vqa", ann_path="dataset.json", image_root="images").samples) == 4
    with pytest.raises(DataError, match=r"unknown OCR-VQA split 'training'"):
        read(tmp_path, type="ocr_vqa", ann_path="dataset.json", image_root="images", split="training")


def test_aokvqa_rationales_and_choices_must_be_text(tmp_path):
    image(tmp_path / "000000000042.jpg")
    base = {
        "image_id": 42,
        "question": "What is it?",
        "choices": ["cat", "dog", "card", "cup"],
        "correct_choice_idx": 2,
        "rationales": ["It is flat."],
    }
    variants = {
        "ok": {},
        "no_rationales": {"rationales": None},
        "string_rationale": {"rationales": "It is flat."},
        "null_rationale": {"rationales": [None, "It is flat."]},
        "null_choice": {"choices": ["cat", "dog", None, "cup"]},
        "empty_choice": {"choices": ["cat", "dog", " ", "cup"]},
        "bool_index": {"correct_choice_idx": True},
        "text_image_id": {"image_id": "forty-two"},
    }
    write(tmp_path / "aok.json", [{**base, **v, "question_id": k} for k, v in variants.items()])
    result = read(tmp_path, type="aokvqa", ann_path="aok.json")
    assert [(s.id, turns(s)[0][1]) for s in result.samples] == [
        ("ok", "The answer is card. Because It is flat."),
        ("no_rationales", "The answer is card."),
    ]
    assert dict(result.skips.counts) == {"malformed": 5, "empty_response": 1}
    assert any(
        "aok.json:text_image_id:" in m and "field 'image_id'" in m for m in result.skips.examples["malformed"]
    )


def test_llava_empty_image_name_and_folder_are_not_images(tmp_path):
    image(tmp_path / "ok.jpg")
    (tmp_path / "folder").mkdir()
    records = [
        {"id": "ok", "image": "ok.jpg", "conversations": chat("<image>Q", "A")},
        {"id": "empty", "image": "", "conversations": chat("<image>Q", "A")},
        {"id": "folder", "image": "folder", "conversations": chat("<image>Q", "A")},
        {"id": "int", "conversations": chat("Q", 5)},
    ]
    write(tmp_path / "l.json", records)
    result = read(tmp_path, type="llava", ann_path="l.json")
    assert [s.id for s in result.samples] == ["ok"]
    assert dict(result.skips.counts) == {"malformed": 2, "missing_image": 1}
    assert any(
        "l.json:int:" in m and "message 1 has a int 'value'" in m for m in result.skips.examples["malformed"]
    )


def test_lone_surrogates_are_skipped_when_read_not_a_crash_in_training(tmp_path, tiny_tokenizer):
    write(
        tmp_path / "d.jsonl",
        '{"instruction": "Hi", "context": "", "response": "Fine."}\n'
        '{"instruction": "Hi", "context": "", "response": "Broken \\ud83d emoji."}\n',
    )
    result = read(tmp_path, "language", type="dolly", ann_path="d.jsonl")
    assert [s.id for s in result.samples] == ["1"]
    assert "d.jsonl:2: malformed" in result.skips.examples["malformed"][0]
    builder = ExampleBuilder(tiny_tokenizer, FlamingoImageProcessor(32))
    assert builder.build(result.samples[0]) is not None


# --- samples: repeated ids, skips found while building ---------------------------------------------------------


def test_records_sharing_an_id_keep_their_own_text(tmp_path, tiny_tokenizer):
    image(tmp_path / "1.jpg")
    image(tmp_path / "2.jpg", "blue")
    records = [
        {"id": "same", "image": "1.jpg", "conversations": chat("<image>What colour?", "red")},
        {
            "id": "same",
            "image": "2.jpg",
            "conversations": chat("<image>How many shapes?", "There are three."),
        },
    ]
    write(tmp_path / "l.json", records)
    samples = read(tmp_path, type="llava", ann_path="l.json").samples
    builder = ExampleBuilder(tiny_tokenizer, FlamingoImageProcessor(32))
    texts = [tiny_tokenizer.decode(builder.build(s).input_ids) for s in samples]
    assert texts[0].endswith("red</s>") and texts[1].endswith("There are three.</s>")


def test_samples_skipped_while_building_are_logged_with_file_and_record(tmp_path, tiny_tokenizer, caplog):
    image(tmp_path / "ok.jpg")
    write(tmp_path / "broken.jpg", b"")
    records = [
        {"id": "long", "conversations": chat("word " * 200, "A")},
        {"id": "broken", "image": "broken.jpg", "conversations": chat("<image>Q", "A")},
    ]
    write(tmp_path / "l.json", records)
    samples = read(tmp_path, type="llava", ann_path="l.json").samples
    builder = ExampleBuilder(tiny_tokenizer, FlamingoImageProcessor(32), max_length=128)
    with caplog.at_level(logging.WARNING, logger="mmgpt.data.dataset"):
        assert [builder.build(s) for s in samples] == [None, None]
    assert dict(builder.skips.counts) == {"too_long": 1, "corrupt_image": 1}
    assert "l.json:long: too_long" in caplog.text and "l.json:broken: corrupt_image" in caplog.text


def test_sixteen_bit_greyscale_image_keeps_its_brightness(tmp_path):
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    loaded = np.asarray(load_image(tmp_path / "g16.png"))
    assert loaded.shape == (64, 64, 3)
    expected = (ramp >> 8).astype(np.uint8)
    assert np.array_equal(loaded[..., 0], expected)


# --- the datasets YAML ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "alpaca_gpt4", "ann_path": "a.json", "sample": True}, r"sample must be a positive integer"),
        (
            {
                "type": "vqa",
                "ann_path": "a.json",
                "question_path": "q.json",
                "options": {"image_patern": "x"},
            },
            r"unknown key data\.vision_language\[0\]\.options\.image_patern",
        ),
        ({"type": "llava", "ann_path": "a.json", "split": "train"}, r"\.split: type llava has no splits"),
        ({"type": "vqa", "ann_path": "a.json"}, r"question_path is required"),
    ],
)
def test_config_mistakes_are_named(spec, message):
    stream = "language" if spec["type"] == "alpaca_gpt4" else "vision_language"
    with pytest.raises(ConfigError, match=message):
        DataConfig.from_dict({stream: [spec]})


def test_sample_larger_than_the_dataset_is_reported(tmp_path, caplog):
    write(tmp_path / "a.json", [{"instruction": f"Q{i}", "input": "", "output": "A."} for i in range(3)])
    with caplog.at_level(logging.WARNING, logger="mmgpt.data.dataset"):
        result = read(tmp_path, "language", type="alpaca_gpt4", ann_path="a.json", sample=10)
    assert len(result.samples) == 3
    assert "sample: 10 asked for, but only 3 usable records" in caplog.text


# --- mmgpt data inspect ---------------------------------------------------------------------------------------


def test_inspect_lists_skipped_locations_and_counts_unreadable_images(tmp_path, tiny_tokenizer, capsys):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    image(tmp_path / "ok.jpg")
    write(tmp_path / "empty.jpg", b"")
    write(tmp_path / "page.jpg", "<html>not found</html>")
    answer = "The picture shows a red card on a table."
    records = [
        {"id": "ok", "image": "ok.jpg", "conversations": chat("<image>Q", answer)},
        {"id": "empty", "image": "empty.jpg", "conversations": chat("<image>Q", answer)},
        {"id": "page", "image": "page.jpg", "conversations": chat("<image>Q", answer)},
        {"id": "gone", "image": "gone.jpg", "conversations": chat("<image>Q", answer)},
        {"id": "order", "conversations": chat("<image>Q", answer)[::-1]},
    ]
    write(tmp_path / "own.json", records)
    args = ["data", "inspect", "--dataset", "conversation", "--ann", str(tmp_path / "own.json")]
    code = main([*args, "--tokenizer", str(tmp_path / "tok"), "--limit", "0"])
    out = capsys.readouterr().out
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("conversation "))
    assert row.split()[1:5] == ["5", "1", "4", "1"]  # read, kept, skipped, images missing
    assert "bad_turn_order=1, corrupt_image=2, missing_image=1" in out
    for record, reason in (("empty", "corrupt_image"), ("page", "corrupt_image"), ("gone", "missing_image")):
        assert f"own.json:{record}: {reason}" in out
    assert "own.json:order: bad_turn_order" in out


def test_a_json_lines_file_given_to_a_reader_of_one_array_says_so(tmp_path):
    record = {"id": "1", "image": "1.jpg", "conversations": []}
    write(tmp_path / "one.jsonl", json.dumps(record) + "\n")
    with pytest.raises(DataError, match="looks like JSON Lines, one object per line"):
        read(tmp_path, type="llava", ann_path="one.jsonl")
