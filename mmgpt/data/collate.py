"""Batching: pad text on the right (training), stack images with zero images for rows that have fewer."""

from __future__ import annotations

import torch

from mmgpt.data.dataset import Example
from mmgpt.data.templates import IGNORE_INDEX


def collate(examples: list[Example], pad_id: int, image_size: int | None = None) -> dict:
    """Batch examples into {"lang_x" (B,L) long, "attention_mask" (B,L), "labels" (B,L) (-100 at pads),
    "vision_x" (B,T_img_max,1,3,H,W) float or None when no row has an image, "num_images" (B,) long}."""
    if not examples:
        raise ValueError("cannot collate an empty batch")
    width = max(len(e.input_ids) for e in examples)
    b = len(examples)
    lang_x = torch.full((b, width), pad_id, dtype=torch.long)
    labels = torch.full((b, width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((b, width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e.input_ids)
        lang_x[row, :n] = torch.tensor(e.input_ids, dtype=torch.long)
        labels[row, :n] = torch.tensor(e.labels, dtype=torch.long)
        mask[row, :n] = 1
    counts = torch.tensor([0 if e.pixels is None else e.pixels.shape[0] for e in examples], dtype=torch.long)
    vision_x = None
    if int(counts.max()) > 0:
        ref = next(e.pixels for e in examples if e.pixels is not None)
        vision_x = torch.zeros(b, int(counts.max()), 1, *ref.shape[1:], dtype=ref.dtype)
        for row, e in enumerate(examples):
            if e.pixels is not None:
                vision_x[row, : e.pixels.shape[0], 0] = e.pixels
    return {
        "lang_x": lang_x,
        "attention_mask": mask,
        "labels": labels,
        "vision_x": vision_x,
        "num_images": counts,
    }
