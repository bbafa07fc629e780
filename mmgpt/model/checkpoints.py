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
import os
import pickle
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerBase
from transformers.initialization import no_init_weights

from mmgpt.errors import CheckpointError, ConfigError
from mmgpt.model.config import FlamingoConfig
from mmgpt.model.flamingo import Flamingo

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
ADAPTER_DIR = "adapter"
# Present while `save_model_dir` writes a directory; a directory holding it is incomplete.
WRITING_MARKER = ".mmgpt-incomplete"


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
    _start_writing(directory)
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
        # The embeddings are in the base weights already; peft would otherwise copy the input and output
        # embeddings into the adapter whenever the vocabulary was resized (always, after OpenFlamingo's added
        # tokens): 0.5 GB per copy at LLaMA-7B's size in fp32.
        model.lang_encoder.save_pretrained(str(adapter_dir), state_dict=lm_state, save_embedding_layers=False)
        _sort_target_modules(adapter_dir / "adapter_config.json")
    elif adapter_dir.exists():
        import shutil

        shutil.rmtree(adapter_dir)
    # config.json last, atomically: a directory is only loadable once every other file is in place
    partial = directory / "config.json.partial"
    model.config.save(partial)
    os.replace(partial, directory / "config.json")
    (directory / WRITING_MARKER).unlink()
    return directory


def _start_writing(directory: Path) -> None:
    """Create `directory` or check it may be overwritten, and mark it as being written.

    Only a new or empty directory or an earlier model directory is written into: the stale-file clean-up below
    would otherwise delete another model's weights (say, the LLaMA directory passed as `--out` by mistake).
    `config.json` is removed first, so a write that is interrupted leaves a directory `load_model` refuses.
    """
    check_output_dir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / WRITING_MARKER).write_text("a model is being written here; it is incomplete until removed\n")
    (directory / "config.json").unlink(missing_ok=True)


def check_output_dir(directory: str | Path) -> None:
    """Raise CheckpointError unless `directory` is new, empty or an earlier model directory (which a write
    replaces): writing into any other directory could overwrite or delete its files."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"{directory} is a file; the output must be a directory")
    if directory.is_dir() and any(directory.iterdir()) and not _is_model_dir(directory):
        raise CheckpointError(
            f"{directory} is not empty and is not an mmgpt model directory; refusing to write into it "
            "(its files could be overwritten or deleted): choose a new or empty directory"
        )


def _is_model_dir(directory: Path) -> bool:
    """True when `directory` holds an mmgpt model (its config.json) or the remains of an interrupted write."""
    if (directory / WRITING_MARKER).exists():
        return True
    try:
        data = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "mmgpt_config_version" in data


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
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise CheckpointError(f"{index}: not a readable safetensors index ({err!r})") from err
        files = [directory / n for n in names]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            raise CheckpointError(f"{index} lists weight files that are missing: {', '.join(absent)}")
        return files
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
    a torch dtype, "float32"/"bfloat16"/"float16" (or fp32/bf16/fp16), or "auto" (bf16 where the hardware
    multiplies it natively, else fp32 on CPU: `mmgpt.model.precision.inference_dtype`); None loads in float32
    whatever dtype the files hold. Missing or unexpected weights, a tokenizer that does not match config.json and
    a directory whose writing was interrupted are errors naming them.
    """
    from mmgpt.model.builder import build_model
    from mmgpt.model.image_processing import FlamingoImageProcessor

    directory = Path(directory)
    config = _read_model_config(directory)
    lora_settings = config.lora
    config.lora = None
    dtype = resolve_load_dtype(dtype)
    # Skip random initialisation (every weight is loaded below) and build directly in the target dtype, so a
    # 9B model never exists in fp32 in memory.
    with no_init_weights(), _default_dtype(dtype):
        model = build_model(config)
    # Skipping initialisation also skips tying: OPT's and MPT's lm_head share the input embedding, stored once.
    model.lm.tie_weights()
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
    model.tokenizer = _load_saved_tokenizer(directory, config) if _has_tokenizer(directory) else None
    if model.tokenizer is not None:
        model.tokenizer.padding_side = "left"
    model.image_processor = FlamingoImageProcessor(config.image_size)
    model.to(device=device or "cpu", dtype=dtype)
    return model.eval()


LOAD_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_load_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """The torch dtype `load_model` builds in: None stays None (float32, torch's default), a floating torch dtype
    is kept, a name of `LOAD_DTYPES` or "auto" (`mmgpt.model.precision.inference_dtype`) is looked up. Anything
    else is a ConfigError naming the accepted values."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        name = dtype
        if dtype == "auto":
            from mmgpt.model.precision import inference_dtype

            name = inference_dtype("auto")
        if name in LOAD_DTYPES:
            return LOAD_DTYPES[name]
    elif isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    raise ConfigError(
        f"dtype must be one of {', '.join(LOAD_DTYPES)}, auto or a floating torch dtype, got {dtype!r}"
    )


def _read_model_config(directory: Path) -> FlamingoConfig:
    """The `FlamingoConfig` of a model directory; CheckpointError when the directory is missing, incomplete or
    its config.json is not an mmgpt config."""
    from mmgpt.model.builder import directory_problem, read_json

    problem = directory_problem(directory, "model directory")
    if problem:
        raise CheckpointError(f"{directory} {problem}")
    if (directory / WRITING_MARKER).exists():
        raise CheckpointError(
            f"{directory} is incomplete: writing it was interrupted ({WRITING_MARKER} is still there); write it again"
        )
    path = directory / "config.json"
    if not path.exists():
        raise CheckpointError(f"{directory}: not an mmgpt model directory (no config.json)")
    data = read_json(path)
    if isinstance(data, dict) and "model_type" in data and "mmgpt_config_version" not in data:
        raise CheckpointError(
            f"{directory} is a Hugging Face {data['model_type']} directory, not an mmgpt model directory "
            "(build one with mmgpt import-openflamingo)"
        )
    try:
        return FlamingoConfig.load(path)
    except (TypeError, ValueError, AttributeError) as err:
        # a JSON list, a missing field, a Hugging Face config.json: FlamingoConfig(**data) fails its own way
        raise CheckpointError(f"{path}: not an mmgpt model config: {err}") from err


def _load_saved_tokenizer(directory: Path, config: FlamingoConfig) -> PreTrainedTokenizerBase:
    """The model directory's tokenizer, checked against the token ids config.json was written with: a tokenizer
    whose files are incomplete (say, without tokenizer_config.json) loads without its pad token or gives the
    image token another id, and would make the model read text wrongly."""
    from transformers import AutoTokenizer

    from mmgpt.model.tokenizer import ENDOFCHUNK_TOKEN, IMAGE_TOKEN

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except Exception as err:  # transformers raises many types; the message is what matters
        raise CheckpointError(f"{directory}: cannot load the tokenizer: {err}") from err
    found = {
        IMAGE_TOKEN: (tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), config.media_token_id),
        ENDOFCHUNK_TOKEN: (tokenizer.convert_tokens_to_ids(ENDOFCHUNK_TOKEN), config.eoc_token_id),
        "pad token": (tokenizer.pad_token_id, config.pad_token_id),
        "eos token": (tokenizer.eos_token_id, config.eos_token_id),
    }
    wrong = [
        f"{name}: tokenizer {got} vs config {want}" for name, (got, want) in found.items() if got != want
    ]
    if wrong:
        raise CheckpointError(
            f"{directory}: the tokenizer files do not match config.json ({'; '.join(wrong)}); "
            "are tokenizer.json and tokenizer_config.json both from this model?"
        )
    return tokenizer


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
    # peft looks a name up on the Hugging Face Hub when the local files are missing: check them here
    if not (adapter_dir / "adapter_config.json").is_file():
        raise CheckpointError(f"{adapter_dir}: adapter_config.json is missing")
    if not any((adapter_dir / n).is_file() for n in ("adapter_model.safetensors", "adapter_model.bin")):
        raise CheckpointError(f"{adapter_dir}: adapter_model.safetensors is missing")
    from mmgpt.model.lora import quiet_peft

    try:
        with quiet_peft():
            model.lang_encoder = PeftModel.from_pretrained(
                model.lang_encoder, str(adapter_dir), is_trainable=False
            )
    except Exception as err:  # peft raises many types; the message is what matters
        raise CheckpointError(f"cannot load the LoRA adapters in {adapter_dir}: {err}") from err
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
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; expected a checkpoint file (.pt)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: not a readable torch checkpoint (the file is empty)")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as first:
        try:
            return torch.load(
                str(path), map_location="cpu", weights_only=False, pickle_module=_TolerantPickleModule
            )
        except pickle.UnpicklingError as err:
            # torch's own message is a page of advice; the class it refused is what the user needs
            refused = re.search(r"GLOBAL (\S+)", str(first))
            what = refused.group(1) if refused else str(err).removeprefix("refusing to unpickle ")
            raise CheckpointError(
                f"{path}: holds a pickled {what} object, not only tensors and config dicts; refusing to load it "
                "(unpickling arbitrary objects can run code)"
            ) from err
        except Exception as err:
            raise CheckpointError(
                f"{path}: not a readable torch checkpoint (corrupt or another format): {err!r}"
            ) from err
    except Exception as err:
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint (truncated or corrupt?): {err}"
        ) from err


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
    in_file = [alias_of.get(k, k) for k in state]
    if unplaceable:
        raise CheckpointError(
            f"{source}: {len(unplaceable)} key(s) match no parameter of the model: {_preview(unplaceable)}"
            + _cross_attn_hint(model, in_file)
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
        raise CheckpointError(
            f"{source}: trained part(s) missing from the checkpoint: {_preview(absent)}"
            + _cross_attn_hint(model, in_file)
        )
    _check_embedding_rows(model, placed[embed_key], embed_key, source)
    _check_shapes(model, placed, source)
    model.load_state_dict(placed, strict=False)
    report.loaded = sorted(placed)
    logger.info("%s: %s", source, report.summary())
    return report


_XATTN_LAYER = re.compile(r"\.(\d+)\.gated_cross_attn_layer\.")


def _cross_attn_layers(keys: Iterable[str]) -> list[int]:
    """Indices of the decoder layers that `keys` (canonical names) give a gated cross-attention block."""
    return sorted({int(m.group(1)) for k in keys if (m := _XATTN_LAYER.search(k))})


def _cross_attn_hint(model: Flamingo, keys: Iterable[str]) -> str:
    """A sentence to append to an import error when the file's cross-attention blocks sit at other decoder layers
    than the model's (the usual cause: a wrong --cross-attn-every-n-layers); empty otherwise."""
    in_file = _cross_attn_layers(keys)
    in_model = _cross_attn_layers(model.state_dict())
    if not in_file or in_file == in_model:
        return ""
    n_layers = len(model.flamingo_layers())
    every = in_file[0] + 1
    spacing = (
        f" (every {every}: --cross-attn-every-n-layers {every})"
        if in_file == [i for i in range(n_layers) if (i + 1) % every == 0]
        else ""
    )
    return (
        f". The file has cross-attention at decoder layers {_preview([str(i) for i in in_file])}{spacing}; "
        f"the model at {_preview([str(i) for i in in_model])} "
        f"(cross_attn_every_n_layers={model.config.cross_attn_every_n_layers})"
    )


def _check_embedding_rows(model: Flamingo, weight: torch.Tensor, key: str, source: str) -> None:
    """Name the tokenizer as the likely cause when the file's input embedding has another number of rows than
    the model's: the rows are the tokenizer's tokens plus the ones OpenFlamingo added."""
    rows = model.lm.get_input_embeddings().weight.shape[0]
    if weight.dim() != 2 or weight.shape[0] == rows:
        return
    raise CheckpointError(
        f"{source}: {key} has {weight.shape[0]} rows but the tokenizer, with <|endofchunk|>, <image> and a pad "
        f"token added as OpenFlamingo adds them, has {rows} tokens: use the tokenizer the checkpoint was trained "
        "with (--tokenizer); a base tokenizer that already defines a pad token gets no <PAD> and one row fewer"
    )


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
            + _cross_attn_hint(model, [canonical_key(k, model.decoder_layers_attr) for k in state])
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

    check_output_dir(out)  # before minutes of loading, not after
    dtype = resolve_load_dtype(dtype)
    model = build_from_parts(vision_encoder, lang_model, tokenizer, dtype=dtype, **config_overrides)
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
        model.to(dtype)  # the LoRA adapters peft keeps in float32
    save_model_dir(model, out)
    return model
