"""Data pipeline throughput: samples/s of read -> render -> tokenize -> collate, on one core.

Text-only: an Alpaca-format file of generated instructions; vision-language: the synthetic world's LLaVA
conversations (64 px JPEGs). Each measurement is a cold first pass (no memoised renderings).

    python bench/data_throughput.py [--samples 5000] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

from mmgpt.data.config import DataConfig
from mmgpt.data.mixture import build_joint_stream
from mmgpt.model.image_processing import FlamingoImageProcessor
from mmgpt.model.tokenizer import add_flamingo_special_tokens, train_bpe_tokenizer

WORDS = [
    "red",
    "blue",
    "green",
    "circle",
    "square",
    "triangle",
    "left",
    "right",
    "top",
    "bottom",
    "small",
    "large",
    "count",
    "word",
    "image",
    "shape",
]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def measure(config: DataConfig, tokenizer, processor, batch_size: int, stream: str) -> tuple[float, int]:
    start = time.perf_counter()
    joint = build_joint_stream(config, tokenizer, processor, batch_size=batch_size)
    source = joint.vision_language if stream == "vl" else joint.language
    batches = source.num_samples // batch_size
    for _ in range(batches):
        source.next_batch()
    elapsed = time.perf_counter() - start
    return batches * batch_size / elapsed, batches * batch_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(0)
    tmp = Path(tempfile.mkdtemp(prefix="mmgpt-bench-"))
    rows = [
        {
            "instruction": sentence(rng, 12),
            "input": sentence(rng, 8) if i % 3 == 0 else "",
            "output": sentence(rng, 30),
        }
        for i in range(args.samples)
    ]
    (tmp / "alpaca.json").write_text(json.dumps(rows))
    tokenizer = train_bpe_tokenizer([r["output"] for r in rows[:500]], vocab_size=2000)
    add_flamingo_special_tokens(tokenizer)
    processor = FlamingoImageProcessor(64)
    text_cfg = DataConfig.from_dict(
        {"data_root": str(tmp), "language": [{"type": "alpaca_gpt4", "ann_path": "alpaca.json"}]}
    )
    text_rate, n_text = measure(text_cfg, tokenizer, processor, args.batch_size, "lang")

    from mmgpt.synth import generate_world

    generate_world(tmp / "world", seed=0, scale="quick", progress=False)
    vl_cfg = DataConfig.from_dict(
        {
            "data_root": str(tmp / "world"),
            "image_size": 64,
            "vision_language": [
                {"type": "llava", "ann_path": "llava/conversation.json", "image_root": "llava/images"}
            ],
        }
    )
    vl_rate, n_vl = measure(vl_cfg, tokenizer, processor, args.batch_size, "vl")
    print(f"{'stream':<18}{'samples':>9}{'samples/s':>12}")
    print(f"{'text-only':<18}{n_text:>9}{text_rate:>12.0f}")
    print(f"{'vision-language':<18}{n_vl:>9}{vl_rate:>12.0f}")
    print(f"target >= 2000 text-only samples/s on one core: {'met' if text_rate >= 2000 else 'NOT met'}")


if __name__ == "__main__":
    main()
