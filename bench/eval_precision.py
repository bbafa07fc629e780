"""Held-out evaluation in fp32 vs bf16: the seconds it takes and the metrics it gives.

The demo evaluates its tuned model and its base in the precision both trained in (`mmgpt.demo.EVAL_DTYPE`,
"auto": bf16 where the CPU multiplies bf16 in hardware, else fp32). This measures what bf16 buys or costs on
this machine and how far each metric moves. Every model given
answers the same held-out items with the demo's settings (batch, new tokens, greedy, adapters folded in) in each
precision, alternating `--rounds` times in one process; the median seconds and the metrics are printed.

    python bench/eval_precision.py --model runs/demo/model [--model ~/.cache/mmgpt/base-*/model]
        --data runs/demo/world/eval/heldout.jsonl [--limit 0] [--rounds 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

PRECISIONS = ("float32", "bfloat16")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        required=True,
        action="append",
        help="a model directory (repeat for several, e.g. the base)",
    )
    parser.add_argument(
        "--data", required=True, help="a held-out jsonl file (e.g. runs/demo/world/eval/heldout.jsonl)"
    )
    parser.add_argument("--limit", type=int, default=0, help="items per kind (0: all)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds; medians are reported")
    args = parser.parse_args()

    from mmgpt.demo import EVAL_BATCH_SIZE, EVAL_MAX_NEW_TOKENS
    from mmgpt.eval.runner import generate_answers, load_heldout, score
    from mmgpt.model.checkpoints import load_model

    items = load_heldout(args.data, args.limit or None)
    for path in args.model:
        models = {dtype: load_model(path, dtype=dtype, merge_adapters=True) for dtype in PRECISIONS}
        seconds: dict[str, list[float]] = {dtype: [] for dtype in PRECISIONS}
        replies: dict[str, list[str]] = {}
        for _ in range(args.rounds):
            for dtype, model in models.items():
                start = time.perf_counter()
                replies[dtype] = generate_answers(
                    model,
                    items,
                    batch_size=EVAL_BATCH_SIZE,
                    max_new_tokens=EVAL_MAX_NEW_TOKENS,
                    progress=False,
                )
                seconds[dtype].append(time.perf_counter() - start)
        metrics = {dtype: score(items, replies[dtype]) for dtype in PRECISIONS}
        slow, fast = (statistics.median(seconds[d]) for d in PRECISIONS)
        print(f"{path}: {len(items)} items, float32 {slow:.1f} s, bfloat16 {fast:.1f} s ({slow / fast:.2f}x)")
        for name in metrics["float32"]:
            a, b = metrics["float32"][name], metrics["bfloat16"][name]
            if a is None or b is None:
                continue  # no item measures it
            print(f"  {name:<22}{a:>9.4f}{b:>9.4f}  ({b - a:+.4f})")
        differ = sum(a != b for a, b in zip(replies["float32"], replies["bfloat16"], strict=True))
        print(f"  replies that differ: {differ} of {len(items)}")


if __name__ == "__main__":
    main()
