"""Fingerprints and the environment record that `mmgpt demo` writes into results.json."""

from __future__ import annotations

import shutil

import pytest

from mmgpt.provenance import PACKAGES, cpu_flags, environment, fingerprint


def _tree(root):
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 5000)
    return root


def test_directory_fingerprint_depends_on_contents_and_names_not_location(tmp_path):
    first = _tree(tmp_path / "one")
    print_one = fingerprint(first)
    assert len(print_one) == 16 and int(print_one, 16) >= 0
    shutil.copytree(first, tmp_path / "elsewhere" / "two")
    assert fingerprint(tmp_path / "elsewhere" / "two") == print_one
    (first / "a.txt").write_bytes(b"alphb")
    assert fingerprint(first) != print_one
    (first / "a.txt").write_bytes(b"alpha")
    assert fingerprint(first) == print_one
    (first / "a.txt").rename(first / "c.txt")
    assert fingerprint(first) != print_one


def test_file_fingerprint_and_missing_path(tmp_path):
    root = _tree(tmp_path / "t")
    assert fingerprint(root / "a.txt") != fingerprint(root)
    assert fingerprint(root / "a.txt") == fingerprint(root / "a.txt")
    # moving bytes across a file boundary changes the fingerprint
    (tmp_path / "u" / "sub").mkdir(parents=True)
    (tmp_path / "u" / "a.txt").write_bytes(b"alph")
    (tmp_path / "u" / "sub" / "b.bin").write_bytes(b"a" + bytes(range(256)) * 5000)
    assert fingerprint(tmp_path / "u") != fingerprint(root)
    with pytest.raises(FileNotFoundError, match="nope"):
        fingerprint(tmp_path / "nope")


def test_environment_names_versions_and_cpu():
    import torch

    env = environment()
    assert env["packages"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert set(env["packages"]) == set(PACKAGES)
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["threads"] == torch.get_num_threads()
    assert env["cpu_bf16_flags"] == cpu_flags()
    assert env["cpu"] and env["python"].count(".") == 2


def test_cpu_flags_reads_the_first_flags_line(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu sse2 amx_tile avx512_bf16 avx2\n\n"
        "processor\t: 1\nflags\t\t: fpu amx_bf16\n"
    )
    assert cpu_flags(cpuinfo=cpuinfo) == ["avx512_bf16", "amx_tile"]
    assert cpu_flags(("avx2", "sse4_2"), cpuinfo=cpuinfo) == ["avx2"]
    assert cpu_flags(cpuinfo=tmp_path / "missing") == []
    cpuinfo.write_text("processor\t: 0\n")
    assert cpu_flags(cpuinfo=cpuinfo) == []
