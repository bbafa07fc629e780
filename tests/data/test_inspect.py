"""`mmgpt data inspect` on a small synthetic world: table, short-answer warning, JSONL output, exit codes."""

from __future__ import annotations

import json

import pytest

from mmgpt.cli import main


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from mmgpt.synth import generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, seed=0, scale="quick", progress=False)
    return out


def test_inspect_flags_short_answer_data_and_writes_jsonl(world, tiny_tokenizer, tmp_path, capsys):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    code = main(
        [
            "data",
            "inspect",
            "--config",
            str(world / "datasets_with_vqa.yaml"),
            "--tokenizer",
            str(tmp_path / "tok"),
            "--limit",
            "1",
            "--jsonl",
            str(tmp_path / "out.jsonl"),
            "--plot",
            str(tmp_path / "len.png"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "WARNING: vqa:" in out and "WARNING: llava" not in out
    assert "[[" in out  # supervised spans marked when stdout is not a terminal
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert {r["dataset"] for r in rows} >= {"llava_detail", "vqa", "dolly"}
    row = rows[0]
    assert set(row) == {"dataset", "id", "text", "supervised", "num_images", "num_tokens"}
    assert all(s.endswith("</s>") and s[:-4] in row["text"] for s in row["supervised"])
    assert (tmp_path / "len.png").stat().st_size > 1000


def test_inspect_single_dataset_with_nothing_usable_exits_nonzero(tmp_path, tiny_tokenizer, capsys):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    (tmp_path / "a.json").write_text(json.dumps([{"instruction": "x", "input": "", "output": ""}]))
    code = main(
        [
            "data",
            "inspect",
            "--dataset",
            "alpaca_gpt4",
            "--ann",
            str(tmp_path / "a.json"),
            "--tokenizer",
            str(tmp_path / "tok"),
        ]
    )
    assert code == 1
    assert "empty_response" in capsys.readouterr().out
