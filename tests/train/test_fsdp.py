"""FSDP2 training with 2 CPU processes (gloo): same weights as DDP, exact resume, a loadable model directory."""

from __future__ import annotations

import pytest
import torch

from mmgpt.model.checkpoints import load_model
from mmgpt.train.loop import read_metrics
from mmgpt.train.sharding import accelerate_fsdp_options
from tests.train.conftest import (
    accelerate_train,
    assert_model_dir_holds_adapters,
    assert_same_weights,
    checkpoint_weights,
    instruct_args,
    torchrun_train,
)

pytestmark = pytest.mark.slow


@pytest.mark.timeout(900)
def test_fsdp_matches_ddp_resumes_exactly_and_writes_a_model(world, base_model, tmp_path):
    # bf16 with bf16 frozen weights beside fp32 adapters in one unit; vision-language + language-only batches,
    # so the cross-attention units sit out every other backward; constant lr so a shorter run is a prefix
    common = [
        "optim.max_steps=4",
        "optim.grad_accum=2",
        "optim.warmup_steps=0",
        "optim.min_lr_ratio=1.0",
        "logging.save_every=2",
        "logging.keep_last=2",
    ]
    ddp, fsdp, resumed = tmp_path / "ddp", tmp_path / "fsdp", tmp_path / "resumed"
    torchrun_train(instruct_args(world, base_model, ddp, *common))
    torchrun_train(instruct_args(world, base_model, fsdp, *common, "distributed.strategy=fsdp"))

    ddp_w, fsdp_w = checkpoint_weights(ddp, 4), checkpoint_weights(fsdp, 4)
    assert_same_weights(fsdp_w, ddp_w, atol=1e-4)

    # a sharded run stopped after step 2 and resumed continues exactly as the uninterrupted one (this one with
    # activation checkpointing, which recomputes the same numbers)
    sharded = [*common, "distributed.strategy=fsdp", "precision.gradient_checkpointing=true"]
    torchrun_train(instruct_args(world, base_model, resumed, *sharded, "optim.max_steps=2"))
    torchrun_train(instruct_args(world, base_model, resumed, *sharded), "--resume")
    expected = [r["loss"] for r in read_metrics(fsdp / "metrics.jsonl")]
    got = read_metrics(resumed / "metrics.jsonl")
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    assert [r["loss"] for r in got] == pytest.approx(expected, abs=1e-5)
    assert_same_weights(checkpoint_weights(resumed, 4), fsdp_w, atol=1e-5)

    # the gathered model directory holds the full base and the trained adapters
    assert_model_dir_holds_adapters(fsdp / "model", fsdp_w)


def test_a_checkpoint_resumes_only_with_its_own_strategy(world, base_model, tmp_path):
    from mmgpt.errors import ConfigError
    from mmgpt.train.config import load_train_config
    from mmgpt.train.loop import run_training

    run = tmp_path / "r"
    args = instruct_args(world, base_model, run, "optim.max_steps=2")
    first = run_training(load_train_config(None, [*args, "optim.max_steps=1"]))
    assert first.exists()
    state_path = run / "checkpoints" / "step-000001" / "state.pt"
    state = torch.load(state_path, weights_only=True)
    state["strategy"] = "fsdp"
    torch.save(state, state_path)
    with pytest.raises(ConfigError, match=r"sharded \(FSDP\) run.*distributed.strategy=fsdp"):
        run_training(load_train_config(None, args))


def test_accelerate_fsdp_launch_options(monkeypatch):
    assert accelerate_fsdp_options() is None
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_OFFLOAD_PARAMS", "true")
    monkeypatch.setenv("FSDP_SHARDING_STRATEGY", "SHARD_GRAD_OP")
    assert accelerate_fsdp_options() == {
        "reshard_after_forward": False,
        "cpu_offload": True,
        "activation_checkpointing": False,
    }


def test_accelerate_launch_with_the_fsdp_config_shards(world, base_model, tmp_path):
    """`accelerate launch --config_file configs/accelerate/fsdp.yaml` on 2 CPU processes trains sharded."""
    result = accelerate_train(
        "fsdp.yaml", instruct_args(world, base_model, tmp_path / "r", "optim.max_steps=1")
    )
    assert "sharded over 2 processes" in result.stderr
    assert "strategy: fsdp" in (tmp_path / "r" / "config.yaml").read_text()
    assert result.stdout.count("model written to") == 1
    assert load_model(tmp_path / "r" / "model") is not None
