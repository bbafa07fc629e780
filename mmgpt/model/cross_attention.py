"""Gated cross-attention from text to image latents, and the rule deciding which image each token sees.

Names match OpenFlamingo (`attn.norm`, `attn.to_q`, `attn.to_kv`, `attn.to_out`, `attn_gate`, `ff.{0,1,3}`,
`ff_gate`). Media keys/values are computed by `media_kv` separately from the text side so a generation call or a
chat session computes them once and reuses them for every new token.
"""

from __future__ import annotations

import torch
from torch import nn

from mmgpt.model.perceiver import attend, feed_forward, merge_heads, split_heads


def text_time_for_chunk(
    input_ids: torch.Tensor,
    media_token_id: int,
    prefix_image_count: torch.Tensor | None = None,
    mode: str = "immediate",
    total_images: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return, for each token, the 1-based index of the image it attends to (0 = no image).

    input_ids (B, L) is a chunk of the sequence; `prefix_image_count` (B,) counts `<image>` tokens before it.
    - `immediate` (OpenFlamingo 2.x): the count of `<image>` tokens up to and including the token, so the `<image>`
      token sees its own image and text sees the latest preceding image.
    - `openflamingo_v1`: non-media tokens are shifted to the *next* image and tokens past the last image of the
      sequence see none (what v1's default `attend_previous=False` did). `total_images` (B,) is the number of
      images in the whole sequence (default: prefix + chunk).
    """
    is_media = input_ids == media_token_id
    time = is_media.long().cumsum(dim=-1)
    if prefix_image_count is not None:
        time = time + prefix_image_count.to(time.device).view(-1, 1)
    if mode == "immediate":
        return time
    if mode != "openflamingo_v1":
        raise ValueError(f"unknown media attention mode {mode!r}")
    if total_images is None:
        total_images = time[:, -1] if time.shape[1] else torch.zeros(time.shape[0], dtype=torch.long)
    time = torch.where(is_media, time, time + 1)
    return torch.where(time > total_images.to(time.device).view(-1, 1), torch.zeros_like(time), time)


class MaskedCrossAttention(nn.Module):
    """Text queries attend to the latents of the one image selected by `text_time`."""

    def __init__(self, dim: int, dim_visual: int, dim_head: int = 64, heads: int = 8):
        super().__init__()
        self.heads = heads
        inner = dim_head * heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_visual, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def media_kv(self, media: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """media latents (B, T_img, n, D_vis) -> keys, values, each (B, heads, T_img*n, dim_head)."""
        b, t, n, d = media.shape
        k, v = self.to_kv(media.reshape(b, t * n, d)).chunk(2, dim=-1)
        return split_heads(k, self.heads), split_heads(v, self.heads)

    def forward(
        self,
        x: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor],
        text_time: torch.Tensor,
        latents_per_image: int,
    ) -> torch.Tensor:
        """x (B, L, D) text states, kv from `media_kv`, text_time (B, L) -> update (B, L, D).

        Tokens with text_time 0 get exactly zero output: their rows are unmasked for the kernel (a fully masked
        row would give NaN with fused attention) and zeroed afterwards.
        """
        k, v = kv
        q = split_heads(self.to_q(self.norm(x)), self.heads)
        has_media = (text_time > 0)[:, None, :, None]
        mask = None
        if k.shape[-2] > latents_per_image:  # with a single image, every token with an image sees all keys
            media_time = torch.arange(k.shape[-2], device=x.device) // latents_per_image + 1
            mask = (text_time[:, None, :, None] == media_time) | ~has_media
        out = attend(q, k.to(q.dtype), v.to(q.dtype), mask)
        out = out * has_media.to(out.dtype)
        return self.to_out(merge_heads(out))


class GatedCrossAttentionBlock(nn.Module):
    """`x + tanh(attn_gate) * xattn(x)`, then `x + tanh(ff_gate) * ff(x)`; gates start at `gate_init`."""

    def __init__(
        self,
        dim: int,
        dim_visual: int,
        dim_head: int = 64,
        heads: int = 8,
        ff_mult: int = 4,
        gate_init: float = 0.0,
    ):
        super().__init__()
        self.attn = MaskedCrossAttention(dim, dim_visual, dim_head, heads)
        self.attn_gate = nn.Parameter(torch.tensor([float(gate_init)]))
        self.ff = feed_forward(dim, ff_mult)
        self.ff_gate = nn.Parameter(torch.tensor([float(gate_init)]))

    def media_kv(self, media: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """See `MaskedCrossAttention.media_kv`."""
        return self.attn.media_kv(media)

    def forward(
        self,
        x: torch.Tensor,
        kv: tuple[torch.Tensor, torch.Tensor],
        text_time: torch.Tensor,
        latents_per_image: int,
    ) -> torch.Tensor:
        """x (B, L, D) -> (B, L, D)."""
        x = x + self.attn(x, kv, text_time, latents_per_image) * self.attn_gate.tanh().to(x.dtype)
        return x + self.ff(x) * self.ff_gate.tanh().to(x.dtype)
