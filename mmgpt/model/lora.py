"""LoRA adapters on the language decoder through peft, as MultiModal-GPT applied them.

peft wraps `model.lang_encoder`, so adapter keys come out exactly as in the released
`mmgpt-lora-v0-release.pt` (`lang_encoder.base_model.model.<layers>.N.gated_cross_attn_layer.attn.to_q.lora_A...`).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from peft import LoraConfig, PeftModel, get_peft_model

from mmgpt.errors import ConfigError
from mmgpt.model.flamingo import Flamingo

logger = logging.getLogger(__name__)

# The release's tuning_config: LLaMA attention projections plus the gated cross-attention and its feed-forward.
RELEASE_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "to_q", "to_kv", "to_out", "ff.1", "ff.3")
# The paper's text also names the decoder feed-forward.
DECODER_FFN_TARGETS = ("gate_proj", "up_proj", "down_proj")
PRESETS = {"release": RELEASE_TARGETS, "release+ffn": RELEASE_TARGETS + DECODER_FFN_TARGETS}


@dataclass
class LoraSettings:
    """LoRA hyper-parameters. `preset` picks target modules unless `target_modules` is given explicitly."""

    r: int = 16
    alpha: int = 16
    dropout: float = 0.0
    preset: str = "release"
    target_modules: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ConfigError(f"lora.r must be >= 1, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if self.preset not in PRESETS:
            raise ConfigError(f"lora.preset must be one of {sorted(PRESETS)}, got {self.preset!r}")

    def targets(self) -> list[str]:
        """The module-name suffixes LoRA is applied to."""
        return list(self.target_modules) or list(PRESETS[self.preset])

    def peft_config(self) -> LoraConfig:
        """The equivalent peft `LoraConfig`."""
        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.targets(),
            bias="none",
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence the FutureWarning peft triggers by reading transformers' deprecated `is_gradient_checkpointing`
    alias: it is about peft's code, not the user's, and there is nothing to act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


def apply_lora(model: Flamingo, settings: LoraSettings | None = None) -> Flamingo:
    """Freeze the whole model and add trainable LoRA adapters to the language decoder (in place; returns model).

    Logs the trainable-parameter count. Raises ConfigError when no target module matches.
    """
    settings = settings or LoraSettings()
    if isinstance(model.lang_encoder, PeftModel):
        raise ConfigError("the model already has LoRA adapters; merge them first (mmgpt merge)")
    model.requires_grad_(False)
    try:
        with quiet_peft():
            model.lang_encoder = get_peft_model(model.lang_encoder, settings.peft_config())
    except ValueError as err:
        raise ConfigError(
            f"LoRA targets {settings.targets()} match no module of the language model: {err}"
        ) from err
    model.config.lora = settings.to_dict()
    trainable = model.num_parameters(trainable_only=True)
    logger.info(
        "LoRA r=%d alpha=%d on %s: %s trainable of %s parameters",
        settings.r,
        settings.alpha,
        ",".join(settings.targets()),
        f"{trainable:,}",
        f"{model.num_parameters():,}",
    )
    return model


def has_lora(model: Flamingo) -> bool:
    """True when LoRA adapters are attached (unmerged)."""
    return isinstance(model.lang_encoder, PeftModel)


def merge_lora(model: Flamingo) -> Flamingo:
    """Fold the adapters into the base weights and remove them (in place; returns model)."""
    if not has_lora(model):
        return model
    model.lang_encoder = model.lang_encoder.merge_and_unload()
    model.config.lora = None
    return model
