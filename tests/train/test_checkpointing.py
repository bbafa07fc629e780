"""Training checkpoints on disk: ordering, deletion that a kill cannot half-finish, per-process RNG states."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
import torch

from mmgpt.train import checkpointing
from mmgpt.train.checkpointing import list_checkpoints, load_checkpoint, rng_state, save_checkpoint


def _save(run: Path, step: int, model: torch.nn.Module, keep_last: int = 10, rng=None) -> Path:
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    return save_checkpoint(run, step, weights, {"data": {"cursor": step}}, keep_last, rng=rng)


def test_checkpoints_are_ordered_by_step_number(tmp_path):
    model = torch.nn.Linear(2, 2)
    for step in (999_999, 1_000_000, 2):
        _save(tmp_path, step, model)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000002", "step-999999", "step-1000000"]
    _save(tmp_path, 1_000_001, model, keep_last=2)  # pruning keeps the newest, not the last names
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-1000000", "step-1000001"]


def test_a_kill_while_pruning_never_leaves_a_listed_checkpoint_without_weights(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    for step in (1, 2):
        _save(tmp_path, step, model)
    real_rmtree = shutil.rmtree

    def killed_midway(path, ignore_errors=False):
        # deleting an old checkpoint, the process dies after removing the weights file, before the state file
        path = Path(path)
        if not path.exists() or path.name.startswith(".tmp-"):
            return real_rmtree(path, ignore_errors=True)
        (path / "trainable.safetensors").unlink()
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpointing.shutil, "rmtree", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 3, model, keep_last=1)
    monkeypatch.setattr(checkpointing.shutil, "rmtree", real_rmtree)
    listed = list_checkpoints(tmp_path)
    assert listed and listed[-1].name == "step-000003"
    for path in listed:  # whatever is listed loads
        load_checkpoint(path, model)
    _save(tmp_path, 4, model, keep_last=1)  # the next save clears what the killed one left
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000004"]


def test_each_process_gets_back_its_own_random_state(tmp_path):
    # a multi-process run stores one state per rank; rank 1 drew its dropout masks from its own generator
    model = torch.nn.Linear(2, 2)
    states, draws = [], []
    for seed in (1, 2):
        torch.manual_seed(seed)
        random.seed(seed)
        states.append(rng_state())
        draws.append((torch.rand(3), random.random()))
    path = _save(tmp_path, 1, model, rng=states)
    for rank in (1, 0):
        torch.manual_seed(99)
        random.seed(99)
        load_checkpoint(path, model, rank=rank)
        torch.testing.assert_close(torch.rand(3), draws[rank][0], rtol=0, atol=0)
        assert random.random() == draws[rank][1]
