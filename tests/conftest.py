"""Shared fixtures: a tiny tokenizer and tiny random Flamingo models (no downloads)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CORPUS = [
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "### Image: ### Instruction: ### Response: ### Input:",
    "There are three red circles and a blue square in the top-left corner of the image.",
    "What colour is the triangle? The triangle is green. How many shapes are there? There are 4 shapes.",
    "hello there, a small star, one big yellow star, the word cat is written on it",
]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A byte-level BPE tokenizer with LLaMA-like specials plus the Flamingo tokens (vocab ~ 350)."""
    from mmgpt.model.tokenizer import add_flamingo_special_tokens, train_bpe_tokenizer

    tok = train_bpe_tokenizer(CORPUS * 20, vocab_size=350)
    add_flamingo_special_tokens(tok)
    return tok


@pytest.fixture
def make_tiny_model(tiny_tokenizer):
    """Factory: make_tiny_model(**tiny_config_overrides) -> eval-mode Flamingo with tokenizer/image processor."""
    import torch

    from mmgpt.model.builder import build_model, tiny_config
    from mmgpt.model.image_processing import FlamingoImageProcessor
    from mmgpt.model.tokenizer import special_token_ids

    def make(seed: int = 0, **overrides):
        torch.manual_seed(seed)
        overrides.setdefault("gate_init", 0.5)
        cfg = tiny_config(len(tiny_tokenizer), special_token_ids(tiny_tokenizer), **overrides)
        model = build_model(cfg).eval()
        model.tokenizer = tiny_tokenizer
        model.image_processor = FlamingoImageProcessor(cfg.image_size)
        return model

    return make
