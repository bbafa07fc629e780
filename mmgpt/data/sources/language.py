"""Language-only instruction data: `dolly` (jsonl; context plays Input) and `alpaca_gpt4` (JSON list)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mmgpt.data.sources.common import (
    Sample,
    Skips,
    field_error,
    iter_jsonl,
    load_json,
    not_a_list,
    require_str,
)
from mmgpt.data.templates import Conversation, Turn


def _instruction_sample(name, key, record, where, skips, input_key, output_key) -> Sample | None:
    try:
        instruction = require_str(record, "instruction")
        response = require_str(record, output_key, allow_empty=True)
        extra = record.get(input_key) or ""
        if not isinstance(extra, str):
            raise TypeError(f"field '{input_key}' is {type(extra).__name__}, expected string")
    except (KeyError, TypeError, ValueError) as err:
        skips.add("malformed", where, field_error(err))
        return None
    if not response.strip():
        skips.add("empty_response", where, f"field '{output_key}' is empty")
        return None
    turn = Turn(user=instruction.strip(), assistant=response.strip(), input=extra.strip() or None)
    return Sample(name, key, Conversation([turn]), [], where=where)


def read_dolly(
    ann_path: Path, image_root: Path | None, name: str, skips: Skips, options: dict
) -> Iterator[Sample]:
    """databricks-dolly-15k.jsonl: {"instruction", "context", "response", "category"}."""
    for lineno, record in iter_jsonl(ann_path):
        sample = _instruction_sample(
            name, str(lineno), record, f"{ann_path}:{lineno}", skips, "context", "response"
        )
        if sample is not None:
            yield sample


def read_alpaca(
    ann_path: Path, image_root: Path | None, name: str, skips: Skips, options: dict
) -> Iterator[Sample]:
    """alpaca_gpt4_data.json: [{"instruction", "input", "output"}]."""
    records = load_json(ann_path)
    if not isinstance(records, list):
        raise not_a_list(ann_path, records)
    for index, record in enumerate(records):
        sample = _instruction_sample(
            name, str(index), record, f"{ann_path}:{index}", skips, "input", "output"
        )
        if sample is not None:
            yield sample
