"""Does a model know its sums, and in which words? A teacher-forced probe of arithmetic, text only.

For operand pairs of 0-20 the model scores the sentence "a plus b equals N." for every N the answer space
allows and the probe counts how often the most likely N is right (and within one), for pairs the world trains
on and for the pairs it holds out of all training (the held-out language items ask only those). The same is
done for the differences, and for each operation in a second phrasing the pretraining text never uses ("The sum
of a and b is N."): a base that knows a sum in its own words but not in others cannot be tuned to say it in
others without learning it anew. No generation and no template.

    python experiments/arithmetic_probe.py [--model DIR] [--pairs 40] [--seed 0]

The default model is the demo's cached base (run `mmgpt demo` first); `--seed` is the world's seed, which
decides the held-out pairs.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

#: (operation, phrasing, whether the pretraining text states arithmetic this way); None is the pretraining's own
#: statement (`knowledge.arithmetic_statement`)
PHRASINGS = (
    ("sum", None, True),
    ("sum", "The sum of {a} and {b} is {n}.", False),
    ("difference", None, True),
    ("difference", "The difference between {a} and {b} is {n}.", False),
)


def sentence(op: str, phrasing: str | None, a: int | str, b: int | str, n: int | str) -> str:
    """`phrasing` (or the pretraining's statement when None) of `a` `op` `b` with `n` as the result."""
    from mmgpt.synth.knowledge import arithmetic_statement

    return phrasing.format(a=a, b=b, n=n) if phrasing else arithmetic_statement(op, a, b, n)


def pair_groups(seed: int, per_group: int) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """Up to `per_group` operand pairs per (operation, "trained" | "held out"), drawn reproducibly."""
    from mmgpt.synth.knowledge import allowed_pairs, reserved_pairs

    reserved = reserved_pairs(seed)
    allowed = allowed_pairs(reserved)
    rng = random.Random(f"{seed}-arithmetic-probe")
    groups = {}
    for op in ("sum", "difference"):
        held = sorted(reserved[op])
        for name, pool in (("trained", allowed[op]), ("held out", held)):
            groups[(op, name)] = rng.sample(pool, min(per_group, len(pool)))
    return groups


def probe(model, phrasing: str | None, op: str, pairs: list[tuple[int, int]]) -> tuple[float, float]:
    """(exact, within-one) share of `pairs` for which the model's most likely N in `phrasing` is a+b (or a-b),
    N ranging over the answer space of the world's language items."""
    from count_probe import sentence_logprobs

    from mmgpt.synth.knowledge import NUMBER_SPACE_20, NUMBER_SPACE_40

    answers = [int(n) for n in (NUMBER_SPACE_40 if op == "sum" else NUMBER_SPACE_20)]
    exact = near = 0
    for a, b in pairs:
        scores = sentence_logprobs(model, None, [sentence(op, phrasing, a, b, n) for n in answers])
        guess, truth = answers[int(scores.argmax())], (a + b if op == "sum" else a - b)
        exact += guess == truth
        near += abs(guess - truth) <= 1
    return exact / len(pairs), near / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="model directory (default: the demo's cached base)")
    parser.add_argument("--pairs", type=int, default=40, help="operand pairs per operation and group")
    parser.add_argument("--seed", type=int, default=0, help="the world's seed (decides the held-out pairs)")
    args = parser.parse_args()

    from count_probe import load_probed_model

    model_dir, model = load_probed_model(args.model, args.seed)
    groups = pair_groups(args.seed, args.pairs)
    print(f"model {model_dir}")
    print(f"{'phrasing':<46}{'pairs':<10}{'right':>7}{'within 1':>10}")
    for op, phrasing, pretrained in PHRASINGS:
        shown = sentence(op, phrasing, "a", "b", "N") + (" (pretraining's)" if pretrained else "")
        for name in ("trained", "held out"):
            exact, near = probe(model, phrasing, op, groups[(op, name)])
            print(f"{shown:<46}{name:<10}{exact:>7.3f}{near:>10.3f}")


if __name__ == "__main__":
    main()
