"""Training throughput and peak memory: mmgpt vs open-flamingo 2.0.1 + peft, same model, batch and LoRA targets.

Each side runs in its own subprocess (so its peak RSS is its own), alternately, `--rounds` times; all use bf16
autocast, the release LoRA targets and the same batches of one image + 256 tokens per sample. mmgpt runs twice:
eager, and with `precision.compile: true` + `precision.compile_mode: max-autotune-no-cudagraphs` (its decoder
layers and cross-attention blocks compiled; the one-time compile happens in the warm-up step and is reported
separately). The ratios of median tokens/s are printed.

    python bench/train_throughput.py [--rounds 3] [--steps 6] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import prepare_like_tuning, run_alternating  # noqa: E402  (a sibling script, not a package)

SIDES = ("reference", "mmgpt", "mmgpt-compiled")
LABELS = {
    "reference": "open-flamingo 2.0.1 + peft",
    "mmgpt": "mmgpt",
    "mmgpt-compiled": "mmgpt, compiled (max-autotune)",
}


def worker(side: str, steps: int, batch: int, length: int) -> dict:
    import torch
    from _reference import IDS, build_pair
    from peft import LoraConfig, get_peft_model

    from mmgpt.model.lora import RELEASE_TARGETS

    ours, ref, cfg = build_pair()
    if side.startswith("mmgpt"):
        model = prepare_like_tuning(ours)
        if side == "mmgpt-compiled":
            model.compile_layers(mode="max-autotune-no-cudagraphs")
        del ref
    else:
        model = ref
        model.requires_grad_(False)
        model.lang_encoder = get_peft_model(
            model.lang_encoder, LoraConfig(r=16, lora_alpha=16, target_modules=list(RELEASE_TARGETS))
        )
        del ours
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    lang = torch.randint(3, IDS.media - 1, (batch, length), generator=gen)
    lang[:, 1] = IDS.media
    vision = torch.randn(batch, 1, 1, 3, cfg.image_size, cfg.image_size, generator=gen)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(vision, lang, labels=lang).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    start = time.perf_counter()
    step()  # warm-up (and compilation)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    return {
        "side": side,
        "tokens_per_s": steps * batch * length / elapsed,
        "warmup_s": warmup_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--worker", choices=SIDES)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.batch, args.length)))
        return
    worker_args = ["--steps", str(args.steps), "--batch", str(args.batch), "--length", str(args.length)]
    results = run_alternating(__file__, SIDES, args.rounds, worker_args)
    print(
        f"{'implementation':<32}{'tokens/s (median)':>20}{'peak RSS MB':>14}{'first step s (median/max)':>28}"
    )
    med = {}
    for side in SIDES:
        med[side] = statistics.median(r["tokens_per_s"] for r in results[side])
        rss = max(r["peak_rss_mb"] for r in results[side])
        first = [r["warmup_s"] for r in results[side]]
        spread = f"{statistics.median(first):.1f} / {max(first):.1f}"
        print(f"{LABELS[side]:<32}{med[side]:>20.0f}{rss:>14.0f}{spread:>28}")
    for side in ("mmgpt", "mmgpt-compiled"):
        ratio = med[side] / med["reference"]
        met = "met" if ratio >= 1.3 else "NOT met"
        print(f"speed-up, {LABELS[side]}: {ratio:.2f}x (target >= 1.3x: {met})")


if __name__ == "__main__":
    main()
