"""Our Flamingo against open-flamingo 2.0.1 built from the same weights: logits and greedy generation."""

from __future__ import annotations

import pytest
import torch

from tests.model.conftest import interleaved_batch


@pytest.mark.parametrize("n", [1, 2, 4])
def test_logits_match_reference(reference_pair, tiny_tokenizer, n):
    ours, ref, cfg = reference_pair(n=n)
    vision_x, ids, mask = interleaved_batch(tiny_tokenizer, cfg.image_size)
    assert (ids[1] == tiny_tokenizer.pad_token_id).any(), "row 1 must be left padded"
    with torch.no_grad():
        expected = ref(vision_x, ids, attention_mask=mask).logits
        got = ours(vision_x, ids, attention_mask=mask).logits
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-4, rtol=1e-4)


def test_loss_matches_reference(reference_pair, tiny_tokenizer):
    ours, ref, cfg = reference_pair(n=2)
    vision_x, ids, mask = interleaved_batch(tiny_tokenizer, cfg.image_size)
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        expected = ref(vision_x, ids, attention_mask=mask, labels=labels).loss
        got = ours(vision_x, ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_greedy_generation_matches_reference_forward_loop(reference_pair, tiny_tokenizer):
    ours, ref, cfg = reference_pair(n=2)
    vision_x, ids, mask = interleaved_batch(tiny_tokenizer, cfg.image_size)
    vision_x, ids = vision_x[:1], ids[:1]  # unpadded row: positions agree by construction
    steps = 8
    expected = ids
    with torch.no_grad():
        for _ in range(steps):
            logits = ref(vision_x, expected).logits[:, -1]
            expected = torch.cat([expected, logits.argmax(-1, keepdim=True)], dim=1)
    got = ours.generate(vision_x, ids, max_new_tokens=steps, eos_token_id=[])
    assert torch.equal(got, expected)
