"""Held-out evaluation of a LoRA-tuned model with its adapters attached vs folded into the weights.

`mmgpt eval/chat/web/serve` fold a model directory's LoRA adapters into the weights when they load it
(`load_model(..., merge_adapters=True)`); this measures what that buys and checks that the replies stay the same.
Both variants answer the same held-out items with the demo's settings (batch 32, 48 new tokens, greedy), in one
process, alternating `--rounds` times; the median seconds of each and how many replies differ are printed.

    python bench/merged_generation.py --model runs/demo/model --data runs/demo/world/eval/heldout.jsonl
        [--limit 0] [--rounds 1]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", required=True, help="a model directory with LoRA adapters (e.g. runs/demo/model)"
    )
    parser.add_argument(
        "--data", required=True, help="a held-out jsonl file (e.g. runs/demo/world/eval/heldout.jsonl)"
    )
    parser.add_argument("--limit", type=int, default=0, help="only the first N items (0: all)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds; medians are reported")
    args = parser.parse_args()

    from mmgpt.errors import ConfigError
    from mmgpt.eval.runner import generate_answers, load_heldout
    from mmgpt.model.checkpoints import load_model
    from mmgpt.model.lora import has_lora

    attached = load_model(args.model)
    if not has_lora(attached):
        raise SystemExit(ConfigError(f"{args.model} has no LoRA adapters: nothing to merge"))
    merged = load_model(args.model, merge_adapters=True)
    items = load_heldout(args.data, args.limit or None)
    seconds: dict[str, list[float]] = {"attached": [], "merged": []}
    replies: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for name, model in (("attached", attached), ("merged", merged)):
            start = time.perf_counter()
            replies[name] = generate_answers(model, items, batch_size=32, max_new_tokens=48, progress=False)
            seconds[name].append(time.perf_counter() - start)
    slow, fast = (statistics.median(seconds[k]) for k in ("attached", "merged"))
    differ = sum(a != b for a, b in zip(replies["attached"], replies["merged"], strict=True))
    print(f"{len(items)} items: adapters attached {slow:.1f} s, merged {fast:.1f} s ({slow / fast:.2f}x)")
    print(f"replies that differ: {differ} of {len(items)}")


if __name__ == "__main__":
    main()
