"""The Flamingo model: a CLIP vision tower, a perceiver resampler and gated cross-attention inside any HF causal LM.

Module and parameter names mirror OpenFlamingo (`vision_encoder`, `perceiver`,
`lang_encoder.<layers>.N.gated_cross_attn_layer`, `lang_encoder.<layers>.N.decoder_layer`) so released
checkpoints and the MultiModal-GPT LoRA release map onto it key for key. Unlike OpenFlamingo, no per-call state
lives on modules: images reach the layers through `media_context` (see media_context.py).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers.modeling_outputs import CausalLMOutputWithPast

from mmgpt.errors import ConfigError
from mmgpt.model.config import FlamingoConfig
from mmgpt.model.cross_attention import GatedCrossAttentionBlock, text_time_for_chunk
from mmgpt.model.labelled_logits import labelled_loss, labelled_positions, logits_at, project_labelled_only
from mmgpt.model.lm_adapters import decoder_layers_attr, get_attr_path, lm_hidden_size, set_attr_path
from mmgpt.model.media_context import MediaContext, current_media_context, media_context
from mmgpt.model.perceiver import PerceiverResampler
from mmgpt.model.token_packing import (
    current_token_selection,
    feed_forward_of,
    pack_tokens_in,
    select_real_tokens,
    token_selection,
)

logger = logging.getLogger(__name__)


def patch_tokens(vision_encoder: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """What the perceiver reads: pixels (B, 3, H, W) -> the CLIP tower's last-block patch tokens (B, N, D), without
    CLS and before the final LayerNorm, as the released models saw them."""
    return vision_encoder(pixel_values=pixels).last_hidden_state[:, 1:]


class FlamingoLayer(nn.Module):
    """A decoder layer preceded (when present) by a gated cross-attention block.

    Transparent to the LM: it takes and returns exactly what the wrapped decoder layer does, reading the images
    for this call from the current `MediaContext`. Without a context (language-only input) the cross-attention
    block is skipped entirely, as the authors trained language-only data.
    """

    def __init__(
        self, gated_cross_attn_layer: GatedCrossAttentionBlock | None, decoder_layer: nn.Module, index: int
    ):
        super().__init__()
        self.gated_cross_attn_layer = gated_cross_attn_layer
        self.decoder_layer = decoder_layer
        self.layer_index = index
        self.gradient_checkpointing = False

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        ctx = current_media_context()
        selection = current_token_selection()

        def run(h: torch.Tensor) -> Any:
            with token_selection(selection):
                if self.gated_cross_attn_layer is not None and ctx is not None:
                    kv = ctx.kv_for(self.layer_index, self.gated_cross_attn_layer)
                    h = self.gated_cross_attn_layer(h, kv, ctx.text_time, ctx.latents_per_image)
                return self.decoder_layer(h, *args, **kwargs)

        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            # The contexts are captured by the closure, so the recomputation in backward sees the same images
            # and token selection whichever thread runs it.
            return checkpoint(run, hidden_states, use_reentrant=False)
        return run(hidden_states)


class Flamingo(nn.Module):
    """OpenFlamingo-compatible model.

    `model(vision_x, lang_x, attention_mask=None, labels=None)` with vision_x (B, T_img, 1, 3, H, W) (or None for
    language-only input) and lang_x (B, L) returns a transformers `CausalLMOutputWithPast` (`.logits` (B, L, V),
    `.loss` when labels are given). `model.generate(vision_x, lang_x, attention_mask=None, **kwargs)` returns
    lang_x with the generated tokens appended.

    With an attention mask that marks padding, the feed-forward blocks run on the real tokens only
    (`pack_padded_tokens`): logits at real positions are unchanged; those at pad positions, never meaningful,
    differ, so a loss must not read them (labels -100 at pads, as `collate` sets them).

    `model(..., labels=labels, loss_only=True)`, as training calls it, returns the same `.loss` with `.logits`
    None, having projected onto the vocabulary only the positions the loss reads (see labelled_logits.py).
    """

    def __init__(self, vision_encoder: nn.Module, lang_encoder: nn.Module, config: FlamingoConfig):
        super().__init__()
        self.config = config
        self.vision_encoder = vision_encoder
        self.perceiver = PerceiverResampler(
            dim=config.vision_width,
            depth=config.perceiver_depth,
            dim_head=config.perceiver_dim_head,
            heads=config.perceiver_heads,
            num_latents=config.perceiver_num_latents,
            ff_mult=config.perceiver_ff_mult,
        )
        self.lang_encoder = lang_encoder
        self.decoder_layers_attr = decoder_layers_attr(lang_encoder, config.decoder_layers_attr)
        layers = get_attr_path(lang_encoder, self.decoder_layers_attr)
        dim = lm_hidden_size(lang_encoder)
        n = config.cross_attn_every_n_layers
        if n > len(layers):
            # the model would never see its images, and LoRA's cross-attention targets would match nothing
            raise ConfigError(
                f"cross_attn_every_n_layers={n} gives none of the language model's {len(layers)} decoder layers a "
                f"cross-attention block; use at most {len(layers)}"
            )
        wrapped = []
        for i, layer in enumerate(layers):
            block = None
            if (i + 1) % n == 0:
                block = GatedCrossAttentionBlock(
                    dim=dim,
                    dim_visual=config.vision_width,
                    dim_head=config.xattn_dim_head,
                    heads=config.xattn_heads,
                    ff_mult=config.xattn_ff_mult,
                    gate_init=config.gate_init,
                )
            wrapped.append(FlamingoLayer(block, layer, i))
            for feed_forward in (feed_forward_of(layer), block.ff if block is not None else None):
                if feed_forward is not None:
                    pack_tokens_in(feed_forward)
        set_attr_path(lang_encoder, self.decoder_layers_attr, nn.ModuleList(wrapped))
        head = lang_encoder.get_output_embeddings()
        if isinstance(head, nn.Module):
            project_labelled_only(head)
        # Feed-forward blocks skip the pad tokens of padded batches (see token_packing.py); off once the layers
        # are compiled, whose graphs would otherwise recompile for every new number of real tokens.
        self.pack_padded_tokens = True
        # Set by the loaders; not modules, so not part of the state dict.
        self.tokenizer = None
        self.image_processor = None

    # ----------------------------------------------------------------------------------------------- structure
    @property
    def lm(self) -> nn.Module:
        """The Hugging Face causal LM, unwrapped from peft when LoRA adapters are attached."""
        enc = self.lang_encoder
        return enc.get_base_model() if hasattr(enc, "get_base_model") else enc

    def flamingo_layers(self) -> list[FlamingoLayer]:
        """The wrapped decoder layers, in order."""
        return list(get_attr_path(self.lm, self.decoder_layers_attr))

    def cross_attn_blocks(self) -> dict[int, GatedCrossAttentionBlock]:
        """Decoder-layer index -> gated cross-attention block run before that layer."""
        return {
            layer.layer_index: layer.gated_cross_attn_layer
            for layer in self.flamingo_layers()
            if layer.gated_cross_attn_layer is not None
        }

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.perceiver.parameters()).dtype

    def gradient_checkpointing_enable(self, enabled: bool = True) -> None:
        """Recompute each decoder layer (with its cross-attention) in backward instead of storing activations."""
        for layer in self.flamingo_layers():
            layer.gradient_checkpointing = enabled

    def gradient_checkpointing_disable(self) -> None:
        """Undo `gradient_checkpointing_enable`."""
        self.gradient_checkpointing_enable(False)

    def compile_layers(self, **options: Any) -> None:
        """`torch.compile` every decoder layer and gated cross-attention block in place (regional compilation).

        Identical layers share one compiled graph, so compiling costs about one layer's worth of time; parameter
        names and the state dict are unchanged. The media context is read outside the compiled regions.
        Feed-forward blocks then run on pad tokens too (`pack_padded_tokens` is turned off), so the graphs do not
        depend on how many tokens are real. `options` go to `torch.compile` (e.g. `mode`, `dynamic`).
        """
        self.pack_padded_tokens = False
        for layer in self.flamingo_layers():
            layer.decoder_layer.compile(**options)
            if layer.gated_cross_attn_layer is not None:
                layer.gated_cross_attn_layer.compile(**options)

    # ----------------------------------------------------------------------------------------------- vision
    def encode_vision(self, vision_x: torch.Tensor) -> torch.Tensor:
        """vision_x (B, T_img, F, 3, H, W) -> perceiver latents (B, T_img, n_latents, D_vis).

        Patch tokens of the last CLIP block without CLS and before the final LayerNorm, as the released models
        saw them. The tower runs without gradients unless it is being trained.
        """
        if vision_x.ndim != 6:
            raise ValueError(f"vision_x must have shape (B, T_img, F, 3, H, W), got {tuple(vision_x.shape)}")
        b, t, f = vision_x.shape[:3]
        pixels = vision_x.reshape(b * t * f, *vision_x.shape[3:])
        tower_dtype = next(self.vision_encoder.parameters()).dtype
        trainable = any(p.requires_grad for p in self.vision_encoder.parameters())
        with torch.set_grad_enabled(trainable and torch.is_grad_enabled()):
            hidden = patch_tokens(self.vision_encoder, pixels.to(tower_dtype))
        features = hidden.reshape(b, t, f, *hidden.shape[1:])
        return self.perceiver(features.to(self.dtype))

    def media_kv(self, latents: torch.Tensor) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Precompute every cross-attention layer's media keys/values: {layer index: (k, v)}, each
        (B, heads, T_img*n, dim_head). Computed once per generation call or chat image, reused for every token."""
        return {i: block.media_kv(latents) for i, block in self.cross_attn_blocks().items()}

    def media_context_for(
        self,
        input_ids: torch.Tensor,
        latents: torch.Tensor | None,
        kv: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
        prefix_image_count: torch.Tensor | None = None,
    ) -> MediaContext | None:
        """Build the `MediaContext` for a chunk of tokens (None when there are no images: language-only)."""
        if latents is None and not kv:
            return None
        n_latents = self.config.perceiver_num_latents
        text_time = text_time_for_chunk(
            input_ids, self.config.media_token_id, prefix_image_count, self.config.media_attention
        )
        return MediaContext(latents=latents, text_time=text_time, latents_per_image=n_latents, kv=kv or {})

    # ----------------------------------------------------------------------------------------------- forward
    def forward(
        self,
        vision_x: torch.Tensor | None,
        lang_x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        loss_only: bool = False,
        **lm_kwargs: Any,
    ) -> Any:
        """Run the model; see the class docstring. Extra keyword arguments go to the LM's forward."""
        _check_batch(vision_x, lang_x)
        if loss_only and labels is None:
            raise ValueError("loss_only=True needs labels")
        if self.training:
            # a KV cache is useless in training, and with gradient checkpointing harmful: the recomputed layer
            # would append its keys/values to the cache a second time
            lm_kwargs.setdefault("use_cache", False)
        latents = self.encode_vision(vision_x) if vision_x is not None else None
        ctx = self.media_context_for(lang_x, latents)
        selection = select_real_tokens(lang_x, attention_mask) if self.pack_padded_tokens else None
        # with loss_only the LM computes no loss: its head sees the labelled positions only, scored here
        positions = labelled_positions(labels) if loss_only else None
        with media_context(ctx), token_selection(selection), logits_at(positions):
            out = self.lang_encoder(
                input_ids=lang_x,
                attention_mask=attention_mask,
                labels=None if loss_only else labels,
                **lm_kwargs,
            )
        if positions is None:
            return out
        return CausalLMOutputWithPast(loss=labelled_loss(out.logits, positions))

    @torch.no_grad()
    def generate(
        self,
        vision_x: torch.Tensor | None,
        lang_x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        **generation_kwargs: Any,
    ) -> torch.Tensor:
        """Generate continuations; returns (B, L + new) = lang_x followed by the generated tokens.

        Keyword arguments: max_new_tokens, do_sample, temperature, top_k, top_p, num_beams, repetition_penalty,
        length_penalty, min_new_tokens, eos_token_id (int or list; default: `<|endofchunk|>` and EOS),
        pad_token_id, seed, streamer (object with `put(ids)`/`end()`, e.g. transformers' TextStreamer).
        The images are encoded once and their cross-attention keys/values computed once for the whole call,
        whatever the number of beams.
        """
        from mmgpt.model.generation import GenerationOptions, generate

        _check_batch(vision_x, lang_x)
        streamer = generation_kwargs.pop("streamer", None)
        options = GenerationOptions.from_kwargs(self.config, **generation_kwargs)
        generated = generate(self, vision_x, lang_x, attention_mask, options, streamer=streamer)
        return torch.cat([lang_x, generated.to(lang_x.device)], dim=1)

    def chat(self, **options: Any) -> Any:
        """A new multi-round `mmgpt.infer.ChatSession` on this model (options: max_new_tokens, do_sample, ...)."""
        from mmgpt.infer.session import ChatSession

        return ChatSession(self, **options)

    # ----------------------------------------------------------------------------------------------- I/O
    def save_pretrained(self, directory: str, safe_max_shard_size: str = "5GB") -> None:
        """Write a model directory loadable by `mmgpt.load_model` (see checkpoints.save_model_dir)."""
        from mmgpt.model.checkpoints import save_model_dir

        save_model_dir(self, directory, max_shard_size=safe_max_shard_size)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Count parameters (each shared tensor once)."""
        seen, total = set(), 0
        for p in self.parameters():
            if id(p) in seen or (trainable_only and not p.requires_grad):
                continue
            seen.add(id(p))
            total += p.numel()
        return total


def _check_batch(vision_x: torch.Tensor | None, lang_x: torch.Tensor) -> None:
    if lang_x.ndim != 2:
        raise ValueError(f"lang_x must have shape (B, L), got {tuple(lang_x.shape)}")
    if vision_x is not None and vision_x.shape[0] != lang_x.shape[0]:
        raise ValueError(f"vision_x has batch size {vision_x.shape[0]} but lang_x has {lang_x.shape[0]}")
