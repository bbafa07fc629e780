"""Training throughput and peak memory: mmgpt vs open-flamingo 2.0.1 + peft, same model, batch and LoRA targets.

Each side runs in its own subprocess (so its peak RSS is its own), alternately, `--rounds` times; both use bf16
autocast, the release LoRA targets and the same batches of one image + 256 tokens per sample. The ratio of
median tokens/s is printed.

    python bench/train_throughput.py [--rounds 3] [--steps 6] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def worker(side: str, steps: int, batch: int, length: int) -> dict:
    sys.path.insert(0, str(HERE))
    import torch
    from _reference import IDS, build_pair
    from peft import LoraConfig, get_peft_model

    from mmgpt.model.lora import RELEASE_TARGETS, LoraSettings, apply_lora
    from mmgpt.model.precision import cast_frozen_parameters, use_eager_attention

    ours, ref, cfg = build_pair()
    if side == "mmgpt":
        model = ours
        apply_lora(model, LoraSettings(r=16, alpha=16))
        cast_frozen_parameters(model, torch.bfloat16)  # frozen weights stored in bf16: no per-step re-cast
        use_eager_attention(model)  # fused SDPA is slow in bf16 on CPU
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

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    return {
        "side": side,
        "tokens_per_s": steps * batch * length / elapsed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=256)
    parser.add_argument("--worker", choices=["mmgpt", "reference"])
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.batch, args.length)))
        return
    results: dict[str, list[dict]] = {"mmgpt": [], "reference": []}
    for _ in range(args.rounds):
        for side in ("reference", "mmgpt"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    side,
                    "--steps",
                    str(args.steps),
                    "--batch",
                    str(args.batch),
                    "--length",
                    str(args.length),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'implementation':<28}{'tokens/s (median)':>20}{'peak RSS MB':>14}")
    med = {}
    for side, label in (("reference", "open-flamingo 2.0.1 + peft"), ("mmgpt", "mmgpt")):
        med[side] = statistics.median(r["tokens_per_s"] for r in results[side])
        rss = max(r["peak_rss_mb"] for r in results[side])
        print(f"{label:<28}{med[side]:>20.0f}{rss:>14.0f}")
    ratio = med["mmgpt"] / med["reference"]
    print(f"speed-up: {ratio:.2f}x (target >= 1.3x: {'met' if ratio >= 1.3 else 'NOT met'})")


if __name__ == "__main__":
    main()
