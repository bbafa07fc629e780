"""The `mmgpt synth` sub-command."""

from __future__ import annotations

import argparse
import json

import pytest

from mmgpt.errors import ConfigError
from mmgpt.synth import commands


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmgpt")
    commands.register(parser.add_subparsers(dest="command"))
    return parser


def test_synth_command_generates_quick_world(tmp_path, capsys):
    args = _parser().parse_args(
        ["synth", "--out", str(tmp_path), "--scale", "quick", "--seed", "3", "--no-progress"]
    )
    assert args.func(args) == 0
    assert "train with" in capsys.readouterr().out
    world = json.loads((tmp_path / "world.json").read_text())
    assert world["seed"] == 3 and world["scale"] == "quick"
    assert world["counts"]["train_images"] == 200


def test_bad_scale_and_size_rejected(tmp_path):
    from mmgpt.synth import generate_world

    with pytest.raises(ConfigError):
        generate_world(tmp_path, scale="huge")
    with pytest.raises(ConfigError):
        generate_world(tmp_path, scale="quick", image_size=8)
    with pytest.raises(SystemExit):
        _parser().parse_args(["synth", "--out", str(tmp_path), "--scale", "huge"])


def test_other_image_size(tmp_path):
    from PIL import Image

    from mmgpt.synth import generate_world

    manifest = generate_world(tmp_path, scale="quick", image_size=96, progress=False)
    with Image.open(tmp_path / manifest.image_files()[0]) as im:
        assert im.size == (96, 96)


def test_an_output_path_that_is_a_file_is_named(tmp_path, capsys):
    from mmgpt.cli import main

    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    assert main(["synth", "--out", str(blocker), "--scale", "quick", "--no-progress"]) == 1
    assert f"{blocker} is a file, where a directory is needed" in capsys.readouterr().err
    assert main(["synth", "--out", str(blocker / "world"), "--scale", "quick", "--no-progress"]) == 1
    assert (
        f"{blocker} is a file, where a directory is needed (for {blocker / 'world'})"
        in capsys.readouterr().err
    )
    assert blocker.read_text() == "keep me"


def test_synth_replaces_an_old_world_and_refuses_other_directories(tmp_path, capsys):
    from mmgpt.cli import main

    world = tmp_path / "w"
    assert main(["synth", "--out", str(world), "--scale", "quick", "--no-progress"]) == 0
    stale = world / "images" / "leftover.jpg"
    stale.parent.mkdir(exist_ok=True)
    stale.write_bytes(b"from a larger world")
    assert main(["synth", "--out", str(world), "--scale", "quick", "--no-progress"]) == 0
    assert not stale.exists() and (world / "world.json").is_file()
    other = tmp_path / "model"
    other.mkdir()
    (other / "config.json").write_text("{}")
    assert main(["synth", "--out", str(other), "--scale", "quick", "--no-progress"]) == 1
    assert "is not empty and holds no synthetic world" in capsys.readouterr().err
    assert [p.name for p in other.iterdir()] == ["config.json"]
