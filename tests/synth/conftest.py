"""Fixtures: one quick synthetic world generated once per test session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def quick_world(tmp_path_factory: pytest.TempPathFactory):
    """(root directory, manifest) of a quick world with seed 0."""
    from mmgpt.synth import generate_world

    root = tmp_path_factory.mktemp("world")
    manifest = generate_world(root, seed=0, scale="quick", progress=False)
    return root, manifest


@pytest.fixture(scope="session")
def load(quick_world):
    """load(rel) -> parsed JSON (or list of JSON lines for .jsonl) of a file in the quick world."""
    root: Path = quick_world[0]

    def _load(rel: str):
        text = (root / rel).read_text(encoding="utf-8")
        if rel.endswith(".jsonl"):
            return [json.loads(line) for line in text.splitlines()]
        return json.loads(text)

    return _load


@pytest.fixture(scope="session")
def scenes(quick_world) -> dict[int, dict]:
    """Ground-truth scenes of the quick world keyed by image id."""
    return {s["image_id"]: s for s in quick_world[1].scenes}
