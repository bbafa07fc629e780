"""What one training step of the demo's vision tower is made of: its seconds, the share the matrix products take,
and the throughput they reach.

The tower's 2000 steps are the largest part of a cold demo on a CPU without bf16 units (experiments/README.md,
"Where the demo's time goes"). This builds the tower of `configs/synthetic_base.yaml` (`model.tiny`) with its
scene-parsing head, trains it on random pixels and labels for `--warmup` untimed and `--steps` timed steps, then
runs `torch.profiler` over `--profile-steps` more and prints the seconds a step, the share of the step spent in
the linear layers' matrix products (`aten::mm`, `aten::addmm`) and their GFLOP/s (6 x weights x tokens a step:
forward, and the backward's two products). Compare the GFLOP/s with `python bench/machine_speed.py`.

Attention runs as training runs it (`--attention auto`: eager under bf16 on a CPU, PyTorch's fused kernel
otherwise); `--attention sdpa` or `eager` times the other.

    python bench/tower_step.py [--batch 64] [--dtype fp32|bf16] [--attention auto|eager|sdpa] [--warmup 6]
        [--steps 20] [--profile-steps 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmgpt.model.builder import build_vision_from_config, tiny_config  # noqa: E402
from mmgpt.model.flamingo import patch_tokens  # noqa: E402
from mmgpt.model.precision import use_eager_attention  # noqa: E402
from mmgpt.synth.scene_labels import NUM_COLOURS, NUM_COUNTS, NUM_KINDS, NUM_WORDS  # noqa: E402
from mmgpt.train.loop import attention_kernel  # noqa: E402
from mmgpt.train.vision_pretrain import SceneParsingHead, parsing_loss  # noqa: E402

MATMUL_KERNELS = ("aten::mm", "aten::addmm")


def demo_tower() -> torch.nn.Module:
    """The vision tower of `configs/synthetic_base.yaml`, randomly initialised (the special token ids are
    placeholders: only the vision half of the config is used)."""
    tiny = yaml.safe_load((ROOT / "configs" / "synthetic_base.yaml").read_text())["model"]["tiny"]
    ids = SimpleNamespace(bos=1, eos=2, pad=0, media=3, endofchunk=4)
    return build_vision_from_config(tiny_config(16, ids, **tiny).vision_config)


def linear_flops_per_step(tower: torch.nn.Module, batch: int) -> float:
    """FLOPs of the tower's linear layers in one training step of `batch` images: 6 x weights x tokens."""
    config = tower.config
    tokens = batch * ((config.image_size // config.patch_size) ** 2 + 1)
    weights = sum(m.weight.numel() for m in tower.modules() if isinstance(m, torch.nn.Linear))
    return 6.0 * weights * tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 = bf16 autocast")
    parser.add_argument(
        "--attention", choices=["auto", "eager", "sdpa"], default="auto", help="auto = what training uses"
    )
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--profile-steps", type=int, default=5)
    args = parser.parse_args()
    for name in ("batch", "steps", "profile_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")

    torch.manual_seed(0)
    tower = demo_tower()
    attention = attention_kernel(args.attention, args.dtype)
    if attention == "eager":
        use_eager_attention(tower)
    head = SceneParsingHead(tower.config.hidden_size)
    params = [*tower.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    size, grid = tower.config.image_size, tower.config.image_size // tower.config.patch_size
    pixels = torch.randn(args.batch, 3, size, size)
    targets = {
        "colour": torch.randint(0, NUM_COLOURS, (args.batch, grid * grid)),
        "kind": torch.randint(0, NUM_KINDS, (args.batch, grid * grid)),
        "centre": torch.randint(0, NUM_KINDS, (args.batch, grid * grid)),
        "word": torch.randint(0, NUM_WORDS, (args.batch,)),
        "count": torch.randint(0, NUM_COUNTS, (args.batch,)),
    }

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
            loss = parsing_loss(head(patch_tokens(tower, pixels)), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    seconds = (time.perf_counter() - start) / args.steps

    with torch.profiler.profile() as profile:
        for _ in range(args.profile_steps):
            step()
    events = profile.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_KERNELS)
    matmul_seconds = matmul / 1e6 / args.profile_steps
    flops = linear_flops_per_step(tower, args.batch)
    print(
        f"tower step, batch {args.batch}, {args.dtype}, {attention} attention, {torch.get_num_threads()} threads"
    )
    print(f"  seconds a step            {seconds:.3f}")
    print(f"  matrix products' share    {matmul / max(total, 1e-9):.2f}")
    print(f"  linear GFLOP a step       {flops / 1e9:.1f}")
    print(f"  matrix products' GFLOP/s  {flops / 1e9 / max(matmul_seconds, 1e-9):.0f}")


if __name__ == "__main__":
    main()
