"""OpenFlamingo's image preprocessing through transformers' CLIP image processor (no torchvision).

Resize the shortest side to the vision tower's size (bicubic), centre-crop, RGB, scale to [0, 1], normalise with
CLIP's mean and std: exactly what open_clip's `image_processor` did for the released models.
"""

from __future__ import annotations

import torch
from PIL import Image
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class FlamingoImageProcessor:
    """Callable turning PIL images into normalised tensors.

    `processor(image)` -> tensor (3, H, W); `processor.batch(images)` -> tensor (N, 3, H, W).
    """

    def __init__(self, image_size: int = 224):
        self.image_size = int(image_size)
        self.hf = CLIPImageProcessorPil(
            do_resize=True,
            size={"shortest_edge": self.image_size},
            resample=Image.Resampling.BICUBIC,
            do_center_crop=True,
            crop_size={"height": self.image_size, "width": self.image_size},
            do_rescale=True,
            rescale_factor=1 / 255,
            do_normalize=True,
            image_mean=list(CLIP_MEAN),
            image_std=list(CLIP_STD),
            do_convert_rgb=True,
        )

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Preprocess one PIL image; returns a float32 tensor (3, image_size, image_size)."""
        return self.batch([image])[0]

    def batch(self, images: list[Image.Image]) -> torch.Tensor:
        """Preprocess a list of PIL images; returns a float32 tensor (N, 3, image_size, image_size)."""
        if not images:
            return torch.zeros(0, 3, self.image_size, self.image_size)
        out = self.hf(images=[im.convert("RGB") for im in images], return_tensors="pt")
        return out["pixel_values"].float()

    def save_pretrained(self, directory: str) -> None:
        """Write `preprocessor_config.json` into `directory`."""
        self.hf.save_pretrained(directory)
