"""bench/labelled_logits.py on a small model: both modes train to the same loss, and bad sizes are refused."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "labelled_logits.py"
SMALL = ["--rounds", "1", "--steps", "1", "--batch", "2", "--length", "24", "--vocab", "300"]


def test_both_modes_report_time_memory_and_the_same_loss():
    run = subprocess.run([sys.executable, str(SCRIPT), *SMALL], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = dict(
        (mode, (float(step_s), float(rss), float(loss)))
        for mode, step_s, rss, loss in re.findall(
            r"^(labelled only|every position)\s+([\d.]+)\s+(\d+)\s+([\d.]+)$", run.stdout, re.M
        )
    )
    assert set(rows) == {"labelled only", "every position"}, run.stdout
    assert all(step_s > 0 and rss > 0 for step_s, rss, _ in rows.values())
    # two steps of the same training: the loss is the same whichever positions the head projected
    assert abs(rows["labelled only"][2] - rows["every position"][2]) < 1e-2, run.stdout
    assert "x the speed" in run.stdout


def test_bad_sizes_are_refused_with_the_option_named():
    for args, message in (
        (["--steps", "0"], "--steps must be at least 1, got 0"),
        (["--labelled", "1.5"], "--labelled must lie strictly between 0 and 1, got 1.5"),
    ):
        run = subprocess.run(
            [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 2 and message in run.stderr, run.stderr
