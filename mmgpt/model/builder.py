"""Build Flamingo models: from a `FlamingoConfig` (random weights), or from pretrained HF parts on disk."""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
    PreTrainedTokenizerBase,
)

from mmgpt.errors import CheckpointError
from mmgpt.model.config import FlamingoConfig
from mmgpt.model.flamingo import Flamingo
from mmgpt.model.image_processing import FlamingoImageProcessor
from mmgpt.model.tokenizer import add_flamingo_special_tokens

logger = logging.getLogger(__name__)


def build_lm_from_config(text_config: dict[str, Any]) -> torch.nn.Module:
    """Instantiate a causal LM with random weights from its HF config dict (must contain `model_type`).

    The LM is built in torch's current default dtype, like the vision tower and the perceiver: the `dtype` a
    config dict carries is the one its source checkpoint was saved in (LLaMA releases say float16), and
    honouring it would give a model whose LM and Flamingo parts disagree in dtype.
    """
    cfg = dict(text_config)
    model_type = cfg.pop("model_type", None)
    if not model_type:
        raise CheckpointError("text_config has no model_type")
    hf_config = AutoConfig.for_model(model_type, **cfg)
    return AutoModelForCausalLM.from_config(hf_config, dtype=torch.get_default_dtype())


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


def tiny_defaults() -> dict[str, Any]:
    """{option: default} of the keyword options of `tiny_config`, the keys a config's `model.tiny` may set."""
    return {
        name: p.default
        for name, p in inspect.signature(tiny_config).parameters.items()
        if p.kind == p.KEYWORD_ONLY
    }


def check_tiny_options(options: dict[str, Any]) -> None:
    """Check the keyword options of `tiny_config` (a config's `model.tiny` mapping) before anything is built:
    known names, whole numbers >= 1 for sizes, numbers for floats, and widths that split into their heads and
    images into their patches. Raises ValueError naming the option."""
    params = tiny_defaults()
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


CLIP_MODEL_TYPES = ("clip", "clip_vision_model")


def load_vision_tower(path: str | Path, dtype: torch.dtype | None = None) -> CLIPVisionModel:
    """Load the vision tower from an HF `CLIPVisionModel` or full `CLIPModel` directory, in `dtype` (default
    float32). Raises CheckpointError when `path` is not a CLIP directory or its files lack tower weights."""
    path = Path(path)
    model_type = _hf_model_type(path)
    if model_type not in CLIP_MODEL_TYPES:
        raise CheckpointError(
            f"{path}: model_type {model_type!r} in config.json is not a CLIP model "
            f"(expected one of {', '.join(CLIP_MODEL_TYPES)})"
        )
    return _load_complete(CLIPVisionModel, path, dtype, "a CLIP vision tower")


def _hf_model_type(path: Path) -> str | None:
    """`model_type` of the HF model directory `path`; CheckpointError when it has no readable config.json."""
    problem = directory_problem(path)
    if problem:
        raise CheckpointError(f"{path}: {problem} (expected a Hugging Face model directory)")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise CheckpointError(f"{path}: not a Hugging Face model directory (no config.json)")
    data = read_json(config_path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{config_path}: expected a JSON object")
    return data.get("model_type")


def directory_problem(path: Path, kind: str = "directory") -> str | None:
    """Why `path` cannot be read as a directory ("does not exist", "is a file, not a `kind`"), or None."""
    if path.is_dir():
        return None
    return "does not exist" if not path.exists() else f"is a file, not a {kind}"


def read_json(path: Path) -> Any:
    """The parsed JSON file `path`; CheckpointError naming it when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from err


def _load_complete(model_class: Any, path: Path, dtype: torch.dtype | None, what: str) -> torch.nn.Module:
    """`model_class.from_pretrained(path)` in `dtype` (default float32); CheckpointError naming `what` and the
    directory when it cannot be loaded, or when its files lack some of the model's weights."""
    try:
        model, info = model_class.from_pretrained(
            str(path), dtype=dtype or torch.float32, output_loading_info=True
        )
    except Exception as err:  # transformers raises many types; the message is what matters
        raise CheckpointError(f"cannot load {what} from {path}: {err}") from err
    _refuse_missing_weights(path, info)
    return model


def _refuse_missing_weights(path: Path, info: dict[str, Any]) -> None:
    """transformers fills weights missing from a directory's files with random values and only warns; a tower or
    LM that is partly random would give wrong answers with nothing to show for it, so stop instead."""
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:8]) + (f" (+{len(missing) - 8} more)" if len(missing) > 8 else "")
        raise CheckpointError(f"{path}: {len(missing)} weight(s) missing from the model files: {shown}")


def load_causal_lm(path: str | Path, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """Load a causal LM from an HF directory in `dtype` (default float32, as OpenFlamingo loaded it whatever
    dtype the files hold). Raises CheckpointError naming the directory when it cannot be loaded completely."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = Path(path)
    model_type = _hf_model_type(path)
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise CheckpointError(
            f"{path}: model_type {model_type!r} in config.json is not a causal language model transformers "
            "can load (LLaMA, OPT, GPT-NeoX, MPT, ...)"
        )
    return _load_complete(AutoModelForCausalLM, path, dtype, "a causal language model")


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a local directory; CheckpointError naming the directory when it cannot be."""
    path = Path(path)
    problem = directory_problem(path)
    if problem:
        raise CheckpointError(f"tokenizer directory {path} {problem}")
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as err:  # transformers raises many types; the message is what matters
        raise CheckpointError(f"cannot load a tokenizer from {path}: {err}") from err


def build_from_parts(
    vision_encoder_path: str | Path,
    lang_model_path: str | Path,
    tokenizer_path: str | Path | None = None,
    dtype: torch.dtype | None = None,
    **config_overrides: Any,
) -> Flamingo:
    """Assemble a Flamingo from pretrained HF parts, OpenFlamingo-style.

    Loads the CLIP vision tower and the causal LM in `dtype` (default float32, whatever dtype the files hold),
    adds `<|endofchunk|>`, `<image>` (and `<PAD>`) to the tokenizer in OpenFlamingo's order, resizes the LM
    embeddings, and creates fresh perceiver/cross-attention weights, in the same dtype, with OpenFlamingo's
    default sizes unless overridden. The returned model has `.tokenizer` and `.image_processor`.
    """
    dtype = dtype or torch.float32
    vision = load_vision_tower(vision_encoder_path, dtype)
    lm_path = Path(lang_model_path)
    lm = load_causal_lm(lm_path, dtype)
    tokenizer = load_tokenizer(tokenizer_path or lm_path)
    try:
        ids = add_flamingo_special_tokens(tokenizer)
    except ValueError as err:
        raise CheckpointError(f"tokenizer {tokenizer_path or lm_path}: {err}") from err
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
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # the perceiver and cross-attention blocks are created in the parts' dtype
    try:
        model = Flamingo(vision, lm, config)
    finally:
        torch.set_default_dtype(previous)
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
