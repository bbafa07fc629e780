"""Readers for the public dataset formats, selected by a dataset spec's `type`.

Each reader is `read(ann_path, image_root, name, skips, options) -> Iterator[Sample]`.
"""

from __future__ import annotations

from mmgpt.data.sources.captions import read_coco_caption, read_minigpt4
from mmgpt.data.sources.common import Sample, Skips
from mmgpt.data.sources.language import read_alpaca, read_dolly
from mmgpt.data.sources.llava import read_llava
from mmgpt.data.sources.vqa import read_aokvqa, read_ocr_vqa, read_vqa

READERS = {
    "llava": read_llava,
    "conversation": read_llava,
    "minigpt4": read_minigpt4,
    "aokvqa": read_aokvqa,
    "coco_caption": read_coco_caption,
    "ocr_vqa": read_ocr_vqa,
    "vqa": read_vqa,
    "dolly": read_dolly,
    "alpaca_gpt4": read_alpaca,
}
LANGUAGE_TYPES = {"dolly", "alpaca_gpt4"}
# The `options:` keys each reader reads (every reader may be given `seed`); others are refused, so that a
# misspelt option is an error rather than silently ignored.
READER_OPTIONS = {
    "coco_caption": {"split", "include_restval"},
    "ocr_vqa": {"split"},
    "vqa": {"question_path", "image_pattern", "image_split"},
}
# Readers that use a dataset spec's `split` key.
SPLIT_TYPES = {"coco_caption", "ocr_vqa"}

__all__ = ["READERS", "LANGUAGE_TYPES", "READER_OPTIONS", "SPLIT_TYPES", "Sample", "Skips"]
