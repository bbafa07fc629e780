"""The reference implementation (open-flamingo 2.0.1) built from the same tiny HF parts as our model."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

# open_flamingo imports open_clip at import time; the reference is built from HF parts, so an empty stub will do.
sys.modules.setdefault("open_clip", types.ModuleType("open_clip"))

OF_SIZES = dict(  # open-flamingo 2.0.1 hard-codes these perceiver / cross-attention sizes
    perceiver_depth=6,
    perceiver_heads=8,
    perceiver_dim_head=64,
    num_latents=64,
    xattn_heads=8,
    xattn_dim_head=64,
)


class VisualTower(nn.Module):
    """What the reference expects at `vision_encoder.visual`: returns (pooled, patch tokens without CLS)."""

    def __init__(self, clip_vision: nn.Module):
        super().__init__()
        self.tower = clip_vision

    def forward(self, pixels: torch.Tensor):
        return None, self.tower(pixel_values=pixels).last_hidden_state[:, 1:]


def tiny_clip_config():
    """A 16-pixel, one-layer CLIP vision tower's config: the smallest tower the model tests build."""
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=16,
        patch_size=8,
    )


def build_reference(config, vision, lm):
    """An open_flamingo Flamingo around `vision` (HF CLIPVisionModel) and `lm` (HF LLaMA), with non-zero gates."""
    pytest.importorskip("open_flamingo")
    from open_flamingo.src.flamingo import Flamingo as RefFlamingo
    from open_flamingo.src.flamingo_lm import FlamingoLMMixin
    from open_flamingo.src.utils import extend_instance

    extend_instance(lm, FlamingoLMMixin)
    lm.set_decoder_layers_attr_name("model.layers")
    ref = RefFlamingo(
        types.SimpleNamespace(visual=VisualTower(vision)),
        lm,
        eoc_token_id=config.eoc_token_id,
        media_token_id=config.media_token_id,
        vis_dim=config.vision_width,
        cross_attn_every_n_layers=config.cross_attn_every_n_layers,
    )
    gen = torch.Generator().manual_seed(1)
    for name, p in ref.named_parameters():
        if name.endswith("_gate"):
            p.data.uniform_(-1.0, 1.0, generator=gen)
    return ref.eval()


def reference_to_ours(ref_state: dict) -> dict:
    """Map the reference's state dict onto our module names (drop its alias module lists)."""
    out = {}
    for key, value in ref_state.items():
        if ".gated_cross_attn_layers." in key or ".old_decoder_blocks." in key:
            continue
        out[key.replace("vision_encoder.tower.", "vision_encoder.")] = value
    return out


def released_checkpoint(ref) -> dict:
    """The trained parts of the reference, as OpenFlamingo writes checkpoint.pt (perceiver, xattn, embeddings)."""
    keep = {}
    for key, value in ref.state_dict().items():
        if key.startswith("perceiver.") or (
            ".gated_cross_attn_layer." in key and ".gated_cross_attn_layers." not in key
        ):
            keep[key] = value.clone()
    keep["lang_encoder.model.embed_tokens.weight"] = ref.state_dict()[
        "lang_encoder.model.embed_tokens.weight"
    ].clone()
    return keep


@pytest.fixture
def reference_pair(tiny_tokenizer):
    """Factory: (ours, ref, config) with identical weights, for n = cross_attn_every_n_layers."""
    from mmgpt.model.builder import build_lm_from_config, build_model, build_vision_from_config, tiny_config
    from mmgpt.model.tokenizer import special_token_ids

    def make(n: int = 2, seed: int = 0, **overrides):
        torch.manual_seed(seed)
        cfg = tiny_config(
            len(tiny_tokenizer),
            special_token_ids(tiny_tokenizer),
            cross_attn_every_n_layers=n,
            **OF_SIZES,
            **overrides,
        )
        ref = build_reference(
            cfg, build_vision_from_config(cfg.vision_config), build_lm_from_config(cfg.text_config)
        )
        ours = build_model(cfg).eval()
        ours.load_state_dict(reference_to_ours(ref.state_dict()), strict=True)
        ours.tokenizer = tiny_tokenizer
        return ours, ref, cfg

    return make


def interleaved_batch(tokenizer, image_size: int, seed: int = 0):
    """Two rows: text before the first image + two images; one image with left padding. vision_x (2, 2, 1, 3, H, W)."""
    texts = [
        "hello there <image>a red circle<|endofchunk|><image>a blue square<|endofchunk|>",
        "<image>one small star<|endofchunk|>",
    ]
    tokenizer.padding_side = "left"
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    gen = torch.Generator().manual_seed(seed)
    vision_x = torch.randn(2, 2, 1, 3, image_size, image_size, generator=gen)
    vision_x[1, 1] = 0  # row 1 has one image: the second slot is padding
    return vision_x, enc.input_ids, enc.attention_mask
