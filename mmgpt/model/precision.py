"""Precision helpers: store frozen weights in a low-precision dtype while trainable ones stay fp32."""

from __future__ import annotations

import torch
from torch import nn


def cast_frozen_parameters(model: nn.Module, dtype: torch.dtype) -> int:
    """Cast every parameter that does not require grad to `dtype` in place; returns how many were cast.

    Under bf16 autocast, frozen fp32 weights are re-cast to bf16 at every forward; storing them in bf16 once
    removes those copies and halves their memory, while LoRA weights and optimizer state stay fp32.
    """
    count = 0
    for param in model.parameters():
        if not param.requires_grad and param.dtype != dtype and param.is_floating_point():
            param.data = param.data.to(dtype)
            count += 1
    return count


def use_eager_attention(model: nn.Module) -> None:
    """Switch Hugging Face attention layers to the eager (matmul + softmax) implementation.

    On CPU in bf16, PyTorch's fused attention kernel is several times slower than plain matmuls at the sequence
    lengths used here; on GPU keep the default (SDPA / flash).
    """
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation"):
            config._attn_implementation = "eager"


def skip_lora_input_casts(model: nn.Module) -> int:
    """Leave the dtype of LoRA adapters' inputs to autocast; returns how many LoRA layers were switched.

    peft casts every adapted layer's input to the adapters' dtype (fp32) and autocast casts it straight back to
    bf16 for the product: two copies of the activation per adapted layer and step, for identical numbers. Only
    for training under autocast: without it, a bf16 input would meet fp32 adapter weights.
    """
    count = 0
    for module in model.modules():
        if hasattr(module, "cast_input_dtype_enabled") and hasattr(module, "lora_A"):
            module.cast_input_dtype_enabled = False
            count += 1
    return count
