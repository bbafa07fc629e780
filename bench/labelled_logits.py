"""Training-step time and peak memory with logits at the labelled positions only, as `mmgpt train` computes its
loss, against logits at every position, as the Hugging Face loss reads them.

A Flamingo with LLaMA's 32000-word vocabulary at a small width trains on instruction-style batches whose last
`--labelled` fraction of each sample is the response (the rest is prompt, labelled -100), with LoRA on the
release targets, frozen weights stored in bf16 and bf16 autocast, as the training loop runs it. Each mode runs
in its own subprocess, so its peak RSS is its own, alternately, `--rounds` times; medians are printed.

    python bench/labelled_logits.py [--rounds 3] [--steps 4] [--batch 8] [--length 512] [--vocab 32000]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from _harness import prepare_like_tuning, run_alternating  # noqa: E402  (a sibling script, not a package)

MODES = ("labelled only", "every position")


def worker(mode: str, steps: int, batch: int, length: int, vocab: int, labelled: float) -> dict:
    """Train `steps` steps (after one warm-up step) in `mode`; returns {"step_s": median seconds a step,
    "peak_rss_mb": this process's peak resident memory, "loss": the last loss}."""
    import torch

    from mmgpt.model.builder import build_model, tiny_config
    from mmgpt.model.tokenizer import SpecialTokenIds

    torch.manual_seed(0)
    ids = SpecialTokenIds(media=vocab - 3, endofchunk=vocab - 2, pad=vocab - 1, eos=2, bos=1)
    config = tiny_config(
        vocab, ids, hidden_size=256, num_layers=2, intermediate_size=688, cross_attn_every_n_layers=1
    )
    model = prepare_like_tuning(build_model(config))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    gen = torch.Generator().manual_seed(0)
    lang = torch.randint(3, ids.media - 1, (batch, length), generator=gen)
    lang[:, 1] = ids.media
    labels = lang.clone()
    labels[:, : length - int(labelled * length)] = -100
    vision = torch.randn(batch, 1, 1, 3, config.image_size, config.image_size, generator=gen)
    mask = torch.ones_like(lang)

    def step() -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(vision, lang, attention_mask=mask, labels=labels, loss_only=mode == MODES[0])
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return out.loss.item()

    step()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        loss = step()
        seconds.append(time.perf_counter() - start)
    return {
        "step_s": statistics.median(seconds),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "loss": loss,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--rounds", type=int, default=3, help="subprocesses per mode, alternating")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per subprocess, after one warm-up")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=512, help="tokens per sample")
    parser.add_argument("--vocab", type=int, default=32000, help="vocabulary size (LLaMA's: 32000)")
    parser.add_argument(
        "--labelled", type=float, default=0.4, help="fraction of each sample that is response"
    )
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    for option in ("rounds", "steps", "batch"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1, got {getattr(args, option)}")
    if args.length < 4:
        parser.error(f"--length must be at least 4, got {args.length}")
    if args.vocab < 16:
        parser.error(f"--vocab must be at least 16, got {args.vocab}")
    if not 0 < args.labelled < 1:
        parser.error(f"--labelled must lie strictly between 0 and 1, got {args.labelled}")
    sizes = (args.steps, args.batch, args.length, args.vocab, args.labelled)
    if args.worker:
        print(json.dumps(worker(args.worker, *sizes)))
        return

    worker_args = ["--steps", str(args.steps), "--batch", str(args.batch), "--length", str(args.length)]
    worker_args += ["--vocab", str(args.vocab), "--labelled", str(args.labelled)]
    results = run_alternating(__file__, MODES, args.rounds, worker_args)
    print(f"batch {args.batch} x {args.length} tokens, vocabulary {args.vocab}, {args.labelled:.0%} labelled")
    print(f"{'logits':<16}{'s a step (median)':>20}{'peak RSS MB (median)':>24}{'last loss':>12}")
    medians = {}
    for mode in MODES:
        step_s = statistics.median(r["step_s"] for r in results[mode])
        rss = statistics.median(r["peak_rss_mb"] for r in results[mode])
        medians[mode] = (step_s, rss)
        print(f"{mode:<16}{step_s:>20.3f}{rss:>24.0f}{results[mode][-1]['loss']:>12.4f}")
    (fast_s, fast_rss), (full_s, full_rss) = medians[MODES[0]], medians[MODES[1]]
    print(f"labelled only: {full_s / fast_s:.2f}x the speed, {full_rss - fast_rss:.0f} MB less peak memory")


if __name__ == "__main__":
    main()
