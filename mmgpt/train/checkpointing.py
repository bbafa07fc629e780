"""Training checkpoints: written atomically (temporary directory, then rename), the last K kept.

A checkpoint holds what resuming needs to continue exactly: trainable weights (safetensors), optimizer,
scheduler and grad-scaler states, RNG states, the data position and the step (`state.pt`, tensors and plain
containers only, so it loads with `weights_only=True`). A multi-process run stores the RNG states and data
position of every process, in rank order.

A checkpoint directory is only ever visible complete: it is assembled under a temporary name and renamed, and one
that is deleted (pruned, or replaced) is first renamed out of the `step-` namespace, so a kill at any moment never
leaves a `step-N` directory with some of its files gone.
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
DISCARDED = ".old-"  # a checkpoint being deleted is renamed to this prefix first


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
    rng: Any = None,
) -> Path:
    """Write `run_dir/checkpoints/step-NNNNNN` atomically and prune older ones; returns its path.

    `weights`: the full trainable tensors by parameter name (`sharding.full_trainable_state`); `extra`: the
    optimizer, scheduler, scaler and data states. `staged`: other files of this checkpoint are already in
    `staging_dir(run_dir, step)` (otherwise it is created empty). `rng`: the RNG states to store, a list of
    every process's `rng_state()` in rank order in a multi-process run; None stores this process's.
    """
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:06d}"
    tmp = staging_dir(run_dir, step)
    if not staged:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    save_file(weights, str(tmp / "trainable.safetensors"))
    state = {**extra, "step": step, "rng": rng_state() if rng is None else rng}
    torch.save(state, tmp / "state.pt")
    for leftover in root.glob(f"{DISCARDED}*"):  # what a killed run was deleting
        shutil.rmtree(leftover, ignore_errors=True)
    if final.exists():
        discard(final)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep_last]:
        discard(old)
    return final


def discard(path: Path) -> None:
    """Delete the directory `path` (a checkpoint, or a model directory being replaced), first renaming it so that
    it stops counting as one: a kill in the middle of the deletion must not leave a `step-N` or `model/` that has
    lost some of its files but kept the others."""
    hidden = path.with_name(f"{DISCARDED}{path.name}")
    shutil.rmtree(hidden, ignore_errors=True)
    os.replace(path, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def remove_checkpoints(run_dir: Path) -> int:
    """Delete every checkpoint of `run_dir` (a run started over); returns how many there were."""
    found = list_checkpoints(run_dir)
    for path in found:
        discard(path)
    return len(found)


def rng_state() -> dict[str, Any]:
    """This process's random-number generator states (CPU torch, Python's, and CUDA's when present)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _checkpoint_step(path: Path) -> int:
    """The step in a checkpoint directory's name, -1 if the name holds none."""
    digits = path.name[len(PREFIX) :]
    return int(digits) if digits.isdigit() else -1


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (temporary leftovers of a killed run are ignored).

    Ordered by step number, not name: `step-1000000` comes after `step-999999`.
    """
    root = run_dir / "checkpoints"
    if not root.exists():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.name.startswith(PREFIX) and _checkpoint_step(p) >= 0 and (p / "state.pt").exists()
    ]
    return sorted(found, key=_checkpoint_step)


def saved_process_count(state: dict[str, Any]) -> int:
    """How many processes wrote the checkpoint whose `state.pt` is `state` (a multi-process run stores one data
    position per process)."""
    return len(state["data"]) if isinstance(state.get("data"), list) else 1


def load_checkpoint(
    path: Path, model: torch.nn.Module, weights: bool = True, rank: int = 0
) -> dict[str, Any]:
    """Load trainable weights into `model` (sharded or not; skipped with `weights=False`, when an engine restores
    its own) and return the rest of the state. The RNG states are restored here: process `rank`'s own, when
    the checkpoint holds one per process."""
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
    rng = state["rng"]
    if isinstance(rng, list):
        if rank >= len(rng):
            raise CheckpointError(
                f"{path} was written by {len(rng)} processes; process {rank} has no state in it"
            )
        rng = rng[rank]
    torch.set_rng_state(rng["torch"])
    random.setstate(_as_tuple(rng["python"]))
    if "cuda" in rng and torch.cuda.is_available():
        # per device, as far as both the checkpoint and this machine have devices
        for index, device_state in enumerate(rng["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)
    return state


def _as_tuple(value: Any) -> Any:
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
