"""The command line's own parsing, before any command runs."""

from __future__ import annotations

import pytest

from mmgpt.cli import build_parser, main, parse_args


def test_overrides_may_follow_options():
    args = parse_args(build_parser(), ["train", "--config", "c.yaml", "a.b=1", "--output-dir", "x", "c=d"])
    assert args.overrides == ["a.b=1", "c=d"] and args.output_dir == "x" and args.config == "c.yaml"


def test_other_stray_words_are_still_refused(capsys):
    with pytest.raises(SystemExit):
        parse_args(build_parser(), ["train", "--config", "c.yaml", "a=b", "--bogus", "c=d"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a command without overrides takes no key=value words
        parse_args(build_parser(), ["synth", "--out", "w", "seed=3"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--top-p", "2"], "top_p must be in (0, 1], got 2.0"),
        (["--presence-penalty", "3"], "presence_penalty must be in [-2, 2], got 3.0"),
        (["--sample", "--temperature", "0"], "temperature must be > 0 when sampling, got 0.0"),
    ],
)
def test_chat_refuses_a_bad_generation_flag_before_loading_the_model(tmp_path, capsys, flags, message):
    # the model directory does not exist: the flag is what is reported, before any loading
    assert main(["chat", "--model", str(tmp_path / "no-model"), *flags]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {message}\n", err
