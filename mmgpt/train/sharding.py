"""Fully sharded data parallelism (FSDP2, `torch.distributed.fsdp.fully_shard`) for models too big to replicate.

Each process then holds 1/N of every parameter, gradient and optimizer state, and gathers a unit's full weights
only while that unit runs. The units are the natural ones of a Flamingo: every decoder layer together with the
gated cross-attention block in front of it, the vision tower, and the root (embeddings, perceiver, head).
Frozen low-precision weights and fp32 LoRA adapters may share a unit.

Everything that leaves the process (checkpoints, the final model directory) is gathered to full tensors first,
so a sharded run writes exactly the files a single-process run writes.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch.distributed.tensor import DTensor, distribute_tensor

from mmgpt.errors import ConfigError

logger = logging.getLogger(__name__)


def env_flag(name: str, default: bool = False) -> bool:
    """Whether environment variable `name` is set to a true value ("1", "true", "yes"; any case)."""
    value = os.environ.get(name)
    return default if value is None else value.lower() in ("1", "true", "yes")


def accelerate_fsdp_options() -> dict[str, bool] | None:
    """The FSDP options of an `accelerate launch` with an FSDP config, or None when not launched that way.

    Returns {"reshard_after_forward", "cpu_offload", "activation_checkpointing"} read from the environment
    accelerate sets; the wrapping policy is always mmgpt's own (see the module docstring).
    """
    if not env_flag("ACCELERATE_USE_FSDP"):
        return None
    strategy = os.environ.get("FSDP_SHARDING_STRATEGY", "")
    reshard = env_flag("FSDP_RESHARD_AFTER_FORWARD", default=True)
    if strategy.upper() in ("SHARD_GRAD_OP", "2"):  # FSDP1 spelling of "keep weights gathered after forward"
        reshard = False
    return {
        "reshard_after_forward": reshard,
        "cpu_offload": env_flag("FSDP_OFFLOAD_PARAMS"),
        "activation_checkpointing": env_flag("FSDP_ACTIVATION_CHECKPOINTING"),
    }


def shard_model(model: Any, reshard_after_forward: bool = True, cpu_offload: bool = False) -> None:
    """Apply `fully_shard` in place to `model` (a Flamingo, LoRA attached or not); needs an initialised process
    group. Parameters become DTensors sharded along dim 0 over all processes."""
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

    if not torch.distributed.is_initialized():
        raise ConfigError(
            "distributed.strategy=fsdp needs a multi-process launch (torchrun or accelerate launch)"
        )
    offload = CPUOffloadPolicy() if cpu_offload else OffloadPolicy()
    options = {"reshard_after_forward": reshard_after_forward, "offload_policy": offload}
    for layer in model.flamingo_layers():
        fully_shard(layer, **options)
    fully_shard(model.vision_encoder, **options)
    # the root keeps its weights gathered after forward: backward needs them first anyway
    fully_shard(model, reshard_after_forward=False, offload_policy=offload)
    logger.info(
        "FSDP: %d decoder-layer units + vision tower + root, sharded over %d processes",
        len(model.flamingo_layers()),
        torch.distributed.get_world_size(),
    )


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether `model`'s parameters are FSDP-sharded DTensors."""
    return any(isinstance(p, DTensor) for p in model.parameters())


def full_trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters by name as full, contiguous CPU tensors.

    Sharded parameters are all-gathered, so in a sharded run every process must call this (in the same order).
    """
    out = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            full = p.full_tensor() if isinstance(p, DTensor) else p
            out[name] = full.detach().cpu().contiguous()
    return out


def load_full_trainable_state(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy full tensors `weights` (by parameter name) into `model`, each process keeping only its own shard.

    No communication: every process reads the same full tensors and slices out its shard.
    """
    own = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in weights.items():
            p = own[name]
            if isinstance(p, DTensor):
                local = distribute_tensor(
                    tensor.to(p.dtype), p.device_mesh, p.placements, src_data_rank=None
                ).to_local()
                p.to_local().copy_(local)
            else:
                p.copy_(tensor)


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer state to checkpoint: plain `state_dict()` for a replicated model; for a sharded one the
    full state keyed by parameter name (gathered: every process must call this; only rank 0 gets tensors)."""
    if not is_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(
        model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Inverse of `optimizer_state`: every process passes the same full state and keeps its own shard."""
    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(
        model, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True)
    )


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The whole `model.state_dict()` as full CPU tensors on rank 0 (None elsewhere); every process must call
    this. For a replicated model, None (callers read the model directly)."""
    if not is_sharded(model):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return state if torch.distributed.get_rank() == 0 else None
