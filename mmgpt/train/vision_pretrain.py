"""Supervised pretraining of a from-scratch vision tower on the synthetic world, before the base's pretraining.

The real system starts from CLIP, a vision tower pretrained on its own and kept frozen by OpenFlamingo. A tiny
tower trained from scratch only through the language model's loss learns colours but hardly shapes or letters (a
linear probe of its features on held-out images found the colours present but barely the kinds of shapes, and the
tuned model read words at chance). So the synthetic base first trains its tower to parse scenes: every patch
predicts the colour and kind of shape covering it and whether a shape's centre lies in it, and two
attention-pooled summaries predict the written word and the number of shapes (with `subset_counts`, one summary
per colour and per kind predicts how many shapes have it; with `binding`, one per kind predicts the colour of
that kind's shapes and one per colour the kind of that colour's). The head is dropped afterwards; the perceiver
reads the tower's patch features as it reads CLIP's.

With `sincos_positions` the tower starts from a 2D sine-cosine grid in its position embeddings (as MAE's ViTs
do) rather than CLIP's small random ones: a randomly initialised tower spends its first several hundred steps on a
plateau, learning where its patches are, before it learns kinds of shapes, centres and words. With
`fresh_scenes` it also sees that many newly drawn scenes (`mmgpt.synth.world.fresh_scenes`), rendered in memory:
on the world's few thousand training images alone it reads the words and counts of those better than of new ones.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from mmgpt.data.dataset import load_image
from mmgpt.errors import DataError
from mmgpt.model.flamingo import patch_tokens
from mmgpt.parallel import map_chunks, shared_array
from mmgpt.synth.render import encode_jpeg, render
from mmgpt.synth.scene import Scene
from mmgpt.synth.scene_labels import (
    NUM_COLOUR_KINDS,
    NUM_COLOURS,
    NUM_COUNTS,
    NUM_KIND_COLOURS,
    NUM_KINDS,
    NUM_WORDS,
    SceneLabels,
    scene_labels,
)
from mmgpt.synth.vocab import COLOUR_NAMES, KINDS
from mmgpt.synth.world import WorldManifest, fresh_scenes
from mmgpt.train.config import VisionPretrainSection
from mmgpt.train.schedule import cosine_lambda

logger = logging.getLogger(__name__)

TARGETS = ("colour", "kind", "centre", "word", "count")
#: Per-image targets of `subset_counts`: how many shapes have each colour (B, len(COLOUR_NAMES)) and each kind.
SUBSET_TARGETS = ("colour_count", "kind_count")
#: Per-image targets of `binding`: the colour of each kind's shapes (B, len(KINDS)), the kind of each colour's.
BINDING_TARGETS = ("kind_colour", "colour_kind")
PATCH_TARGETS = ("colour", "kind", "centre")


class SceneParsingHead(nn.Module):
    """Predicts `SceneLabels` from patch features (B, N, D): per-patch colour / kind / centre logits (B, N, C)
    and, through learned attention-pooling queries, word and count logits (B, C). With `subset_counts`, one more
    query per colour and per kind, whose pooled features one shared layer reads as that colour's or kind's count
    (colour_count: (B, len(COLOUR_NAMES), NUM_COUNTS), kind_count: (B, len(KINDS), NUM_COUNTS)); with `binding`,
    one more per kind and per colour reading the colour of that kind's shapes and the kind of that colour's
    (kind_colour: (B, len(KINDS), NUM_KIND_COLOURS), colour_kind: (B, len(COLOUR_NAMES), NUM_COLOUR_KINDS))."""

    def __init__(self, width: int, subset_counts: bool = False, binding: bool = False):
        super().__init__()
        self.subset_counts, self.binding = subset_counts, binding
        self.norm = nn.LayerNorm(width)
        self.colour = nn.Linear(width, NUM_COLOURS)
        self.kind = nn.Linear(width, NUM_KINDS)
        self.centre = nn.Linear(width, NUM_KINDS)
        per_image = len(COLOUR_NAMES) + len(KINDS)
        num_queries = 2 + (per_image if subset_counts else 0) + (per_image if binding else 0)
        self.queries = nn.Parameter(torch.randn(num_queries, width) * width**-0.5)
        self.word = nn.Linear(width, NUM_WORDS)
        self.count = nn.Linear(width, NUM_COUNTS)
        if subset_counts:
            self.subset_count = nn.Linear(width, NUM_COUNTS)
        if binding:
            self.kind_colour = nn.Linear(width, NUM_KIND_COLOURS)
            self.colour_kind = nn.Linear(width, NUM_COLOUR_KINDS)

    @property
    def targets(self) -> tuple[str, ...]:
        """The names of the targets this head predicts."""
        return (
            TARGETS
            + (SUBSET_TARGETS if self.subset_counts else ())
            + (BINDING_TARGETS if self.binding else ())
        )

    def forward(self, patches: torch.Tensor) -> dict[str, torch.Tensor]:
        """patches (B, N, D) -> {target name: logits}."""
        h = self.norm(patches)
        weights = torch.softmax(torch.einsum("qd,bnd->bqn", self.queries, h) * h.shape[-1] ** -0.5, dim=-1)
        pooled = torch.einsum("bqn,bnd->bqd", weights, h)
        logits = {
            "colour": self.colour(h),
            "kind": self.kind(h),
            "centre": self.centre(h),
            "word": self.word(pooled[:, 0]),
            "count": self.count(pooled[:, 1]),
        }
        nc, nk, at = len(COLOUR_NAMES), len(KINDS), 2
        if self.subset_counts:
            subsets = self.subset_count(pooled[:, at : at + nc + nk])
            logits["colour_count"], logits["kind_count"] = subsets[:, :nc], subsets[:, nc:]
            at += nc + nk
        if self.binding:
            logits["kind_colour"] = self.kind_colour(pooled[:, at : at + nk])
            logits["colour_kind"] = self.colour_kind(pooled[:, at + nk : at + nk + nc])
        return logits


#: Amplitude of the sine-cosine position grid: its entries then spread about as widely (std 0.35) as the patch
#: embeddings of normalised pixels do at CLIP's initialisation.
SINCOS_AMPLITUDE = 0.5


def sincos_position_grid(grid: int, width: int) -> torch.Tensor:
    """(grid * grid, width) 2D sine-cosine position codes of a row-major `grid` x `grid` patch grid: the first half
    of the channels encode the row, the second the column, each as sines then cosines of the coordinate at
    `width // 4` frequencies from 1 down to 1/10000 (geometric). `width` must be a multiple of 4."""
    if width % 4:
        raise ValueError(f"a 2D sine-cosine position grid needs a width divisible by 4, not {width}")
    quarter = width // 4
    frequencies = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    halves = []
    for coordinate in (rows.flatten(), cols.flatten()):
        angles = coordinate[:, None].double() * frequencies[None]
        halves += [angles.sin(), angles.cos()]
    return torch.cat(halves, dim=1).float()


@torch.no_grad()
def init_sincos_positions(vision_encoder: nn.Module, amplitude: float = SINCOS_AMPLITUDE) -> None:
    """Overwrite the position embeddings of `vision_encoder` (a CLIPVisionModel) in place: the patch rows with
    `amplitude` x `sincos_position_grid`, the class token's row with zeros. They stay trainable."""
    config = vision_encoder.config
    grid = config.image_size // config.patch_size
    weight = vision_encoder.embeddings.position_embedding.weight  # (1 + grid * grid, width)
    codes = sincos_position_grid(grid, weight.shape[1]) * amplitude
    weight.copy_(torch.cat([codes.new_zeros(1, weight.shape[1]), codes]).to(weight))


@dataclass
class SceneSet:
    """Preprocessed images (B, 3, H, W) and their targets {name: (B, N) or (B,)}."""

    pixels: torch.Tensor
    targets: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def take(
        self, index: torch.Tensor, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The images and targets at `index`, on `device`."""
        return self.pixels[index].to(device), {k: v[index].to(device) for k, v in self.targets.items()}


def load_scene_set(
    world: Path, split: str, image_processor: Any, grid: int, workers: int | None = None
) -> SceneSet:
    """Every image of `split` ("train" or "heldout") in the world at `world`, with its labels for a tower
    that sees each image as `grid` x `grid` patches; read and preprocessed by `workers` processes (default: one
    per available CPU; the set is the same for any number)."""
    if not (world / "world.json").exists():
        raise DataError(f"{world}: no world.json, so no scene labels to pretrain the vision tower on")
    manifest = WorldManifest.load(world)
    chosen = [d for d in manifest.scenes if d["split"] == split]
    if not chosen:
        raise DataError(f"{world}: the world has no {split} images")
    scenes = [Scene.from_dict(d) for d in chosen]

    def open_image(row: int) -> Image.Image:
        path = world / chosen[row]["paths"][0]
        image = load_image(path)
        if image is None:
            raise DataError(
                f"{path}: missing or unreadable image of the synthetic world (image {scenes[row].image_id})"
            )
        return image

    return _preprocessed_scene_set(scenes, open_image, image_processor, grid, workers)


def render_scene_set(
    scenes: list[Scene],
    image_processor: Any,
    grid: int,
    progress: bool = False,
    workers: int | None = None,
) -> SceneSet:
    """`scenes` rendered as the world renders its images (JPEG round trip included, so the tower sees the
    same artefacts), with their labels for a `grid` x `grid` tower; rendered by `workers` processes (default: one
    per available CPU; the set is the same for any number)."""

    def open_image(row: int) -> Image.Image:
        with Image.open(io.BytesIO(encode_jpeg(render(scenes[row])))) as image:
            return image.convert("RGB")

    return _preprocessed_scene_set(
        scenes, open_image, image_processor, grid, workers, progress, "rendering tower scenes"
    )


def _preprocessed_scene_set(
    scenes: list[Scene],
    open_image: Callable[[int], Image.Image],
    image_processor: Any,
    grid: int,
    workers: int | None,
    progress: bool = False,
    desc: str = "",
) -> SceneSet:
    """The images `open_image(row)` of `scenes`, preprocessed in `workers` processes straight into one array
    they share (sending each image back would cost a quarter of the time saved), with the scenes' labels."""
    first = image_processor(open_image(0)).numpy()  # its shape and dtype are the array's
    pixels = shared_array((len(scenes), *first.shape), first.dtype)

    def fill(rows: list[int]) -> list[SceneLabels]:
        for row in rows:
            pixels[row] = image_processor(open_image(row)).numpy()
        return [scene_labels(scenes[row], grid) for row in rows]

    chunks = map_chunks(fill, range(len(scenes)), workers=workers, progress=progress, desc=desc, unit="img")
    labels = [label for chunk in chunks for label in chunk]
    targets = {
        name: torch.as_tensor(np.stack([getattr(x, name) for x in labels]))
        for name in TARGETS + SUBSET_TARGETS + BINDING_TARGETS
    }
    return SceneSet(torch.from_numpy(pixels), targets)


def concat_scene_sets(*sets: SceneSet) -> SceneSet:
    """One set holding the images and targets of every set in `sets`, in order."""
    return SceneSet(
        torch.cat([s.pixels for s in sets]),
        {name: torch.cat([s.targets[name] for s in sets]) for name in sets[0].targets},
    )


def parsing_loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over the targets in `logits` of the mean cross-entropy (per patch for the patch targets, per colour
    or kind for the subset counts)."""
    return sum(F.cross_entropy(v.float().flatten(0, -2), targets[k].flatten()) for k, v in logits.items())


@torch.no_grad()
def parsing_accuracy(
    vision_encoder: nn.Module,
    head: SceneParsingHead,
    scenes: SceneSet,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Accuracy per target of `head`; patch targets are scored on the patches a shape covers (background
    excluded), subset counts and binding targets on every colour and kind, absent ones included."""
    hits = {k: 0 for k in head.targets}
    totals = {k: 0 for k in head.targets}
    for start in range(0, len(scenes), batch_size):
        pixels, targets = scenes.take(torch.arange(start, min(start + batch_size, len(scenes))), device)
        logits = head(patch_tokens(vision_encoder, pixels))
        for k in head.targets:
            pred, true = logits[k].argmax(-1), targets[k]
            keep = true > 0 if k in PATCH_TARGETS else torch.ones_like(true, dtype=torch.bool)
            hits[k] += int((pred[keep] == true[keep]).sum())
            totals[k] += int(keep.sum())
    return {k: hits[k] / max(totals[k], 1) for k in head.targets}


def pretrain_vision_tower(
    vision_encoder: nn.Module,
    world: Path,
    image_processor: Any,
    settings: VisionPretrainSection,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = torch.bfloat16,
    progress: bool = True,
) -> dict[str, float]:
    """Train `vision_encoder` (a CLIPVisionModel) in place on the world's training images for `settings.steps`
    steps (AdamW, linear warmup then cosine decay to a tenth, gradient clipping at 1, bf16 autocast by default),
    first setting its position embeddings to the sine-cosine grid when `settings.sincos_positions` says so.

    Returns the held-out parsing accuracies (empty when the world has no held-out images). Seeded by `seed`;
    the global random state is restored afterwards.
    """
    with torch.random.fork_rng():  # the caller's random stream is left as it was
        torch.manual_seed(seed)
        return _train(
            vision_encoder,
            world,
            image_processor,
            settings,
            seed,
            torch.device(device),
            autocast_dtype,
            progress,
        )


def _train(
    vision_encoder: nn.Module,
    world: Path,
    image_processor: Any,
    settings: VisionPretrainSection,
    seed: int,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    progress: bool,
) -> dict[str, float]:
    from mmgpt.progress import progress_bar

    grid = vision_encoder.config.image_size // vision_encoder.config.patch_size
    train = load_scene_set(world, "train", image_processor, grid)
    manifest = WorldManifest.load(world)  # for the fresh scenes and the held-out check below
    if settings.fresh_scenes:
        scenes = fresh_scenes(manifest, settings.fresh_scenes)
        train = concat_scene_sets(train, render_scene_set(scenes, image_processor, grid, progress))
        logger.info(
            "vision tower: %d world images and %d fresh scenes", len(train) - len(scenes), len(scenes)
        )
    if settings.sincos_positions:
        init_sincos_positions(vision_encoder)
    head = SceneParsingHead(vision_encoder.config.hidden_size, settings.subset_counts, settings.binding).to(
        device
    )
    params = [*vision_encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)

    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_lambda(settings.steps, settings.warmup_steps, 0.1)
    )
    generator = torch.Generator().manual_seed(seed)
    vision_encoder.train()
    bar = progress_bar(range(settings.steps), desc="vision tower", unit="step", disable=not progress)
    for step in bar:
        pixels, targets = train.take(
            torch.randint(0, len(train), (settings.batch_size,), generator=generator), device
        )
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = parsing_loss(head(patch_tokens(vision_encoder, pixels)), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        if step % 50 == 0 or step == settings.steps - 1:
            bar.set_postfix(loss=f"{loss.item():.3f}")
            logger.debug("vision step %d loss %.4f", step, loss.item())
    vision_encoder.eval()
    if not any(s["split"] == "heldout" for s in manifest.scenes):
        return {}
    heldout = load_scene_set(world, "heldout", image_processor, grid)
    scores = parsing_accuracy(vision_encoder, head, heldout, device=device)
    logger.info(
        "vision tower after %d steps, held-out accuracy: %s",
        settings.steps,
        ", ".join(f"{k} {v:.3f}" for k, v in scores.items()),
    )
    return scores
