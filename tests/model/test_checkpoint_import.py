"""Import of OpenFlamingo checkpoint.pt files and the MultiModal-GPT LoRA release, with strict accounting."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from mmgpt.errors import CheckpointError
from mmgpt.model.checkpoints import import_openflamingo, load_model
from mmgpt.model.lora import RELEASE_TARGETS, merge_lora
from tests.model.conftest import OF_SIZES, build_reference, interleaved_batch, released_checkpoint


@pytest.fixture
def hf_parts(tmp_path, tiny_tokenizer):
    """HF directories (CLIP vision tower; LLaMA + tokenizer) and a reference model built from them."""
    from transformers import AutoModelForCausalLM, CLIPVisionModel

    from mmgpt.model.builder import build_lm_from_config, build_vision_from_config, tiny_config
    from mmgpt.model.tokenizer import special_token_ids

    torch.manual_seed(0)
    cfg = tiny_config(
        len(tiny_tokenizer), special_token_ids(tiny_tokenizer), cross_attn_every_n_layers=2, **OF_SIZES
    )
    vision_dir, lm_dir = tmp_path / "clip", tmp_path / "llama"
    build_vision_from_config(cfg.vision_config).save_pretrained(vision_dir)
    build_lm_from_config(cfg.text_config).save_pretrained(lm_dir)
    tiny_tokenizer.save_pretrained(lm_dir)
    ref = build_reference(
        cfg, CLIPVisionModel.from_pretrained(vision_dir), AutoModelForCausalLM.from_pretrained(lm_dir)
    )
    return cfg, vision_dir, lm_dir, ref


def _logits(model, tok, cfg):
    vision_x, ids, mask = interleaved_batch(tok, cfg.image_size)
    with torch.no_grad():
        return model(vision_x, ids, attention_mask=mask).logits[mask.bool()]


@pytest.mark.parametrize("layout", ["flat", "wrapped_module_prefix", "v1_aliases"])
def test_import_gives_reference_logits(tmp_path, hf_parts, tiny_tokenizer, layout):
    cfg, vision_dir, lm_dir, ref = hf_parts
    state = released_checkpoint(ref)
    if layout == "wrapped_module_prefix":
        state = {"model_state_dict": {f"module.{k}": v for k, v in state.items()}}
    elif layout == "v1_aliases":
        for key in list(state):
            if ".gated_cross_attn_layer." in key:
                idx = key.split("model.layers.")[1].split(".")[0]
                rest = key.split(".gated_cross_attn_layer.")[1]
                state[f"lang_encoder.gated_cross_attn_layers.{idx}.{rest}"] = state[key].clone()
    torch.save(state, tmp_path / "checkpoint.pt")
    out = tmp_path / "imported"
    import_openflamingo(vision_dir, lm_dir, tmp_path / "checkpoint.pt", out, cross_attn_every_n_layers=2)
    model = load_model(out)
    torch.testing.assert_close(
        _logits(model, tiny_tokenizer, cfg), _logits(ref, tiny_tokenizer, cfg), atol=1e-4, rtol=1e-4
    )
    generated = model.generate(None, torch.tensor([[1, 5, 6]]), max_new_tokens=3)
    assert generated.shape == (1, 6)


def test_renamed_key_is_refused_by_name(tmp_path, hf_parts):
    _, vision_dir, lm_dir, ref = hf_parts
    state = released_checkpoint(ref)
    state["perceiver.nrm.weight"] = state.pop("perceiver.norm.weight")
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"perceiver\.nrm\.weight"):
        import_openflamingo(
            vision_dir, lm_dir, tmp_path / "checkpoint.pt", tmp_path / "out", cross_attn_every_n_layers=2
        )


def test_missing_trained_part_is_refused(tmp_path, hf_parts):
    _, vision_dir, lm_dir, ref = hf_parts
    state = released_checkpoint(ref)
    del state["lang_encoder.model.layers.1.gated_cross_attn_layer.attn_gate"]
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"layers\.1\.gated_cross_attn_layer\.attn_gate"):
        import_openflamingo(
            vision_dir, lm_dir, tmp_path / "checkpoint.pt", tmp_path / "out", cross_attn_every_n_layers=2
        )


def test_arbitrary_pickled_objects_are_refused(tmp_path, hf_parts):
    _, vision_dir, lm_dir, ref = hf_parts
    state = released_checkpoint(ref)
    state["evil"] = torch.nn.Linear(2, 2)  # a module object, not a tensor
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError):
        import_openflamingo(
            vision_dir, lm_dir, tmp_path / "checkpoint.pt", tmp_path / "out", cross_attn_every_n_layers=2
        )


def test_lora_release_imports_with_reference_logits(tmp_path, hf_parts, tiny_tokenizer):
    cfg, vision_dir, lm_dir, ref = hf_parts
    torch.save(released_checkpoint(ref), tmp_path / "checkpoint.pt")
    lora_cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=list(RELEASE_TARGETS))
    ref.lang_encoder = get_peft_model(ref.lang_encoder, lora_cfg)
    gen = torch.Generator().manual_seed(3)
    for name, p in ref.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.2, generator=gen)
    # The release: every state-dict key of the wrapped LM's adapters (aliases included), DDP prefix, tuning config.
    lora_state = {f"module.{k}": v.clone() for k, v in ref.state_dict().items() if "lora_" in k}
    assert any(".gated_cross_attn_layers." in k for k in lora_state)
    release = {
        "model_state_dict": lora_state,
        "tuning_config": {
            "lora": True,
            "lora_target_modules": list(RELEASE_TARGETS),
            "lora_r": 4,
            "lora_alpha": 8,
            "lora_dropout": 0.0,
        },
    }
    torch.save(release, tmp_path / "mmgpt-lora-v0-release.pt")
    out = tmp_path / "imported"
    import_openflamingo(
        vision_dir,
        lm_dir,
        tmp_path / "checkpoint.pt",
        out,
        lora=tmp_path / "mmgpt-lora-v0-release.pt",
        cross_attn_every_n_layers=2,
    )
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    model = load_model(out)
    expected = _logits(ref, tiny_tokenizer, cfg)
    unmerged = _logits(model, tiny_tokenizer, cfg)
    torch.testing.assert_close(unmerged, expected, atol=1e-4, rtol=1e-4)
    merged = _logits(merge_lora(model), tiny_tokenizer, cfg)
    torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)


def test_full_clip_directory_is_accepted(tmp_path, tiny_tokenizer):
    from transformers import CLIPConfig, CLIPModel

    from mmgpt.model.builder import load_vision_tower

    clip = CLIPModel(
        CLIPConfig(
            text_config={
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
            },
            vision_config={
                "hidden_size": 48,
                "intermediate_size": 96,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "image_size": 32,
                "patch_size": 8,
            },
        )
    ).eval()
    clip.save_pretrained(tmp_path / "clip_full")
    tower = load_vision_tower(tmp_path / "clip_full").eval()
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = clip.vision_model(pixel_values=pixels).last_hidden_state
        got = tower(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(got, expected)


def test_import_cli_writes_a_loadable_directory(tmp_path, hf_parts, tiny_tokenizer):
    from mmgpt.cli import main

    _, vision_dir, lm_dir, ref = hf_parts
    torch.save({"model_state_dict": released_checkpoint(ref)}, tmp_path / "checkpoint.pt")
    out = tmp_path / "cli_out"
    code = main(
        [
            "import-openflamingo",
            "--vision-encoder",
            str(vision_dir),
            "--lang-model",
            str(lm_dir),
            "--checkpoint",
            str(tmp_path / "checkpoint.pt"),
            "--cross-attn-every-n-layers",
            "2",
            "--media-attention",
            "openflamingo_v1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    model = load_model(out)
    assert model.config.media_attention == "openflamingo_v1"
    prompt = tiny_tokenizer(["<image>a red circle"], return_tensors="pt").input_ids
    assert (
        model.generate(torch.zeros(1, 1, 1, 3, 32, 32), prompt, max_new_tokens=2).shape[1]
        == prompt.shape[1] + 2
    )


def test_import_cli_reports_bad_key_without_traceback(tmp_path, hf_parts, capsys):
    from mmgpt.cli import main

    _, vision_dir, lm_dir, ref = hf_parts
    state = released_checkpoint(ref)
    state["lang_encoder.model.layers.1.gated_cross_attn_layer.attn.to_qq.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "checkpoint.pt")
    code = main(
        [
            "import-openflamingo",
            "--vision-encoder",
            str(vision_dir),
            "--lang-model",
            str(lm_dir),
            "--checkpoint",
            str(tmp_path / "checkpoint.pt"),
            "--cross-attn-every-n-layers",
            "2",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 1
    assert "to_qq" in capsys.readouterr().err


def test_release_with_pickled_config_object_loads_tensor_safely(tmp_path, monkeypatch):
    """The LoRA release pickles its tuning config as a config-dict object: read it without executing code."""
    import sys
    import types

    from mmgpt.model.checkpoints import load_torch_file

    fake = types.ModuleType("mmengine.config")

    class ConfigDict(dict):
        pass

    ConfigDict.__module__ = "mmengine.config"
    ConfigDict.__qualname__ = "ConfigDict"
    fake.ConfigDict = ConfigDict
    monkeypatch.setitem(sys.modules, "mmengine", types.ModuleType("mmengine"))
    monkeypatch.setitem(sys.modules, "mmengine.config", fake)
    payload = {"model_state_dict": {"w": torch.ones(2)}, "tuning_config": ConfigDict(lora=True, lora_r=16)}
    torch.save(payload, tmp_path / "release.pt")
    monkeypatch.delitem(sys.modules, "mmengine.config")
    monkeypatch.delitem(sys.modules, "mmengine")
    loaded = load_torch_file(tmp_path / "release.pt")
    assert dict(loaded["tuning_config"]) == {"lora": True, "lora_r": 16}
    assert torch.equal(loaded["model_state_dict"]["w"], torch.ones(2))
