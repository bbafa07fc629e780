"""Does the model still answer a language-only question in the middle of a chat about an image?

The held-out language items are asked on their own, as the language-only tuning data asks them. In a chat, people
ask them after talking about an image, with the image still in the conversation. This writes, beside the world's
held-out items, each language item asked after one earlier round about a held-out image (a counting question
and its reference answer, the image attached to it), in the held-out set's format, and with `--model` scores the
model on the language items both ways with the evaluation's own scoring.

    python experiments/language_after_image.py [--world runs/demo/world] [--out runs/language_after_image]
        [--model runs/demo/model] [--seed 0]

Without `--model` it only writes `<out>/eval/heldout.jsonl`, for `mmgpt eval --data` (its image paths are
absolute).
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


def after_an_image(items: list[dict], world: Path, rng: random.Random) -> list[dict]:
    """Each language item of `items` (the held-out records of the world at `world`) asked after one round about
    a held-out image: a counting question without history, drawn by `rng`, with its reference answer."""
    rounds = [i for i in items if i["kind"] == "counting" and not i.get("history") and i.get("image")]
    if not rounds:
        raise SystemExit(f"{world}: no held-out counting question to open a conversation with")
    out = []
    for item in items:
        if item["kind"] != "language":
            continue
        opening = rng.choice(rounds)
        record = {k: v for k, v in item.items() if not k.startswith("_")}
        record.update(
            id=f"{item['id']}-after-image",
            image=str((world / opening["image"]).resolve()),
            history=[{"question": opening["question"], "answer": opening["reference"]}],
        )
        out.append(record)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--world", default="runs/demo/world")
    parser.add_argument("--out", default="runs/language_after_image")
    parser.add_argument("--model", default=None, help="a model directory to score both ways")
    parser.add_argument("--seed", type=int, default=0, help="which opening round each item gets")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    world = Path(args.world)
    heldout = world / "eval" / "heldout.jsonl"
    if not heldout.is_file():
        parser.error(f"no held-out items at {heldout}: run `mmgpt synth` or `mmgpt demo` first")
    items = load_heldout(heldout)
    mixed = after_an_image(items, world, random.Random(args.seed))
    if not mixed:
        parser.error(f"{heldout} has no language items")
    path = Path(args.out) / "eval" / "heldout.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in mixed), encoding="utf-8")
    print(f"wrote {len(mixed)} language items asked after a round about an image to {path}")
    if args.model is None:
        return
    from mmgpt.model.checkpoints import load_model

    model = load_model(args.model, dtype="auto", merge_adapters=True)
    alone = [i for i in items if i["kind"] == "language"]
    plain_path = Path(args.out) / "eval" / "alone.jsonl"
    plain_path.write_text(
        "".join(json.dumps({k: v for k, v in i.items() if not k.startswith("_")}) + "\n" for i in alone)
    )
    scores = {}
    for name, source in (("alone", plain_path), ("after a round about an image", path)):
        metrics, _ = evaluate_heldout(model, source, batch_size=args.batch_size, progress=False)
        scores[name] = metrics["language_acc"]
    print(f"{'language items':<32}{'accuracy':>9}")
    for name, value in scores.items():
        print(f"{name:<32}{value:>9.3f}")


if __name__ == "__main__":
    main()
