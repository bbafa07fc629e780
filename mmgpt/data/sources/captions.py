"""Caption-only data turned into instructions: `minigpt4` (cc_sbu_align) and `coco_caption` (Karpathy or LAVIS).

Captions carry no instruction, so each sample gets one from the caption pool (paper Table 3 and more), chosen
deterministically from the sample id and the seed.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from pathlib import Path

from mmgpt.data.sources.common import Sample, Skips, field_error, load_json, require_str
from mmgpt.data.templates import Conversation, Turn, caption_instruction
from mmgpt.errors import DataError


def _caption_sample(name: str, key: str, caption: str, image: Path, seed: int, where: str) -> Sample:
    turn = Turn(user=caption_instruction(f"{name}:{key}", seed), assistant=caption.strip(), num_images=1)
    return Sample(dataset=name, id=key, conversation=Conversation([turn]), images=[image], where=where)


def read_minigpt4(
    ann_path: Path, image_root: Path | None, name: str, skips: Skips, options: dict
) -> Iterator[Sample]:
    """cc_sbu_align `filter_cap.json`: {"annotations": [{"image_id", "caption"}]}, image `{image_root}/{id}.jpg`."""
    data = load_json(ann_path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError(f'{ann_path}: expected {{"annotations": [...]}}')
    root = image_root or ann_path.parent / "image"
    for index, record in enumerate(data["annotations"]):
        where = f"{ann_path}:{index}"
        try:
            if not isinstance(record, dict):
                raise TypeError("record is not an object")
            image_id = record.get("image_id")
            if (
                isinstance(image_id, bool)
                or not isinstance(image_id, (str, int))
                or not str(image_id).strip()
            ):
                raise TypeError("field 'image_id' missing or not a string")
            caption = require_str(record, "caption")
        except (KeyError, TypeError, ValueError) as err:
            skips.add("empty_response" if "empty" in str(err) else "malformed", where, field_error(err))
            continue
        image = root / f"{image_id}.jpg"
        if not image.is_file():
            skips.add("missing_image", where, str(image))
            continue
        yield _caption_sample(name, str(image_id), caption, image, options.get("seed", 0), where)


def read_coco_caption(
    ann_path: Path, image_root: Path | None, name: str, skips: Skips, options: dict
) -> Iterator[Sample]:
    """COCO captions, one sample per image with one of its captions (seeded choice).

    Karpathy `dataset_coco.json` ({"images": [{"filepath", "filename", "split", "sentences": [{"raw"}]}]}), split
    selectable (`split: train` includes `restval` unless options.include_restval is false); or the LAVIS list
    [{"image": "val2014/x.jpg", "caption"}] (one sample per entry).
    """
    data = load_json(ann_path)
    root = image_root or ann_path.parent
    seed = options.get("seed", 0)
    if isinstance(data, list):
        for index, record in enumerate(data):
            where = f"{ann_path}:{index}"
            try:
                image_rel, caption = require_str(record, "image"), require_str(record, "caption")
            except (KeyError, TypeError, ValueError) as err:
                skips.add("malformed", where, field_error(err))
                continue
            image = root / image_rel
            if not image.is_file():
                skips.add("missing_image", where, str(image))
                continue
            yield _caption_sample(name, f"{image_rel}#{index}", caption, image, seed, where)
        return
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError(f'{ann_path}: expected a Karpathy {{"images": [...]}} file or a LAVIS list')
    split = options.get("split")
    splits = {split} if split else None
    if split == "train" and options.get("include_restval", True):
        splits = {"train", "restval"}
    for index, record in enumerate(data["images"]):
        where = f"{ann_path}:{record.get('cocoid', index) if isinstance(record, dict) else index}"
        if not isinstance(record, dict):
            skips.add("malformed", where, "record is not an object")
            continue
        if splits and record.get("split") not in splits:
            continue
        try:
            filename = require_str(record, "filename")
            filepath = record.get("filepath") or ""
            if not isinstance(filepath, str):
                raise TypeError(f"field 'filepath' is {type(filepath).__name__}, expected string")
            sentences = record["sentences"]
            if not isinstance(sentences, list):
                raise TypeError(f"field 'sentences' is {type(sentences).__name__}, expected a list")
            # a sentence whose "raw" is missing, null or not text is left out; the others still count
            captions = [
                s["raw"].strip()
                for s in sentences
                if isinstance(s, dict) and isinstance(s.get("raw"), str) and s["raw"].strip()
            ]
        except (KeyError, TypeError, ValueError) as err:
            skips.add("malformed", where, field_error(err))
            continue
        if not captions:
            skips.add("empty_response", where, "no caption in field 'sentences' has a non-empty 'raw'")
            continue
        image = root / filepath / filename
        if not image.is_file():
            skips.add("missing_image", where, str(image))
            continue
        key = str(record.get("cocoid", filename))
        caption = random.Random(zlib.crc32(f"{seed}:{key}".encode())).choice(captions)
        yield _caption_sample(name, key, caption, image, seed, where)
