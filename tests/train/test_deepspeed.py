"""DeepSpeed ZeRO training with 2 CPU processes (gloo): DDP's weights, exact resume, a loadable model directory."""

from __future__ import annotations

import sys

import pytest
import torch

from mmgpt.errors import ConfigError
from mmgpt.model.checkpoints import load_model
from mmgpt.train.loop import read_metrics
from mmgpt.train.zero import accelerate_deepspeed_options
from tests.train.conftest import (
    accelerate_train,
    assert_model_dir_holds_adapters,
    assert_same_weights,
    checkpoint_weights,
    instruct_args,
    torchrun_train,
)

pytest.importorskip("deepspeed")
pytestmark = pytest.mark.slow

# constant lr so a shorter run is a prefix; vision-language + language-only batches, so the cross-attention sits
# out every other backward; accumulation over 2 micro-steps
COMMON = [
    "optim.max_steps=4",
    "optim.grad_accum=2",
    "optim.warmup_steps=0",
    "optim.min_lr_ratio=1.0",
    "optim.max_grad_norm=0.5",
    "logging.save_every=2",
    "logging.keep_last=2",
]


@pytest.mark.timeout(900)
def test_zero_stages_match_ddp_in_fp32(world, base_model, tmp_path):
    """Gradient (stage 2) and parameter (stage 3) partitioning, DeepSpeed's clipping and its optimizer step give
    DDP's LoRA weights, losses and gradient norms."""
    # cosine decay, a new learning rate every step: what mmgpt's scheduler sets must reach DeepSpeed's optimizer
    fp32 = [*COMMON, "precision.dtype=fp32", "optim.min_lr_ratio=0.1"]
    ddp, zero2, zero3 = tmp_path / "ddp", tmp_path / "zero2", tmp_path / "zero3"
    torchrun_train(instruct_args(world, base_model, ddp, *fp32))
    torchrun_train(instruct_args(world, base_model, zero2, *fp32, "distributed.strategy=deepspeed"))
    torchrun_train(
        instruct_args(
            world, base_model, zero3, *fp32, "distributed.strategy=deepspeed", "distributed.zero_stage=3"
        )
    )
    ddp_rows = read_metrics(ddp / "metrics.jsonl")
    for run in (zero2, zero3):
        assert_same_weights(checkpoint_weights(run, 4), checkpoint_weights(ddp, 4), atol=1e-5)
        rows = read_metrics(run / "metrics.jsonl")
        assert len({r["lr"] for r in rows}) == 4
        assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in ddp_rows], abs=1e-5)
        assert [r["grad_norm"] for r in rows] == pytest.approx([r["grad_norm"] for r in ddp_rows], rel=1e-4)
        # DeepSpeed's partitions sit beside mmgpt's files in each kept checkpoint
        kept = sorted(p.name for p in (run / "checkpoints").iterdir())
        assert kept == ["step-000002", "step-000004"]
        assert any((run / "checkpoints" / "step-000004" / "deepspeed").rglob("*optim_states.pt"))


@pytest.mark.timeout(900)
def test_zero3_resumes_exactly_and_writes_a_full_model(world, base_model, tmp_path):
    """Parameters partitioned, bf16 frozen weights beside fp32 adapters, activation checkpointing: a run stopped
    after step 2 and resumed continues as the uninterrupted one, and the gathered model directory holds the
    trained adapters."""
    zero3 = [
        *COMMON,
        "distributed.strategy=deepspeed",
        "distributed.zero_stage=3",
        "precision.gradient_checkpointing=true",
    ]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    torchrun_train(instruct_args(world, base_model, whole, *zero3))
    torchrun_train(instruct_args(world, base_model, resumed, *zero3, "optim.max_steps=2"))
    torchrun_train(instruct_args(world, base_model, resumed, *zero3), "--resume")
    expected = read_metrics(whole / "metrics.jsonl")
    got = read_metrics(resumed / "metrics.jsonl")
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in expected], abs=1e-5)
    whole_w = checkpoint_weights(whole, 4)
    assert_same_weights(checkpoint_weights(resumed, 4), whole_w, atol=1e-6)

    model = assert_model_dir_holds_adapters(whole / "model", whole_w)
    # the frozen base is whole too (gathered from its partitions), not the empty placeholders ZeRO-3 leaves
    base = load_model(base_model)
    base_state = base.state_dict()
    shared = [n for n in model.state_dict() if "lora_" not in n and n in base_state]
    assert len(shared) > 20  # vision tower, perceiver, cross-attention (LoRA renames the decoder's keys)
    for name in shared:
        torch.testing.assert_close(
            model.state_dict()[name].float(), base_state[name].float(), atol=1e-2, rtol=1e-2
        )


def test_a_deepspeed_checkpoint_resumes_only_at_its_own_stage(world, base_model, tmp_path):
    from mmgpt.train.config import load_train_config
    from mmgpt.train.loop import run_training

    run = tmp_path / "r"
    args = instruct_args(world, base_model, run, "optim.max_steps=2")
    run_training(load_train_config(None, [*args, "optim.max_steps=1"]))
    state_path = run / "checkpoints" / "step-000001" / "state.pt"
    state = torch.load(state_path, weights_only=True)
    state["strategy"] = "deepspeed-zero3"
    torch.save(state, state_path)
    with pytest.raises(ConfigError, match="ZeRO stage 3 run.*distributed.zero_stage=3"):
        run_training(load_train_config(None, args))


def test_accelerate_deepspeed_launch_options(monkeypatch):
    assert accelerate_deepspeed_options() is None
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    assert accelerate_deepspeed_options() == {"zero_stage": 3}
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "cpu")
    with pytest.raises(ConfigError, match="OFFLOAD_OPTIMIZER_DEVICE=cpu"):
        accelerate_deepspeed_options()
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE", "none")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_CONFIG_FILE", "ds.json")
    with pytest.raises(ConfigError, match="deepspeed_config_file"):
        accelerate_deepspeed_options()


def test_deepspeed_settings_are_validated(world, base_model, tmp_path, monkeypatch):
    from mmgpt.train.config import load_train_config
    from mmgpt.train.zero import import_deepspeed

    args = instruct_args(world, base_model, tmp_path / "r", "distributed.strategy=deepspeed")
    with pytest.raises(ConfigError, match="distributed.zero_stage must be 1, 2 or 3"):
        load_train_config(None, [*args, "distributed.zero_stage=4"])
    with pytest.raises(ConfigError, match="fp16 is not supported with distributed.strategy=deepspeed"):
        load_train_config(None, [*args, "precision.dtype=fp16"])
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'mmgpt\[deepspeed\]'"):
        import_deepspeed()


def test_accelerate_launch_with_the_deepspeed_config(world, base_model, tmp_path):
    """`accelerate launch --config_file configs/accelerate/deepspeed.yaml` on 2 CPU processes trains with ZeRO."""
    result = accelerate_train(
        "deepspeed.yaml", instruct_args(world, base_model, tmp_path / "r", "optim.max_steps=1")
    )
    assert "DeepSpeed ZeRO stage 2 over 2 processes" in result.stderr
    resolved = (tmp_path / "r" / "config.yaml").read_text()
    assert "strategy: deepspeed" in resolved and "zero_stage: 2" in resolved
    assert result.stdout.count("model written to") == 1
    assert load_model(tmp_path / "r" / "model") is not None
