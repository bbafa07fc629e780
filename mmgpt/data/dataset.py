"""Reading datasets into samples, and turning samples into model-ready examples (ids, labels, pixels)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from transformers import PreTrainedTokenizerBase

from mmgpt.data.config import DataConfig, DatasetSpec
from mmgpt.data.sources import READERS, Sample, Skips
from mmgpt.data.sources.common import seeded_subset
from mmgpt.data.templates import SampleTooLong, encode_conversation
from mmgpt.errors import DataError

logger = logging.getLogger(__name__)


@dataclass
class ReadResult:
    """Samples of one dataset spec with its accounting."""

    spec: DatasetSpec
    samples: list[Sample]
    records_read: int
    skips: Skips


def read_dataset(spec: DatasetSpec, config: DataConfig) -> ReadResult:
    """Read one dataset spec: all valid samples (then a seeded subset of `sample` of them) and the skip counts."""
    reader = READERS[spec.type]
    ann_path = config.resolve(spec.ann_path)
    if ann_path is None or not ann_path.exists():
        raise DataError(f"{spec.label}: annotation file not found: {ann_path}")
    options = dict(spec.options)
    options.setdefault("seed", config.seed)
    if spec.split is not None:
        options["split"] = spec.split
    if spec.question_path is not None:
        options["question_path"] = str(config.resolve(spec.question_path))
    skips = Skips(strict=config.strict)
    samples = list(reader(ann_path, config.resolve(spec.image_root), spec.label, skips, options))
    read = len(samples) + skips.total
    samples = seeded_subset(samples, spec.sample, config.seed, spec.label)
    if skips.total:
        logger.warning("%s: skipped %d of %d records (%s)", spec.label, skips.total, read, skips.summary())
    return ReadResult(spec=spec, samples=samples, records_read=read, skips=skips)


@dataclass
class Example:
    """A rendered sample: ids and labels (lists of int) and its images as a tensor (T_img, 3, H, W) or None."""

    input_ids: list[int]
    labels: list[int]
    pixels: torch.Tensor | None
    dataset: str
    id: str


class ExampleBuilder:
    """Renders samples with the shared template and loads their images; counts what it must skip.

    Truncation drops whole trailing rounds; images of dropped rounds are dropped too. A sample whose first round
    does not fit, or whose image cannot be decoded, is skipped (counted under `too_long` / `corrupt_image`).
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, image_processor, max_length: int = 512, strict: bool = False
    ):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.max_length = max_length
        self.skips = Skips(strict=strict)
        self._cache: dict[tuple[str, str], tuple[list[int], list[int], int] | None] = {}

    def encode(self, sample: Sample) -> tuple[list[int], list[int], int] | None:
        """(input_ids, labels, images used) for a sample, memoised; None when it does not fit."""
        key = (sample.dataset, sample.id)
        if key not in self._cache:
            try:
                enc = encode_conversation(sample.conversation, self.tokenizer, self.max_length)
                self._cache[key] = (enc.input_ids, enc.labels, enc.num_images)
            except SampleTooLong as err:
                self.skips.add("too_long", f"{sample.dataset}:{sample.id}", str(err))
                self._cache[key] = None
        return self._cache[key]

    def build(self, sample: Sample) -> Example | None:
        """The model-ready example, or None (counted) when the sample must be skipped."""
        encoded = self.encode(sample)
        if encoded is None:
            return None
        ids, labels, n_images = encoded
        pixels = None
        if n_images:
            images = []
            for path in sample.images[:n_images]:
                image = load_image(path)
                if image is None:
                    self.skips.add("corrupt_image", f"{sample.dataset}:{sample.id}", str(path))
                    return None
                images.append(image)
            pixels = self.image_processor.batch(images)
        return Example(ids, labels, pixels, sample.dataset, sample.id)


def load_image(path: Path) -> Image.Image | None:
    """Open and fully decode an image as RGB; None when it is missing or not a readable image."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
