"""Where each Hugging Face causal-LM family keeps its decoder layers, and its hidden size."""

from __future__ import annotations

from torch import nn

# Keyed by `config.model_type`; the paths are those OpenFlamingo's checkpoints were saved under.
DECODER_LAYERS_ATTR = {
    "llama": "model.layers",
    "mistral": "model.layers",
    "qwen2": "model.layers",
    "opt": "model.decoder.layers",
    "gptj": "transformer.h",
    "gpt_neox": "gpt_neox.layers",
    "mpt": "transformer.blocks",
}


def get_attr_path(obj: object, path: str) -> object:
    """Follow a dotted attribute path: get_attr_path(m, "model.layers") is m.model.layers."""
    for part in path.split(".") if path else []:
        obj = getattr(obj, part)
    return obj


def set_attr_path(obj: object, path: str, value: object) -> None:
    """Set the attribute at a dotted path."""
    parent, _, name = path.rpartition(".")
    setattr(get_attr_path(obj, parent), name, value)


def decoder_layers_attr(lm: nn.Module, override: str | None = None) -> str:
    """Return the dotted path of the decoder's layer list for `lm` (override wins)."""
    if override:
        return override
    model_type = getattr(lm.config, "model_type", "")
    if model_type in DECODER_LAYERS_ATTR:
        return DECODER_LAYERS_ATTR[model_type]
    n_layers = getattr(lm.config, "num_hidden_layers", None) or getattr(lm.config, "n_layers", None)
    for name, module in lm.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return name
    raise ValueError(
        f"cannot find the decoder layers of a {type(lm).__name__} (model_type {model_type!r}); "
        "pass decoder_layers_attr explicitly"
    )


def lm_hidden_size(lm: nn.Module) -> int:
    """Width of the LM's hidden states (MPT calls it d_model)."""
    cfg = lm.config
    for name in ("hidden_size", "d_model", "n_embd"):
        value = getattr(cfg, name, None)
        if value:
            return int(value)
    raise ValueError(f"cannot determine the hidden size of {type(lm).__name__}")
