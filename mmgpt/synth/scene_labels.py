"""What a scene's pixels show, as classification targets: the labels the synthetic vision tower is pretrained on.

Per patch of the vision tower's grid: the colour and the kind of shape covering it (background = 0), and the kind
of the shape whose centre lies in it (one patch per shape, so the patches with a centre count the shapes). Per
image: the written word, the number of shapes, the number of shapes of each colour and of each kind, and which
colour each kind of shape has and which kind each colour has. Shapes are drawn with the renderer's own geometry
(`render.draw_shape`), later shapes over earlier ones, as in the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from mmgpt.synth.render import draw_shape
from mmgpt.synth.scene import MAX_SHAPES, Scene
from mmgpt.synth.vocab import COLOUR_NAMES, KINDS, WORD_LIST

#: Classes of each target (index 0 is "background" / "no word").
NUM_COLOURS = len(COLOUR_NAMES) + 1
NUM_KINDS = len(KINDS) + 1
NUM_WORDS = len(WORD_LIST) + 1
NUM_COUNTS = MAX_SHAPES + 1
#: Classes of `kind_colour` / `colour_kind`: 0 = none in the image, then each colour / kind, then "several".
NUM_KIND_COLOURS = NUM_COLOURS + 1
NUM_COLOUR_KINDS = NUM_KINDS + 1
#: A patch is labelled with a shape when the shape covers at least this fraction of its pixels.
MIN_COVER = 3 / 16


@dataclass(frozen=True)
class SceneLabels:
    """Targets for one image; patch arrays are (G*G,) in row-major patch order, G = image_size // patch_size."""

    colour: np.ndarray  # 0 = background, else COLOUR_NAMES index + 1
    kind: np.ndarray  # 0 = background, else KINDS index + 1
    centre: np.ndarray  # kind (+1) of the shape whose centre is in the patch, 0 = none
    word: int  # 0 = no word, else WORD_LIST index + 1
    count: int  # number of shapes
    # Per colour or kind of the world (one entry each, in COLOUR_NAMES / KINDS order):
    colour_count: np.ndarray  # shapes of each colour
    kind_count: np.ndarray  # shapes of each kind
    kind_colour: np.ndarray  # 0 = no such shape, else the colour (+1) its shapes share, or "several"
    colour_kind: np.ndarray  # 0 = no such shape, else the kind (+1) its shapes share, or "several"


def _patch_majority(label_map: Image.Image, patch: int, num_classes: int) -> np.ndarray:
    """(G*G,) the most common non-zero label of each patch when it covers MIN_COVER of it, else 0."""
    a = np.asarray(label_map, dtype=np.int64)
    g = a.shape[0] // patch
    cells = a[: g * patch, : g * patch].reshape(g, patch, g, patch).transpose(0, 2, 1, 3).reshape(g * g, -1)
    counts = np.stack([(cells == c).sum(axis=1) for c in range(num_classes)], axis=1)  # (G*G, C)
    counts[:, 0] = 0
    best = counts.argmax(axis=1)
    return np.where(counts.max(axis=1) >= MIN_COVER * patch * patch, best, 0)


def scene_labels(scene: Scene, grid: int) -> SceneLabels:
    """The `SceneLabels` of `scene` for a vision tower that sees it as `grid` x `grid` patches."""
    size = scene.image_size
    if size % grid:
        raise ValueError(f"image size {size} does not split into a {grid} x {grid} patch grid")
    patch_size, g = size // grid, grid
    colour_map, kind_map = Image.new("L", (size, size), 0), Image.new("L", (size, size), 0)
    colour_draw, kind_draw = ImageDraw.Draw(colour_map), ImageDraw.Draw(kind_map)
    centre = np.zeros(g * g, dtype=np.int64)
    colour_counts = np.zeros(len(COLOUR_NAMES), dtype=np.int64)
    kind_counts = np.zeros(len(KINDS), dtype=np.int64)
    for shape in scene.shapes:
        c, k = COLOUR_NAMES.index(shape.colour) + 1, KINDS.index(shape.kind) + 1
        draw_shape(colour_draw, shape, 1, fill=c, outline=c)
        draw_shape(kind_draw, shape, 1, fill=k, outline=k)
        row, col = min(shape.cy // patch_size, g - 1), min(shape.cx // patch_size, g - 1)
        centre[row * g + col] = k
        colour_counts[c - 1] += 1
        kind_counts[k - 1] += 1
    return SceneLabels(
        colour=_patch_majority(colour_map, patch_size, NUM_COLOURS),
        kind=_patch_majority(kind_map, patch_size, NUM_KINDS),
        centre=centre,
        word=WORD_LIST.index(scene.word) + 1 if scene.word else 0,
        count=len(scene.shapes),
        colour_count=colour_counts,
        kind_count=kind_counts,
        kind_colour=_shared_attribute(scene, "kind", KINDS, "colour", COLOUR_NAMES),
        colour_kind=_shared_attribute(scene, "colour", COLOUR_NAMES, "kind", KINDS),
    )


def _shared_attribute(
    scene: Scene, key: str, keys: tuple[str, ...], attribute: str, values: tuple[str, ...]
) -> np.ndarray:
    """(len(keys),) for each value of `key` (e.g. each kind): 0 when no shape has it, the index (+1) of the
    `attribute` (e.g. colour) all such shapes share, or len(values) + 1 when they differ."""
    seen: dict[str, set[str]] = {}
    for shape in scene.shapes:
        seen.setdefault(getattr(shape, key), set()).add(getattr(shape, attribute))
    labels = np.zeros(len(keys), dtype=np.int64)
    for name, found in seen.items():
        labels[keys.index(name)] = values.index(next(iter(found))) + 1 if len(found) == 1 else len(values) + 1
    return labels
