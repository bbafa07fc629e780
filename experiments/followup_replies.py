"""Which follow-up questions does the model get right? It splits the evaluation's follow-up score by the
question's form, with colours and shape kinds written C and K ("And how many of them are C?").

A held-out follow-up is asked after one or two earlier rounds about the same image, and its answer needs what
those rounds said: the shape whose colour was named, the count to add one to. A form the model answers from the
image alone, or with the commonest answer, scores low in its row while the rows that need nothing earlier stay
high. For the forms that name a colour, a last column gives the share of replies that name it too. The replies
are those `mmgpt demo` wrote, scored the way the evaluation scores them; no model is run.

    python experiments/followup_replies.py [--replies runs/demo/eval_items.jsonl] [--world runs/demo/world]
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

from mmgpt.eval.runner import item_context  # noqa: E402
from mmgpt.synth.answers import is_correct  # noqa: E402
from mmgpt.synth.vocab import COLOUR_NAMES, KINDS  # noqa: E402

_COLOUR = re.compile(r"\b(" + "|".join(COLOUR_NAMES) + r")\b")
_KIND = re.compile(r"\b(" + "|".join(KINDS) + r")s?\b")


def question_form(question: str) -> str:
    """`question` with its colours written C and its shape kinds (singular or plural) K."""
    return _KIND.sub("K", _COLOUR.sub("C", question))


def names_asked_colours(question: str, reply: str) -> bool:
    """Whether `reply` names every colour `question` names (true when the question names none)."""
    return all(re.search(rf"\b{colour}\b", reply) for colour in _COLOUR.findall(question))


def split_followups(items: Iterable[dict], replies: dict[str, str]) -> dict[str, tuple[int, int, int]]:
    """{question form: (questions, right, replies naming the colours the question names)} over the follow-up
    `items` that have a reply in `replies` ({item id: reply}), the commonest form first."""
    forms: dict[str, tuple[int, int, int]] = {}
    for item in items:
        if item["kind"] != "followup" or item["id"] not in replies:
            continue
        reply = replies[item["id"]]
        right = is_correct("followup", reply, item["answer"], item.get("answer_space"), item_context(item))
        named = names_asked_colours(item["question"], reply)
        form = question_form(item["question"])
        asked, hits, names = forms.get(form, (0, 0, 0))
        forms[form] = (asked + 1, hits + right, names + named)
    return dict(sorted(forms.items(), key=lambda kv: (-kv[1][0], kv[0])))


def main() -> None:
    args, items, replies = read_demo_replies(" ".join(__doc__.split("\n\n")[0].split()))
    forms = split_followups(items, replies)
    if not forms:
        sys.exit(f"{args.replies}: no reply to a follow-up question of {args.world}")
    width = max(len(form) for form in forms) + 2
    print(f"{'follow-up question':<{width}}{'asked':>7}{'right':>8}{'name the colour asked':>23}")
    for form, (asked, right, named) in forms.items():
        share = f"{named / asked:.3f}" if re.search(r"\bC\b", form) else "-"
        print(f"{form:<{width}}{asked:>7}{right / asked:>8.3f}{share:>23}")
    asked, right = sum(f[0] for f in forms.values()), sum(f[1] for f in forms.values())
    print(f"{'all':<{width}}{asked:>7}{right / asked:>8.3f}")


if __name__ == "__main__":
    main()
