"""A quick synthetic world and a tiny pretrained base for training tests, and a 2-process launcher."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmgpt.train.config import load_train_config
from mmgpt.train.loop import run_training

TINY = (
    "model.tiny={hidden_size: 48, num_layers: 2, num_heads: 2, intermediate_size: 96, vision_width: 32, "
    "vision_layers: 1, vision_heads: 2, image_size: 32, patch_size: 8, cross_attn_every_n_layers: 1, "
    "perceiver_depth: 1, perceiver_heads: 2, perceiver_dim_head: 16, num_latents: 4, xattn_heads: 2, "
    "xattn_dim_head: 16, gate_init: 1.0}"
)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    from mmgpt.synth import generate_world

    out = tmp_path_factory.mktemp("world")
    generate_world(out, seed=0, scale="quick", progress=False)
    return out


def pretrain_overrides(world, run, *extra):
    """Overrides for a tiny from-scratch pretrain run on `world` into `run` (3 steps unless `extra` says)."""
    return [
        "stage=pretrain",
        f"data.world={world}",
        f"output_dir={run}",
        TINY,
        "model.tokenizer_vocab_size=600",
        "data.batch_size=4",
        "optim.max_steps=3",
        "optim.lr=1e-3",
        "logging.progress=false",
        *extra,
    ]


@pytest.fixture(scope="session")
def base_model(world, tmp_path_factory):
    return run_training(load_train_config(None, pretrain_overrides(world, tmp_path_factory.mktemp("base"))))


def instruct_args(world, base_model, run_dir, *extra):
    """Overrides for a tiny instruct run."""
    return [
        f"data.config={world}/datasets.yaml",
        f"model.path={base_model}",
        f"output_dir={run_dir}",
        "data.batch_size=2",
        "optim.lr=1e-3",
        "optim.warmup_steps=1",
        "logging.progress=false",
        "lora.r=4",
        *extra,
    ]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (for a rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_train(args: list[str], *extra: str, timeout: int = 300) -> None:
    """Run `mmgpt train ARGS EXTRA` on 2 CPU processes with torchrun; fails the test (with stderr) unless it exits 0."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={free_port()}",
        "-m",
        "mmgpt",
        "-q",
        "train",
        *args,
        *extra,
    ]
    result = subprocess.run(cmd, env=env, timeout=timeout, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]


def accelerate_train(config_name: str, args: list[str]) -> subprocess.CompletedProcess:
    """Run `accelerate launch --config_file configs/accelerate/CONFIG_NAME -m mmgpt train ARGS` on 2 CPU
    processes; fails the test (with stderr) unless it exits 0, else returns the finished process."""
    config = Path(__file__).resolve().parents[2] / "configs" / "accelerate" / config_name
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config),
        "--num_processes=2",
        f"--main_process_port={free_port()}",
        "-m",
        "mmgpt",
        "train",
        *args,
    ]
    result = subprocess.run(cmd, env=env, timeout=300, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def checkpoint_weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    """The trainable tensors of `run`'s checkpoint at `step`, by parameter name."""
    return load_file(str(run / "checkpoints" / f"step-{step:06d}" / "trainable.safetensors"))


def assert_model_dir_holds_adapters(model_dir: Path, weights: dict[str, torch.Tensor]):
    """`model_dir` loads and its LoRA weights equal the checkpoint tensors `weights`; returns the loaded model."""
    from mmgpt.model.checkpoints import load_model

    model = load_model(model_dir)
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert lora
    for name, p in lora.items():
        key = next(k for k in weights if k.endswith(name.split("lang_encoder.", 1)[-1]))
        torch.testing.assert_close(p.detach().float(), weights[key].float(), atol=1e-6, rtol=0)
    return model


def assert_same_weights(got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], atol: float) -> None:
    """Same parameter names (LoRA's among them) and every tensor within `atol`."""
    assert got.keys() == expected.keys() and any("lora_" in k for k in got)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=atol, rtol=0)
