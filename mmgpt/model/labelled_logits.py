"""Project onto the vocabulary only the positions a training loss reads.

A causal LM's forward computes logits at every position, but the loss reads only those whose next token is
labelled: in instruction tuning, the response and EOS tokens (pad and prompt tokens are -100). The output head
runs instead on the hidden states of the labelled positions, packed to (1, N, D), and the loss is the same mean
cross-entropy the Hugging Face models compute over all positions with -100 ignored. At scale this is mostly
memory: for LLaMA-7B's 32000-word vocabulary the fp32 logits of a batch of 8 x 2048 tokens take 2 GiB, and their
gradient as much again. The positions travel in a `CallScoped` value, as the media context and the token
selection do, so concurrent calls on one model do not see each other's.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmgpt.model.call_scope import CallScoped
from mmgpt.model.token_packing import pack_first_argument

# The label the loss skips (Hugging Face's convention): pads, prompts, image tokens.
IGNORE_INDEX = -100

_CURRENT: CallScoped[LabelledPositions] = CallScoped("mmgpt_labelled_positions")


@dataclass(frozen=True)
class LabelledPositions:
    """The positions of a (B, L) batch whose next token is labelled: `index` (N,) long, positions in the
    flattened B*L tokens, and `targets` (N,) long, the token each of them should predict."""

    shape: tuple[int, int]
    index: torch.Tensor
    targets: torch.Tensor


def labelled_positions(labels: torch.Tensor) -> LabelledPositions:
    """The positions for labels (B, L), in the causal LM's convention: the logits at position t are scored
    against labels[t + 1], and -100 marks a label the loss ignores."""
    if labels.ndim != 2:
        raise ValueError(f"labels must have shape (B, L), got {tuple(labels.shape)}")
    next_tokens = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX).reshape(-1)
    index = (next_tokens != IGNORE_INDEX).nonzero().squeeze(1)
    b, length = labels.shape
    return LabelledPositions((b, length), index, next_tokens[index])


def logits_at(positions: LabelledPositions | None) -> AbstractContextManager[None]:
    """Within the block, output heads prepared by `project_labelled_only` see only `positions` (None: all)."""
    return _CURRENT.bound(positions)


def _select_hidden(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    positions = _CURRENT.get()
    return None if positions is None else pack_first_argument(args, positions.shape, positions.index)


def project_labelled_only(head: nn.Module) -> None:
    """Make the output head `head` (hidden (B, L, D) -> logits (B, L, V)) return logits (1, N, V) at the current
    `logits_at` positions only. A forward pre-hook: parameter names and the state dict are unchanged."""
    head.register_forward_pre_hook(_select_hidden)


def labelled_loss(logits: torch.Tensor, positions: LabelledPositions) -> torch.Tensor:
    """Mean cross-entropy (fp32 scalar) of the labelled positions' logits: (1, N, V) from a prepared head, or the
    full (B, L, V) when the head could not be prepared. NaN when nothing is labelled, as for the full logits."""
    vocab = logits.shape[-1]
    # the packed form is never (B, L)-shaped: the last position of every row has no next token, so N < B * L
    if tuple(logits.shape[:2]) == positions.shape:
        logits = logits.reshape(-1, vocab).index_select(0, positions.index.to(logits.device))
    return F.cross_entropy(logits.reshape(-1, vocab).float(), positions.targets.to(logits.device))
