"""Precision helpers: store frozen weights in a low-precision dtype while trainable ones stay fp32."""

from __future__ import annotations

from pathlib import Path

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


# x86 instruction sets with bf16 matrix products in hardware; without them torch emulates bf16 products, and on
# such a CPU (an AVX-512 Xeon without AVX512-BF16) they ran 3.4x slower than fp32 (`python bench/machine_speed.py`:
# 58 against 197 GFLOP/s on 2 threads), where an AMX CPU ran them 3.8x faster (266 against 70).
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_has_native_bf16(cpuinfo: Path | None = None) -> bool:
    """True when the CPU lists one of `NATIVE_BF16_CPU_FLAGS` in `cpuinfo` (default /proc/cpuinfo); False when it
    does not or the file is missing (not Linux)."""
    from mmgpt.provenance import CPUINFO, cpu_flags

    return bool(cpu_flags(NATIVE_BF16_CPU_FLAGS, cpuinfo or CPUINFO))


def resolve_precision(dtype: str, device: torch.device) -> str:
    """`precision.dtype` with "auto" replaced by the fastest precision training on `device` can use: "bf16" on a
    GPU that supports it, else "fp16"; on a CPU "bf16" when it multiplies bf16 in hardware
    (`cpu_has_native_bf16`), else "fp32". Any other value is returned as it is."""
    if dtype != "auto":
        return dtype
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def default_device() -> torch.device:
    """The device the commands run on when none is named: CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def inference_dtype(dtype: str, device: torch.device | None = None) -> str:
    """A load dtype name for inference ("float32", "bfloat16", ...) with "auto" resolved as `resolve_precision`
    resolves it for `device` (default: CUDA when available, else CPU), fp16 meaning "float16"."""
    if dtype != "auto":
        return dtype
    device = device or default_device()
    names = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
    return names[resolve_precision("auto", device)]
