"""Shared by the benchmarks: a mid-size model in both implementations with identical weights.

The reference is open-flamingo 2.0.1 (installed with --no-deps; its `open_clip` import is stubbed) built from the
same Hugging Face CLIP vision tower and LLaMA as ours; OpenFlamingo fixes its perceiver / cross-attention sizes
(8 heads x 64, 64 latents, depth 6), so ours uses the same.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

sys.modules.setdefault("open_clip", types.ModuleType("open_clip"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from mmgpt.model.builder import build_lm_from_config, build_model, build_vision_from_config, tiny_config  # noqa: E402
from mmgpt.model.tokenizer import SpecialTokenIds  # noqa: E402
from tests.model.conftest import build_reference, reference_to_ours  # noqa: E402

VOCAB = 4000
IDS = SpecialTokenIds(media=VOCAB - 3, endofchunk=VOCAB - 2, pad=VOCAB - 1, eos=2, bos=1)


def mid_config(**overrides):
    """LLaMA 8 x 512 with a 4-layer ViT (64 px, patch 8) and OpenFlamingo's fixed perceiver/xattn sizes."""
    kwargs = dict(
        hidden_size=512,
        num_layers=8,
        num_heads=8,
        intermediate_size=1376,
        vision_width=256,
        vision_layers=4,
        vision_heads=4,
        image_size=64,
        patch_size=8,
        cross_attn_every_n_layers=2,
        perceiver_depth=6,
        perceiver_heads=8,
        perceiver_dim_head=64,
        num_latents=64,
        xattn_heads=8,
        xattn_dim_head=64,
        gate_init=0.5,
        max_position_embeddings=4096,
    )
    kwargs.update(overrides)
    return tiny_config(VOCAB, IDS, **kwargs)


def build_pair(seed: int = 0):
    """(ours, reference, config) with identical weights."""
    torch.manual_seed(seed)
    cfg = mid_config()
    ref = build_reference(
        cfg, build_vision_from_config(cfg.vision_config), build_lm_from_config(cfg.text_config)
    )
    ours = build_model(cfg).eval()
    ours.load_state_dict(reference_to_ours(ref.state_dict()), strict=True)
    return ours, ref, cfg
