"""Training configuration: dataclasses that are at once the YAML's keys and the CLI's `dotted.key=value` overrides."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmgpt.errors import ConfigError


@dataclass
class ModelSection:
    """Where the model comes from: one of `path`, HF parts (`vision_encoder` + `lang_model`), or `tiny`."""

    path: str | None = None
    vision_encoder: str | None = None
    lang_model: str | None = None
    tokenizer: str | None = None
    openflamingo_checkpoint: str | None = None
    cross_attn_every_n_layers: int = 4
    media_attention: str = "immediate"
    tiny: dict[str, Any] | None = None
    tokenizer_vocab_size: int = 2000
    # true: a tiny model's own tokenizer gives each digit a token, as LLaMA's does (experiments/README.md)
    tokenizer_split_digits: bool = False


@dataclass
class LoraSection:
    """LoRA settings for the `instruct` stage (see mmgpt.model.lora.LoraSettings)."""

    r: int = 16
    alpha: int = 16
    dropout: float = 0.0
    preset: str = "release"
    target_modules: list[str] = field(default_factory=list)


@dataclass
class DataSection:
    """`config`: a data YAML (instruct stage); `world`: a synthetic world dir (pretrain stage)."""

    config: str | None = None
    world: str | None = None
    batch_size: int = 1
    # samples in each language-only batch (the plain-text batch in pretraining); None: `batch_size`. The paper
    # draws one of each per micro-step; language samples are short (the demo's: half the tokens of a
    # vision-language one), so a larger language batch buys language-task accuracy cheaply (experiments/README.md)
    language_batch_size: int | None = None
    max_length: int | None = None
    # batch vision-language samples of similar length together (less padding: ~40% of the demo's pretraining
    # image-text batches was padding, though feed-forward blocks skip pad tokens anyway, see
    # model/token_packing.py); which samples share a window of 16 batches is still random. Off by default:
    # length follows the task, so grouped batches each hold one kind of sample (measured: worse tuned models)
    group_by_length: bool = False


@dataclass
class OptimSection:
    lr: float = 1e-5
    weight_decay: float = 0.0
    warmup_steps: int = 0
    warmup_ratio: float = 0.03
    max_steps: int | None = None
    epochs: float = 1.0
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    min_lr_ratio: float = 0.0


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class PrecisionSection:
    # "bf16", "fp16" (autocast), "fp32", or "auto": the fastest the training device computes in hardware (bf16 on
    # GPUs and CPUs with bf16 matrix units, fp16 on older GPUs, fp32 on other CPUs; model/precision.py)
    dtype: str = "bf16"
    gradient_checkpointing: bool = False
    low_precision_frozen_weights: bool = True
    # torch.compile the decoder layers and cross-attention blocks: faster steps after a one-time compile (needs a
    # C++ compiler on CPU)
    compile: bool = False
    # torch.compile mode: "default", or "max-autotune-no-cudagraphs" (tuned matrix kernels: faster on CPU, a
    # longer compile on GPU), "max-autotune", "reduce-overhead"
    compile_mode: str = "default"
    # attention kernel of the Hugging Face parts: "auto" = "eager" (matmul + softmax) when training on CPU in
    # bf16/fp16, where PyTorch's fused kernel is slower, otherwise "sdpa"
    attention: str = "auto"
    # run the feed-forward blocks of padded batches on the real tokens only (same loss and gradients; see
    # model/token_packing.py); off under `compile`
    pack_padded_tokens: bool = True


@dataclass
class LoggingSection:
    log_every: int = 1
    save_every: int = 100
    keep_last: int = 2
    progress: bool = True
    tensorboard: bool = False  # mirror metrics to run_dir/tensorboard (needs `pip install tensorboard`)
    wandb: bool = False  # mirror metrics to Weights & Biases (needs `pip install wandb`)
    wandb_project: str = "mmgpt"


@dataclass
class DistributedSection:
    """How several processes share the work (one process ignores this).

    `ddp`: every process holds the whole model and gradients are all-reduced once per optimizer step.
    `fsdp`: parameters, gradients and optimizer state are sharded over the processes (FSDP2), for models that do
    not fit one device (7B-scale); `fsdp_reshard_after_forward: false` trades memory for less communication,
    `fsdp_cpu_offload` keeps the shards in CPU memory. An `accelerate launch` with an FSDP config selects `fsdp`.
    `deepspeed`: DeepSpeed ZeRO (`pip install 'mmgpt[deepspeed]'`) at `zero_stage` 1 (optimizer state
    partitioned), 2 (and gradients) or 3 (and parameters); an `accelerate launch` with a DeepSpeed config
    selects it with that config's stage. Precision stays mmgpt's (fp32 or bf16).
    """

    strategy: str = "ddp"
    fsdp_reshard_after_forward: bool = True
    fsdp_cpu_offload: bool = False
    zero_stage: int = 2


@dataclass
class VisionPretrainSection:
    """Pretrain stage, synthetic world, tiny model only: first train the from-scratch vision tower for `steps`
    steps to parse the world's scenes (see mmgpt.train.vision_pretrain), standing in for CLIP's own pretraining;
    with `freeze` it then stays frozen, as OpenFlamingo keeps CLIP frozen. `steps: 0` (the default) skips it.
    With `subset_counts` the tower also learns how many shapes of each colour and of each kind an image holds,
    with `binding` which colour each kind of shape has and which kind each colour has. `sincos_positions` sets
    the tower's patch position embeddings to a 2D sine-cosine grid before it trains, instead of small random
    values (see `mmgpt.train.vision_pretrain.init_sincos_positions`). `fresh_scenes` adds that many newly drawn
    scenes to the world's training images for the tower alone (rendered in memory, never one of the world's
    images, held-out ones included), as CLIP saw far more images than the instruction data holds."""

    steps: int = 0
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 30
    weight_decay: float = 0.05
    freeze: bool = True
    subset_counts: bool = False
    binding: bool = False
    sincos_positions: bool = False
    fresh_scenes: int = 0


@dataclass
class LanguagePretrainSection:
    """Pretrain stage, tiny model only: first train the from-scratch decoder for `steps` steps on the world's
    plain text alone (see mmgpt.train.language_pretrain), standing in for the text-only pretraining of the LLaMA
    that OpenFlamingo starts from. Runs after the vision tower's pretraining, once per run directory. `steps: 0`
    (the default) skips it."""

    steps: int = 0
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 30
    weight_decay: float = 0.01


@dataclass
class TrainConfig:
    """The whole run. `stage`: `instruct` (freeze + LoRA, joint VL + language: the paper) or `pretrain`."""

    stage: str = "instruct"
    seed: int = 0
    output_dir: str = "runs/train"
    model: ModelSection = field(default_factory=ModelSection)
    lora: LoraSection = field(default_factory=LoraSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    precision: PrecisionSection = field(default_factory=PrecisionSection)
    logging: LoggingSection = field(default_factory=LoggingSection)
    distributed: DistributedSection = field(default_factory=DistributedSection)
    vision_pretrain: VisionPretrainSection = field(default_factory=VisionPretrainSection)
    language_pretrain: LanguagePretrainSection = field(default_factory=LanguagePretrainSection)

    def validate(self) -> TrainConfig:
        """Check ranges and combinations; raises ConfigError naming the dotted key."""
        from mmgpt.model.config import MEDIA_ATTENTION_MODES

        checks = [
            ("stage", self.stage in ("instruct", "pretrain"), "must be instruct or pretrain"),
            ("optim.lr", _finite(self.optim.lr) and self.optim.lr > 0, "must be a finite number > 0"),
            (
                "optim.weight_decay",
                _finite(self.optim.weight_decay) and self.optim.weight_decay >= 0,
                "must be a finite number >= 0",
            ),
            ("optim.grad_accum", self.optim.grad_accum >= 1, "must be >= 1"),
            ("optim.max_grad_norm", self.optim.max_grad_norm >= 0, "must be >= 0"),
            ("optim.warmup_ratio", 0 <= self.optim.warmup_ratio < 1, "must be in [0, 1)"),
            ("optim.warmup_steps", self.optim.warmup_steps >= 0, "must be >= 0"),
            (
                "optim.epochs",
                _finite(self.optim.epochs) and self.optim.epochs > 0,
                "must be a finite number > 0",
            ),
            ("optim.max_steps", self.optim.max_steps is None or self.optim.max_steps >= 1, "must be >= 1"),
            ("optim.min_lr_ratio", 0 <= self.optim.min_lr_ratio <= 1, "must be in [0, 1]"),
            ("data.batch_size", self.data.batch_size >= 1, "must be >= 1"),
            (
                "data.language_batch_size",
                self.data.language_batch_size is None or self.data.language_batch_size >= 1,
                "must be >= 1 (or null for data.batch_size)",
            ),
            # the data config's own floor: a shorter limit leaves no room for the template around a response
            (
                "data.max_length",
                self.data.max_length is None or self.data.max_length >= 16,
                "must be >= 16 (or null for the data config's)",
            ),
            (
                "model.cross_attn_every_n_layers",
                self.model.cross_attn_every_n_layers >= 1,
                "must be >= 1",
            ),
            (
                "model.media_attention",
                self.model.media_attention in MEDIA_ATTENTION_MODES,
                f"must be one of {', '.join(MEDIA_ATTENTION_MODES)}",
            ),
            (
                "precision.dtype",
                self.precision.dtype in ("fp32", "bf16", "fp16", "auto"),
                "must be fp32, bf16, fp16 or auto",
            ),
            ("logging.save_every", self.logging.save_every >= 1, "must be >= 1"),
            ("logging.keep_last", self.logging.keep_last >= 1, "must be >= 1"),
            ("logging.log_every", self.logging.log_every >= 1, "must be >= 1"),
            ("lora.r", self.lora.r >= 1, "must be >= 1"),
            # the adapters' output is scaled by alpha / r: 0 would train nothing, a negative value flips them
            ("lora.alpha", self.lora.alpha > 0, "must be > 0"),
            ("lora.dropout", 0 <= self.lora.dropout < 1, "must be in [0, 1)"),
            (
                "precision.compile_mode",
                self.precision.compile_mode in COMPILE_MODES,
                f"must be one of {', '.join(COMPILE_MODES)}",
            ),
            (
                "precision.attention",
                self.precision.attention in ("auto", "eager", "sdpa"),
                "must be auto, eager or sdpa",
            ),
            (
                "distributed.strategy",
                self.distributed.strategy in ("ddp", "fsdp", "deepspeed"),
                "must be ddp, fsdp or deepspeed",
            ),
            ("distributed.zero_stage", self.distributed.zero_stage in (1, 2, 3), "must be 1, 2 or 3"),
            ("vision_pretrain.steps", self.vision_pretrain.steps >= 0, "must be >= 0"),
            ("vision_pretrain.batch_size", self.vision_pretrain.batch_size >= 1, "must be >= 1"),
            (
                "vision_pretrain.lr",
                _finite(self.vision_pretrain.lr) and self.vision_pretrain.lr > 0,
                "must be > 0",
            ),
            ("vision_pretrain.warmup_steps", self.vision_pretrain.warmup_steps >= 0, "must be >= 0"),
            ("vision_pretrain.fresh_scenes", self.vision_pretrain.fresh_scenes >= 0, "must be >= 0"),
            (
                "vision_pretrain.weight_decay",
                _finite(self.vision_pretrain.weight_decay) and self.vision_pretrain.weight_decay >= 0,
                "must be a finite number >= 0",
            ),
            ("language_pretrain.steps", self.language_pretrain.steps >= 0, "must be >= 0"),
            ("language_pretrain.batch_size", self.language_pretrain.batch_size >= 1, "must be >= 1"),
            (
                "language_pretrain.lr",
                _finite(self.language_pretrain.lr) and self.language_pretrain.lr > 0,
                "must be > 0",
            ),
            ("language_pretrain.warmup_steps", self.language_pretrain.warmup_steps >= 0, "must be >= 0"),
            (
                "language_pretrain.weight_decay",
                _finite(self.language_pretrain.weight_decay) and self.language_pretrain.weight_decay >= 0,
                "must be a finite number >= 0",
            ),
            (
                "precision.dtype",
                not (self.distributed.strategy == "deepspeed" and self.precision.dtype == "fp16"),
                "fp16 is not supported with distributed.strategy=deepspeed; use bf16 or fp32",
            ),
        ]
        for key, ok, message in checks:
            if not ok:
                raise ConfigError(f"{key} {message}")
        sources = [
            self.model.path is not None,
            self.model.lang_model is not None,
            self.model.tiny is not None,
        ]
        if sum(sources) != 1:
            raise ConfigError(
                "model: set exactly one of model.path, model.lang_model (+ vision_encoder), model.tiny"
            )
        if self.model.tiny is not None:
            from mmgpt.model.builder import check_tiny_options

            try:
                check_tiny_options(self.model.tiny)
            except ValueError as err:
                raise ConfigError(f"model.tiny: {err}") from err
        if self.model.lang_model and not self.model.vision_encoder:
            raise ConfigError("model.vision_encoder is required with model.lang_model")
        if self.stage == "instruct" and not self.data.config:
            raise ConfigError("data.config is required for the instruct stage")
        if self.stage == "pretrain" and not self.data.world:
            raise ConfigError("data.world is required for the pretrain stage")
        if self.vision_pretrain.steps and (self.stage != "pretrain" or self.model.tiny is None):
            raise ConfigError(
                "vision_pretrain.steps needs stage: pretrain and a model.tiny built from scratch "
                "(it trains a new vision tower on the synthetic world's scene labels)"
            )
        if self.vision_pretrain.steps and self.vision_pretrain.sincos_positions:
            from mmgpt.model.builder import tiny_defaults

            width = {**tiny_defaults(), **(self.model.tiny or {})}["vision_width"]
            if width % 4:
                raise ConfigError(
                    f"vision_pretrain.sincos_positions needs model.tiny.vision_width divisible by 4 (two axes, "
                    f"sines and cosines), not {width}"
                )
        if self.language_pretrain.steps and (self.stage != "pretrain" or self.model.tiny is None):
            raise ConfigError(
                "language_pretrain.steps needs stage: pretrain and a model.tiny built from scratch "
                "(it trains a new decoder on the synthetic world's plain text)"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


# Settings a resumed run may change: where and how often it logs and saves, how its processes share the work (the
# strategy and process count are checked against the checkpoint itself), and its length (a run given more steps
# continues on the learning-rate schedule of its new length).
RESUMABLE_CHANGES = ("output_dir", "logging.", "distributed.", "optim.max_steps", "optim.epochs")


def changed_settings(run_dir: str | Path, config: TrainConfig) -> list[str]:
    """The settings in which `config` differs from the run `run_dir/config.yaml` records, as "key: old -> new"
    lines; empty when the run has no readable config.yaml or differs only in RESUMABLE_CHANGES.

    A checkpoint continues the run that wrote it: resumed with another learning rate, data or model, the
    restored optimizer, schedule and data position would belong to a different run. Keys only one side has
    (from another mmgpt version) are not compared; `precision.dtype: auto` matches what it resolves to here.
    """
    from mmgpt.model.precision import default_device, resolve_precision

    saved_path = Path(run_dir) / "config.yaml"
    try:
        saved = yaml.safe_load(saved_path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    if not isinstance(saved, dict):
        return []
    now = config.to_dict()
    now["precision"]["dtype"] = resolve_precision(now["precision"]["dtype"], default_device())
    old_flat, new_flat = _flatten(saved), _flatten(now)
    return [
        f"{key}: {old_flat[key]!r} -> {new_flat[key]!r}"
        for key in new_flat
        if key in old_flat
        and not _same_setting(old_flat[key], new_flat[key])
        and not any(key == p or (p.endswith(".") and key.startswith(p)) for p in RESUMABLE_CHANGES)
    ]


def _same_setting(old: Any, new: Any) -> bool:
    """Equal values, or two spellings of one existing path ("runs/demo/world" and its absolute form)."""
    if old == new:
        return True
    if isinstance(old, str) and isinstance(new, str) and old and new:
        first, second = Path(old).expanduser(), Path(new).expanduser()
        return first.exists() and second.exists() and first.resolve() == second.resolve()
    return False


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as {"a.b": value}; tuples as lists, so that YAML's lists compare equal to them."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def _finite(value: float) -> bool:
    """True for a number that is neither NaN nor infinite (YAML reads `.inf` and `.nan` as floats)."""
    return math.isfinite(value)


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass `cls` from a mapping, recursing into nested sections and checking types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{where}.{key}" if where else key
        if key not in names:
            raise ConfigError(f"unknown key {dotted}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, dotted)
        else:
            kwargs[key] = _coerce(value, hint, dotted)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: invalid value {value!r}")
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if origin is list and isinstance(value, list):
        return list(value)
    if origin is dict and isinstance(value, dict):
        return dict(value)
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


class _Whole(dict):
    """A mapping an override gives whole ("model.tiny={hidden_size: 64, ...}"): it replaces the key's value
    instead of merging into it."""


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`["optim.lr=1e-4", "data.config=x.yaml"]` -> nested dict (values parsed as YAML scalars).

    A dotted key merges into the YAML's mapping ("model.tiny.num_latents=64" keeps the other `tiny` keys); a
    mapping given whole ("model.tiny={...}") replaces it.
    """
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form dotted.key=value")
        key, raw = item.split("=", 1)
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        value = yaml.safe_load(raw) if raw != "" else None
        node[parts[-1]] = _Whole(value) if isinstance(value, dict) else value
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, _Whole):
            out[key] = dict(value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_train_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a training YAML (or start from defaults), apply overrides, validate.

    Relative paths in the YAML stay relative to the working directory; `${CONFIG_DIR}` expands to the YAML's folder.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text().replace("${CONFIG_DIR}", str(path.parent.resolve()))
            data = yaml.safe_load(text) or {}
        except OSError as err:
            raise ConfigError(f"cannot read {path}: {err.strerror or err}") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML: {err}") from err
    data = _merge(data, parse_overrides(overrides or []))
    return _build(TrainConfig, data, "").validate()
