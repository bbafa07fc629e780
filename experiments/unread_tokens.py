"""Which tokens of the instruction data did the base never read? A token that occurs in no line of the world's
pretraining text keeps its random initial embedding (and output row) through pretraining, and the tuning's LoRA
adapters cannot train either. This counts, for the instructions (user texts and inputs) and for the responses
apart, the distinct tokens the tuning data uses, those the pretraining text never holds, and the share of the
tuning data's token occurrences that are of such tokens; then the commonest of them. No model is run.

    python experiments/unread_tokens.py --base <the cached base>/model [--world runs/demo/world] [--top 20]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmgpt.data.config import load_data_config  # noqa: E402
from mmgpt.data.mixture import turn_texts  # noqa: E402
from mmgpt.train.pretrain_data import corpus_texts  # noqa: E402


def token_counts(tokenizer, texts: list[str], opening_a_line: bool = False) -> Counter:
    """{token id: occurrences} over `texts`. With `opening_a_line` each text is tokenized as the template places
    it, after a line break (whose own token is not counted), so that its first word is "How", not " How"."""
    counts: Counter = Counter()
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"]
    for text in texts:
        if opening_a_line:
            ids = tokenizer("\n" + text, add_special_tokens=False)["input_ids"]
            counts.update(ids[len(newline) :] if ids[: len(newline)] == newline else ids)
        else:
            counts.update(tokenizer(text, add_special_tokens=False)["input_ids"])
    return counts


def unread(used: Counter, read: Counter) -> dict[int, int]:
    """{token id: occurrences in `used`} of the tokens `used` holds and `read` does not."""
    return {token: n for token, n in used.items() if read[token] == 0}


def summary(used: Counter, read: Counter) -> tuple[int, int, float]:
    """(distinct tokens used, distinct of them never read, share of the occurrences that are of those)."""
    never = unread(used, read)
    total = sum(used.values())
    return len(used), len(never), (sum(never.values()) / total if total else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--base", required=True, type=Path, help="the base model's directory (its tokenizer)")
    parser.add_argument("--world", type=Path, default=Path("runs/demo/world"))
    parser.add_argument("--top", type=int, default=20, help="how many unread tokens to list")
    args = parser.parse_args()
    from transformers import AutoTokenizer

    for path in (args.base / "tokenizer.json", args.world / "datasets.yaml", args.world / "pretrain"):
        if not path.exists():
            sys.exit(f"{path}: not found")
    tokenizer = AutoTokenizer.from_pretrained(args.base)
    read = token_counts(tokenizer, corpus_texts(args.world))
    config = load_data_config(args.world / "datasets.yaml")
    instructions = token_counts(tokenizer, turn_texts(config, responses=False), opening_a_line=True)
    everything = token_counts(tokenizer, turn_texts(config), opening_a_line=True)
    used = {"instructions": instructions, "responses": everything - instructions}
    print(f"vocabulary {len(tokenizer)} tokens; the pretraining text holds {len(read)} of them")
    print(f"{'tuning texts':<16}{'tokens used':>12}{'never read':>12}{'share of occurrences':>22}")
    for name, counts in used.items():
        distinct, never, share = summary(counts, read)
        print(f"{name:<16}{distinct:>12}{never:>12}{share:>22.3f}")
    for name, counts in used.items():
        never = sorted(unread(counts, read).items(), key=lambda kv: -kv[1])[: args.top]
        if never:
            shown = ", ".join(f"{tokenizer.convert_ids_to_tokens(t)!r} {n}" for t, n in never)
            print(f"commonest never read in the {name}: {shown}")


if __name__ == "__main__":
    main()
