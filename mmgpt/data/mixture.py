"""The paper's joint scheme: every micro-step one vision-language batch and one language-only batch.

Each stream cycles through its samples independently, re-shuffled every pass with its own seeded RNG; rank r of
w sees every w-th sample of the shared permutation (disjoint shards). `state_dict()` captures the exact position so
a resumed run sees the same subsequent batches. A dataset's `weight` repeats its samples in every pass (see
`weighted_samples`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np

from mmgpt.data.collate import collate
from mmgpt.data.config import DataConfig
from mmgpt.data.dataset import ExampleBuilder, ReadResult, read_dataset
from mmgpt.data.sources import Sample
from mmgpt.data.sources.common import seeded_subset
from mmgpt.errors import DataError

logger = logging.getLogger(__name__)


GROUP_WINDOW_BATCHES = 16


def group_by_length(
    order: np.ndarray, lengths: np.ndarray, batch_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Reorder a shuffled `order` so each run of `batch_size` indices has similar `lengths` (less padding).

    Windows of GROUP_WINDOW_BATCHES batches are sorted by length and cut into batches, whose order within the
    window is then shuffled (a final partial batch stays last, so later batches keep their alignment); which
    samples meet in a window is still decided by the shuffle. Returns a permutation of `order`.
    """
    window = batch_size * GROUP_WINDOW_BATCHES
    out = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        tail = [batches.pop()] if len(batches[-1]) < batch_size else []
        out += [batches[i] for i in rng.permutation(len(batches))] + tail
    return np.concatenate(out) if out else order


class SampleStream:
    """An endless stream of batches over `samples` (shuffled per pass, sharded by rank).

    With `lengths` (a size estimate per sample), each pass groups samples of similar length into the same batch
    (`group_by_length`), over the global batch of all processes, so that rank r's k-th batch is still its share
    of the same global batch a single process with `batch_size x world_size` would draw.
    """

    def __init__(
        self,
        samples: list[Sample],
        builder: ExampleBuilder,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        name: str = "stream",
        lengths: list[int] | None = None,
    ):
        if not samples:
            raise DataError(f"{name}: no usable samples")
        if world_size > len(samples):
            raise DataError(f"{name}: {len(samples)} samples cannot be sharded over {world_size} processes")
        if lengths is not None and len(lengths) != len(samples):
            raise ValueError(f"{name}: {len(lengths)} lengths for {len(samples)} samples")
        self.samples, self.builder, self.batch_size = samples, builder, batch_size
        self.seed, self.rank, self.world_size, self.name = seed, rank, world_size, name
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.epoch, self.cursor = 0, 0
        self._order = self._shard(0)

    def _shard(self, epoch: int) -> np.ndarray:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.samples))
        if self.lengths is not None:
            rng = np.random.default_rng([self.seed, epoch, 1])
            order = group_by_length(order, self.lengths, self.batch_size * self.world_size, rng)
        return order[self.rank :: self.world_size]

    @property
    def num_samples(self) -> int:
        """Samples in this rank's shard per pass."""
        return len(self._order)

    def next_examples(self) -> list:
        """The next `batch_size` usable examples (skipped samples are counted by the builder)."""
        batch, misses = [], 0
        while len(batch) < self.batch_size:
            if self.cursor >= len(self._order):
                self.epoch += 1
                self.cursor = 0
                self._order = self._shard(self.epoch)
            example = self.builder.build(self.samples[int(self._order[self.cursor])])
            self.cursor += 1
            if example is None:
                misses += 1
                if misses > 2 * len(self._order) + self.batch_size:
                    raise DataError(f"{self.name}: no usable samples ({self.builder.skips.summary()})")
                continue
            batch.append(example)
        return batch

    def next_batch(self) -> dict:
        """The next collated batch (see `collate`)."""
        return collate(self.next_examples(), self.builder.tokenizer.pad_token_id)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.cursor = int(state["epoch"]), int(state["cursor"])
        self._order = self._shard(self.epoch)


class JointStream:
    """Yields (vl_batch, lang_batch) per micro-step; either side is None when its stream has no datasets."""

    def __init__(
        self, vision_language: SampleStream | None, language: SampleStream | None, reports: list[ReadResult]
    ):
        if vision_language is None and language is None:
            raise DataError("no usable samples in either the vision-language or the language stream")
        self.vision_language, self.language, self.reports = vision_language, language, reports

    @property
    def num_samples(self) -> dict[str, int]:
        """Per-rank samples per pass of each stream."""
        return {
            "vision_language": self.vision_language.num_samples if self.vision_language else 0,
            "language": self.language.num_samples if self.language else 0,
        }

    def __iter__(self) -> Iterator[tuple[dict | None, dict | None]]:
        while True:
            yield self.next()

    def next(self) -> tuple[dict | None, dict | None]:
        vl = self.vision_language.next_batch() if self.vision_language else None
        lang = self.language.next_batch() if self.language else None
        return vl, lang

    def state_dict(self) -> dict[str, Any]:
        return {
            "vision_language": self.vision_language.state_dict() if self.vision_language else None,
            "language": self.language.state_dict() if self.language else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.vision_language and state.get("vision_language"):
            self.vision_language.load_state_dict(state["vision_language"])
        if self.language and state.get("language"):
            self.language.load_state_dict(state["language"])


def read_all(config: DataConfig) -> tuple[list[ReadResult], list[ReadResult]]:
    """Read every dataset of both streams; returns (vision_language results, language results)."""
    return [read_dataset(s, config) for s in config.vision_language], [
        read_dataset(s, config) for s in config.language
    ]


def turn_texts(config: DataConfig, responses: bool = True) -> list[str]:
    """Every non-empty user instruction and input of every dataset of both streams, and with `responses` every
    assistant response, in reading order (duplicates kept): the texts the template renders, without the
    template's own strings."""
    vision_language, language = read_all(config)
    texts = []
    for result in vision_language + language:
        for sample in result.samples:
            for turn in sample.conversation.turns:
                texts += [t for t in (turn.user, turn.input, turn.assistant if responses else None) if t]
    return texts


def weighted_samples(result: ReadResult, seed: int) -> list[Sample]:
    """A dataset's samples as its stream holds them: `weight` copies of each (weight 1: the samples as read).

    A fractional part adds a seeded subset of that share once more (weight 1.5: every sample, and half of them
    twice), so a small dataset can be drawn more often than its size alone would have it.
    """
    weight, samples = result.spec.weight, result.samples
    whole = int(weight)
    extra = round((weight - whole) * len(samples))
    return samples * whole + seeded_subset(samples, extra, seed, f"{result.spec.label}:weight")


def sample_length(sample: Sample) -> int:
    """A cheap size estimate of a sample for length grouping: characters of its texts plus 64 per image."""
    turns = sample.conversation.turns
    text = sum(len(t.user) + len(t.assistant or "") + len(t.input or "") for t in turns)
    return text + 64 * sample.conversation.num_images


def stream_batch_sizes(batch_size: int, language_batch_size: int | None = None) -> tuple[int, int]:
    """(vision-language, language-only) samples per micro-step: `language_batch_size` defaults to `batch_size`,
    as the paper draws one batch of each of the same size."""
    return batch_size, language_batch_size or batch_size


def build_joint_stream(
    config: DataConfig,
    tokenizer: Any,
    image_processor: Any,
    batch_size: int = 1,
    rank: int = 0,
    world_size: int = 1,
    seed: int | None = None,
    group_by_length: bool = False,
    language_batch_size: int | None = None,
) -> JointStream:
    """Read the datasets and return the paper's joint VL + language stream for this rank: per micro-step a
    vision-language batch of `batch_size` samples and a language-only batch of `language_batch_size` (default
    `batch_size`). `group_by_length` batches vision-language samples of similar length together (see
    `SampleStream`; language-only batches stay plain shuffles).

    Raises DataError before training when a configured stream ends up with no usable sample.
    """
    seed = config.seed if seed is None else seed
    vl_results, lang_results = read_all(config)
    streams = []
    for label, results, offset in (("vision-language", vl_results, 0), ("language", lang_results, 1)):
        samples = [s for r in results for s in weighted_samples(r, seed)]
        if not results:
            streams.append(None)
            continue
        if not samples:
            details = "; ".join(
                f"{r.spec.label}: {r.records_read} read, {r.skips.summary()}" for r in results
            )
            raise DataError(f"no usable {label} samples ({details})")
        builder = ExampleBuilder(tokenizer, image_processor, config.max_length, config.strict)
        grouped = group_by_length and label == "vision-language"
        lengths = [sample_length(sm) for sm in samples] if grouped else None
        streams.append(
            SampleStream(
                samples,
                builder,
                stream_batch_sizes(batch_size, language_batch_size)[offset],
                seed + offset,
                rank,
                world_size,
                label,
                lengths,
            )
        )
        logger.info("%s stream: %d samples from %d dataset(s)", label, len(samples), len(results))
    return JointStream(streams[0], streams[1], vl_results + lang_results)
