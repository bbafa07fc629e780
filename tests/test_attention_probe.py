"""The attention probe's measures and model hooks (experiments/attention_probe.py), on a tiny random model."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from PIL import Image

from tests.scripts import load_script


@pytest.fixture(scope="module")
def probe():
    return load_script("attention_probe")


def _logits(model, text: str) -> torch.Tensor:
    ids = torch.tensor([model.tokenizer("<image>" + text, add_special_tokens=True).input_ids])
    pixels = model.image_processor.batch([Image.new("RGB", (40, 40), (200, 30, 30))])[None, :, None]
    with torch.no_grad():
        return model(pixels, ids).logits


def test_spread_and_difference_by_hand(probe):
    uniform, first, second = (
        torch.full((4,), 0.25),
        torch.tensor([1.0, 0, 0, 0]),
        torch.tensor([0, 1.0, 0, 0]),
    )
    assert probe.spread(uniform).item() == pytest.approx(1.0)
    assert probe.spread(first).item() == pytest.approx(0.0, abs=1e-6)
    half = torch.tensor([0.5, 0.5, 0, 0])
    assert probe.spread(half).item() == pytest.approx(math.log(2) / math.log(4))
    assert probe.difference(first, second).item() == pytest.approx(1.0)
    assert probe.difference(first, half).item() == pytest.approx(0.5)
    assert probe.difference(uniform, uniform).item() == 0.0


def test_uniform_cross_attention_is_a_model_with_zero_queries_and_is_undone(probe, make_tiny_model):
    model = make_tiny_model(cross_attn_every_n_layers=1, num_latents=4)
    reference = copy.deepcopy(model)
    for block in reference.cross_attn_blocks().values():
        torch.nn.init.zeros_(block.attn.to_q.weight)
    text = "What colour is the triangle?"
    before = _logits(model, text)
    assert not torch.allclose(before, _logits(reference, text))  # the queries matter in this model
    with probe.uniform_cross_attention(model):
        torch.testing.assert_close(_logits(model, text), _logits(reference, text))
    torch.testing.assert_close(_logits(model, text), before)


def test_recorded_weights_are_distributions_over_the_latents(probe, make_tiny_model):
    model = make_tiny_model(cross_attn_every_n_layers=1, num_latents=4)
    image = Image.new("RGB", (40, 40), (30, 30, 200))
    word, last = probe.attention_at(model, image, "There are three red circles", "There are three red")
    layers = len(model.cross_attn_blocks())
    heads = next(iter(model.cross_attn_blocks().values())).attn.heads
    assert word.shape == last.shape == (layers, heads, 4)
    torch.testing.assert_close(last.sum(dim=-1), torch.ones(layers, heads))
    assert probe.difference(word, last).max() > 0  # two positions, two sets of weights
    with probe.uniform_cross_attention(model):
        _, flat = probe.attention_at(model, image, "There are three red circles", "There are three red")
    torch.testing.assert_close(flat, torch.full_like(flat, 0.25))
    with pytest.raises(ValueError, match="prefix"):
        probe.attention_at(model, image, "There are three red circles", "a blue square")


def test_prompt_pairs_name_shapes_by_a_kind_or_colour_that_occurs_once(probe):
    from mmgpt.synth.scene import Scene, Shape

    def shape(kind: str, colour: str) -> Shape:
        return Shape(kind, colour, "small", 10, 10, 8, "top-left")

    scene = Scene(
        1, "heldout", 64, {}, (shape("square", "red"), shape("circle", "red"), shape("star", "blue"))
    )
    pairs = dict(probe.prompt_pairs(scene))
    assert pairs["kind"] == [("The square is", "The square"), ("The circle is", "The circle")]
    # red occurs twice: only blue occurs once, so there is no pair of colours
    assert "colour" not in pairs
    scene = Scene(2, "heldout", 64, {}, (shape("square", "red"), shape("square", "green")))
    assert dict(probe.prompt_pairs(scene)) == {
        "colour": [("The red shape is a", "The red"), ("The green shape is a", "The green")]
    }


def test_lookup_table_of_a_model_with_uniform_attention(probe, make_tiny_model):
    from mmgpt.synth.scene import Scene, Shape

    model = make_tiny_model(cross_attn_every_n_layers=1, num_latents=4)
    shapes = (
        Shape("square", "red", "small", 10, 10, 8, "top-left"),
        Shape("circle", "blue", "small", 30, 30, 8, "centre"),
    )
    scene = Scene(7, "heldout", 64, {}, shapes)
    images = {7: Image.new("RGB", (40, 40), (30, 200, 30))}
    table = probe.lookup_table(model, images, [scene])
    assert set(table) == {"kind", "colour"} and table["kind"]["pairs"] == 1
    layers = len(model.cross_attn_blocks())
    for key in ("spread word", "difference last", "top share", "top weight"):
        assert table["kind"][key].shape == (layers, 2)
    # layer 1's last token has not seen the named word yet; one pair: its top latent is its own. Zero up to
    # rounding: the two texts' rows may take different kernel paths (2.98e-08 apart on one AVX512-BF16 CPU).
    torch.testing.assert_close(table["kind"]["difference last"][0], torch.zeros(2))
    assert (table["kind"]["top share"] == 1).all()
    with probe.uniform_cross_attention(model):
        flat = probe.lookup_table(model, images, [scene])["colour"]
    torch.testing.assert_close(flat["spread word"], torch.ones(layers, 2))
    torch.testing.assert_close(flat["difference word"], torch.zeros(layers, 2))
    torch.testing.assert_close(flat["top weight"], torch.full((layers, 2), 0.25))
