"""Data configuration: which datasets, where, how many samples; YAML with validation naming the bad key.

```yaml
data_root: .          # relative ann_path/image_root resolve against this; itself relative to the YAML's folder
max_length: 512
strict: false
seed: 0
image_size: 224       # the training code overrides it from the model
vision_language:
  - {type: llava, ann_path: llava/detail_23k.json, image_root: coco/train2017, sample: null, name: llava_detail}
language:
  - {type: dolly, ann_path: dolly/databricks-dolly-15k.jsonl}
```
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from mmgpt.errors import ConfigError


@dataclass
class DatasetSpec:
    """One dataset of the mixture."""

    type: str
    ann_path: str
    image_root: str | None = None
    sample: int | None = None
    name: str | None = None
    weight: float = 1.0
    split: str | None = None
    question_path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or self.type


@dataclass
class DataConfig:
    """The whole data section: the two streams of the paper's joint scheme plus shared settings."""

    vision_language: list[DatasetSpec] = field(default_factory=list)
    language: list[DatasetSpec] = field(default_factory=list)
    data_root: str = "."
    max_length: int = 512
    strict: bool = False
    seed: int = 0
    image_size: int = 224
    base_dir: str = "."  # where relative data_root resolves; set by load_data_config, not a YAML key

    def resolve(self, path: str | None) -> Path | None:
        """Absolute path of a dataset path (relative ones resolve against data_root)."""
        if path is None:
            return None
        p = Path(path).expanduser()
        if p.is_absolute():
            return p
        root = Path(self.data_root).expanduser()
        if not root.is_absolute():
            root = Path(self.base_dir) / root
        return root / p

    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: str | Path = ".", where: str = "data") -> DataConfig:
        """Validate and build; unknown keys and bad values raise ConfigError naming `where.key`."""
        from mmgpt.data.sources import LANGUAGE_TYPES, READERS

        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping")
        known = {f.name for f in fields(cls)} - {"base_dir"}
        for key in data:
            if key not in known:
                raise ConfigError(f"unknown key {where}.{key}")
        streams = {}
        for stream in ("vision_language", "language"):
            items = data.get(stream) or []
            if not isinstance(items, list):
                raise ConfigError(f"{where}.{stream} must be a list of datasets")
            specs = []
            for i, item in enumerate(items):
                key = f"{where}.{stream}[{i}]"
                specs.append(_spec(item, key))
                if specs[-1].type not in READERS:
                    raise ConfigError(
                        f"{key}.type: unknown dataset type {specs[-1].type!r} (known: {', '.join(sorted(READERS))})"
                    )
                _check_type_keys(specs[-1], key)
                if stream == "vision_language" and specs[-1].type in LANGUAGE_TYPES:
                    raise ConfigError(
                        f"{key}.type: {specs[-1].type} is language-only; list it under {where}.language"
                    )
            streams[stream] = specs
        config = cls(**streams, **{k: v for k, v in data.items() if k not in streams}, base_dir=str(base_dir))
        if not isinstance(config.max_length, int) or config.max_length < 16:
            raise ConfigError(f"{where}.max_length must be an integer >= 16, got {config.max_length!r}")
        if not isinstance(config.seed, int):
            raise ConfigError(f"{where}.seed must be an integer")
        if not isinstance(config.strict, bool):
            raise ConfigError(f"{where}.strict must be true or false")
        if not isinstance(config.image_size, int) or config.image_size < 8:
            raise ConfigError(f"{where}.image_size must be an integer >= 8")
        return config


def _spec(item: Any, key: str) -> DatasetSpec:
    if not isinstance(item, dict):
        raise ConfigError(f"{key}: expected a mapping with at least type and ann_path")
    known = {f.name for f in fields(DatasetSpec)}
    for k in item:
        if k not in known:
            raise ConfigError(f"unknown key {key}.{k}")
    for required in ("type", "ann_path"):
        if not isinstance(item.get(required), str) or not item[required]:
            raise ConfigError(f"{key}.{required} is required (a string)")
    spec = DatasetSpec(**item)
    # bool is an int in Python: `sample: true` would otherwise mean one sample
    bad_sample = isinstance(spec.sample, bool) or not isinstance(spec.sample, int) or spec.sample < 1
    if spec.sample is not None and bad_sample:
        raise ConfigError(f"{key}.sample must be a positive integer or null, got {spec.sample!r}")
    if not isinstance(spec.weight, (int, float)) or spec.weight <= 0:
        raise ConfigError(f"{key}.weight must be > 0, got {spec.weight!r}")
    if not isinstance(spec.options, dict):
        raise ConfigError(f"{key}.options must be a mapping")
    return spec


def _check_type_keys(spec: DatasetSpec, key: str) -> None:
    """Refuse keys and options the spec's reader does not read, and a vqa spec without its questions file."""
    from mmgpt.data.sources import READER_OPTIONS, SPLIT_TYPES

    known = READER_OPTIONS.get(spec.type, set()) | {"seed"}
    for option in spec.options:
        if option not in known:
            raise ConfigError(
                f"unknown key {key}.options.{option} for type {spec.type} (known: {', '.join(sorted(known))})"
            )
    if spec.split is not None and spec.type not in SPLIT_TYPES:
        raise ConfigError(
            f"{key}.split: type {spec.type} has no splits (only {', '.join(sorted(SPLIT_TYPES))})"
        )
    if spec.type == "vqa" and not (spec.question_path or spec.options.get("question_path")):
        raise ConfigError(f"{key}.question_path is required for type vqa (the questions file)")


def load_data_config(path: str | Path) -> DataConfig:
    """Read a data YAML; relative `data_root` resolves against the YAML's folder."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ConfigError(f"cannot read data config {path}: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from err
    return DataConfig.from_dict(data, base_dir=path.parent.resolve(), where=path.name)
