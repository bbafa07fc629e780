"""A self-attention KV cache that grows in place, for long multi-round chats.

transformers' `DynamicCache` concatenates every new token's keys and values onto the whole cache, so each decoded
token copies all of it (at 384 cached tokens on CPU, about 5% of a 16-token chat round, growing with the history).
`GrowingCache` writes new keys/values into a preallocated buffer whose capacity doubles when full, so appending
costs only the new tokens (amortised), and attention reads a view of the filled part. Everything else (cropping
for beam search and context limits, batch reordering) behaves as `DynamicCache`, which it subclasses.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

MIN_CAPACITY = 256


class GrowingLayer(DynamicLayer):
    """One layer's keys and values (B, H, L, D), held as views of buffers with room for more positions."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Empty buffers with the new states' dtype and device."""
        super().lazy_initialization(key_states, value_states)
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None
        self._length = 0

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append key_states/value_states (B, H, T, D); returns all cached keys and values (B, H, L + T, D)."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self._length + key_states.shape[-2]
        if self._key_buffer is None or end > self._key_buffer.shape[-2] or not self._fits(key_states):
            self._reallocate(key_states, value_states, end)
        self._key_buffer[..., self._length : end, :].copy_(key_states)
        self._value_buffer[..., self._length : end, :].copy_(value_states)
        self._set_length(end)
        return self.keys, self.values

    def _fits(self, states: torch.Tensor) -> bool:
        # the buffer's batch / heads / head size must match (they change only through the methods below)
        buf = self._key_buffer
        return buf.shape[:2] == states.shape[:2] and buf.shape[-1] == states.shape[-1]

    def _reallocate(self, key_states: torch.Tensor, value_states: torch.Tensor, needed: int) -> None:
        old = self._key_buffer.shape[-2] if self._key_buffer is not None else 0
        capacity = max(needed, 2 * old, MIN_CAPACITY)
        b, h, _, d = key_states.shape
        new_k = key_states.new_empty(b, h, capacity, d)
        new_v = value_states.new_empty(b, h, capacity, value_states.shape[-1])
        if self._length:
            new_k[..., : self._length, :].copy_(self.keys)
            new_v[..., : self._length, :].copy_(self.values)
        self._key_buffer, self._value_buffer = new_k, new_v

    def _set_length(self, length: int) -> None:
        self._length = length
        self.keys = self._key_buffer[..., :length, :]
        self.values = self._value_buffer[..., :length, :]

    def _adopt(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Make (keys, values) the whole content; the next append reallocates with room to grow."""
        self._key_buffer, self._value_buffer = keys.contiguous(), values.contiguous()
        self._set_length(keys.shape[-2])

    def get_seq_length(self) -> int:
        """Number of cached positions."""
        return self._length if self.is_initialized else 0

    def reset(self) -> None:
        """Drop everything (buffers included)."""
        super().reset()
        self._key_buffer = self._value_buffer = None
        self._length = 0

    def crop(self, tokens_to_remove: int) -> None:
        """Forget the last `-tokens_to_remove` positions (a negative count, as `DynamicLayer.crop`)."""
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative count of positions to remove, got {tokens_to_remove}")
        if tokens_to_remove == 0 or not self.is_initialized:
            return
        self._set_length(max(0, self._length + tokens_to_remove))

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Repeat every row `repeats` times (beam search expansion)."""
        if self.get_seq_length() > 0:
            self._adopt(
                self.keys.repeat_interleave(repeats, dim=0), self.values.repeat_interleave(repeats, dim=0)
            )

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the rows `indices`."""
        if self.get_seq_length() > 0:
            self._adopt(self.keys[indices, ...], self.values[indices, ...])

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Reorder rows for beam search (row i takes row beam_idx[i]), keeping the spare capacity.

        Runs after every beam-search step, so only the rows that change are copied, and only their filled
        positions.
        """
        if self.get_seq_length() == 0:
            return
        idx = beam_idx.to(self._key_buffer.device)
        rows = self._key_buffer.shape[0]
        if idx.numel() != rows:
            self._adopt(self.keys.index_select(0, idx), self.values.index_select(0, idx))
            return
        changed = (idx != torch.arange(rows, device=idx.device)).nonzero().squeeze(1)
        if changed.numel() == 0:
            return
        source = idx[changed]
        # the right-hand sides are gathered before any row is overwritten
        self._key_buffer[changed, :, : self._length] = self.keys.index_select(0, source)
        self._value_buffer[changed, :, : self._length] = self.values.index_select(0, source)
        self._set_length(self._length)


class GrowingCache(DynamicCache):
    """`DynamicCache` whose layers are `GrowingLayer`s (created lazily, one per decoder layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.layer_class_to_replicate = GrowingLayer
