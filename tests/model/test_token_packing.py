"""Feed-forward blocks on real tokens only: same loss, logits and gradients as running them on the pads too."""

from __future__ import annotations

import pytest
import torch

from mmgpt.model.lora import LoraSettings, apply_lora
from mmgpt.model.token_packing import feed_forward_of, select_real_tokens


def _padded_batch(model, side: str):
    """Three rows of 9, 6 and 4 tokens, each with one image, padded on `side`; labels -100 at pads and at each
    row's first token (whose prediction, from a pad position when left-padded, means nothing either way)."""
    media = model.config.media_token_id
    rows = [[1, media, 30, 31, 32, 33, 34, 35, 36], [1, media, 40, 41, 42, 43], [1, media, 50, 51]]
    width = max(map(len, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        cols = slice(0, len(row)) if side == "right" else slice(width - len(row), width)
        ids[i, cols] = torch.tensor(row)
        mask[i, cols] = 1
    labels = ids.masked_fill(mask == 0, -100)
    labels[torch.arange(len(rows)), mask.argmax(1)] = -100
    vision = torch.randn(len(rows), 1, 1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return vision, ids, mask, labels


def _run(model, batch, packed: bool):
    """(loss, logits at real positions, {trainable parameter: grad}) with packing on or off."""
    vision, ids, mask, labels = batch
    model.pack_padded_tokens = packed
    model.zero_grad()
    out = model(vision, ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return out.loss.detach(), out.logits.detach()[mask.bool()], grads


def _feed_forward_rows(model) -> list[int]:
    """Records, per feed-forward call, how many token rows it computed (B*L of its input)."""
    seen: list[int] = []
    for layer in model.flamingo_layers():
        xattn = layer.gated_cross_attn_layer
        for block in (feed_forward_of(layer.decoder_layer), xattn.ff if xattn is not None else None):
            if block is not None:
                block.register_forward_pre_hook(
                    lambda m, args: seen.append(args[0].shape[0] * args[0].shape[1])
                )
    return seen


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_packed_feed_forward_gives_the_same_loss_logits_and_gradients(make_tiny_model, side, checkpointing):
    model = make_tiny_model(gate_init=1.0)
    apply_lora(model, LoraSettings(r=4))
    model.train()
    if checkpointing:
        model.gradient_checkpointing_enable()
    batch = _padded_batch(model, side)
    rows = _feed_forward_rows(model)

    loss, logits, grads = _run(model, batch, packed=True)
    real = int(batch[2].sum())
    # every feed-forward block of the forward (and of the recomputation under checkpointing) ran on the
    # 19 real tokens only, not on the 27 padded positions
    assert real == 19 and rows and set(rows) == {real}
    rows.clear()
    loss_full, logits_full, grads_full = _run(model, batch, packed=False)
    assert set(rows) == {batch[1].numel()}

    torch.testing.assert_close(loss, loss_full, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(logits, logits_full, atol=1e-5, rtol=1e-5)
    assert grads.keys() == grads_full.keys() and any("lora_" in n for n in grads)
    for name in grads:
        torch.testing.assert_close(grads[name], grads_full[name], atol=1e-6, rtol=1e-5, msg=name)


def test_packing_under_bf16_autocast_stays_close(make_tiny_model):
    model = make_tiny_model(gate_init=1.0)
    apply_lora(model, LoraSettings(r=4))
    model.train()
    batch = _padded_batch(model, "right")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _, _ = _run(model, batch, packed=True)
        loss_full, _, _ = _run(model, batch, packed=False)
    assert torch.isfinite(loss) and abs(loss.item() - loss_full.item()) < 1e-2


def test_language_only_batches_are_packed_too(make_tiny_model):
    model = make_tiny_model(gate_init=1.0)
    _, ids, mask, labels = _padded_batch(model, "right")
    ids = ids.masked_fill(ids == model.config.media_token_id, 30)
    rows = _feed_forward_rows(model)
    with torch.no_grad():
        packed = model(None, ids, attention_mask=mask, labels=labels).loss
        # language-only input skips the cross-attention blocks: only the decoder layers' MLPs ran, on 19 rows each
        assert set(rows) == {19} and len(rows) == len(model.flamingo_layers())
        model.pack_padded_tokens = False
        full = model(None, ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(packed, full, atol=1e-6, rtol=1e-6)


def test_selection_needs_a_per_token_mask_and_covers_unpadded_batches():
    ids = torch.ones(2, 5, dtype=torch.long)
    assert select_real_tokens(ids, None) is None
    assert (
        select_real_tokens(ids[:, -1:], torch.tensor([[0, 1, 1], [1, 1, 1]])) is None
    )  # decoding with a cache
    selection = select_real_tokens(ids, torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]]))
    assert selection.shape == (2, 5) and selection.index.tolist() == [0, 1, 2, 6, 7, 8, 9]
    # no padding: all tokens, so a batch takes the same operations whatever its padding (see the next test)
    assert select_real_tokens(ids, torch.ones(2, 5)).index.tolist() == list(range(10))


@pytest.mark.parametrize("rows", [1, 3])
def test_unpadded_batches_run_the_same_packing(make_tiny_model, rows):
    """Processes of a sharded run must run the same operations whether or not their batch has pad tokens (ZeRO-3
    with activation checkpointing went out of step otherwise): an unpadded batch is packed too, identically."""
    model = make_tiny_model(gate_init=1.0)
    apply_lora(model, LoraSettings(r=4))
    model.train()
    model.gradient_checkpointing_enable()
    vision, ids, mask, labels = _padded_batch(model, "right")
    vision, ids, labels = vision[:rows], ids[:rows, :4], labels[:rows, :4]
    mask = torch.ones_like(ids)
    shapes: list[tuple[int, ...]] = []
    for layer in model.flamingo_layers():
        feed_forward_of(layer.decoder_layer).register_forward_pre_hook(
            lambda m, args: shapes.append(tuple(args[0].shape[:2]))
        )
    loss, logits, grads = _run(model, (vision, ids, mask, labels), packed=True)
    # forward and recomputation: every MLP call got the packed (1, B*L) form
    assert shapes and set(shapes) == {(1, rows * 4)}
    loss_full, logits_full, grads_full = _run(model, (vision, ids, mask, labels), packed=False)
    torch.testing.assert_close(loss, loss_full, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(logits, logits_full, atol=1e-5, rtol=1e-5)
    for name in grads:
        torch.testing.assert_close(grads[name], grads_full[name], atol=1e-6, rtol=1e-5, msg=name)


def test_compiling_the_layers_turns_packing_off(make_tiny_model, monkeypatch):
    model = make_tiny_model()
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: None)
    model.compile_layers()
    assert model.pack_padded_tokens is False
