"""Logits at labelled positions only: the same loss and gradients as the Hugging Face loss over all logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmgpt.model.labelled_logits import labelled_loss, labelled_positions, logits_at
from mmgpt.model.lora import LoraSettings, apply_lora


def _instruction_batch(model):
    """Three right-padded rows with one image each; labels -100 at pads and at each row's prompt (its first 4
    tokens), as instruction tuning labels only responses and EOS."""
    media = model.config.media_token_id
    rows = [[1, media, 30, 31, 32, 33, 34, 35, 36], [1, media, 40, 41, 42, 43], [1, media, 50, 51, 52]]
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :4] = -100
    vision = torch.randn(len(rows), 1, 1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return vision, ids, mask, labels


def _loss_and_grads(model, batch, loss_only: bool):
    vision, ids, mask, labels = batch
    model.zero_grad()
    out = model(vision, ids, attention_mask=mask, labels=labels, loss_only=loss_only)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return out, grads


def test_positions_are_those_whose_next_token_is_labelled():
    labels = torch.tensor([[-100, -100, 7, 8, -100], [-100, 5, -100, -100, -100]])
    positions = labelled_positions(labels)
    # row 0: positions 1 and 2 predict 7 and 8; row 1: position 0 predicts 5 (flattened index 5)
    assert positions.shape == (2, 5)
    assert positions.index.tolist() == [1, 2, 5]
    assert positions.targets.tolist() == [7, 8, 5]
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        labelled_positions(labels[0])


def test_loss_from_full_logits_matches_a_hand_computed_cross_entropy():
    logits = torch.randn(2, 5, 11, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[-100, -100, 7, 8, -100], [-100, 5, -100, -100, -100]])
    expected = torch.stack(
        [
            -F.log_softmax(logits[0, 1], -1)[7],
            -F.log_softmax(logits[0, 2], -1)[8],
            -F.log_softmax(logits[1, 0], -1)[5],
        ]
    ).mean()
    torch.testing.assert_close(labelled_loss(logits, labelled_positions(labels)), expected)


@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("packed", [False, True])
def test_loss_only_gives_the_same_loss_and_gradients_as_the_full_logits(make_tiny_model, lora, packed):
    model = make_tiny_model(gate_init=1.0)
    if lora:
        apply_lora(model, LoraSettings(r=4))
    model.train()
    model.pack_padded_tokens = packed
    batch = _instruction_batch(model)
    heads: list[tuple[int, ...]] = []
    model.lm.get_output_embeddings().register_forward_hook(lambda m, a, out: heads.append(tuple(out.shape)))

    out, grads = _loss_and_grads(model, batch, loss_only=True)
    labelled = int((batch[3][:, 1:] != -100).sum())
    # the head projected the 8 labelled positions only, not all 27
    assert labelled == 8 and heads == [(1, labelled, model.lm.config.vocab_size)]
    assert out.logits is None
    full, grads_full = _loss_and_grads(model, batch, loss_only=False)

    torch.testing.assert_close(out.loss, full.loss, atol=1e-6, rtol=1e-6)
    assert grads.keys() == grads_full.keys() and (not lora or any("lora_" in n for n in grads))
    for name in grads:
        torch.testing.assert_close(grads[name], grads_full[name], atol=1e-6, rtol=1e-5, msg=name)


def test_language_only_batches_and_bf16_autocast(make_tiny_model):
    model = make_tiny_model(gate_init=1.0)
    _, ids, mask, labels = _instruction_batch(model)
    ids = ids.masked_fill(ids == model.config.media_token_id, 30)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        packed = model(None, ids, attention_mask=mask, labels=labels, loss_only=True).loss
        full = model(None, ids, attention_mask=mask, labels=labels).loss
    assert packed.dtype == torch.float32 and abs(packed.item() - full.item()) < 1e-2


def test_loss_only_needs_labels_and_leaves_other_calls_alone(make_tiny_model):
    model = make_tiny_model()
    vision, ids, mask, labels = _instruction_batch(model)
    with pytest.raises(ValueError, match="needs labels"):
        model(vision, ids, attention_mask=mask, loss_only=True)
    with torch.no_grad():
        # outside a loss_only call (and after one) the head sees every position
        model(vision, ids, attention_mask=mask, labels=labels, loss_only=True)
        assert model(vision, ids, attention_mask=mask).logits.shape[:2] == ids.shape
        # positions opened for another batch shape are ignored rather than misapplied
        with logits_at(labelled_positions(labels[:, :4])):
            assert model(vision, ids, attention_mask=mask).logits.shape[:2] == ids.shape
