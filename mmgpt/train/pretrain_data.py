"""Pretraining data for a from-scratch base model: the synthetic world's interleaved image-text and plain text.

This stands in for OpenFlamingo's web pretraining: lines of `pretrain/interleaved.jsonl`
(`{"images": [...], "text": "<image>caption<|endofchunk|>..."}`) and `pretrain/text.jsonl` (`{"text": ...}`).
Every token is a target except BOS, `<image>` and padding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmgpt.data.dataset import Example, load_image
from mmgpt.data.mixture import JointStream, SampleStream, stream_batch_sizes
from mmgpt.data.sources.common import Skips, iter_jsonl
from mmgpt.data.templates import IGNORE_INDEX
from mmgpt.errors import DataError
from mmgpt.model.tokenizer import special_token_ids


class PretrainBuilder:
    """Turns corpus lines into examples (the `builder` protocol of `SampleStream`)."""

    def __init__(self, tokenizer: Any, image_processor: Any, root: Path, max_length: int):
        self.tokenizer, self.image_processor, self.root, self.max_length = (
            tokenizer,
            image_processor,
            root,
            max_length,
        )
        self.ids = special_token_ids(tokenizer)
        self.skips = Skips()
        self._cache: dict[str, list[int]] = {}

    def build(self, item: dict) -> Example | None:
        text = item["text"]
        ids = self._cache.get(text)
        if ids is None:
            body = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            ids = ([self.ids.bos] if self.ids.bos is not None else []) + body + [self.ids.eos]
            self._cache[text] = ids
        n_images = ids.count(self.ids.media)
        if len(ids) > self.max_length or n_images != len(item.get("images", [])):
            self.skips.add(
                "too_long" if len(ids) > self.max_length else "image_count_mismatch", item["where"]
            )
            return None
        labels = [IGNORE_INDEX if t in (self.ids.media, self.ids.bos) else t for t in ids]
        pixels = None
        if n_images:
            images = [load_image(self.root / p) for p in item["images"]]
            if any(im is None for im in images):
                self.skips.add("corrupt_image", item["where"])
                return None
            pixels = self.image_processor.batch(images)
        return Example(ids, labels, pixels, "pretrain", item["where"])


def read_corpus(path: Path) -> list[dict]:
    """Lines of a pretraining jsonl file, each with its `where` location."""
    if not path.exists():
        raise DataError(f"pretraining file not found: {path}")
    items = []
    for lineno, record in iter_jsonl(path):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise DataError(f"{path}:{lineno}: expected an object with a string 'text'")
        items.append(
            {"text": record["text"], "images": record.get("images", []), "where": f"{path}:{lineno}"}
        )
    return items


def corpus_texts(world: Path) -> list[str]:
    """Every text of the world's pretraining files (for training a tokenizer)."""
    return [
        i["text"]
        for name in ("interleaved.jsonl", "text.jsonl")
        for i in read_corpus(world / "pretrain" / name)
    ]


def build_pretrain_stream(
    world: Path,
    tokenizer: Any,
    image_processor: Any,
    batch_size: int,
    max_length: int = 256,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    group_by_length: bool = False,
    language_batch_size: int | None = None,
) -> JointStream:
    """(interleaved batch, text batch) per micro-step, like the instruction stream; `group_by_length` batches
    interleaved lines of similar length together (by characters, 64 per image; text batches stay plain).
    Text batches hold `language_batch_size` lines (default `batch_size`), the instruction stream's name for
    its language-only batch."""
    streams = []
    for offset, name in enumerate(("interleaved.jsonl", "text.jsonl")):
        size = stream_batch_sizes(batch_size, language_batch_size)[offset]
        items = read_corpus(world / "pretrain" / name)
        builder = PretrainBuilder(tokenizer, image_processor, world, max_length)
        grouped = group_by_length and name == "interleaved.jsonl"
        lengths = [len(i["text"]) + 64 * len(i["images"]) for i in items] if grouped else None
        streams.append(SampleStream(items, builder, size, seed + offset, rank, world_size, name, lengths))
    return JointStream(streams[0], streams[1], reports=[])
