"""bench/tower_step.py on a small batch: it builds the demo's tower and prints positive measures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "tower_step.py"


def test_the_tower_is_the_base_configs():
    tower_step = load_script("tower_step", folder="bench")
    tiny = yaml.safe_load((ROOT / "configs" / "synthetic_base.yaml").read_text())["model"]["tiny"]
    tower = tower_step.demo_tower()
    assert tower.config.hidden_size == tiny["vision_width"]
    assert tower.config.num_hidden_layers == tiny["vision_layers"]
    assert tower.config.image_size == tiny["image_size"]
    # 2 images of (64 / 8)^2 patches + CLS, each linear weight used 6 times a step
    weights = sum(m.weight.numel() for m in tower.modules() if m.__class__.__name__ == "Linear")
    grid = tiny["image_size"] // tiny["patch_size"]
    assert tower_step.linear_flops_per_step(tower, 2) == 6.0 * weights * 2 * (grid * grid + 1)


def test_the_report_and_a_bad_option():
    command = [
        sys.executable,
        str(SCRIPT),
        "--batch",
        "2",
        "--warmup",
        "1",
        "--steps",
        "1",
        "--profile-steps",
        "1",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    values = dict(re.findall(r"^  (.+?)\s{2,}([\d.]+)$", run.stdout, re.M))
    assert set(values) == {
        "seconds a step",
        "matrix products' share",
        "linear GFLOP a step",
        "matrix products' GFLOP/s",
    }, run.stdout
    assert all(float(v) > 0 for v in values.values()), run.stdout
    assert 0 < float(values["matrix products' share"]) < 1
    # attention as training runs it: PyTorch's fused kernel in fp32, eager matmuls under bf16 on a CPU
    assert "fp32, sdpa attention" in run.stdout
    bf16 = subprocess.run([*command, "--dtype", "bf16"], capture_output=True, text=True, timeout=300)
    assert bf16.returncode == 0 and "bf16, eager attention" in bf16.stdout, bf16.stderr
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--steps", "0"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and "--steps must be >= 1" in bad.stderr
