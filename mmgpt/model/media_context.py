"""Per-call conditioning of the decoder on images, carried in a context variable rather than on modules.

OpenFlamingo stores the current images and media locations as attributes of shared layers, so two requests on
one model overwrite each other's conditioning. Here each forward call opens a `MediaContext` in a
`contextvars.ContextVar`: it is private to the calling thread (and asyncio task), works for every Hugging Face
decoder whatever its keyword plumbing, and disappears when the call returns.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch

from mmgpt.model.call_scope import CallScoped

_CURRENT: CallScoped[MediaContext] = CallScoped("mmgpt_media_context")


@dataclass
class MediaContext:
    """Images and token-to-image assignment for one forward call.

    latents: (B, T_img, n, D_vis) perceiver outputs, or None when `kv` is given.
    text_time: (B, L) 1-based image index per token of this call's chunk (0 = attend to no image).
    kv: optional precomputed media keys/values per decoder-layer index, each (k, v) of shape
        (B, heads, T_img*n, dim_head); layers without an entry compute theirs from `latents`.
    """

    latents: torch.Tensor | None
    text_time: torch.Tensor
    latents_per_image: int
    kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def kv_for(self, layer_index: int, block: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values of the media for the cross-attention block attached to decoder layer `layer_index`."""
        cached = self.kv.get(layer_index)
        if cached is not None:
            return cached
        if self.latents is None:
            raise RuntimeError(f"no media keys/values for layer {layer_index} and no latents to compute them")
        return block.media_kv(self.latents)


def current_media_context() -> MediaContext | None:
    """The context opened by the innermost enclosing `media_context` in this thread/task, if any."""
    return _CURRENT.get()


def media_context(ctx: MediaContext | None) -> AbstractContextManager[None]:
    """Make `ctx` the current media context for the duration of the block (None = language-only)."""
    return _CURRENT.bound(ctx)
