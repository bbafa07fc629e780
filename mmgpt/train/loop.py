"""The joint LoRA instruction-tuning loop (and the from-scratch pretraining of the synthetic base).

Each micro-step runs one vision-language batch and one language-only batch (which skips the vision path), each
loss weighted equally and divided by the accumulation count, so an optimizer step sees the mean over its
accumulated batches. The gradient is clipped once per optimizer step, on the full accumulated gradient.
Distributed runs (torchrun or `accelerate launch`) use torch.distributed with either DDP, gradients synchronised
only on the last backward of each optimizer step (`no_sync` before), FSDP2 (`distributed.strategy: fsdp`,
see `mmgpt.train.sharding`), gradients reduce-scattered into their shards after every backward, or DeepSpeed
ZeRO (`distributed.strategy: deepspeed`, see `mmgpt.train.zero`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mmgpt.errors import ConfigError, MmgptError
from mmgpt.model.precision import resolve_precision
from mmgpt.train.checkpointing import (
    discard,
    list_checkpoints,
    load_checkpoint,
    remove_checkpoints,
    rng_state,
    save_checkpoint,
    saved_process_count,
    staging_dir,
)
from mmgpt.train.config import TrainConfig, changed_settings
from mmgpt.train.schedule import cosine_lambda

logger = logging.getLogger(__name__)

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLoss(MmgptError):
    """The loss became NaN or infinite."""


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo" if not torch.cuda.is_available() else "nccl")
    return (dist.get_rank(), dist.get_world_size()) if world > 1 else (0, 1)


def build_training_model(config: TrainConfig, run_dir: Path) -> Any:
    """The model for this run, with the right parts trainable (LoRA for instruct, everything for pretrain)."""
    from mmgpt.model.builder import build_from_parts, build_model, tiny_config
    from mmgpt.model.checkpoints import load_model, load_openflamingo_checkpoint
    from mmgpt.model.image_processing import FlamingoImageProcessor
    from mmgpt.model.lora import LoraSettings, apply_lora
    from mmgpt.model.tokenizer import add_flamingo_special_tokens, special_token_ids

    m = config.model
    if m.path:
        model = load_model(m.path)
        model.train()
    elif m.lang_model:
        model = build_from_parts(
            m.vision_encoder,
            m.lang_model,
            m.tokenizer,
            cross_attn_every_n_layers=m.cross_attn_every_n_layers,
            media_attention=m.media_attention,
        )
        if m.openflamingo_checkpoint:
            load_openflamingo_checkpoint(model, m.openflamingo_checkpoint)
    else:
        tokenizer = tiny_tokenizer(config)
        add_flamingo_special_tokens(tokenizer)
        torch.manual_seed(config.seed)
        try:
            cfg = tiny_config(len(tokenizer), special_token_ids(tokenizer), **(m.tiny or {}))
        except TypeError as err:
            raise ConfigError(f"model.tiny: {err}") from err
        model = build_model(cfg)
        model.tokenizer = tokenizer
        model.image_processor = FlamingoImageProcessor(cfg.image_size)
    if config.stage == "instruct":
        lora = config.lora
        apply_lora(
            model,
            LoraSettings(
                r=lora.r,
                alpha=lora.alpha,
                dropout=lora.dropout,
                preset=lora.preset,
                target_modules=list(lora.target_modules),
            ),
        )
    else:
        model.requires_grad_(True)
    if config.precision.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    apply_precision_settings(model, config)
    model.pack_padded_tokens = config.precision.pack_padded_tokens
    if config.precision.compile:
        _check_compiler()
        model.compile_layers(mode=config.precision.compile_mode)
    return model


def apply_precision_settings(model: Any, config: TrainConfig) -> None:
    """Set up `model` (LoRA already added for an instruct run) for `config.precision`: under bf16 the frozen
    weights of an instruct run are stored in bf16 (no per-step re-cast), under autocast its adapters skip their
    input casts (autocast sets their input dtype), and attention runs eagerly where `attention_kernel` says
    (fused SDPA is slow in bf16 on CPU). The benchmarks call it too, to time what training runs."""
    from mmgpt.model.precision import cast_frozen_parameters, skip_lora_input_casts, use_eager_attention

    instruct = config.stage == "instruct"
    if instruct and config.precision.dtype == "bf16" and config.precision.low_precision_frozen_weights:
        cast_frozen_parameters(model, torch.bfloat16)
    if instruct and config.precision.dtype in AUTOCAST:
        skip_lora_input_casts(model)
    if attention_kernel(config.precision.attention, config.precision.dtype) == "eager":
        use_eager_attention(model)


VISION_TOWER_FILE = "vision_tower.safetensors"


def _train_part_once(
    part: nn.Module,
    path: Path,
    report: Path,
    train: Callable[[], dict | None],
    what: str,
    device: torch.device,
) -> None:
    """Train `part` (a submodule) once per run directory and load it: unless `path` exists, rank 0 runs `train()`
    (which trains `part` in place and returns a JSON-able report, or None) while the other ranks wait, writes the
    report to `report` and `part`'s weights to `path` (atomically); a resumed run finds `path` and logs that it
    reuses the pretrained `what`. Every process then loads `path` into `part`."""
    from safetensors.torch import load_file, save_file

    if not path.exists():
        if not dist.is_initialized() or dist.get_rank() == 0:
            result = train()
            if result:
                report.write_text(json.dumps(result, indent=2) + "\n")
            staged = path.with_suffix(".tmp")
            save_file({k: v.detach().contiguous() for k, v in part.state_dict().items()}, str(staged))
            staged.replace(path)
        if dist.is_initialized():
            dist.barrier()
    else:
        logger.info("reusing the pretrained %s in %s", what, path)
    part.load_state_dict(load_file(str(path), device=str(device)))


def _prepare_vision_tower(model: Any, config: TrainConfig, run_dir: Path, device: torch.device) -> None:
    """Pretrain the tiny model's vision tower on the world's scene labels (once per run directory: a resumed run
    reloads `run_dir/vision_tower.safetensors`), then freeze it when `vision_pretrain.freeze` says so."""
    from mmgpt.train.vision_pretrain import pretrain_vision_tower

    settings = config.vision_pretrain
    _train_part_once(
        model.vision_encoder,
        run_dir / VISION_TOWER_FILE,
        run_dir / "vision_tower.json",
        lambda: pretrain_vision_tower(
            model.vision_encoder,
            Path(config.data.world),
            model.image_processor,
            settings,
            seed=config.seed,
            device=device,
            autocast_dtype=AUTOCAST.get(config.precision.dtype),
            progress=config.logging.progress,
        ),
        "vision tower",
        device,
    )
    if settings.freeze:
        model.vision_encoder.requires_grad_(False)


LANGUAGE_MODEL_FILE = "language_model.safetensors"


def _prepare_language_model(model: Any, config: TrainConfig, run_dir: Path, device: torch.device) -> None:
    """Pretrain the tiny model's decoder on the world's plain text (once per run directory: a resumed run
    reloads `run_dir/language_model.safetensors`); it stays trainable for the Flamingo stage."""
    from mmgpt.train.language_pretrain import pretrain_language_model

    _train_part_once(
        model.lang_encoder,
        run_dir / LANGUAGE_MODEL_FILE,
        run_dir / "language_model.json",
        lambda: pretrain_language_model(
            model,
            Path(config.data.world),
            config.language_pretrain,
            lambda batch: _forward_loss(model, batch, device, config.precision.dtype),
            max_length=_pretrain_max_length(config),
            seed=config.seed,
            progress=config.logging.progress,
        ),
        "language model",
        device,
    )


def _pretrain_max_length(config: TrainConfig) -> int:
    """The token length pretraining lines are cut to: `data.max_length`, else 256."""
    return config.data.max_length or 256


def attention_kernel(choice: str, dtype: str) -> str:
    """The attention implementation to train with ("eager" or "sdpa") for `precision.attention` = `choice`
    ("auto", "eager" or "sdpa") and `precision.dtype` = `dtype` (resolved: "fp32", "bf16" or "fp16")."""
    if choice == "auto":
        # measured on 2 CPU cores: with the fused kernel in bf16 the demo's training ran 1.05-1.35x slower, and
        # the demo's vision tower step 1.4x (its backward alone took a quarter of the step)
        on_cpu = not torch.cuda.is_available()
        choice = "eager" if on_cpu and dtype in AUTOCAST else "sdpa"
    return choice


def _check_compiler() -> None:
    if not torch.cuda.is_available() and not any(shutil.which(c) for c in ("c++", "g++", "clang++", "cc")):
        # TorchInductor generates C++ on CPU; without a compiler the first step would fail deep inside it
        raise ConfigError(
            "precision.compile needs a C++ compiler (e.g. apt-get install g++) to compile on CPU"
        )


def tiny_tokenizer(config: TrainConfig) -> Any:
    """The tokenizer of a tiny model built from scratch: `model.tokenizer` when given, else a byte-level BPE of
    `model.tokenizer_vocab_size` tokens trained on `data.world`'s pretraining text, the template's fixed strings
    and the world's instruction texts (see `mmgpt.model.tokenizer.train_bpe_tokenizer`)."""
    from transformers import AutoTokenizer

    from mmgpt.data import templates
    from mmgpt.data.config import load_data_config
    from mmgpt.data.mixture import turn_texts
    from mmgpt.model.tokenizer import train_bpe_tokenizer
    from mmgpt.train.pretrain_data import corpus_texts

    if config.model.tokenizer:
        return AutoTokenizer.from_pretrained(config.model.tokenizer)
    if not config.data.world:
        raise ConfigError("model.tokenizer is required for a tiny model without data.world")
    world = Path(config.data.world)
    texts = corpus_texts(world)
    # The template's fixed strings and the instruction data's texts belong in the vocabulary too: whole words
    # of the responses, even where the base never reads them (see `mmgpt.synth.pretrain.reading_lines`).
    fixed = [
        templates.PREAMBLE,
        templates.IMAGE_HEADER,
        templates.INSTRUCTION_HEADER,
        templates.INPUT_HEADER,
        templates.RESPONSE_HEADER,
        *templates.CAPTION_INSTRUCTIONS,
    ]
    texts += fixed * 50
    if (world / "datasets.yaml").exists():
        texts += turn_texts(load_data_config(world / "datasets.yaml"))
    return train_bpe_tokenizer(
        texts,
        vocab_size=config.model.tokenizer_vocab_size,
        split_digits=config.model.tokenizer_split_digits,
    )


def _batch_tokens(batch: dict | None) -> int:
    return 0 if batch is None else int(batch["attention_mask"].sum())


def _forward_loss(model: Any, batch: dict, device: torch.device, precision: str) -> torch.Tensor:
    vision_x = batch["vision_x"]
    with torch.autocast(
        device.type, dtype=AUTOCAST.get(precision, torch.float32), enabled=precision in AUTOCAST
    ):
        out = model(
            vision_x.to(device) if vision_x is not None else None,
            batch["lang_x"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            labels=batch["labels"].to(device),
            loss_only=True,
        )
    return out.loss.float()


def run_training(config: TrainConfig, resume: bool = True) -> Path:
    """Run (or resume) training as configured; returns the final model directory (`output_dir/model`).

    Under torchrun / accelerate launch, the process group joined here is left again before returning: a gloo
    group still alive at interpreter exit can abort a rank ("terminate called without an active exception")
    after all its work is done. A group the caller created is left alone.
    """
    joined_here = dist.is_available() and not dist.is_initialized()
    try:
        return _run_training(config, resume)
    finally:
        if joined_here and dist.is_initialized():
            dist.destroy_process_group()


def _run_training(config: TrainConfig, resume: bool) -> Path:
    from mmgpt.data.mixture import build_joint_stream, stream_batch_sizes
    from mmgpt.train import sharding, zero
    from mmgpt.train.metrics import MetricsWriter, Trackers, plot_losses
    from mmgpt.train.pretrain_data import build_pretrain_stream

    fsdp_env = sharding.accelerate_fsdp_options()
    if fsdp_env is not None:
        config.distributed.strategy = "fsdp"
        config.distributed.fsdp_reshard_after_forward = fsdp_env["reshard_after_forward"]
        config.distributed.fsdp_cpu_offload = fsdp_env["cpu_offload"]
        config.precision.gradient_checkpointing |= fsdp_env["activation_checkpointing"]
    ds_env = zero.accelerate_deepspeed_options()
    if ds_env is not None:
        config.distributed.strategy = "deepspeed"
        config.distributed.zero_stage = ds_env["zero_stage"]
    config.validate()
    if config.distributed.strategy == "deepspeed":
        zero.import_deepspeed()  # a missing package fails before any work
    rank, world_size = _dist_info()
    # the data recipe is read before the model is built: a wrong path must not cost a 7B model's loading first
    data_config = _load_data_config(config) if config.stage == "instruct" else None
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume and rank == 0:
        removed = remove_checkpoints(run_dir)
        if removed:
            # left in place, they would outnumber the new run's in the keep_last pruning and be what a later
            # restart resumes from
            logger.warning(
                "starting over: deleted %d checkpoint(s) of the previous run in %s", removed, run_dir
            )
    if world_size > 1:
        dist.barrier()
    # every process initialises the same weights (LoRA's random A included): FSDP shards them without the
    # broadcast DDP does; the data order and dropout then differ per process
    torch.manual_seed(config.seed)
    device = (
        torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if torch.cuda.is_available()
        else torch.device("cpu")
    )
    requested = config.precision.dtype
    config.precision.dtype = resolve_precision(requested, device)
    if requested != config.precision.dtype:
        logger.info("precision.dtype=%s: training in %s on %s", requested, config.precision.dtype, device)
        config.validate()  # e.g. fp16 with DeepSpeed
    if resume and list_checkpoints(run_dir):
        changed = changed_settings(run_dir, config)
        if changed:
            raise ConfigError(
                f"{run_dir} holds checkpoints of a run with other settings ({'; '.join(changed)}): resume it with "
                "its own settings, start over with --no-resume, or choose another output_dir"
            )
    model = build_training_model(config, run_dir).to(device)
    if config.vision_pretrain.steps:
        _prepare_vision_tower(model, config, run_dir, device)
    if config.language_pretrain.steps:
        _prepare_language_model(model, config, run_dir, device)
    model.train()
    if rank:
        torch.manual_seed(config.seed + rank)  # rank 0 continues the stream a single-process run sees
    sharded = config.distributed.strategy == "fsdp" and world_size > 1
    use_zero = config.distributed.strategy == "deepspeed" and world_size > 1
    # what this run's checkpoints record (a DeepSpeed checkpoint resumes only at its own ZeRO stage)
    strategy = f"deepspeed-zero{config.distributed.zero_stage}" if use_zero else "fsdp" if sharded else "ddp"
    if config.distributed.strategy == "fsdp" and not sharded:
        logger.info("distributed.strategy=fsdp with one process: nothing to shard, training unsharded")
    if config.distributed.strategy == "deepspeed" and not use_zero:
        logger.info(
            "distributed.strategy=deepspeed with one process: nothing to partition, training without it"
        )
    if sharded:
        sharding.shard_model(
            model,
            reshard_after_forward=config.distributed.fsdp_reshard_after_forward,
            cpu_offload=config.distributed.fsdp_cpu_offload,
        )
    if rank == 0:
        config.save(run_dir / "config.yaml")

    batch, language_batch = stream_batch_sizes(config.data.batch_size, config.data.language_batch_size)
    if data_config is not None:
        data_config.image_size = model.config.image_size
        if config.data.max_length:
            data_config.max_length = config.data.max_length
        stream = build_joint_stream(
            data_config,
            model.tokenizer,
            model.image_processor,
            batch,
            rank,
            world_size,
            config.seed,
            group_by_length=config.data.group_by_length,
            language_batch_size=language_batch,
        )
    else:
        stream = build_pretrain_stream(
            Path(config.data.world),
            model.tokenizer,
            model.image_processor,
            batch,
            _pretrain_max_length(config),
            config.seed,
            rank,
            world_size,
            group_by_length=config.data.group_by_length,
            language_batch_size=language_batch,
        )
    # an epoch is a pass over the stream that takes the most steps to go through once
    passes = [
        stream.num_samples["vision_language"] / (config.optim.grad_accum * batch),
        stream.num_samples["language"] / (config.optim.grad_accum * language_batch),
    ]
    total_steps = config.optim.max_steps or max(1, math.ceil(config.optim.epochs * max(passes)))
    warmup = config.optim.warmup_steps or int(config.optim.warmup_ratio * total_steps)

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: no parameter requires grad")
    trainable = sum(p.numel() for p in params)  # before ZeRO-3 partitions them
    optimizer = torch.optim.AdamW(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_lambda(total_steps, warmup, config.optim.min_lr_ratio)
    )
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision.dtype == "fp16")
    ddp = engine = model
    if use_zero:
        ds_config = zero.deepspeed_config(
            batch,
            config.optim.grad_accum,
            world_size,
            config.distributed.zero_stage,
            config.optim.max_grad_norm,
        )
        ddp = engine = zero.initialize(model, optimizer, ds_config)
    elif world_size > 1 and not sharded:
        ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)

    start = 0
    existing = list_checkpoints(run_dir) if resume else []
    if existing:
        state = load_checkpoint(existing[-1], model, weights=not use_zero, rank=rank)
        written_with = saved_process_count(state)
        if written_with != world_size:
            # each process's data position (and random state) is a place in its own shard of the data
            raise ConfigError(
                f"{existing[-1]} was written by a run of {written_with} process(es): resume it with "
                f"{written_with}, not {world_size} (or start over with --no-resume)"
            )
        written_by = state.get("strategy", "ddp")
        if written_by != strategy:
            raise ConfigError(
                f"{existing[-1]} was written by a {_describe_strategy(written_by)} run: resume it with "
                f"{_strategy_settings(written_by)} and the same number of processes"
            )
        if use_zero:
            zero.load_engine_state(engine, existing[-1] / "deepspeed")
        else:
            sharding.load_optimizer_state(model, optimizer, state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        stream.load_state_dict(state["data"][rank] if isinstance(state["data"], list) else state["data"])
        start = int(state["step"])
        logger.info("resumed from %s (step %d of %d)", existing[-1], start, total_steps)
    if rank == 0:
        logger.info(
            "training %s parameters for %d steps (%d processes x batch %s x accumulation %d)",
            f"{trainable:,}",
            total_steps,
            world_size,
            batch if language_batch == batch else f"{batch} (language {language_batch})",
            config.optim.grad_accum,
        )
        if start >= total_steps:
            # a finished run started again, or optim.max_steps lowered below the checkpoint's step
            logger.info("no step left to train: writing the model directory from %s", existing[-1])

    metrics = trackers = None
    if rank == 0:
        # trackers first: a tracker that is not installed fails before metrics.jsonl is touched
        trackers = Trackers(
            run_dir,
            tensorboard=config.logging.tensorboard,
            wandb=config.logging.wandb,
            wandb_project=config.logging.wandb_project,
            config=asdict(config),
        )
        metrics = MetricsWriter(run_dir / "metrics.jsonl", truncate_after=start)
    progress = None
    if rank == 0 and config.logging.progress:
        from mmgpt.progress import progress_bar

        progress = progress_bar(
            total=total_steps, initial=start, desc=config.stage, unit="step", dynamic_ncols=True
        )
    accum = config.optim.grad_accum
    try:
        for step in range(start, total_steps):
            t0 = time.perf_counter()
            sums = {"vl": 0.0, "lang": 0.0}
            tokens = 0
            for micro in range(accum):
                vl_batch, lang_batch = stream.next()
                pairs = [(k, b) for k, b in (("vl", vl_batch), ("lang", lang_batch)) if b is not None]
                for j, (kind, b) in enumerate(pairs):
                    last = micro == accum - 1 and j == len(pairs) - 1
                    # FSDP reduce-scatters after every backward: a unit that the last batch skips (the cross-
                    # attention of a language-only batch) would otherwise never reduce its accumulated gradient
                    sync = contextlib.nullcontext() if (last or ddp is model or use_zero) else ddp.no_sync()
                    with sync:
                        loss = _forward_loss(ddp, b, device, config.precision.dtype)
                        if not torch.isfinite(loss):
                            raise NonFiniteLoss(
                                f"non-finite {kind} loss ({loss.item()}) at step {step + 1}; the last good checkpoint "
                                f"is kept in {run_dir / 'checkpoints'}"
                            )
                        if use_zero:
                            zero.backward(engine, loss / accum, boundary=last)
                        else:
                            scaler.scale(loss / accum).backward()
                    sums[kind] += loss.item() / accum
                    tokens += _batch_tokens(b)
            if use_zero:
                grad_norm = zero.step(engine)
            else:
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, config.optim.max_grad_norm or float("inf"))
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            elapsed = time.perf_counter() - t0
            done = step + 1
            loss_total = sums["vl"] + sums["lang"]
            if metrics is not None:
                row = {
                    "step": done,
                    "loss": loss_total,
                    "loss_vl": sums["vl"],
                    "loss_lang": sums["lang"],
                    "lr": lr,
                    "grad_norm": float(grad_norm),
                    "tokens_per_s": tokens * world_size / max(elapsed, 1e-9),
                }
                metrics.write(row)
                trackers.log(row)
            if progress is not None:
                progress.set_postfix(
                    loss=f"{loss_total:.3f}", lr=f"{lr:.2e}", tok_s=f"{tokens * world_size / elapsed:.0f}"
                )
                progress.update(1)
            if done % config.logging.save_every == 0 or done == total_steps:
                data_state: Any = stream.state_dict()
                rng: Any = rng_state()
                if world_size > 1:  # every process's own: dropout draws differ per process
                    data_state, rng = _gather((data_state, rng), world_size)
                # gathering sharded tensors is collective: every process takes part, rank 0 writes
                if use_zero:
                    staged = staging_dir(run_dir, done)
                    if rank == 0:
                        shutil.rmtree(staged, ignore_errors=True)
                    if world_size > 1:
                        dist.barrier()
                    weights = zero.trainable_state(engine)
                    zero.save_engine_state(engine, staged / "deepspeed")  # every process writes its partition
                    optimizer_state = None
                else:
                    weights = sharding.full_trainable_state(model)
                    optimizer_state = sharding.optimizer_state(model, optimizer)
                if rank == 0:
                    save_checkpoint(
                        run_dir,
                        done,
                        weights,
                        {
                            "optimizer": optimizer_state,
                            "scheduler": scheduler.state_dict(),
                            "scaler": scaler.state_dict(),
                            "data": data_state,
                            "strategy": strategy,
                        },
                        config.logging.keep_last,
                        staged=use_zero,
                        rng=rng,
                    )
                if world_size > 1:
                    dist.barrier()
    finally:
        # also on a NaN stop or Ctrl-C: the TensorBoard / wandb mirrors flush their last points
        if progress is not None:
            progress.close()
        if trackers is not None:
            trackers.close()
    model_dir = run_dir / "model"
    # collective when sharded
    full_state = zero.full_model_state(engine) if use_zero else sharding.full_model_state(model)
    if rank == 0:
        model.eval()
        from mmgpt.model.checkpoints import save_model_dir

        staged_model = run_dir / ".tmp-model"
        shutil.rmtree(staged_model, ignore_errors=True)
        save_model_dir(model, staged_model, state_dict=full_state)
        _publish(staged_model, model_dir)
        plot_losses(run_dir / "metrics.jsonl", run_dir / "loss.png")
        logger.info("wrote %s", model_dir)
    if world_size > 1:
        dist.barrier()
    return model_dir


def _load_data_config(config: TrainConfig) -> Any:
    """The instruct stage's data recipe (`data.config`), each dataset's files checked to exist; raises
    ConfigError naming the recipe, the dataset and the missing file."""
    from mmgpt.data.config import load_data_config

    data_config = load_data_config(config.data.config)
    for stream in ("vision_language", "language"):
        for index, spec in enumerate(getattr(data_config, stream)):
            for key in ("ann_path", "question_path"):
                path = data_config.resolve(getattr(spec, key))
                if path is not None and not path.exists():
                    raise ConfigError(f"{config.data.config}: {stream}[{index}].{key}: {path} does not exist")
    return data_config


def _gather(value: Any, world_size: int) -> tuple[list[Any], ...]:
    """Every process's `value` (a tuple), returned as one rank-ordered list per element of the tuple."""
    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, value)
    return tuple(list(column) for column in zip(*gathered, strict=True))


def _publish(staged: Path, final: Path) -> None:
    """Move the finished directory `staged` to `final`, replacing what is there, so that `final` never holds a
    half-written model: a kill leaves either the old directory, the new one, or none (the rerun writes it)."""
    if final.exists():
        discard(final)
    os.replace(staged, final)


def _describe_strategy(strategy: str) -> str:
    if strategy.startswith("deepspeed"):
        return f"DeepSpeed ZeRO stage {strategy[-1]}"
    return "sharded (FSDP)" if strategy == "fsdp" else "replicated (DDP)"


def _strategy_settings(strategy: str) -> str:
    if strategy.startswith("deepspeed"):
        return f"distributed.strategy=deepspeed distributed.zero_stage={strategy[-1]}"
    return f"distributed.strategy={strategy}"


def read_metrics(path: Path) -> list[dict]:
    """The per-step metrics of a run."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
