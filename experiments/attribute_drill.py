"""Write a copy of a synthetic world whose tuning data drills the questions colour/shape QA and counting ask.

Each training image gets one more LLaVA conversation of up to five rounds drawn with the world's own question
generators: the colour of a shape named without its colour (twice), the kind of a shape named without its kind,
and the count of one colour and of one kind ("Which colour does the medium square have?" → "The medium square is
red."). The copy links everything else to the original world and writes a `datasets.yaml` that adds the drill to
the vision-language mixture (with `--weight`), or with `--only` uses it alone beside the language-only data.

It also writes `fit/fit.jsonl`: colour, shape and colour-count questions drawn afresh about every 13th training
image (about 900), in the held-out set's format, so that `mmgpt eval --data <out>/fit/fit.jsonl` measures how well a tuned
model answers about images it was tuned on: if it scores there what it scores on held-out images, it has not
fitted its training data, and more data of the same kind is not what it lacks.

Since world version 7 (`mmgpt.synth.world.GENERATOR_VERSION`) the world has such conversations of its own,
`llava/attributes.json` in its mixture at weight 3, each ending with a follow-up chain; on such a world this
script adds a second, separately drawn drill, and reproduces the notes' runs only on a version-6 world.

    python experiments/attribute_drill.py --world runs/demo/world --out runs/drill_world [--only] [--weight 3]
    mmgpt train --config configs/synthetic_mmgpt.yaml data.config=runs/drill_world/datasets.yaml ...
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mmgpt.synth import qa as Q  # noqa: E402
from mmgpt.synth.heldout import eval_item  # noqa: E402
from mmgpt.synth.records import ATTRIBUTE_ROUNDS, llava_record  # noqa: E402
from mmgpt.synth.scene import Scene  # noqa: E402
from mmgpt.synth.world import WorldManifest  # noqa: E402

DRILL_FILE = "drill/drill.json"
FIT_FILE = "fit/fit.jsonl"
#: The drill's rounds per image, in drawing order (shuffled per conversation): the world's own attribute rounds;
#: generators that do not apply to a scene (no shape can be named without its colour, say) are skipped.
DRILL_ROUNDS = ATTRIBUTE_ROUNDS
#: The fit check's questions per image, with the held-out set's kind names.
FIT_QUESTIONS = (("color", Q.colour_of), ("shape", Q.kind_of), ("counting", Q.count_colour))
FIT_EVERY = 13
#: Fit-check images stop being drawn once this many items are written.
FIT_ITEMS = 900


def drill_conversation(scene: Scene, rng: random.Random) -> dict:
    """A LLaVA conversation record about the training `scene`: the rounds of DRILL_ROUNDS that apply,
    shuffled."""
    rounds = [qa for qa in (generate(scene, rng) for generate in DRILL_ROUNDS) if qa is not None]
    rng.shuffle(rounds)
    return llava_record(scene.image_id, [(qa.question, qa.response) for qa in rounds])


def fit_items(scene: Scene, image: str, rng: random.Random) -> list[dict]:
    """Held-out-format records of FIT_QUESTIONS about the training `scene` (its path in the world `image`)."""
    asked = ((kind, generate(scene, rng)) for kind, generate in FIT_QUESTIONS)
    return [
        eval_item(f"fit-{scene.image_id:06d}-{kind}", kind, image, qa) for kind, qa in asked if qa is not None
    ]


def drill_datasets(datasets: dict, only: bool, weight: float) -> dict:
    """The world's dataset config `datasets` (datasets.yaml as a dict) with the drill in its vision-language
    mixture: added with `weight`, or in place of the rest when `only`."""
    drill = {"type": "llava", "ann_path": DRILL_FILE, "image_root": "llava/images", "name": "drill"}
    if weight != 1.0:
        drill["weight"] = weight
    vision_language = [] if only else list(datasets.get("vision_language", []))
    return {**datasets, "vision_language": [*vision_language, drill]}


def write_drill_world(world: Path, out: Path, only: bool = False, weight: float = 1.0, seed: int = 0) -> dict:
    """Write the drill copy of `world` into `out` (links to the world's files, the drill, the fit check, a new
    datasets.yaml). Returns {"conversations", "rounds", "fit_items"}."""
    manifest = world / "world.json"
    if not manifest.exists():
        sys.exit(f"{manifest}: not found; pass a world written by `mmgpt synth` or `mmgpt demo`")
    if out.resolve() == world.resolve():
        sys.exit("--out must differ from --world: the drill is written beside links to the world's files")
    out.mkdir(parents=True, exist_ok=True)
    for entry in world.iterdir():
        link = out / entry.name
        if entry.name != "datasets.yaml" and not link.exists() and not link.is_symlink():
            link.symlink_to(entry.resolve())
    rng = random.Random(seed)
    conversations, fit = [], []
    for record in WorldManifest.load(manifest).scenes:
        if record["split"] != "train":
            continue
        scene = Scene.from_dict(record)
        llava = [path for path in record["paths"] if path.startswith("llava/images/")]
        if not llava:
            continue
        conversations.append(drill_conversation(scene, rng))
        if scene.image_id % FIT_EVERY == 0 and len(fit) < FIT_ITEMS:
            fit.extend(fit_items(scene, llava[0], rng))
    (out / DRILL_FILE).parent.mkdir(exist_ok=True)
    (out / DRILL_FILE).write_text(json.dumps(conversations))
    (out / FIT_FILE).parent.mkdir(exist_ok=True)
    (out / FIT_FILE).write_text("".join(json.dumps(item) + "\n" for item in fit))
    datasets = yaml.safe_load((world / "datasets.yaml").read_text())
    (out / "datasets.yaml").unlink(missing_ok=True)
    (out / "datasets.yaml").write_text(
        yaml.safe_dump(drill_datasets(datasets, only, weight), sort_keys=False)
    )
    rounds = sum(len(c["conversations"]) // 2 for c in conversations)
    return {"conversations": len(conversations), "rounds": rounds, "fit_items": len(fit)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="runs/demo/world", help="the world to copy")
    parser.add_argument("--out", required=True, help="where to write the copy")
    parser.add_argument("--only", action="store_true", help="tune on the drill alone (and the language data)")
    parser.add_argument(
        "--weight", type=float, default=1.0, help="the drill's mixture weight (others have 1)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.weight <= 0:
        sys.exit(f"--weight must be > 0, got {args.weight}")
    counts = write_drill_world(Path(args.world), Path(args.out), args.only, args.weight, args.seed)
    print(
        f"{counts['conversations']} drill conversations ({counts['rounds']} rounds), "
        f"{counts['fit_items']} fit-check items in {args.out}"
    )


if __name__ == "__main__":
    main()
