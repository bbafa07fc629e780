"""Rendering a `Scene` to a PIL image (2x supersampled for clean edges) and JPEG encoding."""

from __future__ import annotations

import io
import math
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mmgpt.synth.scene import Scene, Shape
from mmgpt.synth.vocab import COLOURS

SUPERSAMPLE = 2
OUTLINE = (40, 40, 40)
TEXT_COLOUR = (20, 20, 20)
JPEG_QUALITY = 95


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """PIL's bundled default font at `size` px (Pillow >= 10.1 scales it with FreeType)."""
    return ImageFont.load_default(size=size)


def _background(scene: Scene, size: int) -> Image.Image:
    bg = scene.background
    start = np.array(bg["start"], dtype=np.float32)
    end = np.array(bg["end"], dtype=np.float32)
    if bg["style"] == "plain":
        return Image.new("RGB", (size, size), tuple(int(v) for v in start))
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None]
    ramp = start[None, :] * (1 - t) + end[None, :] * t  # (size, 3)
    arr = np.broadcast_to(ramp[:, None, :], (size, size, 3)) if bg["style"] == "vertical" else ramp[None]
    arr = np.broadcast_to(arr, (size, size, 3))
    return Image.fromarray(np.ascontiguousarray(arr.round().astype(np.uint8)), "RGB")


def _polygon(shape: Shape, k: int) -> list[tuple[float, float]]:
    cx, cy, r = shape.cx * k, shape.cy * k, shape.extent * k / 2
    if shape.kind == "triangle":
        return [(cx, cy - r), (cx + r, cy + r * 0.85), (cx - r, cy + r * 0.85)]
    if shape.kind == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if shape.kind == "star":
        points = []
        for i in range(10):
            radius = r if i % 2 == 0 else r * 0.45
            angle = -math.pi / 2 + i * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle) + r * 0.08))
        return points
    raise ValueError(f"no polygon for {shape.kind}")


def draw_shape(
    draw: ImageDraw.ImageDraw, shape: Shape, k: int, fill: Any = None, outline: Any = OUTLINE
) -> None:
    """Draw `shape` at `k` times the scene's pixel scale, filled with `fill` (default: the shape's colour).

    The label maps of `mmgpt.synth.scene_labels` draw with the same geometry and a class index as the fill.
    """
    fill = COLOURS[shape.colour] if fill is None else fill
    x0, y0, x1, y1 = (v * k for v in shape.box)
    width = k
    if shape.kind == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill, outline=outline, width=width)
    elif shape.kind == "square":
        inset = round(shape.extent * k * 0.06)
        draw.rectangle(
            (x0 + inset, y0 + inset, x1 - 1 - inset, y1 - 1 - inset), fill=fill, outline=outline, width=width
        )
    else:
        draw.polygon(_polygon(shape, k), fill=fill, outline=outline, width=width)


def _draw_word(draw: ImageDraw.ImageDraw, scene: Scene, k: int) -> None:
    size = scene.image_size * k
    band_h = round(20 * scene.image_size / 64) * k
    text = scene.word.upper()
    font_px = round(15 * scene.image_size / 64) * k
    while True:
        font = _font(font_px)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        if right - left <= size * 0.9 or font_px <= 8:
            break
        font_px -= k
    width, height = right - left, bottom - top
    x = (size - width) * (0.1 + 0.8 * scene.text_jitter) - left
    band_top = 0 if scene.word_band == "top" else size - band_h
    y = band_top + (band_h - height) / 2 - top
    draw.text((x, y), text, font=font, fill=TEXT_COLOUR)


def render(scene: Scene) -> Image.Image:
    """Draw `scene` (background, shapes, word) and return an RGB image of `scene.image_size` pixels."""
    k = SUPERSAMPLE
    big = scene.image_size * k
    image = _background(scene, big)
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        draw_shape(draw, shape, k)
    if scene.word:
        _draw_word(draw, scene, k)
    return image.resize((scene.image_size, scene.image_size), Image.Resampling.LANCZOS)


def encode_jpeg(image: Image.Image) -> bytes:
    """Encode as baseline JPEG with quality 95; identical pixels give identical bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
