"""Run the feed-forward blocks of a padded batch on its real tokens only.

Batches of dialogues differ in length, so a padded batch spends much of its compute on pad positions (a third
of the demo's training tokens). Attention needs the padded (B, L) layout, but a feed-forward block acts on each
token alone: computing it only at the positions the attention mask keeps gives the same values there. Pad
positions get a zero update instead, which nothing reads: their keys are masked for every real query, and their
labels are ignored. The selection travels in a context variable, like the media context, so concurrent calls on
one model do not see each other's.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from mmgpt.model.call_scope import CallScoped

# Attribute names of the per-token feed-forward block in the decoder layers of the supported LM families
# (LLaMA/Mistral/GPT-NeoX/OPT-style `mlp`, MPT's `ffn`, others' `feed_forward`).
FEED_FORWARD_ATTRS = ("mlp", "ffn", "feed_forward")

_CURRENT: CallScoped[TokenSelection] = CallScoped("mmgpt_token_selection")


@dataclass(frozen=True)
class TokenSelection:
    """The real tokens of a padded (B, L) batch: `index` (N,) long, positions in the flattened B*L tokens."""

    shape: tuple[int, int]
    index: torch.Tensor


def select_real_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> TokenSelection | None:
    """The selection for a batch input_ids (B, L) with attention_mask (B, L), or None without a per-token mask
    (no mask, or one that is not one entry per input token, as with a KV cache).

    A batch without padding gets the selection of all its tokens rather than None, so that every batch takes the
    same operations whatever its padding. Processes of a sharded run must: under DeepSpeed ZeRO-3 with activation
    checkpointing, a process whose batch had no pad tokens (and so skipped the packing) went out of step with the
    others in the recomputation's parameter gathering (a collective size mismatch), and taking the same path on
    every batch ended it. The likely order of events: the backward of the unpacking's index_copy reads a saved
    index and so starts the recomputation before ZeRO-3 gathers the feed-forward block's own parameters."""
    if attention_mask is None or attention_mask.shape != input_ids.shape or input_ids.ndim != 2:
        return None
    keep = attention_mask.reshape(-1) != 0
    b, length = input_ids.shape
    return TokenSelection((b, length), keep.nonzero().squeeze(1))


def current_token_selection() -> TokenSelection | None:
    """The selection opened by the innermost enclosing `token_selection` in this thread/task, if any."""
    return _CURRENT.get()


def token_selection(selection: TokenSelection | None) -> AbstractContextManager[None]:
    """Make `selection` current for the duration of the block (None: run on every token)."""
    return _CURRENT.bound(selection)


def _packed(selection: TokenSelection | None, x: torch.Tensor) -> bool:
    """Whether `x` is the packed (1, N, D) form of the current selection (the pre-hook packed it; for a single
    unpadded row the packed form is the input itself, and unpacking it is the identity)."""
    return selection is not None and x.ndim == 3 and x.shape[0] == 1 and x.shape[1] == selection.index.numel()


def pack_first_argument(
    args: tuple[Any, ...], shape: tuple[int, int], index: torch.Tensor
) -> tuple[Any, ...] | None:
    """`args` with its first element, hidden states (B, L, D) of batch shape `shape`, replaced by its rows at
    `index` (N,) of the flattened B*L, packed to (1, N, D); None (leave the call alone) when the first element is
    not such a tensor."""
    if not args or not torch.is_tensor(args[0]):
        return None
    x = args[0]
    if x.ndim != 3 or tuple(x.shape[:2]) != shape:
        return None
    packed = x.reshape(-1, x.shape[-1]).index_select(0, index.to(x.device)).unsqueeze(0)
    return (packed, *args[1:])


def _pack_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    selection = _CURRENT.get()
    return None if selection is None else pack_first_argument(args, selection.shape, selection.index)


def _unpack_output(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    selection = _CURRENT.get()
    if not torch.is_tensor(output) or not _packed(selection, args[0]):
        return None
    b, length = selection.shape
    y = output.squeeze(0)
    full = y.new_zeros(b * length, y.shape[-1]).index_copy(0, selection.index.to(y.device), y)
    return full.view(b, length, y.shape[-1])


def pack_tokens_in(module: nn.Module) -> None:
    """Make `module` (a per-token block taking hidden states (B, L, D) first and returning (B, L, D')) run on the
    current selection's tokens only. Forward hooks: parameter names and the state dict are unchanged."""
    module.register_forward_pre_hook(_pack_input)
    module.register_forward_hook(_unpack_output)


def feed_forward_of(decoder_layer: nn.Module) -> nn.Module | None:
    """The per-token feed-forward block of a Hugging Face decoder layer, or None when it has no known one."""
    for name in FEED_FORWARD_ATTRS:
        block = getattr(decoder_layer, name, None)
        if isinstance(block, nn.Module):
            return block
    return None
