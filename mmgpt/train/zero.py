"""DeepSpeed ZeRO training (`distributed.strategy: deepspeed`), for 7B-scale models on many GPUs.

ZeRO stage 1 partitions the optimizer state over the processes, stage 2 also the gradients, stage 3 also the
parameters. mmgpt keeps its own loop, precision (autocast; frozen weights may stay bf16 beside fp32 adapters),
learning-rate schedule and checkpoints, and hands DeepSpeed the model and the AdamW optimizer: DeepSpeed then
owns gradient reduction, clipping and the optimizer step. Each optimizer step may run several backward passes
(vision-language and language-only batches, gradient accumulation); the last one is marked as the accumulation
boundary, so one `step()` per optimizer step sees the whole accumulated gradient.

A checkpoint keeps mmgpt's usual files (full trainable weights, scheduler, RNG, data position) and DeepSpeed's
partitioned optimizer state in its `deepspeed/` subdirectory (each process writes its own partition), so a run
resumes with the same ZeRO stage and number of processes. The final model directory holds full tensors.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from mmgpt.errors import ConfigError

logger = logging.getLogger(__name__)
ENGINE_TAG = "engine"


def accelerate_deepspeed_options() -> dict[str, int] | None:
    """The ZeRO stage of an `accelerate launch` with a DeepSpeed config ({"zero_stage": S}), or None when not
    launched that way. Settings mmgpt does not implement (offload, a DeepSpeed JSON file) are a ConfigError."""
    from mmgpt.train.sharding import env_flag

    if not env_flag("ACCELERATE_USE_DEEPSPEED"):
        return None
    for name in (
        "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE",
        "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE",
    ):
        if os.environ.get(name, "none").lower() not in ("none", ""):
            raise ConfigError(
                f"{name}={os.environ[name]}: mmgpt's DeepSpeed path does not offload; set it to none, or shard "
                "with configs/accelerate/fsdp.yaml and fsdp_offload_params: true"
            )
    if os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "none").lower() not in ("none", ""):
        raise ConfigError(
            "accelerate's deepspeed_config_file is not read: mmgpt builds the DeepSpeed config from the training "
            "config; set zero_stage in the accelerate config (or distributed.zero_stage) instead"
        )
    stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    try:
        return {"zero_stage": int(stage)}
    except ValueError:
        raise ConfigError(f"ACCELERATE_DEEPSPEED_ZERO_STAGE must be 1, 2 or 3, got {stage!r}") from None


def import_deepspeed() -> Any:
    """The `deepspeed` module; a ConfigError with the install command when it is missing."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # otherwise DeepSpeed may look for a GPU it cannot use
    try:
        import deepspeed
    except ImportError as err:
        raise ConfigError(
            f"distributed.strategy=deepspeed needs DeepSpeed: pip install 'mmgpt[deepspeed]' ({err})"
        ) from err
    return deepspeed


def deepspeed_config(
    batch_size: int, grad_accum: int, world_size: int, stage: int, max_grad_norm: float
) -> dict:
    """The DeepSpeed JSON config for a run: ZeRO `stage`, clipping at `max_grad_norm` (0 = none). Precision is
    left to mmgpt (autocast), so DeepSpeed neither casts the model nor scales the loss."""
    return {
        "train_micro_batch_size_per_gpu": batch_size,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": batch_size * grad_accum * world_size,
        "gradient_clipping": float(max_grad_norm or 0.0),
        "zero_optimization": {"stage": stage},
        "zero_allow_untested_optimizer": True,  # torch's AdamW: every stage handles a plain torch optimizer
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def initialize(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ds_config: dict) -> Any:
    """Wrap `model` and `optimizer` in a DeepSpeed engine (collective). The optimizer's param groups stay the
    ones the caller's LR scheduler updates."""
    deepspeed = import_deepspeed()
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
    logger.info(
        "DeepSpeed ZeRO stage %d over %d processes",
        ds_config["zero_optimization"]["stage"],
        engine.world_size,
    )
    return engine


def backward(engine: Any, loss: torch.Tensor, boundary: bool) -> None:
    """Accumulate the gradient of `loss` (already divided by the accumulation count); `boundary` marks the last
    backward before the optimizer step, where replicated stages reduce the accumulated gradient."""
    engine.set_gradient_accumulation_boundary(boundary)
    engine.backward(loss, scale_wrt_gas=False)


def step(engine: Any) -> float:
    """Clip, step the optimizer and zero the gradients (after a `backward` with `boundary=True`); returns the
    gradient norm before clipping."""
    engine.step()
    norm = engine.get_global_grad_norm()
    return float("nan") if norm is None else float(norm)


def _gathered(engine: Any, params: list[torch.nn.Parameter]) -> Any:
    """A context in which ZeRO-3-partitioned `params` hold their full values (a no-op at stages 1-2)."""
    import contextlib

    if engine.zero_optimization_stage() < 3:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def trainable_state(engine: Any) -> dict[str, torch.Tensor]:
    """Trainable parameters by name as full CPU tensors (collective at stage 3: every process calls it)."""
    named = [(n, p) for n, p in engine.module.named_parameters() if p.requires_grad]
    with _gathered(engine, [p for _, p in named]):
        return {n: p.detach().cpu().clone().contiguous() for n, p in named}


def full_model_state(engine: Any) -> dict[str, torch.Tensor] | None:
    """The whole model's state dict as full CPU tensors, gathered layer by layer at stage 3 (collective; rank 0
    gets it, the others None); None at stages 1-2 (callers read the model directly)."""
    if engine.zero_optimization_stage() < 3:
        return None
    state = engine._zero3_consolidated_16bit_state_dict()
    return None if state is None else {k: v.cpu() for k, v in state.items()}


def save_engine_state(engine: Any, directory: Path) -> None:
    """Write DeepSpeed's partitioned optimizer state (and trainable weights) under `directory` (collective)."""
    engine.save_checkpoint(str(directory), tag=ENGINE_TAG, save_latest=False, exclude_frozen_parameters=True)


def load_engine_state(engine: Any, directory: Path) -> None:
    """Inverse of `save_engine_state` (collective): trainable weights, master weights and optimizer state."""
    path, _ = engine.load_checkpoint(
        str(directory),
        tag=ENGINE_TAG,
        load_module_strict=False,  # frozen weights are not in the checkpoint: they come from the base model
        load_optimizer_states=True,
        load_lr_scheduler_states=False,  # mmgpt's own scheduler state is in state.pt
    )
    if path is None:
        from mmgpt.errors import CheckpointError

        raise CheckpointError(f"{directory}: no DeepSpeed state could be loaded")
