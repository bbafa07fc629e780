"""What the training benches share: a model set up the way `mmgpt train` tunes one, and worker subprocesses run
in alternation so that each variant's peak memory is its own and a change in the machine's speed spreads over all.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def prepare_like_tuning(model: Any, r: int = 16, alpha: int = 16) -> Any:
    """Add LoRA (the release targets, rank `r`) to a Flamingo `model` and apply the precision settings the
    instruct stage of `mmgpt train` applies under bf16 (`mmgpt.train.loop.apply_precision_settings`). Returns
    the model, in training mode."""
    from mmgpt.model.lora import LoraSettings, apply_lora
    from mmgpt.train.config import TrainConfig
    from mmgpt.train.loop import apply_precision_settings

    apply_lora(model, LoraSettings(r=r, alpha=alpha))
    config = TrainConfig(stage="instruct")
    config.precision.dtype = "bf16"
    apply_precision_settings(model, config)
    return model.train()


def run_alternating(
    script: str | Path, variants: Sequence[str], rounds: int, worker_args: Sequence[str]
) -> dict[str, list[dict]]:
    """Run `python script --worker V *worker_args` for each variant V in turn, `rounds` times over. Each worker
    prints its result as a JSON object on its last line of output. Returns {variant: [result of each round]}.
    Raises subprocess.CalledProcessError (with the worker's stderr) if a worker fails."""
    results: dict[str, list[dict]] = {variant: [] for variant in variants}
    for _ in range(rounds):
        for variant in variants:
            command = [sys.executable, str(script), "--worker", variant, *worker_args]
            run = subprocess.run(command, capture_output=True, text=True, check=True)
            results[variant].append(json.loads(run.stdout.strip().splitlines()[-1]))
    return results
