"""Do the model's answers to colour and shape questions name what the question asked about, and are they right
when they do? It splits the evaluation's colour / shape QA score into the two steps an answer takes.

Every colour or shape question of the held-out set has a reference answer that names its subject first ("The
medium square is red.", "The small red shape is a square.", "The shape at the top-right is green."). A reply
names the asked subject when that phrase appears in it. Among the replies that do, accuracy measures binding
(the colour or kind of the shape asked about); how many do measures the question side (taking the subject from
the question, not from what the image suggests). A second table splits the same questions by how many colours
(colour questions) or kinds (shape questions) their image holds, beside a guess among those: a model that binds
a colour to its shape stays right as they grow, one that reads only which colours are there falls to the guess.
The replies are those `mmgpt demo` wrote, scored the way the evaluation scores them; no model is run.

    python experiments/reply_referents.py [--replies runs/demo/eval_items.jsonl] [--world runs/demo/world]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmgpt.synth.answers import is_correct  # noqa: E402

KINDS = ("color", "shape")
SUBJECT = re.compile(r"^The (.+?) is ")


def asked_subject(reference: str) -> str | None:
    """The subject a reference answer names first, lower-cased ("The medium square is red." -> "medium
    square"), or None when it does not start "The ... is"."""
    match = SUBJECT.match(reference.strip())
    return match.group(1).lower() if match else None


@dataclass
class Split:
    """Counts of one question kind: replies, those naming the asked subject, and the right ones of each part."""

    replies: int = 0
    named: int = 0
    right_named: int = 0
    right_other: int = 0

    def shares(self) -> tuple[float, float, float, float]:
        """(right overall, naming the subject, right when naming it, right otherwise); 0 for an empty part."""
        other = self.replies - self.named
        return (
            (self.right_named + self.right_other) / max(self.replies, 1),
            self.named / max(self.replies, 1),
            self.right_named / max(self.named, 1),
            self.right_other / max(other, 1),
        )


def split_replies(items: Iterable[dict], replies: dict[str, str]) -> dict[str, Split]:
    """{question kind: Split} over the colour and shape `items` (held-out records with id, kind, answer,
    answer_space, reference) that have a reply in `replies` ({item id: reply}) and a reference naming a subject."""
    splits = {kind: Split() for kind in KINDS}
    for item in items:
        subject = asked_subject(item.get("reference") or "")
        if item["kind"] not in splits or item["id"] not in replies or subject is None:
            continue
        reply = replies[item["id"]]
        right = is_correct(item["kind"], reply, item["answer"], item.get("answer_space"))
        split = splits[item["kind"]]
        split.replies += 1
        if subject in reply.lower():
            split.named += 1
            split.right_named += right
        else:
            split.right_other += right
    return splits


#: The scene attribute a question kind asks about, as world.json names it.
ATTRIBUTE = {"color": "colour", "shape": "kind"}


def split_by_distinct(
    items: Iterable[dict], replies: dict[str, str], scenes: dict[str, dict]
) -> dict[tuple[str, int], tuple[int, int]]:
    """{(question kind, distinct colours or kinds in its image): (questions, right)} over the colour and shape
    `items` with a reply in `replies` ({item id: reply}) whose image is in `scenes` ({image path: world.json
    scene record})."""
    groups: dict[tuple[str, int], tuple[int, int]] = {}
    for item in items:
        scene = scenes.get(item.get("image") or "")
        if item["kind"] not in ATTRIBUTE or item["id"] not in replies or scene is None:
            continue
        distinct = len({shape[ATTRIBUTE[item["kind"]]] for shape in scene["shapes"]})
        right = is_correct(item["kind"], replies[item["id"]], item["answer"], item.get("answer_space"))
        asked, hits = groups.get((item["kind"], distinct), (0, 0))
        groups[(item["kind"], distinct)] = (asked + 1, hits + right)
    return dict(sorted(groups.items()))


def read_scenes(world: Path) -> dict[str, dict]:
    """{image path: scene record} from `world`/world.json; {} (and a note on stderr) when it is missing."""
    manifest = world / "world.json"
    if not manifest.exists():
        print(f"{manifest}: not found; the table by colours and kinds per image is left out", file=sys.stderr)
        return {}
    return {path: scene for scene in json.loads(manifest.read_text())["scenes"] for path in scene["paths"]}


def read_jsonl(path: Path) -> list[dict]:
    """The records of a jsonl file; exits with a message naming the file and line of a bad one."""
    if not path.exists():
        sys.exit(f"{path}: not found; run `mmgpt demo` first or pass the path")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                sys.exit(f"{path}, line {number}: not JSON ({error.msg})")
    return records


def read_replies(path: Path) -> dict[str, str]:
    """{item id: reply} from the demo's per-item replies (a jsonl file, `runs/demo/eval_items.jsonl`) or from the
    report `mmgpt eval --out` writes (a JSON object whose "items" hold them)."""
    if path.suffix == ".json" and path.exists():
        try:
            report = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            sys.exit(f"{path}: not JSON ({error.msg})")
        if not isinstance(report, dict) or not isinstance(report.get("items"), list):
            sys.exit(f"{path}: not a report of `mmgpt eval --out` (no list of items)")
        records = report["items"]
    else:
        records = read_jsonl(path)
    return {r["id"]: r["reply"] for r in records if isinstance(r, dict) and "id" in r and "reply" in r}


def read_demo_replies(description: str) -> tuple[argparse.Namespace, list[dict], dict[str, str]]:
    """Parse `--replies` and `--world` from the command line (described by `description`) and read both: the
    arguments, the world's held-out records and {item id: reply}."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--replies",
        default="runs/demo/eval_items.jsonl",
        help="the demo's per-item replies, or a report of `mmgpt eval --out` (.json)",
    )
    parser.add_argument("--world", default="runs/demo/world", help="the world the replies answer")
    args = parser.parse_args()
    replies = read_replies(Path(args.replies))
    return args, read_jsonl(Path(args.world) / "eval" / "heldout.jsonl"), replies


def main() -> None:
    args, items, replies = read_demo_replies(" ".join(__doc__.split("\n\n")[0].split()))
    splits = split_replies(items, replies)
    print(
        f"{'question':<10}{'replies':>9}{'right':>8}{'name the asked subject':>24}{'right then':>12}{'right otherwise':>17}"
    )
    for kind, split in splits.items():
        right, named, right_named, right_other = split.shares()
        print(
            f"{kind:<10}{split.replies:>9}{right:>8.3f}{named:>24.3f}{right_named:>12.3f}{right_other:>17.3f}"
        )
    if not any(split.replies for split in splits.values()):
        sys.exit(f"{args.replies}: no reply to a colour or shape question of {args.world}")
    groups = split_by_distinct(items, replies, read_scenes(Path(args.world)))
    if groups:
        print(
            f"\n{'question':<10}{'colours or kinds in the image':>31}{'asked':>7}{'right':>8}{'guess among them':>18}"
        )
        for (kind, distinct), (asked, right) in groups.items():
            print(f"{kind:<10}{distinct:>31}{asked:>7}{right / asked:>8.3f}{1 / distinct:>18.3f}")


if __name__ == "__main__":
    main()
