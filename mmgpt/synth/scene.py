"""Scene ground truth (shapes, word, background) and its deterministic sampling from a `random.Random`."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from mmgpt.synth.vocab import COLOUR_NAMES, KINDS, POSITIONS, SIZES, WORD_LIST

#: Light background base colours (RGB); every channel stays >= 200 so saturated shapes stand out.
BACKGROUNDS: tuple[tuple[int, int, int], ...] = (
    (245, 245, 245),
    (232, 232, 232),
    (250, 244, 228),
    (228, 238, 248),
    (246, 232, 236),
    (232, 246, 234),
    (240, 236, 250),
)
MAX_SHAPES = 6
MAX_SHAPES_WITH_WORD = 5


@dataclass(frozen=True)
class Shape:
    """One shape: kind, colour and size names, centre (cx, cy) and extent in pixels, and its grid position."""

    kind: str
    colour: str
    size: str
    cx: int
    cy: int
    extent: int
    position: str

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Bounding box (x0, y0, x1, y1), inclusive-exclusive."""
        half = self.extent // 2
        return (self.cx - half, self.cy - half, self.cx - half + self.extent, self.cy - half + self.extent)


@dataclass(frozen=True)
class Scene:
    """The ground truth of one image: id, split, size, background, shapes and the optional written word."""

    image_id: int
    split: str
    image_size: int
    background: dict
    shapes: tuple[Shape, ...]
    word: str | None = None
    word_band: str | None = None  # "top" or "bottom": where the word is written
    text_jitter: float = 0.5  # in [0, 1): horizontal placement of the word inside its band

    # ---- queries used by the text generators -------------------------------------------------------------
    def count(self, colour: str | None = None, kind: str | None = None, size: str | None = None) -> int:
        """Number of shapes matching every given attribute."""
        return len(self.select(colour=colour, kind=kind, size=size))

    def select(
        self, colour: str | None = None, kind: str | None = None, size: str | None = None
    ) -> list[Shape]:
        """Shapes matching every given attribute, in reading order (top-to-bottom, left-to-right)."""
        return [
            s
            for s in self.ordered()
            if (colour is None or s.colour == colour)
            and (kind is None or s.kind == kind)
            and (size is None or s.size == size)
        ]

    def ordered(self) -> list[Shape]:
        """Shapes in reading order by grid position, then x."""
        return sorted(self.shapes, key=lambda s: (POSITIONS.index(s.position) // 3, s.cx, s.cy))

    def colours(self) -> list[str]:
        """Distinct colours present, in the vocabulary order."""
        return [c for c in COLOUR_NAMES if self.count(colour=c)]

    def kinds(self) -> list[str]:
        """Distinct kinds present, in the vocabulary order."""
        return [k for k in KINDS if self.count(kind=k)]

    def at(self, position: str) -> list[Shape]:
        """Shapes whose grid position is `position`."""
        return [s for s in self.ordered() if s.position == position]

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        """The inverse of `to_dict` (extra keys, such as a manifest's "paths", are ignored)."""
        return cls(
            image_id=data["image_id"],
            split=data["split"],
            image_size=data["image_size"],
            background=data["background"],
            shapes=tuple(Shape(**s) for s in data["shapes"]),
            word=data.get("word"),
            word_band=data.get("word_band"),
            text_jitter=data.get("text_jitter", 0.5),
        )

    def to_dict(self) -> dict:
        """JSON-ready ground truth."""
        return {
            "image_id": self.image_id,
            "split": self.split,
            "image_size": self.image_size,
            "background": self.background,
            "shapes": [asdict(s) for s in self.shapes],
            "word": self.word,
            "word_band": self.word_band,
            "text_jitter": round(self.text_jitter, 6),
        }


def grid_position(cx: int, cy: int, image_size: int) -> str:
    """Map a centre point to one of the nine grid position names."""
    col = min(2, cx * 3 // image_size)
    row = min(2, cy * 3 // image_size)
    return POSITIONS[row * 3 + col]


def _sample_background(rng: random.Random) -> dict:
    style = rng.choice(("plain", "plain", "vertical", "horizontal"))
    top = rng.choice(BACKGROUNDS)
    bottom = rng.choice([b for b in BACKGROUNDS if b != top]) if style != "plain" else top
    return {"style": style, "start": list(top), "end": list(bottom)}


def _place(
    rng: random.Random, sizes: list[str], region: tuple[int, int, int, int], scale: float, gap: int
) -> list[tuple[int, int, int]] | None:
    """Try to place boxes of the given sizes without overlap inside `region`; return (cx, cy, extent) or None."""
    x0, y0, x1, y1 = region
    placed: list[tuple[int, int, int, int]] = []
    out: list[tuple[int, int, int]] = []
    for size in sizes:
        extent = max(8, round(SIZES[size] * scale))
        for _ in range(60):
            left = rng.randint(x0, x1 - extent)
            top = rng.randint(y0, y1 - extent)
            box = (left, top, left + extent, top + extent)
            if all(
                box[2] + gap <= p[0] or p[2] + gap <= box[0] or box[3] + gap <= p[1] or p[3] + gap <= box[1]
                for p in placed
            ):
                placed.append(box)
                out.append((left + extent // 2, top + extent // 2, extent))
                break
        else:
            return None
    return out


def sample_scene(
    rng: random.Random,
    image_id: int,
    split: str,
    image_size: int = 64,
    word_prob: float = 0.3,
) -> Scene:
    """Sample one scene: 1-6 non-overlapping shapes (1-5 when a word is written) and maybe a word band.

    Takes the random generator to draw from; returns a `Scene` whose pixel coordinates fit `image_size`.
    """
    scale = image_size / 64
    has_word = rng.random() < word_prob
    word = rng.choice(WORD_LIST) if has_word else None
    band = rng.choice(("top", "bottom")) if has_word else None
    band_h = round(20 * scale) if has_word else 0
    margin = max(1, round(2 * scale))
    region = (
        margin,
        margin + (band_h if band == "top" else 0),
        image_size - margin,
        image_size - margin - (band_h if band == "bottom" else 0),
    )
    n = rng.randint(1, MAX_SHAPES_WITH_WORD if has_word else MAX_SHAPES)
    kinds = [rng.choice(KINDS) for _ in range(n)]
    colours = [rng.choice(COLOUR_NAMES) for _ in range(n)]
    sizes = [rng.choice(tuple(SIZES)) for _ in range(n)]
    layout = None
    for attempt in range(12):
        if attempt >= 6:  # crowded: shrink the largest shape one step at a time
            i = max(range(n), key=lambda j: SIZES[sizes[j]])
            sizes[i] = {"large": "medium", "medium": "small", "small": "small"}[sizes[i]]
        layout = _place(rng, sizes, region, scale, gap=max(2, round(3 * scale)))
        if layout is not None:
            break
    if layout is None:  # give up on the extra shapes rather than loop forever
        n, kinds, colours, sizes = 1, kinds[:1], colours[:1], ["small"]
        layout = _place(rng, sizes, region, scale, gap=2)
        assert layout is not None
    shapes = tuple(
        Shape(kind=k, colour=c, size=s, cx=cx, cy=cy, extent=e, position=grid_position(cx, cy, image_size))
        for k, c, s, (cx, cy, e) in zip(kinds, colours, sizes, layout, strict=True)
    )
    return Scene(
        image_id=image_id,
        split=split,
        image_size=image_size,
        background=_sample_background(rng),
        shapes=shapes,
        word=word,
        word_band=band,
        text_jitter=rng.random(),
    )
