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

__all__ = ["READERS", "LANGUAGE_TYPES", "Sample", "Skips"]
