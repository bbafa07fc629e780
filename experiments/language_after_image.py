"""Does the model still answer a language-only question in the middle of a chat about an image?

The held-out language items are asked on their own, as the language-only tuning data asks them. In a chat, people
ask them after talking about an image, with the image still in the conversation. This writes, beside the world's
held-out items, each language item asked after `--rounds` earlier rounds about one held-out image (that image's
own counting, colour, shape and caption questions with their reference answers, in the held-out file's order, the image
attached to the first), in the held-out set's format, and with `--model` scores the model on the language items
on their own and after 1, 2 and 4 rounds (or the `--rounds` given), with the evaluation's own scoring.

    python experiments/language_after_image.py [--world runs/demo/world] [--out runs/language_after_image]
        [--model runs/demo/model] [--rounds N ...] [--seed 0]

Without `--model` it only writes `<out>/after_<N>/eval/heldout.jsonl` for each N, for `mmgpt eval --data` (their
image paths are absolute).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmgpt.eval.runner import evaluate_heldout, load_heldout  # noqa: E402

#: The held-out questions that open a conversation: about the image alone, with no earlier round of their own.
OPENING_KINDS = ("counting", "color", "shape", "caption")


def as_written(item: dict) -> dict:
    """A held-out record as its file holds it: without the keys `load_heldout` adds (`_root`)."""
    return {k: v for k, v in item.items() if not k.startswith("_")}


def after_an_image(items: list[dict], world: Path, rng: random.Random, rounds: int = 1) -> list[dict]:
    """Each language item of `items` (the held-out records of the world at `world`) asked after `rounds` rounds
    about one held-out image drawn by `rng` among those with that many opening questions (OPENING_KINDS, without
    history): its first `rounds` such questions, answered with their references."""
    openings: dict[str, list[dict]] = {}
    for item in items:
        if item["kind"] in OPENING_KINDS and not item.get("history") and item.get("image"):
            openings.setdefault(item["image"], []).append(item)
    images = [image for image, questions in openings.items() if len(questions) >= rounds]
    if not images:
        raise SystemExit(f"{world}: no held-out image has {rounds} questions to open a conversation with")
    out = []
    for item in items:
        if item["kind"] != "language":
            continue
        image = rng.choice(images)
        record = as_written(item)
        record.update(
            id=f"{item['id']}-after-{rounds}",
            image=str((world / image).resolve()),
            history=[{"question": q["question"], "answer": q["reference"]} for q in openings[image][:rounds]],
        )
        out.append(record)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--world", default="runs/demo/world")
    parser.add_argument("--out", default="runs/language_after_image")
    parser.add_argument("--model", default=None, help="a model directory to score")
    parser.add_argument(
        "--rounds", type=int, nargs="+", default=[1, 2, 4], help="earlier rounds, one or more"
    )
    parser.add_argument("--seed", type=int, default=0, help="which image each item is asked after")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if min(args.rounds) < 1:
        parser.error("--rounds must be >= 1")
    world = Path(args.world)
    heldout = world / "eval" / "heldout.jsonl"
    if not heldout.is_file():
        parser.error(f"no held-out items at {heldout}: run `mmgpt synth` or `mmgpt demo` first")
    items = load_heldout(heldout)
    alone = [as_written(i) for i in items if i["kind"] == "language"]
    if not alone:
        parser.error(f"{heldout} has no language items")
    files = {"on their own": _write(Path(args.out) / "alone" / "eval" / "heldout.jsonl", alone)}
    for rounds in args.rounds:
        mixed = after_an_image(items, world, random.Random(args.seed), rounds)
        name = f"after {rounds} round{'s' * (rounds > 1)} about an image"
        files[name] = _write(Path(args.out) / f"after_{rounds}" / "eval" / "heldout.jsonl", mixed)
        print(f"wrote {len(mixed)} language items asked {name} to {files[name]}")
    if args.model is None:
        return
    from mmgpt.model.checkpoints import load_model

    model = load_model(args.model, dtype="auto", merge_adapters=True)
    print(f"{'language items':<34}{'accuracy':>9}")
    for name, path in files.items():
        metrics, _ = evaluate_heldout(model, path, batch_size=args.batch_size, progress=False)
        print(f"{name:<34}{metrics['language_acc']:>9.3f}")


def _write(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


if __name__ == "__main__":
    main()
