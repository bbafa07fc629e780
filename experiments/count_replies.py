"""Which counting questions does the model get right? It splits the evaluation's counting score by what a question
counts and by its answer.

A held-out counting question counts all the shapes ("How many shapes can you see?", reference "The number of
shapes is 3.") or those of one colour or kind ("How many red shapes are there?", "The number of red shapes is
1."). Most of the latter have the answer 1, so a model that always says 1 to them scores well on the metric and
has learnt nothing about counting one colour or kind; the rows with other answers show whether it has. The
replies are those `mmgpt demo` wrote, scored the way the evaluation scores them; no model is run.

    python experiments/count_replies.py [--replies runs/demo/eval_items.jsonl] [--world runs/demo/world]
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reply_referents import read_demo_replies  # noqa: E402  (not a package)

from mmgpt.synth.answers import is_correct  # noqa: E402

GROUPS = (
    "all shapes, answer 1",
    "all shapes, other answers",
    "one colour or kind, answer 1",
    "one colour or kind, other answers",
)


def count_group(item: dict) -> str:
    """The row of `item` (a held-out counting record): what it counts and whether its answer is 1."""
    counts_all = (item.get("reference") or "").lower().startswith("the number of shapes is")
    subject = "all shapes" if counts_all else "one colour or kind"
    return f"{subject}, {'answer 1' if item['answer'] == '1' else 'other answers'}"


def split_counts(items: Iterable[dict], replies: dict[str, str]) -> dict[str, tuple[int, int]]:
    """{group: (questions, right)} over the counting `items` that have a reply in `replies` ({item id: reply})."""
    groups = {group: (0, 0) for group in GROUPS}
    for item in items:
        if item["kind"] != "counting" or item["id"] not in replies:
            continue
        right = is_correct("counting", replies[item["id"]], item["answer"], item.get("answer_space"))
        asked, hits = groups[count_group(item)]
        groups[count_group(item)] = (asked + 1, hits + right)
    return groups


def main() -> None:
    args, items, replies = read_demo_replies(" ".join(__doc__.split("\n\n")[0].split()))
    groups = split_counts(items, replies)
    if not any(asked for asked, _ in groups.values()):
        sys.exit(f"{args.replies}: no reply to a counting question of {args.world}")
    print(f"{'counting questions':<36}{'asked':>7}{'right':>8}")
    for group, (asked, right) in groups.items():
        print(f"{group:<36}{asked:>7}{right / max(asked, 1):>8.3f}")


if __name__ == "__main__":
    main()
