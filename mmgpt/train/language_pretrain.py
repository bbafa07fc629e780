"""Text-only pretraining of a from-scratch language model on the world's plain text, before the Flamingo stage.

OpenFlamingo starts from a language model pretrained on text alone (LLaMA) and adds the cross-attention to it. A
tiny model trained from scratch otherwise meets its first text together with its first images, and learns the
text's regularities (arithmetic, answers that restate their question) within the same few hundred steps that
teach it to look. This stage gives it those steps first: the decoder (embeddings, layers, head) trains on the
world's `pretrain/text.jsonl` alone; the vision tower, perceiver and cross-attention blocks, which language-only
input never reaches, are left as they are. The Flamingo stage then goes on training the decoder with the images.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmgpt.data.mixture import SampleStream
from mmgpt.train.config import LanguagePretrainSection
from mmgpt.train.pretrain_data import PretrainBuilder, read_corpus
from mmgpt.train.schedule import cosine_lambda

logger = logging.getLogger(__name__)


def language_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable parameters of `model.lang_encoder` outside its gated cross-attention blocks."""
    return [
        p
        for name, p in model.lang_encoder.named_parameters()
        if p.requires_grad and "gated_cross_attn_layer" not in name
    ]


def pretrain_language_model(
    model: nn.Module,
    world: Path,
    settings: LanguagePretrainSection,
    loss_fn: Callable[[dict], torch.Tensor],
    *,
    max_length: int,
    seed: int,
    progress: bool = True,
) -> dict[str, Any]:
    """Train `model`'s decoder in place for `settings.steps` steps on batches of `settings.batch_size` lines of
    `world/pretrain/text.jsonl` (AdamW, linear warmup then cosine decay to a tenth, gradient clipping at 1).

    `loss_fn(batch)` returns the scalar loss of one collated batch (the training loop's forward, with its
    autocast). Returns {"steps", "final_loss"}: the mean loss over the last tenth of the steps. Seeded by
    `seed`; the global random state is restored afterwards.
    """
    from mmgpt.progress import progress_bar

    items = read_corpus(world / "pretrain" / "text.jsonl")
    builder = PretrainBuilder(model.tokenizer, model.image_processor, world, max_length)
    stream = SampleStream(items, builder, settings.batch_size, seed, name="text.jsonl")
    params = language_parameters(model)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_lambda(settings.steps, settings.warmup_steps, 0.1)
    )
    recent: deque[float] = deque(maxlen=max(1, settings.steps // 10))
    with torch.random.fork_rng():  # the caller's random stream is left as it was
        torch.manual_seed(seed)
        model.train()
        bar = progress_bar(range(settings.steps), desc="language model", unit="step", disable=not progress)
        for step in bar:
            loss = loss_fn(stream.next_batch())
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"non-finite loss ({value}) at language pretraining step {step + 1}")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            recent.append(value)
            bar.set_postfix(loss=f"{value:.3f}")
    if builder.skips.counts:
        logger.warning("language pretraining skipped lines: %s", builder.skips.summary())
    return {"steps": settings.steps, "final_loss": sum(recent) / len(recent)}
