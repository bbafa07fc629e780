"""Build Flamingo models: from a `FlamingoConfig` (random weights), or from pretrained HF parts on disk."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, CLIPVisionConfig, CLIPVisionModel

from mmgpt.errors import CheckpointError
from mmgpt.model.config import FlamingoConfig
from mmgpt.model.flamingo import Flamingo
from mmgpt.model.image_processing import FlamingoImageProcessor
from mmgpt.model.tokenizer import add_flamingo_special_tokens

logger = logging.getLogger(__name__)


def build_lm_from_config(text_config: dict[str, Any]) -> torch.nn.Module:
    """Instantiate a causal LM with random weights from its HF config dict (must contain `model_type`)."""
    cfg = dict(text_config)
    model_type = cfg.pop("model_type", None)
    if not model_type:
        raise CheckpointError("text_config has no model_type")
    hf_config = AutoConfig.for_model(model_type, **cfg)
    return AutoModelForCausalLM.from_config(hf_config)


def build_vision_from_config(vision_config: dict[str, Any]) -> CLIPVisionModel:
    """Instantiate a CLIP vision tower with random weights from its config dict."""
    cfg = {k: v for k, v in vision_config.items() if k != "model_type"}
    return CLIPVisionModel(CLIPVisionConfig(**cfg))


def build_model(config: FlamingoConfig) -> Flamingo:
    """A Flamingo model with random weights laid out by `config` (used before loading a checkpoint)."""
    return Flamingo(
        build_vision_from_config(config.vision_config), build_lm_from_config(config.text_config), config
    )


def tiny_config(
    vocab_size: int,
    special_ids: Any,
    *,
    hidden_size: int = 64,
    num_layers: int = 4,
    num_heads: int = 4,
    intermediate_size: int = 128,
    vision_width: int = 48,
    vision_layers: int = 2,
    vision_heads: int = 4,
    image_size: int = 32,
    patch_size: int = 8,
    cross_attn_every_n_layers: int = 2,
    perceiver_depth: int = 2,
    perceiver_heads: int = 2,
    perceiver_dim_head: int = 16,
    num_latents: int = 8,
    xattn_heads: int = 2,
    xattn_dim_head: int = 16,
    gate_init: float = 0.0,
    media_attention: str = "immediate",
    max_position_embeddings: int = 1024,
    vision_hidden_act: str = "quick_gelu",
) -> FlamingoConfig:
    """Config of a small LLaMA + CLIP-ViT Flamingo (tests, the synthetic world). `special_ids` from the tokenizer."""
    text = {
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_heads,
        "max_position_embeddings": max_position_embeddings,
        "bos_token_id": special_ids.bos,
        "eos_token_id": special_ids.eos,
        "pad_token_id": special_ids.pad,
        "tie_word_embeddings": False,
    }
    vision = CLIPVisionConfig(
        hidden_size=vision_width,
        intermediate_size=vision_width * 4,
        num_hidden_layers=vision_layers,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=patch_size,
        # CLIP's QuickGELU, x * sigmoid(1.702 x), as the real towers have. "gelu" (one kernel each way instead of
        # several elementwise passes) made the demo's tower step 13% faster (0.164 vs 0.143 s, batch 64, mean of
        # four alternating runs), but the demo keeps the function its measured base was pretrained with
        hidden_act=vision_hidden_act,
    ).to_dict()
    return FlamingoConfig(
        vision_config=vision,
        text_config=text,
        media_token_id=special_ids.media,
        eoc_token_id=special_ids.endofchunk,
        eos_token_id=special_ids.eos,
        pad_token_id=special_ids.pad,
        cross_attn_every_n_layers=cross_attn_every_n_layers,
        media_attention=media_attention,
        perceiver_depth=perceiver_depth,
        perceiver_heads=perceiver_heads,
        perceiver_dim_head=perceiver_dim_head,
        perceiver_num_latents=num_latents,
        xattn_heads=xattn_heads,
        xattn_dim_head=xattn_dim_head,
        gate_init=gate_init,
    )


def check_tiny_options(options: dict[str, Any]) -> None:
    """Check the keyword options of `tiny_config` (a config's `model.tiny` mapping) before anything is built:
    known names, whole numbers >= 1 for sizes, numbers for floats, and widths that split into their heads and
    images into their patches. Raises ValueError naming the option."""
    params = {
        name: p.default
        for name, p in inspect.signature(tiny_config).parameters.items()
        if p.kind == p.KEYWORD_ONLY
    }
    for name, value in options.items():
        if name not in params:
            raise ValueError(f"unknown option {name!r} (known: {', '.join(params)})")
        default = params[name]
        if isinstance(default, str):
            ok, wanted = isinstance(value, str), "a string"
        elif isinstance(default, int):
            ok, wanted = (
                isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                "a whole number >= 1",
            )
        else:
            ok, wanted = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        if not ok:
            raise ValueError(f"{name} must be {wanted}, got {value!r}")
    merged = {**params, **options}
    for width, parts in (
        ("hidden_size", "num_heads"),
        ("vision_width", "vision_heads"),
        ("image_size", "patch_size"),
    ):
        if merged[width] % merged[parts]:
            raise ValueError(f"{width}={merged[width]} is not divisible by {parts}={merged[parts]}")


def load_vision_tower(path: str | Path) -> CLIPVisionModel:
    """Load the vision tower from an HF `CLIPVisionModel` or full `CLIPModel` directory."""
    path = Path(path)
    if not (path / "config.json").exists():
        raise CheckpointError(f"{path}: not a Hugging Face model directory (no config.json)")
    try:
        return CLIPVisionModel.from_pretrained(str(path))
    except Exception as err:  # transformers raises many types; the message is what matters
        raise CheckpointError(f"cannot load a CLIP vision tower from {path}: {err}") from err


def build_from_parts(
    vision_encoder_path: str | Path,
    lang_model_path: str | Path,
    tokenizer_path: str | Path | None = None,
    **config_overrides: Any,
) -> Flamingo:
    """Assemble a Flamingo from pretrained HF parts, OpenFlamingo-style.

    Loads the CLIP vision tower and the causal LM, adds `<|endofchunk|>`, `<image>` (and `<PAD>`) to the tokenizer
    in OpenFlamingo's order, resizes the LM embeddings, and creates fresh perceiver/cross-attention weights with
    OpenFlamingo's default sizes unless overridden. The returned model has `.tokenizer` and `.image_processor`.
    """
    vision = load_vision_tower(vision_encoder_path)
    lm_path = Path(lang_model_path)
    if not (lm_path / "config.json").exists():
        raise CheckpointError(f"{lm_path}: not a Hugging Face model directory (no config.json)")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path or lm_path))
    ids = add_flamingo_special_tokens(tokenizer)
    lm = AutoModelForCausalLM.from_pretrained(str(lm_path))
    lm.resize_token_embeddings(len(tokenizer))
    config = FlamingoConfig(
        vision_config=vision.config.to_dict(),
        text_config=lm.config.to_dict(),
        media_token_id=ids.media,
        eoc_token_id=ids.endofchunk,
        eos_token_id=ids.eos,
        pad_token_id=ids.pad,
        **config_overrides,
    )
    model = Flamingo(vision, lm, config)
    model.tokenizer = tokenizer
    model.image_processor = FlamingoImageProcessor(config.image_size)
    return model


def freeze_all_but_flamingo(model: Flamingo, train_embeddings: bool = True) -> None:
    """OpenFlamingo's pretraining freeze: only the perceiver, cross-attention blocks (and input embeddings) train."""
    model.requires_grad_(False)
    model.perceiver.requires_grad_(True)
    for block in model.cross_attn_blocks().values():
        block.requires_grad_(True)
    if train_embeddings:
        model.lm.get_input_embeddings().requires_grad_(True)
