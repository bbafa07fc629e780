"""The shipped training configs parse and validate."""

from pathlib import Path

import pytest

from mmgpt.train.config import load_train_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["paper_mmgpt.yaml", "synthetic_base.yaml", "synthetic_mmgpt.yaml"])
def test_shipped_configs_validate(name):
    config = load_train_config(CONFIGS / name)
    assert config.precision.dtype == "bf16"


def test_paper_recipe_values():
    c = load_train_config(CONFIGS / "paper_mmgpt.yaml")
    assert (c.optim.lr, c.optim.grad_accum, c.data.batch_size, c.optim.epochs) == (1e-5, 16, 1, 1.0)
    assert (c.lora.r, c.lora.alpha, c.lora.preset, c.model.cross_attn_every_n_layers) == (
        16,
        16,
        "release",
        4,
    )
