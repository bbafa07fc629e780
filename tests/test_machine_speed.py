"""bench/machine_speed.py on small sizes: every measure is positive and the table names both thread counts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import torch

from tests.scripts import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "machine_speed.py"


def test_measures_are_positive_and_threads_are_restored():
    machine_speed = load_script("machine_speed", folder="bench")
    before = torch.get_num_threads()
    row = machine_speed.measure(1, size=64, rounds=1, copy_mib=1)
    assert set(row) == {"bf16 matmul", "fp32 matmul", "copy"} and all(v > 0 for v in row.values())
    assert torch.get_num_threads() == before


def test_table_has_a_row_per_thread_count():
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--size", "64", "--rounds", "1", "--copy-mib", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)$", run.stdout, re.M)
    assert rows and rows[0][0] == "1", run.stdout
    assert len(rows) == len({1, torch.get_num_threads()}), run.stdout


def test_sizes_below_one_are_refused_with_the_option_named():
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "0"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 2 and "--rounds must be at least 1, got 0" in run.stderr, run.stderr
