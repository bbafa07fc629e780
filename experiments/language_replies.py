"""Which language items does the model get right? It splits the evaluation's language score by the kind of task.

The held-out language items are of two sorts. Facts about the world's objects and word tasks (reverse a word,
its first letter, its length) ask what training also asks, so they measure recall. Sums and differences use only
operand pairs that the world holds out of all training (`knowledge.reserved_pairs`), so they measure arithmetic
the model must work out; of the sums, some have the other order of their operands in training ("3 plus 5" held
out, "5 plus 3" trained) and some are held out both ways. The replies are those `mmgpt demo` wrote, scored the
way the evaluation scores them; no model is run.

    python experiments/language_replies.py [--replies runs/demo/eval_items.jsonl] [--world runs/demo/world]
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reply_referents import read_demo_replies  # noqa: E402  (not a package)

from mmgpt.synth.answers import is_correct  # noqa: E402
from mmgpt.synth.knowledge import reserved_pairs  # noqa: E402
from mmgpt.synth.world import WorldManifest  # noqa: E402

GROUPS = (
    "facts and word tasks",
    "sums, the other order trained",
    "sums held out both ways",
    "differences",
)
# How the held-out items phrase each operation (`knowledge.language_task`); "Subtract b from a" names its
# operands in the other order.
_SUM = re.compile(
    r"^(?:What is (\d+) plus (\d+)\?|What is the sum of (\d+) and (\d+)\?|Add (\d+) and (\d+)\.)$"
)
_DIFFERENCE = re.compile(
    r"^(?:What is (\d+) minus (\d+)\?|What is the difference between (\d+) and (\d+)\?)$"
)
_SUBTRACT = re.compile(r"^Subtract (\d+) from (\d+)\.$")


def operation(question: str) -> tuple[str, int, int] | None:
    """("sum" | "difference", a, b) for a question asking a + b or a - b, None for any other question."""
    for name, pattern in (("sum", _SUM), ("difference", _DIFFERENCE)):
        match = pattern.match(question.strip())
        if match:
            a, b = (int(x) for x in match.groups() if x is not None)
            return name, a, b
    match = _SUBTRACT.match(question.strip())
    if match:
        b, a = (int(x) for x in match.groups())
        return "difference", a, b
    return None


def language_group(question: str, reserved_sums: set[tuple[int, int]]) -> str:
    """The row of a held-out language question, given the world's held-out sum pairs."""
    asked = operation(question)
    if asked is None:
        return "facts and word tasks"
    name, a, b = asked
    if name == "difference":
        return "differences"
    return "sums held out both ways" if (b, a) in reserved_sums else "sums, the other order trained"


def split_language(
    items: Iterable[dict], replies: dict[str, str], reserved_sums: set[tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """{group: (items, right)} over the language `items` that have a reply in `replies` ({item id: reply})."""
    groups = {group: (0, 0) for group in GROUPS}
    for item in items:
        if item["kind"] != "language" or item["id"] not in replies:
            continue
        right = is_correct("language", replies[item["id"]], item["answer"], item.get("answer_space"))
        group = language_group(item["question"], reserved_sums)
        asked, hits = groups[group]
        groups[group] = (asked + 1, hits + right)
    return groups


def main() -> None:
    args, items, replies = read_demo_replies(" ".join(__doc__.split("\n\n")[0].split()))
    seed = WorldManifest.load(Path(args.world)).seed
    groups = split_language(items, replies, reserved_pairs(seed)["sum"])
    if not any(asked for asked, _ in groups.values()):
        sys.exit(f"{args.replies}: no reply to a language item of {args.world}")
    print(f"{'language items':<32}{'asked':>7}{'right':>7}{'share':>8}")
    for group, (asked, right) in groups.items():
        print(f"{group:<32}{asked:>7}{right:>7}{right / max(asked, 1):>8.3f}")


if __name__ == "__main__":
    main()
