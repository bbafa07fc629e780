"""Scene labels (the vision tower's pretraining targets) against hand-computed patch grids."""

from __future__ import annotations

import numpy as np
import pytest

from mmgpt.synth.scene import Scene, Shape
from mmgpt.synth.scene_labels import scene_labels
from mmgpt.synth.vocab import COLOUR_NAMES, KINDS, WORD_LIST

PLAIN = {"style": "plain", "start": [245, 245, 245], "end": [245, 245, 245]}


def _scene(*shapes: Shape, word: str | None = None, size: int = 32) -> Scene:
    return Scene(1, "train", size, PLAIN, tuple(shapes), word, "bottom" if word else None, 0.5)


def test_square_labels_match_a_hand_computed_grid():
    # a 16 px square centred at (12, 12): the renderer insets it by 1 px, so it covers pixels 5..18. A patch
    # (8 x 8) is labelled when the shape covers >= 12 of its 64 pixels: 3 x 8 = 24 yes, 3 x 3 = 9 no.
    red, square = COLOUR_NAMES.index("red") + 1, KINDS.index("square") + 1
    labels = scene_labels(_scene(Shape("square", "red", "medium", 12, 12, 16, "top-left")), 4)
    covered = np.array([[0, 1, 0, 0], [1, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    assert (labels.colour.reshape(4, 4) == covered * red).all()
    assert (labels.kind.reshape(4, 4) == covered * square).all()
    centre = np.zeros((4, 4), dtype=int)
    centre[1, 1] = square  # (12 // 8, 12 // 8)
    assert (labels.centre.reshape(4, 4) == centre).all()
    assert (labels.word, labels.count) == (0, 1)


def test_later_shapes_cover_earlier_ones_and_words_and_counts_are_labelled():
    below = Shape("circle", "blue", "large", 16, 16, 20, "centre")
    above = Shape("star", "green", "large", 16, 16, 20, "centre")
    labels = scene_labels(_scene(below, above, word=WORD_LIST[3]), 4)
    star, green = KINDS.index("star") + 1, COLOUR_NAMES.index("green") + 1
    centre_patch = 2 * 4 + 2  # (16 // 8, 16 // 8): the patch holding the star's heart
    assert labels.kind[centre_patch] == star and labels.colour[centre_patch] == green
    assert labels.centre[centre_patch] == star and (labels.centre > 0).sum() == 1
    assert (labels.word, labels.count) == (4, 2)


def test_shapes_are_counted_per_colour_and_per_kind():
    shapes = (
        Shape("square", "red", "small", 8, 8, 10, "top-left"),
        Shape("circle", "red", "small", 24, 8, 10, "top-right"),
        Shape("square", "blue", "small", 8, 24, 10, "bottom-left"),
    )
    labels = scene_labels(_scene(*shapes), 4)
    colours = dict.fromkeys(COLOUR_NAMES, 0) | {"red": 2, "blue": 1}
    kinds = dict.fromkeys(KINDS, 0) | {"square": 2, "circle": 1}
    assert labels.colour_count.tolist() == list(colours.values())
    assert labels.kind_count.tolist() == list(kinds.values())
    assert labels.count == labels.colour_count.sum() == labels.kind_count.sum() == 3


def test_each_kind_is_labelled_with_its_colour_and_each_colour_with_its_kind():
    shapes = (
        Shape("square", "red", "small", 8, 8, 10, "top-left"),
        Shape("square", "blue", "small", 24, 8, 10, "top-right"),
        Shape("circle", "red", "small", 8, 24, 10, "bottom-left"),
        Shape("star", "green", "small", 24, 24, 10, "bottom-right"),
        Shape("star", "green", "large", 16, 16, 20, "centre"),
    )
    labels = scene_labels(_scene(*shapes), 4)
    several_colours, several_kinds = len(COLOUR_NAMES) + 1, len(KINDS) + 1

    def colour(name):
        return COLOUR_NAMES.index(name) + 1

    def kind(name):
        return KINDS.index(name) + 1

    # two squares of two colours: "several"; two green stars: green; absent kinds and colours: 0
    kinds = dict.fromkeys(KINDS, 0) | {
        "square": several_colours,
        "circle": colour("red"),
        "star": colour("green"),
    }
    colours = dict.fromkeys(COLOUR_NAMES, 0) | {
        "red": several_kinds,
        "blue": kind("square"),
        "green": kind("star"),
    }
    assert labels.kind_colour.tolist() == list(kinds.values())
    assert labels.colour_kind.tolist() == list(colours.values())


def test_a_coarser_grid_labels_larger_patches():
    # the same square seen as a 2 x 2 grid of 16 px patches: it covers 11 x 11 = 121 of the top-left patch's
    # 256 pixels and 3 x 11 = 33 of its neighbours' (>= 48 needed)
    labels = scene_labels(_scene(Shape("square", "red", "medium", 12, 12, 16, "top-left")), 2)
    assert labels.colour.tolist() == [COLOUR_NAMES.index("red") + 1, 0, 0, 0]


def test_image_size_must_split_into_the_grid():
    with pytest.raises(ValueError, match="does not split into a 5 x 5 patch grid"):
        scene_labels(_scene(Shape("circle", "red", "small", 10, 10, 12, "top-left")), 5)


def test_scenes_read_back_from_the_manifest(quick_world):
    _, manifest = quick_world
    for data in manifest.scenes[:20]:
        scene = Scene.from_dict(data)
        assert scene.to_dict() == {k: v for k, v in data.items() if k != "paths"}
