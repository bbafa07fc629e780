"""The binding probe (experiments/binding_probe.py) on hand-made scenes and tokens whose binding is known."""

from __future__ import annotations

import random

import pytest
import torch

from mmgpt.synth.scene import Scene, Shape
from tests.scripts import load_script

KINDS, COLOURS = ["circle", "square", "star"], ["red", "green", "blue"]


@pytest.fixture(scope="module")
def probe():
    return load_script("binding_probe")


def _scene(*shapes: tuple[str, str]) -> Scene:
    return Scene(
        image_id=0,
        split="train",
        image_size=64,
        background={},
        shapes=tuple(
            Shape(kind, colour, "small", 10 * i, 10, 4, "top") for i, (kind, colour) in enumerate(shapes)
        ),
    )


def test_rows_are_the_shapes_whose_kind_occurs_once(probe):
    scenes = [_scene(("square", "red"), ("square", "blue"), ("star", "green")), _scene(("circle", "blue"))]
    assert probe.binding_rows(scenes, KINDS, COLOURS) == [(0, 2, 1), (1, 0, 2)]


def test_attending_reads_a_binding_the_mean_of_tokens_loses(probe):
    # two shapes per image of two different kinds and colours, one token per shape (kind and colour one-hot)
    rng = random.Random(0)
    tokens, rows = [], []
    for i in range(400):
        kinds, colours = rng.sample(range(3), 2), rng.sample(range(3), 2)
        tokens.append(
            torch.stack(
                [torch.cat([torch.eye(3)[k], torch.eye(3)[c]]) for k, c in zip(kinds, colours, strict=True)]
            )
        )
        rows += [(i, k, c) for k, c in zip(kinds, colours, strict=True)]
    tokens = torch.stack(tokens) + 0.01 * torch.randn(400, 2, 6)
    train, test = [r for r in rows if r[0] < 300], [r for r in rows if r[0] >= 300]
    attending = probe.fit_and_score(tokens, train, test, 3, 3, uniform=False, steps=300, seed=0)
    pooled = probe.fit_and_score(tokens, train, test, 3, 3, uniform=True, steps=300, seed=0)
    assert attending > 0.95
    assert pooled < 0.65  # the mean says which two colours, not whose: a coin toss between them
