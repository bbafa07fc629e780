"""`mmgpt serve` / `mmgpt web` argument checks, and the CLI's handling of file-system errors."""

from __future__ import annotations

import argparse
import socket

import pytest

from mmgpt.cli import main
from mmgpt.errors import ConfigError
from mmgpt.serve.commands import check_can_listen, port_number


def test_port_numbers_are_validated():
    assert port_number("8000") == 8000
    for bad, message in (("0", "1-65535"), ("70000", "1-65535"), ("http", "not a port number")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            port_number(bad)


def test_a_busy_port_is_reported_before_the_model_loads(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_can_listen("127.0.0.1", port)
        # the model directory does not even exist: the port is checked first
        assert main(["serve", "--model", str(tmp_path / "none"), "--port", str(port)]) == 1
        assert f"error: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    check_can_listen("127.0.0.1", port)  # free again


def test_file_system_errors_are_one_line_messages(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["synth", "--out", str(blocker / "world"), "--scale", "quick"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(blocker) in err and "Traceback" not in err


def test_serve_takes_a_model_id_and_can_answer_any_name():
    from mmgpt.cli import build_parser

    parser = build_parser()
    strict = parser.parse_args(["serve", "--model", "m", "--model-name", "demo"])
    assert strict.model_name == "demo" and strict.any_model_name is False
    assert parser.parse_args(["serve", "--model", "m", "--any-model-name"]).any_model_name is True
