"""The shipped training configs parse and validate; overrides merge into them or replace their values."""

import re
from pathlib import Path

import pytest

from mmgpt.train.config import load_train_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    ("name", "dtype"),
    [("paper_mmgpt.yaml", "bf16"), ("synthetic_base.yaml", "auto"), ("synthetic_mmgpt.yaml", "auto")],
)
def test_shipped_configs_validate(name, dtype):
    # the paper's recipe is for GPUs with bf16; the synthetic world's runs on whatever CPU is at hand
    config = load_train_config(CONFIGS / name)
    assert config.precision.dtype == dtype


def test_paper_recipe_values():
    c = load_train_config(CONFIGS / "paper_mmgpt.yaml")
    assert (c.optim.lr, c.optim.grad_accum, c.data.batch_size, c.optim.epochs) == (1e-5, 16, 1, 1.0)
    assert (c.lora.r, c.lora.alpha, c.lora.preset, c.model.cross_attn_every_n_layers) == (
        16,
        16,
        "release",
        4,
    )


def test_dotted_override_merges_and_whole_mapping_replaces(tmp_path):
    base = CONFIGS / "synthetic_base.yaml"
    merged = load_train_config(base, ["model.tiny.num_latents=64"])
    assert merged.model.tiny["num_latents"] == 64 and merged.model.tiny["hidden_size"] == 256
    replaced = load_train_config(base, ["model.tiny={hidden_size: 48, num_layers: 2}"])
    assert replaced.model.tiny == {"hidden_size": 48, "num_layers": 2}
    replaced.save(tmp_path / "config.yaml")  # a mapping given whole is saved as a plain mapping
    assert load_train_config(tmp_path / "config.yaml").model.tiny == replaced.model.tiny


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.tiny.num_latents=abc", "num_latents must be a whole number >= 1, got 'abc'"),
        ("model.tiny.num_layers=0", "num_layers must be a whole number >= 1, got 0"),
        ("model.tiny.gate_init=open", "gate_init must be a number"),
        ("model.tiny.num_latent=64", "unknown option 'num_latent'"),
        ("model.tiny.hidden_size=250", "hidden_size=250 is not divisible by num_heads=4"),
        ("model.tiny.patch_size=7", "image_size=64 is not divisible by patch_size=7"),
    ],
)
def test_bad_tiny_model_options_fail_at_load(override, message):
    # caught when the config loads, naming the option, not as a traceback from inside model construction
    from mmgpt.errors import ConfigError

    with pytest.raises(ConfigError, match="model.tiny: " + re.escape(message)):
        load_train_config(CONFIGS / "synthetic_base.yaml", [override])
    assert (
        load_train_config(CONFIGS / "synthetic_base.yaml", ["model.tiny.gate_init=0"]).model.tiny["gate_init"]
        == 0
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=.inf", "optim.lr must be a finite number > 0"),
        ("optim.weight_decay=-1", "optim.weight_decay must be a finite number >= 0"),
        ("optim.epochs=.inf", "optim.epochs must be a finite number > 0"),
        ("lora.alpha=0", "lora.alpha must be > 0"),
        ("data.max_length=0", "data.max_length must be >= 16"),
        ("data.max_length=-5", "data.max_length must be >= 16"),
        ("model.cross_attn_every_n_layers=0", "model.cross_attn_every_n_layers must be >= 1"),
        ("model.media_attention=all", "model.media_attention must be one of immediate, openflamingo_v1"),
        ("vision_pretrain.weight_decay=-0.1", "vision_pretrain.weight_decay must be a finite number >= 0"),
        ("language_pretrain.warmup_steps=-1", "language_pretrain.warmup_steps must be >= 0"),
    ],
)
def test_out_of_range_values_fail_at_load_naming_the_key(override, message):
    # each was accepted before: an infinite lr ended in a NaN loss, a negative weight decay in a traceback from
    # the optimizer, max_length 0 silently meant the default and alpha 0 trained adapters that change nothing
    from mmgpt.errors import ConfigError

    with pytest.raises(ConfigError, match=re.escape(message)):
        load_train_config(None, ["model.path=x", "data.config=y", override])


def test_cli_max_steps_zero_is_refused_not_ignored(capsys):
    from mmgpt.cli import main

    assert main(["train", "--max-steps", "0", "model.path=x", "data.config=y"]) == 1
    assert "optim.max_steps must be >= 1" in capsys.readouterr().err


def test_cli_resume_and_no_resume_exclude_each_other(capsys):
    from mmgpt.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--resume", "--no-resume", "model.path=x", "data.config=y"])
    assert exit_info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_changed_settings_name_what_a_resumed_run_would_get_wrong(tmp_path):
    from mmgpt.model.precision import default_device, resolve_precision
    from mmgpt.train.config import changed_settings

    base = ["model.path=m", "data.config=d.yaml", "optim.lr=1e-3", "precision.dtype=auto"]
    saved = load_train_config(None, [*base, "output_dir=a"])
    saved.precision.dtype = resolve_precision("auto", default_device())  # as a run records it
    saved.save(tmp_path / "config.yaml")
    # another output directory, logging and length may change; "auto" matches what it resolved to
    longer = load_train_config(None, [*base, "output_dir=b", "optim.max_steps=99", "logging.save_every=7"])
    assert changed_settings(tmp_path, longer) == []
    other = load_train_config(None, [*base, "optim.lr=2e-3", "seed=5"])
    assert changed_settings(tmp_path, other) == ["seed: 0 -> 5", "optim.lr: 0.001 -> 0.002"]
    assert changed_settings(tmp_path / "nowhere", other) == []


def test_changed_settings_take_two_spellings_of_one_path_as_the_same(tmp_path, monkeypatch):
    from mmgpt.train.config import changed_settings

    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()
    (tmp_path / "d.yaml").write_text("{}")
    run = tmp_path / "run"
    run.mkdir()
    load_train_config(None, ["model.path=base", "data.config=d.yaml"]).save(run / "config.yaml")
    absolute = [f"model.path={tmp_path / 'base'}", f"data.config={tmp_path / 'd.yaml'}"]
    assert changed_settings(run, load_train_config(None, absolute)) == []
    (tmp_path / "other").mkdir()
    moved = load_train_config(None, [f"model.path={tmp_path / 'other'}", "data.config=d.yaml"])
    assert changed_settings(run, moved) == [f"model.path: 'base' -> '{tmp_path / 'other'}'"]
