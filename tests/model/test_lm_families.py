"""The OPT, GPT-NeoX and MPT decoder paths: cross-attention inserted, language-only equals the plain LM, and the
training loss from the labelled positions' logits equals the loss from all of them."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, CLIPVisionModel

from mmgpt.model.config import FlamingoConfig
from mmgpt.model.flamingo import Flamingo
from tests.model.conftest import tiny_clip_config

FAMILIES = {
    "opt": dict(
        hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=2, word_embed_proj_dim=32
    ),
    "gpt_neox": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
    "mpt": dict(d_model=32, n_layers=2, n_heads=2, expansion_ratio=2, max_seq_len=64),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_wraps_and_generates(family):
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(
        AutoConfig.for_model(family, vocab_size=64, **FAMILIES[family])
    ).eval()
    plain = copy.deepcopy(lm)
    vision = CLIPVisionModel(tiny_clip_config())
    cfg = FlamingoConfig(
        vision_config=vision.config.to_dict(),
        text_config=lm.config.to_dict(),
        media_token_id=63,
        eoc_token_id=62,
        eos_token_id=2,
        pad_token_id=1,
        cross_attn_every_n_layers=1,
        perceiver_depth=1,
        perceiver_heads=2,
        perceiver_dim_head=8,
        perceiver_num_latents=4,
        xattn_heads=2,
        xattn_dim_head=8,
        gate_init=1.0,
    )
    model = Flamingo(vision, lm, cfg).eval()
    assert len(model.cross_attn_blocks()) == 2
    ids = torch.tensor([[5, 6, 7, 8]])
    image, with_media = torch.randn(1, 1, 1, 3, 16, 16), torch.tensor([[5, 63, 7, 8]])
    labels = torch.tensor([[-100, -100, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(model(None, ids).logits, plain(input_ids=ids).logits)
        with_image = model(image, with_media).logits
        full = model(image, with_media, labels=labels).loss
        labelled = model(image, with_media, labels=labels, loss_only=True).loss
    assert torch.isfinite(with_image).all()
    torch.testing.assert_close(labelled, full)
    out = model.generate(
        torch.randn(1, 1, 1, 3, 16, 16), torch.tensor([[5, 63, 7]]), max_new_tokens=4, eos_token_id=[]
    )
    assert out.shape == (1, 7)
