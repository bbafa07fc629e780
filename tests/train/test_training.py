"""Training: config validation, the joint loop, resume after SIGKILL, NaN stop, outputs, merge, DDP equivalence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mmgpt.errors import ConfigError
from mmgpt.model.checkpoints import load_model
from mmgpt.train.config import load_train_config
from mmgpt.train.loop import NonFiniteLoss, read_metrics, run_training
from mmgpt.train.metrics import Trackers
from tests.train.conftest import instruct_args, pretrain_overrides, torchrun_train


@pytest.mark.parametrize("native", [False, True])
def test_auto_precision_trains_in_what_the_cpu_computes_fast_and_records_it(
    world, tmp_path, monkeypatch, native
):
    import yaml

    from mmgpt.model import precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    run = tmp_path / "run"
    run_training(
        load_train_config(None, pretrain_overrides(world, run, "precision.dtype=auto", "optim.max_steps=1"))
    )
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["precision"]["dtype"] == ("bf16" if native else "fp32")


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown key optim.learning_rate"):
        load_train_config(None, ["model.path=x", "data.config=y", "optim.learning_rate=1"])
    with pytest.raises(ConfigError, match="optim.grad_accum"):
        load_train_config(None, ["model.path=x", "data.config=y", "optim.grad_accum=0"])
    with pytest.raises(ConfigError, match="data.batch_size: expected int"):
        load_train_config(None, ["model.path=x", "data.config=y", "data.batch_size=two"])
    with pytest.raises(ConfigError, match="precision.compile_mode must be one of default"):
        load_train_config(None, ["model.path=x", "data.config=y", "precision.compile_mode=fast"])
    with pytest.raises(ConfigError, match="distributed.strategy must be ddp, fsdp or deepspeed"):
        load_train_config(None, ["model.path=x", "data.config=y", "distributed.strategy=zero3"])
    with pytest.raises(ConfigError, match="precision.dtype must be fp32, bf16, fp16 or auto"):
        load_train_config(None, ["model.path=x", "data.config=y", "precision.dtype=fp64"])
    with pytest.raises(ConfigError, match="precision.attention must be auto, eager or sdpa"):
        load_train_config(None, ["model.path=x", "data.config=y", "precision.attention=flash"])
    (tmp_path / "c.yaml").write_text("model: {path: x}\ndata: {config: y, colour: red}\n")
    with pytest.raises(ConfigError, match="unknown key data.colour"):
        load_train_config(tmp_path / "c.yaml")


def test_instruct_run_outputs_and_merge(world, base_model, tmp_path):
    run = tmp_path / "run"
    model_dir = run_training(
        load_train_config(
            None, instruct_args(world, base_model, run, "optim.max_steps=3", "logging.save_every=2")
        )
    )
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert {"loss", "loss_vl", "loss_lang", "lr", "grad_norm", "tokens_per_s"} <= set(rows[0])
    assert all(r["loss_vl"] > 0 and r["loss_lang"] > 0 for r in rows)
    assert (run / "config.yaml").exists() and (run / "loss.png").exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-000002",
        "step-000003",
    ]  # keep_last=2
    model = load_model(model_dir)
    assert (model_dir / "adapter" / "adapter_config.json").exists()
    ids = torch.tensor([[model.tokenizer.bos_token_id, model.config.media_token_id, 5, 6]])
    assert model.generate(torch.zeros(1, 1, 1, 3, 32, 32), ids, max_new_tokens=3).shape == (1, 7)
    from mmgpt.cli import main

    assert main(["merge", "--model", str(model_dir), "--out", str(tmp_path / "merged")]) == 0
    merged = load_model(tmp_path / "merged")
    assert not (tmp_path / "merged" / "adapter").exists()
    vision = torch.randn(1, 1, 1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            merged(vision, ids).logits, model(vision, ids).logits, atol=1e-4, rtol=1e-4
        )


def test_language_batches_take_their_own_size(world, base_model, tmp_path, monkeypatch):
    import mmgpt.train.loop as loop

    rows = []  # (has images, samples) of every batch the loop trains on
    count = loop._batch_tokens

    def spy(batch):
        if batch is not None:
            rows.append((batch["vision_x"] is not None, batch["attention_mask"].shape[0]))
        return count(batch)

    monkeypatch.setattr(loop, "_batch_tokens", spy)
    run_training(
        load_train_config(
            None,
            instruct_args(
                world, base_model, tmp_path / "i", "optim.max_steps=2", "data.language_batch_size=3"
            ),
        )
    )
    assert sorted(rows) == [(False, 3), (False, 3), (True, 2), (True, 2)]
    rows.clear()
    run_training(  # pretraining: the plain-text batches
        load_train_config(
            None,
            pretrain_overrides(world, tmp_path / "p", "optim.max_steps=1", "data.language_batch_size=5"),
        )
    )
    assert sorted(rows) == [(False, 5), (True, 4)]
    with pytest.raises(ConfigError, match="data.language_batch_size must be >= 1"):
        load_train_config(None, ["model.path=x", "data.config=y", "data.language_batch_size=0"])


def test_only_lora_is_trained(world, base_model, tmp_path):
    from safetensors.torch import load_file

    run_training(
        load_train_config(None, instruct_args(world, base_model, tmp_path / "r", "optim.max_steps=1"))
    )
    names = load_file(str(tmp_path / "r" / "checkpoints" / "step-000001" / "trainable.safetensors")).keys()
    assert names and all("lora_" in n for n in names)


def test_nan_loss_stops_with_the_step(world, base_model, tmp_path, monkeypatch):
    import mmgpt.train.loop as loop

    real = loop._forward_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 4 else loss

    monkeypatch.setattr(loop, "_forward_loss", poisoned)
    closed = []
    monkeypatch.setattr(Trackers, "close", lambda self: closed.append(True))
    config = load_train_config(
        None, instruct_args(world, base_model, tmp_path / "r", "optim.max_steps=5", "logging.save_every=1")
    )
    with pytest.raises(NonFiniteLoss, match="step 3"):
        run_training(config)
    assert (tmp_path / "r" / "checkpoints" / "step-000002").exists()
    assert closed == [True], "the metric mirrors are closed on a NaN stop too"


def _cli(args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mmgpt", "-q", "train", *args], env=env, **kw)


def test_sigkill_then_resume_reproduces_every_loss(world, base_model, tmp_path):
    steps = ["optim.max_steps=8", "logging.save_every=2", "logging.keep_last=1"]
    reference = tmp_path / "ref"
    assert _cli(instruct_args(world, base_model, reference, *steps)).wait(timeout=300) == 0
    expected = [r["loss"] for r in read_metrics(reference / "metrics.jsonl")]

    killed = tmp_path / "killed"
    proc = _cli(instruct_args(world, base_model, killed, *steps))
    deadline = time.time() + 240
    while time.time() < deadline:
        metrics = killed / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (killed / "model").exists(), "the run must have been killed before finishing"
    assert _cli([*instruct_args(world, base_model, killed, *steps), "--resume"]).wait(timeout=300) == 0
    resumed = read_metrics(killed / "metrics.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, 9))
    assert [r["loss"] for r in resumed] == pytest.approx(expected, abs=1e-6)


@pytest.mark.timeout(600)
def test_two_processes_match_one_process_with_double_batch(tmp_path, base_model):
    """DDP with 2 x batch b gives the LoRA weights of 1 x batch 2b (equal-length samples)."""
    from safetensors.torch import load_file

    rows = [
        {"instruction": f"Item number {i}?", "input": "", "output": "The same answer."} for i in range(16)
    ]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "data.yaml").write_text("language:\n  - {type: alpaca_gpt4, ann_path: a.json}\n")
    common = [
        f"data.config={tmp_path / 'data.yaml'}",
        f"model.path={base_model}",
        "optim.max_steps=3",
        "optim.lr=1e-2",
        "optim.warmup_steps=1",
        "logging.progress=false",
        "lora.r=4",
        "precision.dtype=fp32",
        "optim.grad_accum=2",
    ]
    assert _cli([*common, f"output_dir={tmp_path / 'one'}", "data.batch_size=4"]).wait(timeout=300) == 0
    torchrun_train([*common, f"output_dir={tmp_path / 'two'}", "data.batch_size=2"], timeout=400)
    one = load_file(str(tmp_path / "one" / "checkpoints" / "step-000003" / "trainable.safetensors"))
    two = load_file(str(tmp_path / "two" / "checkpoints" / "step-000003" / "trainable.safetensors"))
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-5, rtol=0)
    assert Path(tmp_path / "two" / "model" / "config.json").exists()


def test_tensorboard_mirror_gets_every_step(world, base_model, tmp_path, monkeypatch):
    import types

    logged: list[tuple[str, float, int]] = []

    class FakeWriter:
        def __init__(self, log_dir):
            self.log_dir = log_dir

        def add_scalar(self, tag, value, step):
            logged.append((tag, value, step))

        def close(self):
            logged.append(("closed", 0.0, 0))

    monkeypatch.setitem(
        sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter)
    )
    args = instruct_args(world, base_model, tmp_path / "r", "optim.max_steps=2", "logging.tensorboard=true")
    run_training(load_train_config(None, args))
    losses = {step: value for tag, value, step in logged if tag == "train/loss"}
    rows = read_metrics(tmp_path / "r" / "metrics.jsonl")
    assert losses == {r["step"]: pytest.approx(r["loss"]) for r in rows} and len(rows) == 2
    assert {tag for tag, _, _ in logged} >= {"train/lr", "train/grad_norm", "train/tokens_per_s", "closed"}


def test_missing_tracker_is_a_clear_error_before_training(world, base_model, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import fails as if not installed
    args = instruct_args(world, base_model, tmp_path / "r", "optim.max_steps=2", "logging.wandb=true")
    with pytest.raises(ConfigError, match="logging.wandb.*pip install wandb"):
        run_training(load_train_config(None, args))
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_unsupported_deepspeed_settings_are_refused_before_training(world, base_model, tmp_path, monkeypatch):
    # an accelerate DeepSpeed launch asking for offload must not silently train without it
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE", "cpu")
    args = instruct_args(world, base_model, tmp_path / "r", "optim.max_steps=1")
    with pytest.raises(ConfigError, match="OFFLOAD_PARAM_DEVICE=cpu.*does not offload"):
        run_training(load_train_config(None, args))
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_compiled_layers_train_like_eager(world, base_model, tmp_path):
    """precision.compile gives the eager run's losses and an ordinary, loadable model directory."""
    losses = {}
    for compiled in (False, True):
        run = tmp_path / f"compile-{compiled}"
        args = instruct_args(
            world,
            base_model,
            run,
            "optim.max_steps=3",
            "precision.dtype=fp32",
            f"precision.compile={compiled}",
        )
        run_training(load_train_config(None, args))
        losses[compiled] = [r["loss"] for r in read_metrics(run / "metrics.jsonl")]
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
    model = load_model(tmp_path / "compile-True" / "model")
    assert not any("_orig_mod" in name for name in model.state_dict())


def test_attention_kernel_follows_the_precision(world, base_model, tmp_path):
    """auto: eager attention for bf16 training on CPU (the fused kernel is slower there), sdpa in fp32."""
    from mmgpt.train.loop import build_training_model

    def kernels(*extra):
        model = build_training_model(
            load_train_config(None, instruct_args(world, base_model, tmp_path, *extra)), tmp_path
        )
        return {
            m.config._attn_implementation
            for m in model.modules()
            if hasattr(m, "config") and hasattr(m.config, "_attn_implementation")
        }

    assert kernels() == {"eager"}
    assert kernels("precision.dtype=fp32") == {"sdpa"}
    assert kernels("precision.attention=sdpa") == {"sdpa"}
    assert kernels("precision.dtype=fp32", "precision.attention=eager") == {"eager"}


def test_starting_over_deletes_the_previous_runs_checkpoints(world, base_model, tmp_path):
    # left in place, the old run's later checkpoints outlived the new run's in the keep_last pruning, and a
    # restart then resumed from the old run
    run = tmp_path / "r"
    run_training(
        load_train_config(
            None, instruct_args(world, base_model, run, "optim.max_steps=4", "logging.save_every=2")
        )
    )
    again = instruct_args(world, base_model, run, "optim.max_steps=2", "logging.save_every=1")
    run_training(load_train_config(None, again), resume=False)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000001", "step-000002"]
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [1, 2]


def test_a_missing_data_file_fails_before_the_model_is_built(world, base_model, tmp_path, monkeypatch):
    import mmgpt.train.loop as loop

    def not_now(*args, **kwargs):
        raise AssertionError("the model was built before the data recipe was checked")

    monkeypatch.setattr(loop, "build_training_model", not_now)
    with pytest.raises(ConfigError, match="cannot read data config"):
        run_training(
            load_train_config(None, instruct_args(world, base_model, tmp_path / "a", "data.config=no.yaml"))
        )
    recipe = tmp_path / "data.yaml"
    recipe.write_text(f"language:\n  - {{type: dolly, ann_path: {tmp_path / 'dolly.jsonl'}}}\n")
    with pytest.raises(ConfigError, match=r"language\[0\]\.ann_path: .*dolly.jsonl does not exist"):
        run_training(
            load_train_config(None, instruct_args(world, base_model, tmp_path / "b", f"data.config={recipe}"))
        )


def test_a_checkpoint_resumes_only_with_its_own_process_count(world, base_model, tmp_path):
    # each process's data position is a place in its own shard: resumed by another number of processes the
    # run would silently skip or repeat data (or fail with an IndexError)
    run = tmp_path / "r"
    run_training(load_train_config(None, instruct_args(world, base_model, run, "optim.max_steps=1")))
    path = run / "checkpoints" / "step-000001" / "state.pt"
    state = torch.load(path, weights_only=True)
    state["data"], state["rng"] = [state["data"]] * 2, [state["rng"]] * 2  # as two processes write it
    torch.save(state, path)
    with pytest.raises(ConfigError, match="written by a run of 2 process.*resume it with 2, not 1"):
        run_training(load_train_config(None, instruct_args(world, base_model, run, "optim.max_steps=2")))


def test_a_checkpoint_resumes_only_with_its_own_settings(world, base_model, tmp_path):
    # resumed with another learning rate, the restored optimizer and schedule would belong to another run
    run = tmp_path / "r"
    run_training(load_train_config(None, instruct_args(world, base_model, run, "optim.max_steps=1")))
    changed = instruct_args(world, base_model, run, "optim.max_steps=2", "optim.lr=5e-4")
    with pytest.raises(ConfigError, match=r"other settings \(optim.lr: .* -> 0.0005\).*--no-resume"):
        run_training(load_train_config(None, changed))
    run_training(load_train_config(None, changed), resume=False)  # starting over is allowed
    assert (run / "checkpoints" / "step-000002").is_dir()


def test_the_model_directory_appears_only_complete(world, base_model, tmp_path, monkeypatch):
    # the demo takes an existing model/config.json for a finished base: a kill while the directory was being
    # written used to leave a config.json without weights
    import mmgpt.model.checkpoints as checkpoints

    real = checkpoints.save_model_dir

    def killed_while_writing(model, directory, **kwargs):
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / "config.json").write_text("{}")
        raise KeyboardInterrupt

    run = tmp_path / "r"
    args = instruct_args(world, base_model, run, "optim.max_steps=1")
    monkeypatch.setattr(checkpoints, "save_model_dir", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        run_training(load_train_config(None, args))
    assert not (run / "model").exists()
    monkeypatch.setattr(checkpoints, "save_model_dir", real)
    model_dir = run_training(
        load_train_config(None, args)
    )  # the rerun resumes at the last step and writes it
    expected = (model_dir / "config.json").read_text()
    monkeypatch.setattr(checkpoints, "save_model_dir", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        run_training(load_train_config(None, args))
    assert (model_dir / "config.json").read_text() == expected  # a failed rewrite keeps the finished model
    load_model(model_dir)


@pytest.mark.timeout(600)
def test_two_processes_resume_with_their_own_random_states(world, base_model, tmp_path):
    """With LoRA dropout each process draws its own masks: a 2-process run resumed from step 2 reaches the
    weights of the uninterrupted run (each process gets its own RNG state back, not rank 0's)."""
    from tests.train.conftest import assert_same_weights, checkpoint_weights

    common = [
        "optim.max_steps=4",
        "logging.save_every=2",
        "logging.keep_last=2",
        "lora.dropout=0.3",
        "precision.dtype=fp32",
    ]
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    torchrun_train(instruct_args(world, base_model, full, *common))
    import shutil

    shutil.copytree(full, resumed)  # as if killed after step 3: step 2 is its newest checkpoint
    shutil.rmtree(resumed / "checkpoints" / "step-000004")
    shutil.rmtree(resumed / "model")
    torchrun_train(instruct_args(world, base_model, resumed, *common))
    expected = [r["loss"] for r in read_metrics(full / "metrics.jsonl")]
    assert [r["loss"] for r in read_metrics(resumed / "metrics.jsonl")] == pytest.approx(expected, abs=1e-6)
    assert_same_weights(checkpoint_weights(resumed, 4), checkpoint_weights(full, 4), atol=1e-7)
