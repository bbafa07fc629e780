"""The command line's own parsing, before any command runs."""

from __future__ import annotations

import pytest

from mmgpt.cli import build_parser, parse_args


def test_overrides_may_follow_options():
    args = parse_args(build_parser(), ["train", "--config", "c.yaml", "a.b=1", "--output-dir", "x", "c=d"])
    assert args.overrides == ["a.b=1", "c=d"] and args.output_dir == "x" and args.config == "c.yaml"


def test_other_stray_words_are_still_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args(build_parser(), ["train", "--config", "c.yaml", "a=b", "--bogus", "c=d"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a command without overrides takes no key=value words
        parse_args(build_parser(), ["synth", "--out", "w", "seed=3"])
