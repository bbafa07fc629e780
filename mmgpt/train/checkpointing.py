"""Training checkpoints: written atomically (temporary directory, then rename), the last K kept.

A checkpoint holds what resuming needs to continue exactly: trainable weights (safetensors), optimizer,
scheduler and grad-scaler states, RNG states, the data position and the step (`state.pt`, tensors and plain
containers only, so it loads with `weights_only=True`).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from mmgpt.errors import CheckpointError

logger = logging.getLogger(__name__)
PREFIX = "step-"


def staging_dir(run_dir: Path, step: int) -> Path:
    """The temporary directory the checkpoint of `step` is assembled in before its rename: the same path in
    every process, so that processes writing their own parts (DeepSpeed's partitions) meet there."""
    return run_dir / "checkpoints" / f".tmp-{PREFIX}{step:06d}"


def save_checkpoint(
    run_dir: Path,
    step: int,
    weights: dict[str, torch.Tensor],
    extra: dict[str, Any],
    keep_last: int,
    staged: bool = False,
) -> Path:
    """Write `run_dir/checkpoints/step-NNNNNN` atomically and prune older ones; returns its path.

    `weights`: the full trainable tensors by parameter name (`sharding.full_trainable_state`); `extra`: the
    optimizer, scheduler, scaler and data states. `staged`: other files of this checkpoint are already in
    `staging_dir(run_dir, step)` (otherwise it is created empty).
    """
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:06d}"
    tmp = staging_dir(run_dir, step)
    if not staged:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    save_file(weights, str(tmp / "trainable.safetensors"))
    state = {
        **extra,
        "step": step,
        "rng": {"torch": torch.get_rng_state(), "python": random.getstate()},
    }
    torch.save(state, tmp / "state.pt")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary leftovers of a killed run are ignored)."""
    root = run_dir / "checkpoints"
    if not root.exists():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / "state.pt").exists())


def load_checkpoint(path: Path, model: torch.nn.Module, weights: bool = True) -> dict[str, Any]:
    """Load trainable weights into `model` (sharded or not; skipped with `weights=False`, when an engine restores
    its own) and return the rest of the state (RNG states are restored here)."""
    from mmgpt.train.sharding import load_full_trainable_state

    try:
        tensors = load_file(str(path / "trainable.safetensors"))
        state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    own = dict(model.named_parameters())
    missing = [n for n, p in own.items() if p.requires_grad and n not in tensors]
    unknown = [n for n in tensors if n not in own]
    if missing or unknown:
        raise CheckpointError(
            f"{path}: checkpoint does not match the model (missing {missing[:5]}, unknown {unknown[:5]})"
        )
    if weights:
        load_full_trainable_state(model, tensors)
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(_as_tuple(state["rng"]["python"]))
    return state


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
