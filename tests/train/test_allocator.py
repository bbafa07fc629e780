"""tcmalloc for training processes: found where installed, chosen or refused by MMGPT_TCMALLOC, and put first in
LD_PRELOAD without losing what was there."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mmgpt.errors import ConfigError
from mmgpt.train import allocator
from mmgpt.train.allocator import find_tcmalloc, preload_environment


def test_off_never_preloads(monkeypatch):
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: f"lib{name}.so.4")
    for value in ("off", "OFF", "0", "no"):
        monkeypatch.setenv("MMGPT_TCMALLOC", value)
        assert find_tcmalloc() is None


def test_a_chosen_library_is_used_and_a_missing_one_refused(monkeypatch, tmp_path):
    library = tmp_path / "libtcmalloc.so"
    library.write_bytes(b"")
    monkeypatch.setenv("MMGPT_TCMALLOC", str(library))
    assert find_tcmalloc() == str(library)
    monkeypatch.setenv("MMGPT_TCMALLOC", str(tmp_path / "missing.so"))
    with pytest.raises(ConfigError, match=r"MMGPT_TCMALLOC=.*missing\.so: no such file"):
        find_tcmalloc()


def test_the_minimal_library_is_preferred_and_none_is_found_without_either(monkeypatch):
    monkeypatch.delenv("MMGPT_TCMALLOC", raising=False)
    monkeypatch.setattr(allocator.sys, "platform", "linux")
    installed = {"tcmalloc": "libtcmalloc.so.4", "tcmalloc_minimal": "libtcmalloc_minimal.so.4"}
    monkeypatch.setattr(allocator.ctypes.util, "find_library", installed.get)
    assert find_tcmalloc() == "libtcmalloc_minimal.so.4"
    del installed["tcmalloc_minimal"]
    assert find_tcmalloc() == "libtcmalloc.so.4"
    installed.clear()
    assert find_tcmalloc() is None


def test_only_linux_looks_for_it(monkeypatch):
    monkeypatch.delenv("MMGPT_TCMALLOC", raising=False)
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    monkeypatch.setattr(allocator.ctypes.util, "find_library", lambda name: f"lib{name}.dylib")
    assert find_tcmalloc() is None


def test_the_library_goes_first_in_ld_preload_once():
    assert preload_environment({"HOME": "/h"}, "libtc.so") == {"HOME": "/h", "LD_PRELOAD": "libtc.so"}
    original = {"LD_PRELOAD": "libasan.so:libother.so"}
    assert preload_environment(original, "libtc.so")["LD_PRELOAD"] == "libtc.so libasan.so libother.so"
    assert original == {"LD_PRELOAD": "libasan.so:libother.so"}  # a copy, not the caller's mapping
    assert preload_environment({"LD_PRELOAD": "x.so libtc.so"}, "libtc.so")["LD_PRELOAD"] == "x.so libtc.so"
    assert preload_environment({"LD_PRELOAD": "x.so"}, None) == {"LD_PRELOAD": "x.so"}


def test_a_process_started_with_the_environment_runs_on_tcmalloc(monkeypatch):
    monkeypatch.delenv("MMGPT_TCMALLOC", raising=False)
    library = find_tcmalloc()
    if library is None:
        pytest.skip(f"tcmalloc is not installed ({allocator.INSTALL_HINT})")
    maps = subprocess.run(
        [sys.executable, "-c", "print(open('/proc/self/maps').read())"],
        env=preload_environment({}, library),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "libtcmalloc" in maps
