"""The synthetic base's vision-tower pretraining: it learns, it is seeded, and the pretrain stage uses it."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from mmgpt.errors import ConfigError, DataError
from mmgpt.model.checkpoints import load_model
from mmgpt.model.image_processing import FlamingoImageProcessor
from mmgpt.synth.scene_labels import NUM_COLOUR_KINDS, NUM_COUNTS, NUM_KIND_COLOURS
from mmgpt.synth.vocab import COLOUR_NAMES, KINDS
from mmgpt.train.config import VisionPretrainSection, load_train_config
from mmgpt.train.loop import run_training
from mmgpt.train.vision_pretrain import (
    BINDING_TARGETS,
    SINCOS_AMPLITUDE,
    SUBSET_TARGETS,
    TARGETS,
    SceneParsingHead,
    init_sincos_positions,
    load_scene_set,
    parsing_accuracy,
    pretrain_vision_tower,
    render_scene_set,
    sincos_position_grid,
)

from .conftest import pretrain_overrides


def _tower(seed: int = 0):
    from mmgpt.model.builder import build_vision_from_config

    torch.manual_seed(seed)
    config = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    return build_vision_from_config({**config, "image_size": 32, "patch_size": 8})


def _pretrain_tower(world, steps: int, tower=None, **targets: bool):
    tower = _tower() if tower is None else tower
    settings = VisionPretrainSection(
        steps=steps, batch_size=16, lr=4e-3, warmup_steps=5, weight_decay=0.0, **targets
    )
    scores = pretrain_vision_tower(tower, world, FlamingoImageProcessor(32), settings, seed=0, progress=False)
    return tower, scores


def test_pretraining_teaches_the_tower_colours(world, heldout):
    assert heldout.targets["colour"].shape == (len(heldout), 16)
    untrained = parsing_accuracy(_tower(), SceneParsingHead(32), heldout)
    _, scores = _pretrain_tower(world, 200)
    assert set(scores) == set(TARGETS)
    assert scores["colour"] > max(0.6, untrained["colour"] + 0.3), (scores, untrained)


@pytest.fixture(scope="module")
def heldout(world):
    """The world's held-out scenes and their targets, on the test tower's 4 x 4 grid."""
    return load_scene_set(world, "heldout", FlamingoImageProcessor(32), 4)


@pytest.fixture(scope="module")
def every_target(world):
    """Held-out scores of a tower trained with every optional target."""
    _, scores = _pretrain_tower(world, 400, subset_counts=True, binding=True)
    return scores


def test_subset_counts_add_a_count_for_every_colour_and_kind(heldout, every_target):
    head = SceneParsingHead(32, subset_counts=True)
    logits = head(torch.randn(3, 16, 32))
    assert logits["colour_count"].shape == (3, len(COLOUR_NAMES), NUM_COUNTS)
    assert logits["kind_count"].shape == (3, len(KINDS), NUM_COUNTS)
    assert head.targets == TARGETS + SUBSET_TARGETS
    counts = heldout.targets["colour_count"]
    assert counts.shape == (len(heldout), len(COLOUR_NAMES))
    assert torch.equal(counts.sum(1), heldout.targets["count"])
    assert set(every_target) == set(TARGETS + SUBSET_TARGETS + BINDING_TARGETS)
    # most colours are absent from an image: the tiny tower must count them better than always answering 0
    # (it tells colours apart long before kinds, so only the colours are asked of it)
    zeros = float((counts == 0).float().mean())
    assert every_target["colour_count"] > zeros + 0.08, (every_target, zeros)


def test_binding_adds_the_colour_of_every_kind_and_the_kind_of_every_colour(heldout, every_target):
    head = SceneParsingHead(32, binding=True)
    logits = head(torch.randn(3, 16, 32))
    assert logits["kind_colour"].shape == (3, len(KINDS), NUM_KIND_COLOURS)
    assert logits["colour_kind"].shape == (3, len(COLOUR_NAMES), NUM_COLOUR_KINDS)
    assert head.targets == TARGETS + BINDING_TARGETS
    # a kind's colour is given exactly when the image holds that kind, a colour's kind when it holds the colour
    assert torch.equal(heldout.targets["kind_colour"] > 0, heldout.targets["kind_count"] > 0)
    assert torch.equal(heldout.targets["colour_kind"] > 0, heldout.targets["colour_count"] > 0)
    # the extra targets leave the tower learning what it learns without them
    assert every_target["colour"] > 0.8, every_target


def test_sincos_grid_by_hand():
    # width 4: one frequency (1) per axis, channels [sin(row), cos(row), sin(col), cos(col)]
    grid = sincos_position_grid(2, 4)
    s, c = math.sin(1.0), math.cos(1.0)
    expected = torch.tensor([[0, 1, 0, 1], [0, 1, s, c], [s, c, 0, 1], [s, c, s, c]], dtype=torch.float32)
    assert torch.allclose(grid, expected)
    # width 8: frequencies 1 and 1/100 per axis
    wide = sincos_position_grid(3, 8)
    assert wide.shape == (9, 8)
    assert wide[5].tolist() == pytest.approx(  # row 1, column 2
        [math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01)]
        + [math.sin(2), math.sin(0.02), math.cos(2), math.cos(0.02)]
    )
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_position_grid(2, 6)


def test_sincos_init_sets_only_the_position_embeddings():
    tower = _tower()
    before = {k: v.clone() for k, v in tower.state_dict().items()}
    init_sincos_positions(tower)
    after = tower.state_dict()
    name = "embeddings.position_embedding.weight"
    assert torch.equal(after[name][0], torch.zeros(32))  # the class token, which the perceiver never reads
    assert torch.allclose(after[name][1:], SINCOS_AMPLITUDE * sincos_position_grid(4, 32))
    assert len({tuple(row.tolist()) for row in after[name][1:]}) == 16  # every patch its own code
    assert tower.embeddings.position_embedding.weight.requires_grad
    for key, value in before.items():
        if key != name:
            assert torch.equal(after[key], value), key


def test_pretraining_starts_from_the_sincos_grid_only_when_asked(world):
    name = "embeddings.position_embedding.weight"
    codes = SINCOS_AMPLITUDE * sincos_position_grid(4, 32)
    random_start = _tower().state_dict()[name][1:].clone()
    with_grid, _ = _pretrain_tower(world, 1, sincos_positions=True)
    without, _ = _pretrain_tower(world, 1)
    # one AdamW step of lr 4e-3 (in warmup) moves each entry by well under 0.01
    assert (with_grid.state_dict()[name][1:] - codes).abs().max() < 0.01
    assert (without.state_dict()[name][1:] - random_start).abs().max() < 0.01


def test_pretraining_is_seeded_and_leaves_the_global_stream(world):
    tower = _tower()  # seeds the global stream itself: the state to keep is the one after it
    state = torch.get_rng_state()
    first, _ = _pretrain_tower(world, 5, tower)
    assert torch.equal(torch.get_rng_state(), state)
    second, _ = _pretrain_tower(world, 5)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_scenes_rendered_in_memory_are_the_world_images_and_labels(world, heldout):
    from mmgpt.synth.scene import Scene
    from mmgpt.synth.world import WorldManifest

    scenes = [Scene.from_dict(d) for d in WorldManifest.load(world).scenes if d["split"] == "heldout"]
    rendered = render_scene_set(scenes, FlamingoImageProcessor(32), 4)
    assert torch.equal(rendered.pixels, heldout.pixels)
    assert rendered.targets.keys() == heldout.targets.keys()
    for name, value in heldout.targets.items():
        assert torch.equal(rendered.targets[name], value), name


def test_scene_sets_are_the_same_for_any_number_of_workers(world, heldout):
    from mmgpt.synth.world import WorldManifest, fresh_scenes

    processor = FlamingoImageProcessor(32)
    one = load_scene_set(world, "heldout", processor, 4, workers=1)
    for name, value in heldout.targets.items():  # the fixture's set, read by one worker per CPU
        assert torch.equal(one.targets[name], value), name
    assert torch.equal(one.pixels, heldout.pixels)
    three = load_scene_set(world, "heldout", processor, 4, workers=3)
    assert torch.equal(three.pixels, one.pixels)
    scenes = fresh_scenes(WorldManifest.load(world), 30)
    serial = render_scene_set(scenes, processor, 4, workers=1)
    parallel = render_scene_set(scenes, processor, 4, workers=2)
    assert torch.equal(parallel.pixels, serial.pixels) and serial.pixels.abs().sum() > 0
    for name, value in serial.targets.items():
        assert torch.equal(parallel.targets[name], value), name


def test_a_missing_world_image_is_named_by_a_worker(world, tmp_path):
    import shutil

    copy = tmp_path / "world"
    shutil.copytree(world, copy)
    manifest = json.loads((copy / "world.json").read_text())
    lost = [d for d in manifest["scenes"] if d["split"] == "heldout"][-1]
    (copy / lost["paths"][0]).unlink()
    with pytest.raises(
        DataError, match=rf"{lost['paths'][0]}: missing or unreadable image .*\(image {lost['image_id']}\)"
    ):
        load_scene_set(copy, "heldout", FlamingoImageProcessor(32), 4, workers=2)


def test_fresh_scenes_join_the_world_images(world, caplog):
    with caplog.at_level("INFO", logger="mmgpt.train.vision_pretrain"):
        with_fresh, _ = _pretrain_tower(world, 3, fresh_scenes=40)
    train_images = sum(
        d["split"] == "train" for d in json.loads((world / "world.json").read_text())["scenes"]
    )
    assert f"vision tower: {train_images} world images and 40 fresh scenes" in caplog.text
    without, _ = _pretrain_tower(world, 3)
    # the batches are drawn from the larger set, so the same seed trains another tower
    fresh_state, plain_state = with_fresh.state_dict(), without.state_dict()
    assert any(not torch.equal(value, plain_state[name]) for name, value in fresh_state.items())


def _pretrain_config(world, run, *extra):
    return load_train_config(
        None,
        pretrain_overrides(world, run, "vision_pretrain.steps=4", "vision_pretrain.batch_size=8", *extra),
    )


def test_pretrain_stage_starts_from_the_pretrained_tower_and_keeps_it_frozen(world, tmp_path, caplog):
    run = tmp_path / "base"
    model_dir = run_training(_pretrain_config(world, run, "optim.max_steps=2"))
    tower = load_file(str(run / "vision_tower.safetensors"))
    assert set(json.loads((run / "vision_tower.json").read_text())) == set(TARGETS)
    trained = load_model(model_dir)
    for name, value in trained.vision_encoder.state_dict().items():
        assert torch.equal(value, tower[name]), name  # frozen through the Flamingo pretraining
    # a resumed (or repeated) run reuses the saved tower instead of training it again
    before = (run / "vision_tower.safetensors").stat().st_mtime_ns
    with caplog.at_level("INFO", logger="mmgpt.train.loop"):
        run_training(_pretrain_config(world, run, "optim.max_steps=3"))
    assert (run / "vision_tower.safetensors").stat().st_mtime_ns == before
    assert "reusing the pretrained vision tower" in caplog.text


def test_unfrozen_tower_keeps_training(world, tmp_path):
    run = tmp_path / "base"
    model_dir = run_training(_pretrain_config(world, run, "vision_pretrain.freeze=false", "optim.lr=1e-2"))
    tower = load_file(str(run / "vision_tower.safetensors"))
    trained = load_model(model_dir).vision_encoder.state_dict()
    assert any(not torch.equal(trained[name], value) for name, value in tower.items())


def test_a_world_without_its_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="no world.json"):
        load_scene_set(tmp_path, "train", FlamingoImageProcessor(32), 4)


def test_vision_pretraining_needs_a_from_scratch_pretrain_run(world, tmp_path):
    with pytest.raises(ConfigError, match="vision_pretrain.steps needs stage: pretrain"):
        load_train_config(
            None,
            [f"data.config={world}/datasets.yaml", "model.path=somewhere", "vision_pretrain.steps=10"],
        )
    with pytest.raises(ConfigError, match="vision_pretrain.steps must be >= 0"):
        _pretrain_config(world, tmp_path, "vision_pretrain.steps=-1")
    with pytest.raises(ConfigError, match="vision_pretrain.fresh_scenes must be >= 0"):
        _pretrain_config(world, tmp_path, "vision_pretrain.fresh_scenes=-5")


def test_sincos_positions_need_a_tower_width_divisible_by_four(world, tmp_path):
    with pytest.raises(ConfigError, match="vision_width divisible by 4.*not 30"):
        _pretrain_config(
            world, tmp_path, "vision_pretrain.sincos_positions=true", "model.tiny.vision_width=30"
        )
    assert _pretrain_config(
        world, tmp_path, "vision_pretrain.sincos_positions=true"
    ).vision_pretrain.sincos_positions
