"""Reading datasets into samples, and turning samples into model-ready examples (ids, labels, pixels)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from transformers import PreTrainedTokenizerBase

from mmgpt.data.config import DataConfig, DatasetSpec
from mmgpt.data.sources import READERS, Sample, Skips
from mmgpt.data.sources.common import invalid_text, seeded_subset
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
    samples = []
    for sample in reader(ann_path, config.resolve(spec.image_root), spec.label, skips, options):
        problem = invalid_text(sample)
        if problem:
            skips.add("malformed", sample.where or f"{ann_path}:{sample.id}", problem)
            continue
        samples.append(sample)
    read = len(samples) + skips.total
    if spec.sample is not None and spec.sample > len(samples):
        logger.warning(
            "%s: sample: %d asked for, but only %d usable records; using all of them",
            spec.label,
            spec.sample,
            len(samples),
        )
    samples = seeded_subset(samples, spec.sample, config.seed, spec.label)
    if skips.total:
        logger.warning("%s: skipped %d of %d records (%s)", spec.label, skips.total, read, skips.summary())
        for examples in skips.examples.values():
            for example in examples:
                logger.warning("  %s", example)
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
        # keyed by the sample object, not its id: ids repeat (two records with one id, or two files read under
        # one dataset name), and a shared key would train one record's text with another's images
        self._cache: dict[int, tuple[Sample, tuple[list[int], list[int], int] | None]] = {}

    def encode(self, sample: Sample) -> tuple[list[int], list[int], int] | None:
        """(input_ids, labels, images used) for a sample, memoised; None when it does not fit."""
        cached = self._cache.get(id(sample))
        if cached is not None and cached[0] is sample:
            return cached[1]
        try:
            enc = encode_conversation(sample.conversation, self.tokenizer, self.max_length)
            encoded = (enc.input_ids, enc.labels, enc.num_images)
        except SampleTooLong as err:
            self._skip("too_long", sample, str(err))
            encoded = None
        # the sample is kept in the entry so that its id() cannot be reused by another object
        self._cache[id(sample)] = (sample, encoded)
        return encoded

    def _skip(self, reason: str, sample: Sample, detail: str) -> None:
        """Count a sample skipped while building, and log the first few of each reason with their location."""
        where = sample.where or f"{sample.dataset}:{sample.id}"
        logged = len(self.skips.examples.get(reason, []))
        self.skips.add(reason, where, detail)
        if logged < self.skips.keep:
            logger.warning("skipped %s: %s (%s)", where, reason, detail)

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
                    self._skip("corrupt_image", sample, str(path))
                    return None
                images.append(image)
            pixels = self.image_processor.batch(images)
        return Example(ids, labels, pixels, sample.dataset, sample.id)


def load_image(path: Path) -> Image.Image | None:
    """Open and fully decode an image as RGB; None when it is missing or not a readable image."""
    try:
        with Image.open(path) as image:
            image.load()
            return _to_rgb(image)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None


def _to_rgb(image: Image.Image) -> Image.Image:
    """The image as 8-bit RGB.

    PIL's own conversion clips 16-bit greyscale (modes "I;16*", and "I" as 16-bit PNGs open) at 255, which turns
    such a picture nearly white, so those are scaled down to 8 bits first.
    """
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8
        image = Image.fromarray(values.astype(np.uint8))  # 2-D uint8: mode "L"
    return image.convert("RGB")
