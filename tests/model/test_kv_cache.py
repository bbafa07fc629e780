"""GrowingCache holds exactly what transformers' DynamicCache holds, through every operation decoding uses."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from mmgpt.model import kv_cache
from mmgpt.model.kv_cache import GrowingCache


def _same(a: DynamicCache, b: GrowingCache) -> None:
    assert a.get_seq_length() == b.get_seq_length()
    for la, lb in zip(a.layers, b.layers, strict=True):
        torch.testing.assert_close(lb.keys, la.keys, rtol=0, atol=0)
        torch.testing.assert_close(lb.values, la.values, rtol=0, atol=0)


def test_growing_cache_matches_dynamic_cache(monkeypatch):
    monkeypatch.setattr(kv_cache, "MIN_CAPACITY", 4)  # force several reallocations
    g = torch.Generator().manual_seed(0)
    ref, ours = DynamicCache(), GrowingCache()

    def append(length: int, batch: int = 2) -> None:
        for layer in range(3):
            k = torch.randn(batch, 2, length, 5, generator=g)
            v = torch.randn(batch, 2, length, 5, generator=g)
            out_ref = ref.update(k, v, layer)
            out = ours.update(k, v, layer)
            for x, y in zip(out, out_ref, strict=True):
                torch.testing.assert_close(x, y, rtol=0, atol=0)

    append(3)
    for _ in range(6):  # token-by-token decoding past the capacity
        append(1)
    _same(ref, ours)
    capacity = ours.layers[0]._key_buffer.shape[-2]
    ref.crop(-4)
    ours.crop(-4)
    _same(ref, ours)
    append(2)  # overwrites the cropped positions, no reallocation needed
    _same(ref, ours)
    assert ours.layers[0]._key_buffer.shape[-2] == capacity

    ref.batch_repeat_interleave(3)
    ours.batch_repeat_interleave(3)
    _same(ref, ours)
    append(1, batch=6)
    beams = torch.tensor([5, 0, 0, 2, 4, 1])
    ref.reorder_cache(beams)
    ours.reorder_cache(beams)
    _same(ref, ours)
    append(1, batch=6)
    unchanged = torch.arange(6)  # every beam kept its row
    ref.reorder_cache(unchanged)
    ours.reorder_cache(unchanged)
    _same(ref, ours)
    fewer = torch.tensor([4, 1, 1])  # a reorder that also changes the number of rows
    ref.reorder_cache(fewer)
    ours.reorder_cache(fewer)
    _same(ref, ours)
    append(1, batch=3)
    ref.reorder_cache(torch.tensor([2, 2, 0, 1, 0, 1]))
    ours.reorder_cache(torch.tensor([2, 2, 0, 1, 0, 1]))
    _same(ref, ours)
    append(1, batch=6)
    keep = torch.tensor([0, 3])
    ref.batch_select_indices(keep)
    ours.batch_select_indices(keep)
    _same(ref, ours)
    append(5)
    _same(ref, ours)


def test_appending_does_not_copy_the_cache():
    cache = GrowingCache()
    k = torch.randn(1, 2, 10, 4)
    cache.update(k, k, 0)
    buffer = cache.layers[0]._key_buffer
    for _ in range(20):
        cache.update(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 4), 0)
    assert cache.layers[0]._key_buffer is buffer  # same storage: appended in place
    assert cache.get_seq_length() == 30
    torch.testing.assert_close(cache.layers[0].keys[:, :, :10], k)
