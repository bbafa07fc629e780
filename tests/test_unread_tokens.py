"""experiments/unread_tokens.py: tokens of the tuning data that the pretraining text never holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "unread_tokens.py"


def _world_and_base(tmp_path: Path) -> tuple[Path, Path]:
    """A world whose pretraining reads "abc abc." and whose one Dolly record asks "abz" and answers "cq.", and a
    base whose tokenizer has no merges, so that every character is a token of its own."""
    from mmgpt.model.tokenizer import train_bpe_tokenizer

    world = tmp_path / "world"
    (world / "pretrain").mkdir(parents=True)
    (world / "pretrain" / "text.jsonl").write_text(json.dumps({"text": "abc abc."}) + "\n")
    (world / "pretrain" / "interleaved.jsonl").write_text("")
    (world / "dolly.jsonl").write_text(
        json.dumps({"instruction": "abz", "context": "", "response": "cq."}) + "\n"
    )
    (world / "datasets.yaml").write_text("language:\n  - {type: dolly, ann_path: dolly.jsonl}\n")
    base = tmp_path / "base"
    train_bpe_tokenizer(["abc"], vocab_size=259).save_pretrained(base)
    return world, base


def test_tokens_never_read_are_counted_apart_for_instructions_and_responses(tmp_path):
    from transformers import AutoTokenizer

    probe = load_script("unread_tokens")
    world, base = _world_and_base(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(base)
    read = probe.token_counts(tokenizer, ["abc abc."])
    used = probe.token_counts(tokenizer, ["abz", "zz"], opening_a_line=True)
    z = tokenizer.convert_tokens_to_ids("z")
    assert probe.unread(used, read) == {z: 3}
    assert probe.summary(used, read) == (3, 1, 3 / 5)  # a, b, z used; z never read; 3 of 5 occurrences


def test_the_script_prints_both_rows(tmp_path):
    world, base = _world_and_base(tmp_path)
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--base", str(base), "--world", str(world)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    assert rows["instructions"] == ["3", "1", "0.333"]  # a b z: z
    assert rows["responses"] == ["3", "1", "0.333"]  # c q .: q
    assert "never read in the responses: 'q' 1" in out


def test_a_missing_world_is_named(tmp_path):
    _, base = _world_and_base(tmp_path)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--base", str(base), "--world", str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "nowhere/datasets.yaml: not found" in done.stderr
