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


def _one_token_per_shape(seed: int, images: int = 400):
    """Two shapes of different kinds and colours per image, one token each (kind and colour one-hot)."""
    rng = random.Random(seed)
    tokens, rows = [], []
    for i in range(images):
        kinds, colours = rng.sample(range(3), 2), rng.sample(range(3), 2)
        tokens.append(
            torch.stack(
                [torch.cat([torch.eye(3)[k], torch.eye(3)[c]]) for k, c in zip(kinds, colours, strict=True)]
            )
        )
        rows += [(i, k, c) for k, c in zip(kinds, colours, strict=True)]
    return torch.stack(tokens) + 0.01 * torch.randn(images, 2, 6), rows


def _per_head(part: torch.Tensor, heads: int = 2) -> torch.Tensor:
    """(N, T, F) -> (N, T, heads, F): the same features for every head, as a model's keys or values."""
    return part[..., None, :].repeat(1, 1, heads, 1)


def test_rows_are_the_shapes_whose_kind_occurs_once(probe):
    scenes = [_scene(("square", "red"), ("square", "blue"), ("star", "green")), _scene(("circle", "blue"))]
    assert probe.binding_rows(scenes, KINDS, COLOURS) == [(0, 2, 1), (1, 0, 2)]


def test_attending_reads_a_binding_the_mean_of_tokens_loses(probe):
    tokens, rows = _one_token_per_shape(0)
    train, test = [r for r in rows if r[0] < 300], [r for r in rows if r[0] >= 300]
    attending = probe.fit_and_score(tokens, train, test, 3, 3, uniform=False, steps=300, seed=0)
    pooled = probe.fit_and_score(tokens, train, test, 3, 3, uniform=True, steps=300, seed=0)
    assert attending > 0.95
    assert pooled < 0.65  # the mean says which two colours, not whose: a coin toss between them


def test_one_token_readers_lose_a_colour_spread_over_two_tokens_that_attending_keeps(probe):
    # two shapes of different kinds, four colours written as two bits; each shape is two tokens, both naming its
    # kind, one holding each bit: a soft reader weighs both of the kind's tokens and reads both bits, a reader of
    # one token gets one bit (two colours left), and two of four heads reading one token each get both again
    rng = random.Random(1)
    tokens, rows = [], []
    for i in range(500):
        kinds, colours = rng.sample(range(3), 2), [rng.randrange(4) for _ in range(2)]
        image = []
        for kind, colour in zip(kinds, colours, strict=True):
            for which, bit in enumerate((colour // 2, colour % 2)):
                token = torch.zeros(7)
                token[kind], token[3 + which], token[5 + which] = 1.0, 1.0, float(bit)
                image.append(token)
        tokens.append(torch.stack(image))
        rows += [(i, k, c) for k, c in zip(kinds, colours, strict=True)]
    tokens = torch.stack(tokens) + 0.01 * torch.randn(500, 4, 7)
    train, test = [r for r in rows if r[0] < 400], [r for r in rows if r[0] >= 400]

    def score(**reader):
        return probe.fit_and_score(tokens, train, test, 3, 4, uniform=False, steps=250, seed=0, **reader)

    assert score() > 0.95
    # choosing its token by the bits it holds, the one-token reader can tell three of the four colours apart
    assert score(one_token=True) < 0.8
    assert score(one_token=True, heads=4) > 0.95


def test_a_models_own_keys_and_values_limit_what_the_lookup_reads(probe):
    # "own" keys and values are fixed views of the tokens: their kind part, their colour part, or nothing
    tokens, rows = _one_token_per_shape(2)
    train, test = [r for r in rows if r[0] < 300], [r for r in rows if r[0] >= 300]
    kind_part, colour_part = _per_head(tokens[..., :3]), _per_head(tokens[..., 3:])

    def score(**own):
        return probe.fit_and_score(tokens, train, test, 3, 3, uniform=False, steps=300, seed=0, **own)

    assert score(own_keys=kind_part, own_values=colour_part) > 0.95
    # keys blind to the kind: every token weighs the same, and the reader is left with the mean
    assert score(own_keys=torch.zeros_like(kind_part), own_values=colour_part) < 0.65
    # values without the colour: the right token is found and says nothing of it
    assert score(own_keys=kind_part, own_values=kind_part) < 0.65


def test_lookup_with_the_models_query_the_state_it_asks_from_or_a_query_per_kind(probe):
    tokens, rows = _one_token_per_shape(3)
    rows = [r for r in rows if r[0] < 300] + [r for r in rows if r[0] >= 300]
    n_train = sum(r[0] < 300 for r in rows)
    keys, values = _per_head(tokens[..., :3]), _per_head(tokens[..., 3:])  # the kind, the colour
    states = torch.cat([torch.eye(3)[[r[1] for r in rows]], torch.randn(len(rows), 5)], dim=1)  # kind + noise

    def score(query, own_query=None):
        return probe.fit_lookup(keys, values, states, rows, n_train, 3, 3, query, 300, 0, own_query=own_query)

    assert score("kind") > 0.95
    assert score("text") > 0.95  # the state names the kind: a fitted query finds the shape
    # a query that asks for the kind in the keys' own terms, scaled up: the model's lookup works as it is
    assert score("own", lambda x: 8 * x[:, :3].repeat(1, 2)) > 0.95
    # a query blind to the kind weighs both shapes alike, and the reader is left with a coin toss
    assert score("own", lambda x: torch.zeros(len(x), 6)) < 0.65
    with pytest.raises(ValueError, match="unknown query"):
        score("mean")


def test_text_states_are_the_block_inputs_at_the_last_token_of_the_colour_statement(probe, make_tiny_model):
    from PIL import Image

    model = make_tiny_model(gate_init=1.0)
    images = [Image.new("RGB", (40, 40), colour) for colour in ("red", "blue", "green")]
    rows = [(0, 1, 0), (1, 0, 2), (2, 1, 1)]
    states = probe.text_states(model, images, rows, KINDS, batch=2)
    # the last block: its input has seen the image through the blocks before it
    *_, (index, block) = sorted(model.cross_attn_blocks().items())
    seen = []
    handle = block.register_forward_hook(lambda _m, args, _o: seen.append(args[0][0, -1]))
    ids = model.tokenizer("<image>The square is", add_special_tokens=True).input_ids
    with torch.no_grad():
        model(model.image_processor.batch([images[2]])[:, None, None], torch.tensor([ids]))
    handle.remove()
    assert states[index].shape == (3, seen[0].shape[-1])
    assert torch.allclose(states[index][2], seen[0].float(), atol=1e-5)
    assert not torch.allclose(states[index][0], states[index][2])  # another image, the same words
