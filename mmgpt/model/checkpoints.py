"""Model directories (save/load) and import of OpenFlamingo / MultiModal-GPT checkpoints with strict accounting.

A model directory holds:
- `config.json`: the `FlamingoConfig` (backbone configs, sizes, token ids, media attention mode, LoRA settings);
- `model.safetensors` (or shards + `model.safetensors.index.json`): every base weight, plain module names;
- tokenizer files and `preprocessor_config.json`;
- `adapter/`: LoRA adapters in peft's format, when not merged.

Every key of an imported checkpoint is placed or explained; anything else stops the import with the keys named
(the reference loader's `strict=False` silently loads nothing on a mismatch).
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers.initialization import no_init_weights

from mmgpt.errors import CheckpointError
from mmgpt.model.config import FlamingoConfig
from mmgpt.model.flamingo import Flamingo

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
ADAPTER_DIR = "adapter"


# ------------------------------------------------------------------------------------------------ state dicts
def base_state_dict(model: Flamingo, state: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Base (non-LoRA) weights under plain module names, each shared tensor once.

    With peft adapters attached, `lang_encoder.base_model.model.X.base_layer.weight` becomes
    `lang_encoder.X.weight` and adapter tensors are left out (they are saved in peft's format). `state`: the
    model's full state dict when it is not `model.state_dict()` (a sharded model's gathered weights).
    """
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in (model.state_dict() if state is None else state).items():
        if "lora_" in name:
            continue
        plain = name.replace("lang_encoder.base_model.model.", "lang_encoder.").replace(".base_layer.", ".")
        ptr = tensor.data_ptr()
        if ptr in seen and tensor.numel():
            continue  # tied weights (e.g. OPT's lm_head) are stored once; tying restores them
        seen.add(ptr)
        out[plain] = tensor.detach().contiguous()
    return out


def save_model_dir(
    model: Flamingo,
    directory: str | Path,
    max_shard_size: str = "5GB",
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write `model` as a model directory (see module docstring); returns its path.

    `state_dict`: the full weights to write instead of `model.state_dict()` (for a sharded model, gathered by
    `mmgpt.train.sharding.full_model_state`).
    """
    from huggingface_hub import split_torch_state_dict_into_shards

    from mmgpt.model.lora import has_lora

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save(directory / "config.json")
    state = base_state_dict(model, state_dict)
    split = split_torch_state_dict_into_shards(
        state, filename_pattern="model{suffix}.safetensors", max_shard_size=max_shard_size
    )
    for stale in list(directory.glob("model*.safetensors")) + [directory / WEIGHTS_INDEX_NAME]:
        stale.unlink(missing_ok=True)
    for filename, names in split.filename_to_tensors.items():
        save_file({n: state[n].cpu() for n in names}, str(directory / filename), metadata={"format": "pt"})
    if split.is_sharded:
        index = {
            "metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
            "weight_map": split.tensor_to_filename,
        }
        (directory / WEIGHTS_INDEX_NAME).write_text(json.dumps(index, indent=2))
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(directory))
    if model.image_processor is not None:
        model.image_processor.save_pretrained(str(directory))
    adapter_dir = directory / ADAPTER_DIR
    if has_lora(model):
        prefix = "lang_encoder."
        lm_state = (
            None
            if state_dict is None
            else {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
        )
        model.lang_encoder.save_pretrained(str(adapter_dir), state_dict=lm_state)
        _sort_target_modules(adapter_dir / "adapter_config.json")
    elif adapter_dir.exists():
        import shutil

        shutil.rmtree(adapter_dir)
    return directory


def _sort_target_modules(config_path: Path) -> None:
    """Rewrite peft's adapter config with `target_modules` sorted: peft keeps them in a set and writes them in
    the string-hash order of the process, so two identical runs wrote different files (and fingerprints)."""
    config = json.loads(config_path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _weight_files(directory: Path) -> list[Path]:
    index = directory / WEIGHTS_INDEX_NAME
    if index.exists():
        return [directory / n for n in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    if (directory / WEIGHTS_NAME).exists():
        return [directory / WEIGHTS_NAME]
    raise CheckpointError(f"{directory}: no {WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME}")


def _weight_keys(files: list[Path]) -> set[str]:
    from safetensors import safe_open

    keys: set[str] = set()
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as handle:
                keys.update(handle.keys())
        except Exception as err:
            raise CheckpointError(f"cannot read weights file {path}: {err}") from err
    return keys


def _tied_aliases(model: torch.nn.Module) -> dict[str, str]:
    """name -> first name of the same tensor, for parameters registered under several names."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = id(tensor)
        if key in first:
            aliases[name] = first[key]
        else:
            first[key] = name
    return aliases


def load_model(
    directory: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    merge_adapters: bool = False,
) -> Flamingo:
    """Load a model directory written by `save_model_dir` / `mmgpt import-openflamingo` / `mmgpt train`.

    Returns the Flamingo model in eval mode with `.tokenizer` and `.image_processor` attached, LoRA adapters
    re-attached (unmerged) when the directory has them, or folded into the weights with `merge_adapters`: the
    same function up to rounding, without the adapters' extra products in every layer (the demo's tuned model
    answered its held-out items 1.6x faster merged on 2 CPU cores: bench/merged_generation.py). `dtype` may be
    a torch dtype, "float32"/"bfloat16"/..., or "auto" (bf16 where the hardware multiplies it natively, else
    fp32 on CPU: `mmgpt.model.precision.inference_dtype`). Missing or unexpected weights are an error naming them.
    """
    from transformers import AutoTokenizer

    from mmgpt.model.builder import build_model
    from mmgpt.model.image_processing import FlamingoImageProcessor

    directory = Path(directory)
    if not (directory / "config.json").exists():
        raise CheckpointError(f"{directory}: not an mmgpt model directory (no config.json)")
    config = FlamingoConfig.load(directory / "config.json")
    lora_settings = config.lora
    config.lora = None
    if isinstance(dtype, str):
        from mmgpt.model.precision import inference_dtype

        dtype = getattr(torch, inference_dtype(dtype))
    # Skip random initialisation (every weight is loaded below) and build directly in the target dtype, so a
    # 9B model never exists in fp32 in memory.
    with no_init_weights(), _default_dtype(dtype if dtype is not None and dtype.is_floating_point else None):
        model = build_model(config)
    files = _weight_files(directory)
    keys = _weight_keys(files)
    expected = base_state_dict(model)
    aliases = _tied_aliases(model)
    missing = sorted(k for k in expected if k not in keys and k not in aliases)
    unexpected = sorted(k for k in keys if k not in expected and k not in aliases)
    if missing or unexpected:
        raise CheckpointError(
            f"{directory}: weights do not match config.json: missing {_preview(missing)}; "
            f"unexpected {_preview(unexpected)}"
        )
    for path in files:  # one shard in memory at a time
        shard = load_file(str(path))
        _check_shapes(model, shard, source=str(path))
        model.load_state_dict(shard, strict=False)
        del shard
    if lora_settings:
        _attach_saved_adapter(model, directory / ADAPTER_DIR, lora_settings)
        if merge_adapters:
            from mmgpt.model.lora import merge_lora

            merge_lora(model)
    model.tokenizer = AutoTokenizer.from_pretrained(str(directory)) if _has_tokenizer(directory) else None
    if model.tokenizer is not None:
        model.tokenizer.padding_side = "left"
    model.image_processor = FlamingoImageProcessor(config.image_size)
    model.to(device=device or "cpu", dtype=dtype)
    return model.eval()


@contextmanager
def _default_dtype(dtype: torch.dtype | None) -> Iterator[None]:
    previous = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _has_tokenizer(directory: Path) -> bool:
    return any(
        (directory / n).exists() for n in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
    )


def _attach_saved_adapter(model: Flamingo, adapter_dir: Path, settings: dict[str, Any]) -> None:
    from peft import PeftModel

    from mmgpt.model.lora import LoraSettings

    if not adapter_dir.exists():
        raise CheckpointError(f"config.json lists LoRA adapters but {adapter_dir} is missing")
    from mmgpt.model.lora import quiet_peft

    with quiet_peft():
        model.lang_encoder = PeftModel.from_pretrained(
            model.lang_encoder, str(adapter_dir), is_trainable=False
        )
    model.config.lora = LoraSettings(**settings).to_dict()


def _check_shapes(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    bad = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and own[k].shape != v.shape
    ]
    if bad:
        raise CheckpointError(f"{source}: shape mismatch for {len(bad)} key(s): " + "; ".join(bad[:8]))


def _preview(keys: list[str], limit: int = 8) -> str:
    if not keys:
        return "none"
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


# ------------------------------------------------------------------------------------------------ torch.load
class _PlainDict(dict):
    """Stand-in for config objects (mmengine/addict dicts) pickled into release files."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, Mapping):
            self.update(state)


class _ConfigTolerantUnpickler(pickle.Unpickler):
    """Allows tensors, plain containers and config-dict classes (as `_PlainDict`); refuses any other object."""

    _ALLOWED_PREFIXES = ("torch", "collections.OrderedDict", "builtins", "_codecs.encode", "numpy")
    _DICT_MODULES = ("mmengine", "mmcv", "addict", "easydict", "omegaconf", "argparse")

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in self._DICT_MODULES:
            return _PlainDict
        qualified = f"{module}.{name}"
        if module.startswith("torch") or qualified.startswith(self._ALLOWED_PREFIXES):
            if module == "builtins" and name not in {
                "dict",
                "list",
                "set",
                "tuple",
                "frozenset",
                "int",
                "float",
                "str",
                "bool",
                "bytearray",
                "slice",
            }:
                raise pickle.UnpicklingError(f"refusing to unpickle {qualified}")
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {qualified}")


class _TolerantPickleModule:
    Unpickler = _ConfigTolerantUnpickler
    load = pickle.load
    __name__ = "mmgpt_tolerant_pickle"


def load_torch_file(path: str | Path) -> Any:
    """`torch.load` a checkpoint safely: tensor-only (`weights_only=True`) first; if the file also pickles config
    objects (the MultiModal-GPT release stores its tuning config that way), a restricted unpickler that turns
    known config-dict classes into dicts and refuses every other object."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as first:
        try:
            return torch.load(
                str(path), map_location="cpu", weights_only=False, pickle_module=_TolerantPickleModule
            )
        except Exception as err:
            raise CheckpointError(f"{path}: cannot load safely ({first}); {err}") from err
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {err}") from err


def unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """Return the flat tensor dict of a checkpoint: unwraps `{"model_state_dict": ...}` / `{"state_dict": ...}` and
    strips DDP's `module.` prefix."""
    if isinstance(obj, Mapping):
        for wrapper in ("model_state_dict", "state_dict", "model"):
            if wrapper in obj and isinstance(obj[wrapper], Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{source}: expected a dict of tensors (optionally under model_state_dict)")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}


# ------------------------------------------------------------------------------------------------ import
@dataclass
class ImportReport:
    """What an import did with each key of the source file."""

    loaded: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    skipped_vision: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.loaded)} tensors loaded, {len(self.aliases)} duplicate aliases verified, "
            f"{len(self.skipped_vision)} vision-tower keys ignored (the tower comes from the CLIP directory)"
        )


def load_openflamingo_checkpoint(model: Flamingo, path: str | Path) -> ImportReport:
    """Load an OpenFlamingo `checkpoint.pt` into `model`, accounting for every key.

    Accepts the flat layout, `{"model_state_dict": ...}`, DDP `module.` prefixes and v1's duplicate aliases
    (`lang_encoder.gated_cross_attn_layers.N.*`, `lang_encoder.old_decoder_blocks.N.*`, checked equal to their
    canonical key). Keys under `vision_encoder.` are reported and ignored. A key the model cannot place, a shape
    mismatch, or a trained part (perceiver, cross-attention, input embeddings) absent from the file is an error.
    """
    source = str(path)
    state = unwrap_state_dict(load_torch_file(path), source)
    own = model.state_dict()
    report = ImportReport()
    placed: dict[str, torch.Tensor] = {}
    unplaceable: list[str] = []
    alias_of: dict[str, str] = {}
    for key in state:
        canonical = canonical_key(key, model.decoder_layers_attr)
        if canonical != key:
            alias_of[key] = canonical
        if key.startswith("vision_encoder."):
            report.skipped_vision.append(key)
        elif canonical in own:
            placed.setdefault(canonical, state[key])
        else:
            unplaceable.append(key)
    if unplaceable:
        raise CheckpointError(
            f"{source}: {len(unplaceable)} key(s) match no parameter of the model: {_preview(unplaceable)}"
        )
    for alias, canonical in alias_of.items():
        if canonical in state and not torch.equal(state[alias], state[canonical]):
            raise CheckpointError(f"{source}: alias {alias} differs from {canonical}")
        report.aliases.append(alias)
    required = [k for k in own if k.startswith("perceiver.") or ".gated_cross_attn_layer." in k]
    embed_key = _input_embedding_key(model)
    required.append(embed_key)
    absent = [k for k in required if k not in placed]
    if absent:
        raise CheckpointError(f"{source}: trained part(s) missing from the checkpoint: {_preview(absent)}")
    _check_shapes(model, placed, source)
    model.load_state_dict(placed, strict=False)
    report.loaded = sorted(placed)
    logger.info("%s: %s", source, report.summary())
    return report


def canonical_key(key: str, decoder_layers_attr: str) -> str:
    """Map OpenFlamingo's duplicate module aliases onto the canonical layer path, peft-wrapped or not.

    `lang_encoder[.base_model.model].gated_cross_attn_layers.N.X` -> `...<layers>.N.gated_cross_attn_layer.X`
    and `...old_decoder_blocks.N.X` -> `...<layers>.N.decoder_layer.X`; other keys are returned unchanged.
    """
    for prefix in ("lang_encoder.base_model.model.", "lang_encoder."):
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix) :]
        for alias, inner in (
            ("gated_cross_attn_layers.", "gated_cross_attn_layer"),
            ("old_decoder_blocks.", "decoder_layer"),
        ):
            if rest.startswith(alias):
                idx, tail = rest[len(alias) :].split(".", 1)
                return f"{prefix}{decoder_layers_attr}.{idx}.{inner}.{tail}"
        return key
    return key


def _input_embedding_key(model: Flamingo) -> str:
    embedding = model.lm.get_input_embeddings()
    for name, module in model.named_modules():
        if module is embedding:
            return f"{name}.weight"
    raise CheckpointError("cannot locate the input embedding of the language model")


def load_lora_release(model: Flamingo, path: str | Path) -> ImportReport:
    """Attach and load a MultiModal-GPT LoRA release file (`mmgpt-lora-v0-release.pt`).

    The file's `tuning_config` (lora_target_modules, lora_r, lora_alpha, lora_dropout) configures peft; every
    `lora_` key must land on an adapter and every adapter must be in the file. Other keys that match the model
    (e.g. a full state dict) are loaded; keys that match nothing are an error.
    """
    from mmgpt.model.lora import LoraSettings, apply_lora

    source = str(path)
    raw = load_torch_file(path)
    state = unwrap_state_dict(raw, source)
    tuning = raw.get("tuning_config") if isinstance(raw, Mapping) else None
    tuning = dict(tuning) if isinstance(tuning, Mapping) else {}
    if tuning and not tuning.get("lora", True):
        raise CheckpointError(f"{source}: tuning_config says lora=False; nothing to import")
    settings = LoraSettings(
        r=int(tuning.get("lora_r", 16)),
        alpha=int(tuning.get("lora_alpha", 16)),
        dropout=float(tuning.get("lora_dropout", 0.0)),
        target_modules=list(tuning.get("lora_target_modules", [])),
    )
    apply_lora(model, settings)
    own = model.state_dict()
    # Base weights inside the peft wrapper live at `...base_layer.weight`; releases may name them either way.
    placed: dict[str, torch.Tensor] = {}
    unplaceable = []
    aliases = []
    for key, value in state.items():
        canonical = canonical_key(key, model.decoder_layers_attr)
        target = canonical if canonical in own else _peft_base_name(canonical, own)
        if target is None:
            unplaceable.append(key)
        elif target in placed:
            if not torch.equal(placed[target], value):
                raise CheckpointError(f"{source}: {key} differs from another key for {target}")
            aliases.append(key)
        else:
            placed[target] = value
    if unplaceable:
        raise CheckpointError(
            f"{source}: {len(unplaceable)} key(s) match no parameter of the model: {_preview(unplaceable)}"
        )
    adapters = [k for k in own if "lora_" in k]
    absent = [k for k in adapters if k not in placed]
    if absent:
        raise CheckpointError(f"{source}: LoRA weights missing from the file: {_preview(absent)}")
    _check_shapes(model, placed, source)
    model.load_state_dict(placed, strict=False)
    report = ImportReport(loaded=sorted(placed), aliases=aliases)
    logger.info("%s: %d LoRA tensors loaded (%d other)", source, len(adapters), len(placed) - len(adapters))
    return report


def _peft_base_name(key: str, own: Mapping[str, Any]) -> str | None:
    if key.startswith("lang_encoder.") and not key.startswith("lang_encoder.base_model.model."):
        wrapped = "lang_encoder.base_model.model." + key[len("lang_encoder.") :]
        if wrapped in own:
            return wrapped
        stem, _, leaf = wrapped.rpartition(".")
        candidate = f"{stem}.base_layer.{leaf}"
        return candidate if candidate in own else None
    stem, _, leaf = key.rpartition(".")
    candidate = f"{stem}.base_layer.{leaf}"
    return candidate if candidate in own else None


def import_openflamingo(
    vision_encoder: str | Path,
    lang_model: str | Path,
    checkpoint: str | Path,
    out: str | Path,
    tokenizer: str | Path | None = None,
    lora: str | Path | None = None,
    dtype: str | torch.dtype | None = None,
    **config_overrides: Any,
) -> Flamingo:
    """Build from HF parts, load `checkpoint` (and optionally a LoRA release), write a model directory to `out`.

    `dtype` ("float32", "bfloat16", ...) is the dtype of the written weights; config_overrides go to
    `FlamingoConfig` (cross_attn_every_n_layers, media_attention, perceiver/xattn sizes).
    """
    from mmgpt.model.builder import build_from_parts

    model = build_from_parts(vision_encoder, lang_model, tokenizer, **config_overrides)
    report = load_openflamingo_checkpoint(model, checkpoint)
    logger.info("OpenFlamingo checkpoint: %s", report.summary())
    if lora is not None:
        load_lora_release(model, lora)
        if model.config.media_attention != "openflamingo_v1":
            logger.warning(
                "the MultiModal-GPT LoRA release was trained with OpenFlamingo v1 media attention; "
                "pass --media-attention openflamingo_v1 to reproduce it"
            )
    if dtype is not None:
        model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
    save_model_dir(model, out)
    return model
