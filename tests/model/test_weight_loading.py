"""Importing and loading real-format weights the way users get them wrong: half-precision and tied-embedding
language models, wrong or broken inputs, output directories that hold something else, interrupted writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from mmgpt.errors import CheckpointError, ConfigError
from mmgpt.model.checkpoints import WRITING_MARKER, import_openflamingo, load_model, save_model_dir
from tests.model.conftest import tiny_clip_config


def save_tiny_clip(path: Path) -> None:
    """A tiny CLIP vision tower (`tiny_clip_config`) with random weights, saved as a Hugging Face directory."""
    from transformers import CLIPVisionModel

    CLIPVisionModel(tiny_clip_config()).save_pretrained(path)


# Small perceiver / cross-attention sizes: these tests are about files, not about the architecture's numbers.
SIZES = dict(
    cross_attn_every_n_layers=2,
    perceiver_depth=1,
    perceiver_heads=2,
    perceiver_dim_head=8,
    perceiver_num_latents=4,
    xattn_heads=2,
    xattn_dim_head=8,
)


def _trained_parts(model) -> dict[str, torch.Tensor]:
    """What OpenFlamingo's checkpoint.pt holds: perceiver, cross-attention blocks and the input embedding."""
    embed = model.lm.get_input_embeddings().weight
    state = {
        k: v.clone()
        for k, v in model.state_dict().items()
        if k.startswith("perceiver.") or ".gated_cross_attn_layer." in k
    }
    for name, param in model.named_parameters():
        if param is embed:
            state[name] = param.detach().clone()
    gen = torch.Generator().manual_seed(1)
    for key, value in state.items():
        if key.endswith("_gate"):
            value.uniform_(-1.0, 1.0, generator=gen)  # released gates are not zero
    return state


def _write_parts(root: Path, tokenizer, lm_dtype: torch.dtype = torch.float32) -> dict[str, Path]:
    """CLIP and LLaMA directories (the LLaMA saved in `lm_dtype`) and a checkpoint.pt made from them."""
    from mmgpt.model.builder import (
        build_from_parts,
        build_lm_from_config,
        build_vision_from_config,
        tiny_config,
    )
    from mmgpt.model.tokenizer import special_token_ids

    torch.manual_seed(0)
    cfg = tiny_config(len(tokenizer), special_token_ids(tokenizer))
    parts = {"clip": root / "clip", "lm": root / "llama", "checkpoint": root / "checkpoint.pt"}
    build_vision_from_config(cfg.vision_config).save_pretrained(parts["clip"])
    build_lm_from_config(cfg.text_config).to(lm_dtype).save_pretrained(parts["lm"])
    tokenizer.save_pretrained(parts["lm"])
    torch.save(_trained_parts(build_from_parts(parts["clip"], parts["lm"], **SIZES)), parts["checkpoint"])
    return parts


@pytest.fixture
def parts(tmp_path, tiny_tokenizer):
    return _write_parts(tmp_path / "parts", tiny_tokenizer)


def _import(parts: dict[str, Path], out: Path, **kwargs):
    return import_openflamingo(parts["clip"], parts["lm"], parts["checkpoint"], out, **{**SIZES, **kwargs})


def _forward(model, tokenizer) -> torch.Tensor:
    ids = tokenizer(["<image>a red circle"], return_tensors="pt").input_ids
    pixels = torch.zeros(1, 1, 1, 3, model.config.image_size, model.config.image_size, dtype=model.dtype)
    with torch.no_grad():
        return model(pixels, ids).logits


# ------------------------------------------------------------------------------------------------ dtypes
@pytest.mark.parametrize("lm_dtype", [torch.bfloat16, torch.float16])
def test_half_precision_lm_imports_and_loads_in_one_dtype(tmp_path, tiny_tokenizer, lm_dtype):
    """LLaMA releases are saved in fp16 and their config.json says so: the imported model must still be one
    dtype, not an fp16 LM under an fp32 perceiver (which fails at the first cross-attention)."""
    parts = _write_parts(tmp_path / "parts", tiny_tokenizer, lm_dtype)
    imported = _import(parts, tmp_path / "out")
    assert {p.dtype for p in imported.parameters()} == {torch.float32}
    model = load_model(tmp_path / "out")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    torch.testing.assert_close(_forward(model, tiny_tokenizer), _forward(imported.eval(), tiny_tokenizer))
    bf16 = load_model(tmp_path / "out", dtype="bf16")
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert torch.isfinite(_forward(bf16, tiny_tokenizer)).all()


def test_import_writes_the_requested_dtype(tmp_path, parts):
    _import(parts, tmp_path / "out", dtype="bfloat16")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "out" / "model.safetensors"), framework="pt") as handle:
        dtypes = {handle.get_slice(k).get_dtype() for k in handle.keys()}  # noqa: SIM118 (a safe_open handle is not a dict)
    assert dtypes == {"BF16"}


@pytest.mark.parametrize("bad", ["garbage", "int8", torch.int8, 5])
def test_load_model_refuses_an_unknown_dtype_by_name(tmp_path, parts, bad):
    _import(parts, tmp_path / "out")
    with pytest.raises(ConfigError, match="dtype must be one of"):
        load_model(tmp_path / "out", dtype=bad)


# ------------------------------------------------------------------------------------------------ LM families
@pytest.mark.parametrize("family", ["opt", "mpt"])
def test_tied_embedding_family_round_trips(tmp_path, family):
    """OPT and MPT tie lm_head to the input embedding; the directory stores it once and loading re-ties it."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from mmgpt.model.tokenizer import train_bpe_tokenizer
    from tests.conftest import CORPUS
    from tests.model.test_lm_families import FAMILIES

    tokenizer = train_bpe_tokenizer(CORPUS * 20, vocab_size=300)
    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_config(AutoConfig.for_model(family, vocab_size=300, **FAMILIES[family]))
    lm.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    save_tiny_clip(tmp_path / "clip")
    from mmgpt.model.builder import build_from_parts

    source = build_from_parts(tmp_path / "clip", tmp_path / "lm", **SIZES)
    torch.save(_trained_parts(source), tmp_path / "checkpoint.pt")
    imported = import_openflamingo(
        tmp_path / "clip", tmp_path / "lm", tmp_path / "checkpoint.pt", tmp_path / "out", **SIZES
    ).eval()
    model = load_model(tmp_path / "out")
    assert model.lm.get_output_embeddings().weight is model.lm.get_input_embeddings().weight
    torch.testing.assert_close(_forward(model, model.tokenizer), _forward(imported, model.tokenizer))


# ------------------------------------------------------------------------------------------------ wrong inputs
def _cli(*args: str) -> int:
    from mmgpt.cli import main

    return main(["import-openflamingo", *args])


def _cli_args(parts: dict[str, Path], out: Path, **replace: str) -> list[str]:
    paths = {
        "--vision-encoder": parts["clip"],
        "--lang-model": parts["lm"],
        "--checkpoint": parts["checkpoint"],
        "--out": out,
    }
    paths.update({f"--{k.replace('_', '-')}": v for k, v in replace.items()})
    sizes = [f"--{k.replace('_', '-')}={v}" for k, v in SIZES.items()]
    return [str(a) for pair in paths.items() for a in pair] + sizes


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("vision_encoder", r"model_type 'llama' .* is not a CLIP model"),
        ("lang_model", r"model_type 'clip_vision_model' .* is not a causal language model"),
        ("tokenizer", r"tokenizer directory .*nowhere does not exist"),
        ("checkpoint", r"is a directory; expected a checkpoint file"),
    ],
)
def test_wrong_input_paths_are_named_without_traceback(tmp_path, parts, capsys, which, expected):
    wrong = {
        "vision_encoder": parts["lm"],
        "lang_model": parts["clip"],
        "tokenizer": tmp_path / "nowhere",
        "checkpoint": parts["lm"],
    }[which]
    assert _cli(*_cli_args(parts, tmp_path / "out", **{which: wrong})) == 1
    import re

    assert re.search(expected, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def test_lm_directory_with_missing_or_broken_weights_is_refused(tmp_path, parts):
    broken = tmp_path / "broken_lm"
    shutil.copytree(parts["lm"], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cannot load a causal language model from .*broken_lm"):
        import_openflamingo(parts["clip"], broken, parts["checkpoint"], tmp_path / "out", **SIZES)
    # weights stored under other names: transformers would fill the model with random values and only warn
    from safetensors.torch import load_file, save_file

    state = load_file(str(parts["lm"] / "model.safetensors"))
    save_file({f"decoder.{k}": v for k, v in state.items()}, str(weights), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"weight\(s\) missing from the model files"):
        import_openflamingo(parts["clip"], broken, parts["checkpoint"], tmp_path / "out", **SIZES)


@pytest.mark.parametrize("damage", ["truncated", "empty", "not_torch"])
def test_corrupt_checkpoint_file_is_named(tmp_path, parts, damage):
    bad = tmp_path / "checkpoint.pt"
    data = parts["checkpoint"].read_bytes()
    bad.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "not_torch": b"garbage\n"}[damage])
    with pytest.raises(CheckpointError, match="checkpoint.pt: not a readable torch checkpoint"):
        import_openflamingo(parts["clip"], parts["lm"], bad, tmp_path / "out", **SIZES)


def test_wrong_cross_attention_spacing_names_the_right_flag(tmp_path, parts):
    for every in (1, 4):
        with pytest.raises(CheckpointError, match="every 2: --cross-attn-every-n-layers 2"):
            _import(parts, tmp_path / "out", cross_attn_every_n_layers=every)


def test_tokenizer_with_its_own_pad_token_is_named_as_the_cause(tmp_path, parts, tiny_tokenizer):
    """The checkpoint's embedding has a <PAD> row; a base tokenizer that defines a pad token gets none."""
    from mmgpt.model.tokenizer import train_bpe_tokenizer
    from tests.conftest import CORPUS

    other = train_bpe_tokenizer(CORPUS * 20, vocab_size=350)
    other.pad_token = other.unk_token  # as some LLaMA conversions set it
    other.save_pretrained(tmp_path / "tok")
    with pytest.raises(CheckpointError, match=r"embed_tokens.weight has \d+ rows but the tokenizer"):
        _import(parts, tmp_path / "out", tokenizer=tmp_path / "tok")


def test_tokenizer_whose_eos_is_the_unknown_token_is_refused(tmp_path, parts):
    """Early LLaMA conversions name "" as EOS, which encodes to nothing: replies would never be closed."""
    shutil.copytree(parts["lm"], tmp_path / "tok")
    config_path = tmp_path / "tok" / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["eos_token"] = ""
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="EOS token '' is the unknown token"):
        _import(parts, tmp_path / "out", tokenizer=tmp_path / "tok")


# ------------------------------------------------------------------------------------------------ output dirs
def test_out_pointing_at_another_models_directory_is_refused_untouched(tmp_path, parts):
    before = {p.name: p.read_bytes() for p in parts["lm"].iterdir()}
    assert _cli(*_cli_args(parts, parts["lm"])) == 1
    assert {p.name: p.read_bytes() for p in parts["lm"].iterdir()} == before


def test_reimport_into_the_same_directory_replaces_it(tmp_path, parts):
    out = tmp_path / "out"
    _import(parts, out)
    first = _forward(load_model(out), load_model(out).tokenizer)
    _import(parts, out, dtype="bfloat16")
    model = load_model(out)
    assert not (out / WRITING_MARKER).exists()
    torch.testing.assert_close(_forward(model, model.tokenizer), first, atol=0.1, rtol=0.1)


def test_interrupted_write_leaves_a_directory_that_does_not_load(tmp_path, make_tiny_model, monkeypatch):
    import mmgpt.model.checkpoints as checkpoints

    model = make_tiny_model()
    out = tmp_path / "m"
    save_model_dir(model, out)  # a complete earlier version, being replaced

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(checkpoints, "save_file", disk_full)
        with pytest.raises(OSError):
            save_model_dir(model, out)
    with pytest.raises(CheckpointError, match="incomplete: writing it was interrupted"):
        load_model(out)
    save_model_dir(model, out)  # writing again is allowed and completes it
    torch.testing.assert_close(_forward(load_model(out), model.tokenizer), _forward(model, model.tokenizer))


# ------------------------------------------------------------------------------------------------ broken model dirs
@pytest.fixture
def model_dir(tmp_path, make_tiny_model):
    save_model_dir(make_tiny_model(), tmp_path / "m", max_shard_size="200KB")
    return tmp_path / "m"


def test_missing_shard_is_named(model_dir):
    shard = sorted(model_dir.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=f"missing: {shard.name}"):
        load_model(model_dir)


def test_tokenizer_files_that_disagree_with_the_config_are_refused(model_dir):
    (model_dir / "tokenizer_config.json").unlink()  # tokenizer.json alone loads without its pad token
    with pytest.raises(CheckpointError, match="tokenizer files do not match config.json.*pad token"):
        load_model(model_dir)


def test_tokenizer_that_cannot_load_is_named(model_dir):
    (model_dir / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="cannot load the tokenizer"):
        load_model(model_dir)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([], "not an mmgpt model config"),
        ({"mmgpt_config_version": 1}, "not an mmgpt model config"),
        ({"model_type": "llama", "hidden_size": 8}, "is a Hugging Face llama directory"),
    ],
)
def test_config_that_is_not_ours_is_named(model_dir, content, expected):
    (model_dir / "config.json").write_text(json.dumps(content))
    with pytest.raises(CheckpointError, match=expected):
        load_model(model_dir)


def test_file_or_missing_path_is_named(model_dir):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(model_dir.parent / "nowhere")
    with pytest.raises(CheckpointError, match="is a file, not a model directory"):
        load_model(model_dir / "config.json")


@pytest.mark.parametrize("missing", ["adapter_config.json", "adapter_model.safetensors"])
def test_incomplete_adapter_directory_is_named_without_a_hub_lookup(tmp_path, make_tiny_model, missing):
    from mmgpt.model.lora import LoraSettings, apply_lora

    model = apply_lora(make_tiny_model(), LoraSettings(r=2))
    save_model_dir(model, tmp_path / "m")
    (tmp_path / "m" / "adapter" / missing).unlink()
    with pytest.raises(CheckpointError, match=f"{missing} is missing"):
        load_model(tmp_path / "m")


def test_adapter_directory_holds_only_the_adapters(tmp_path, recwarn):
    """The vocabulary is always resized on import (OpenFlamingo's added tokens); the embeddings still belong to
    the base weights, not copied into adapter/ (0.5 GB per copy for LLaMA-7B)."""
    from safetensors import safe_open

    from mmgpt.model.builder import build_from_parts, build_lm_from_config, tiny_config
    from mmgpt.model.lora import LoraSettings, apply_lora, merge_lora
    from mmgpt.model.tokenizer import SpecialTokenIds, train_bpe_tokenizer
    from tests.conftest import CORPUS

    base_tokenizer = train_bpe_tokenizer(CORPUS * 20, vocab_size=300)  # no Flamingo tokens yet
    ids = SpecialTokenIds(media=0, endofchunk=0, pad=0, eos=2, bos=1)
    build_lm_from_config(tiny_config(len(base_tokenizer), ids).text_config).save_pretrained(tmp_path / "lm")
    base_tokenizer.save_pretrained(tmp_path / "lm")
    save_tiny_clip(tmp_path / "clip")
    model = build_from_parts(tmp_path / "clip", tmp_path / "lm", **SIZES)
    assert model.lm.get_input_embeddings().weight.shape[0] == len(base_tokenizer) + 3
    save_model_dir(apply_lora(model, LoraSettings(r=2)), tmp_path / "out")
    with safe_open(str(tmp_path / "out" / "adapter" / "adapter_model.safetensors"), framework="pt") as handle:
        keys = list(handle.keys())  # noqa: SIM118 (a safe_open handle is not a dict)
    assert keys and all("lora_" in k for k in keys)
    assert not [w for w in recwarn if "save_embedding_layers" in str(w.message)]
    loaded = load_model(tmp_path / "out", merge_adapters=True)
    torch.testing.assert_close(
        _forward(loaded, loaded.tokenizer), _forward(merge_lora(model.eval()), loaded.tokenizer)
    )
