"""`FlamingoConfig`: everything needed to rebuild a Flamingo model, serialised as the model directory's config.json."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from mmgpt.errors import ConfigError

MEDIA_ATTENTION_MODES = ("immediate", "openflamingo_v1")


@dataclass
class FlamingoConfig:
    """Architecture of an OpenFlamingo-style model.

    `vision_config` / `text_config` are the Hugging Face config dicts of the CLIP vision tower and the causal LM
    (`model_type` included), so the backbones are rebuilt with transformers. Perceiver and cross-attention sizes
    default to OpenFlamingo's (6 layers, 8 heads x 64, 64 latents, ff x4). `media_attention` selects how text
    tokens are matched to images: `immediate` (OpenFlamingo 2.x) or `openflamingo_v1` (the behaviour the released
    MultiModal-GPT LoRA was trained under).
    """

    vision_config: dict[str, Any]
    text_config: dict[str, Any]
    media_token_id: int
    eoc_token_id: int
    eos_token_id: int
    pad_token_id: int
    cross_attn_every_n_layers: int = 4
    media_attention: str = "immediate"
    perceiver_depth: int = 6
    perceiver_heads: int = 8
    perceiver_dim_head: int = 64
    perceiver_num_latents: int = 64
    perceiver_ff_mult: int = 4
    xattn_heads: int = 8
    xattn_dim_head: int = 64
    xattn_ff_mult: int = 4
    gate_init: float = 0.0
    decoder_layers_attr: str | None = None
    lora: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.media_attention not in MEDIA_ATTENTION_MODES:
            raise ConfigError(
                f"media_attention must be one of {MEDIA_ATTENTION_MODES}, got {self.media_attention!r}"
            )
        if self.cross_attn_every_n_layers < 1:
            raise ConfigError(f"cross_attn_every_n_layers must be >= 1, got {self.cross_attn_every_n_layers}")
        for name in (
            "perceiver_heads",
            "perceiver_dim_head",
            "perceiver_num_latents",
            "xattn_heads",
            "xattn_dim_head",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def vision_width(self) -> int:
        """Width of the vision tower's patch tokens (= perceiver dim)."""
        return int(self.vision_config["hidden_size"])

    @property
    def image_size(self) -> int:
        """Input resolution of the vision tower."""
        return int(self.vision_config.get("image_size", 224))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (the inverse of `from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlamingoConfig:
        """Build a config from a dict; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown FlamingoConfig key(s): {', '.join(unknown)}")
        return cls(**data)

    def save(self, path: str | Path) -> None:
        """Write the config as indented JSON to `path`."""
        Path(path).write_text(json.dumps({"mmgpt_config_version": 1, **self.to_dict()}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FlamingoConfig:
        """Read a config written by `save`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"cannot read model config {path}: {err}") from err
        data.pop("mmgpt_config_version", None)
        return cls.from_dict(data)
