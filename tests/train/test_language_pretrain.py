"""The synthetic base's text-only language-model pretraining: it lowers the text loss, touches only the decoder,
is reused by a resumed run, and is refused where it has no meaning."""

from __future__ import annotations

import pytest
import torch

from mmgpt.data.collate import collate
from mmgpt.errors import ConfigError
from mmgpt.train.config import LanguagePretrainSection, load_train_config
from mmgpt.train.language_pretrain import pretrain_language_model
from mmgpt.train.loop import build_training_model, run_training
from mmgpt.train.pretrain_data import PretrainBuilder, read_corpus

from .conftest import pretrain_overrides


def _config(world, run, *extra):
    return load_train_config(
        None,
        pretrain_overrides(
            world, run, "language_pretrain.batch_size=8", "language_pretrain.warmup_steps=2", *extra
        ),
    )


def _text_loss(model, world) -> float:
    items = read_corpus(world / "pretrain" / "text.jsonl")[:16]
    builder = PretrainBuilder(model.tokenizer, model.image_processor, world, 256)
    batch = collate([builder.build(i) for i in items], model.tokenizer.pad_token_id)
    with torch.no_grad():
        out = model(None, batch["lang_x"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    return out.loss.item()


def test_language_pretraining_learns_the_text_and_leaves_the_image_path_alone(world, tmp_path):
    config = _config(world, tmp_path)
    model = build_training_model(config, tmp_path)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss_before = _text_loss(model, world)
    settings = LanguagePretrainSection(steps=60, batch_size=8, lr=3e-3, warmup_steps=5)
    report = pretrain_language_model(
        model,
        world,
        settings,
        lambda b: model(None, b["lang_x"], b["attention_mask"], b["labels"]).loss,
        max_length=256,
        seed=0,
        progress=False,
    )
    model.eval()
    assert report["steps"] == 60
    assert _text_loss(model, world) < 0.7 * loss_before
    for name, value in model.state_dict().items():
        image_path = "gated_cross_attn_layer" in name or name.startswith(("perceiver", "vision_encoder"))
        assert torch.equal(value, before[name]) == image_path, name


def test_a_resumed_run_reuses_the_pretrained_language_model(world, tmp_path, caplog):
    run = tmp_path / "base"
    run_training(_config(world, run, "language_pretrain.steps=3", "optim.max_steps=2"))
    before = (run / "language_model.safetensors").stat().st_mtime_ns
    with caplog.at_level("INFO", logger="mmgpt.train.loop"):
        run_training(_config(world, run, "language_pretrain.steps=3", "optim.max_steps=3"))
    assert (run / "language_model.safetensors").stat().st_mtime_ns == before
    assert "reusing the pretrained language model" in caplog.text


def test_language_pretraining_needs_a_from_scratch_pretrain_run(world, tmp_path):
    with pytest.raises(ConfigError, match="language_pretrain.steps needs stage: pretrain"):
        load_train_config(
            None,
            [f"data.config={world}/datasets.yaml", "model.path=somewhere", "language_pretrain.steps=10"],
        )
    with pytest.raises(ConfigError, match="language_pretrain.batch_size must be >= 1"):
        _config(world, tmp_path, "language_pretrain.batch_size=0")
