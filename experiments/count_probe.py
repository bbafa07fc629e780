"""Can the model read counts off an image? A teacher-forced probe of the synthetic base (or any model directory).

For each held-out image the model scores the pretraining statements of a count ("There are N shapes.", "The
number of red shapes is N.", "The number of stars is N.") for every N the world allows, right after the image,
and the probe counts how often the most likely N is the true one. Three statements per image: all shapes, the
shapes of one colour present, the shapes of one kind present. No generation and no template: this asks what the
image features and cross-attention carry, not whether the model follows instructions. The "commonest N" column
is what always choosing the most frequent true count scores. A binding probe does the same for the colour of a
named shape ("The square is <colour>.") and the kind of one ("The red shape is a <kind>."), and tells a wrong
answer that is another shape's colour or kind from one the image lacks.

With the demo's evaluation replies at hand (`--eval-items`, default runs/demo/eval_items.jsonl) it also scores the
tuned model's generated answers to the held-out questions that count all shapes, beside always answering "1", and
checks whether replies keep to what the question asks about: for counting questions that name a colour or a kind
and colour questions that name a kind, how often the reply names that same colour or kind ("How many blue
shapes?" -> "There are 2 purple shapes." does not), and the accuracy of the replies that do and that do not.

    python experiments/count_probe.py [--model DIR] [--world runs/demo/world] [--limit 150] [--eval-items FILE]

The default model is the demo's cached base (run `mmgpt demo` first).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def statement(n: int, noun: str) -> str:
    """The world's own count sentence: "There are 3 shapes." for all shapes, "The number of red shapes is 2." /
    "The number of stars is 0." for one colour or kind."""
    from mmgpt.synth.qa import count_statement, total_statement

    return total_statement(n) if noun == "shape" else count_statement(n, noun)


def sentence_logprobs(model, image, texts: list[str]):
    """Sum of token log-probabilities (len(texts),) of each text after `<image>`, all with the same image, or of
    the texts alone when `image` is None."""
    tok = model.tokenizer
    prefix = "" if image is None else "<image>"
    return scored_logprobs(
        model, image, [tok(prefix + t, add_special_tokens=True).input_ids for t in texts], 1
    )


def scored_logprobs(model, image, rows: list[list[int]], start: int):
    """Sum of the log-probabilities (len(rows),) of each row's tokens from position `start` on, given the tokens
    before them; every row sees the same image (a PIL image), or none when `image` is None."""
    import torch

    pad = model.tokenizer.pad_token_id
    width = max(map(len, rows))
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    scored = torch.zeros_like(mask)
    for i, r in enumerate(rows):
        scored[i, start : len(r)] = 1
    pixels = None
    if image is not None:
        pixels = model.image_processor.batch([image])[None, :, None].expand(len(rows), -1, -1, -1, -1, -1)
    with torch.no_grad():
        logits = model(pixels, ids, attention_mask=mask).logits
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, ids[:, 1:, None])[..., 0]
    return (logprobs * scored[:, 1:]).sum(dim=1)


ATTRIBUTES = ("colour", "kind")


def named(text: str, attribute: str) -> str | None:
    """The first colour or kind (`attribute`) that `text` names ("stars" counts as "star"), or None."""
    from mmgpt.synth.answers import extract_from_space
    from mmgpt.synth.vocab import COLOUR_NAMES, KINDS

    return extract_from_space(text, COLOUR_NAMES if attribute == "colour" else KINDS)


def total_count_replies(items: list[dict], source: Path) -> None:
    """Print the accuracy of the replies in `items` (from `source`) to counting questions naming no colour and no
    kind, beside always answering "1"."""
    from mmgpt.eval.runner import score

    total = [
        x for x in items if x["kind"] == "counting" and not any(named(x["question"], a) for a in ATTRIBUTES)
    ]
    if not total:
        return
    replies = score(total, [x["reply"] for x in total])["counting_acc"]
    always_one = score(total, ["1"] * len(total))["counting_acc"]
    print(
        f"\n{source}: replies to the {len(total)} questions counting all shapes: right {replies:.3f}, "
        f'always "1" {always_one:.3f}'
    )


REFERENT_GROUPS = (
    ("counting", "colour", "counting questions naming a colour"),
    ("counting", "kind", "counting questions naming a kind"),
    ("color", "kind", "colour questions naming a kind"),
)


def referent_agreement(items: list[dict]) -> list[tuple[str, int, int, float, float]]:
    """Whether replies name the colour or kind their question names, per group of REFERENT_GROUPS.

    `items` are evaluation items with "kind", "question", "answer" and "reply". Returns, per group with any
    question, (label, questions, replies naming the same colour/kind, accuracy of those, accuracy of the rest).
    """
    from mmgpt.synth.answers import is_correct

    rows = []
    for kind, attribute, label in REFERENT_GROUPS:
        same, other = [], []
        for item in items:
            if item["kind"] != kind:
                continue
            asked = named(item["question"], attribute)
            if asked is None:
                continue
            right = is_correct(kind, item["reply"], item["answer"], item.get("answer_space"))
            (same if named(item["reply"], attribute) == asked else other).append(right)
        if same or other:
            accuracy = [sum(group) / len(group) if group else 0.0 for group in (same, other)]
            rows.append((label, len(same) + len(other), len(same), *accuracy))
    return rows


def print_referent_agreement(items: list[dict]) -> None:
    """Print `referent_agreement(items)` as a table."""
    rows = referent_agreement(items)
    if not rows:
        return
    print(
        f"\n{'replies to':<38}{'questions':>10}{'same referent':>15}{'right if same':>15}{'right if not':>14}"
    )
    for label, n, same, right_same, right_other in rows:
        print(f"{label:<38}{n:>10}{same / n:>15.3f}{right_same:>15.3f}{right_other:>14.3f}")


def print_binding(model, images: dict, scenes: list) -> None:
    """Print how often the model binds a colour or kind to the shape it belongs to, on images with two colours
    or more: for the first shape the world can name without its colour ("the square"), the most likely colour in
    "The square is <colour>." against the true one, another shape's, and a colour the image lacks; the same for
    kinds ("The red shape is a <kind>."). "guessing among the image's" is what choosing uniformly among the
    image's colours (kinds) scores: a model that sees which colours are there but not which shape has which.
    `images` maps each scene's image id to its loaded image."""
    from mmgpt.synth.qa import colour_statement, kind_statement, ref_without_colour, ref_without_kind
    from mmgpt.synth.vocab import COLOUR_NAMES, KINDS

    probes = (
        ("colour of a named shape", "colour", ref_without_colour, colour_statement, COLOUR_NAMES),
        ("kind of a named shape", "kind", ref_without_kind, kind_statement, KINDS),
    )
    print(
        f"\n{'binding probe':<26}{'images':>7}{'right':>8}{'another shape':>15}{'absent':>8}{'guessing':>10}"
    )
    for label, attribute, ref_of, sentence, space in probes:
        outcome, guessing = collections.Counter(), []
        for scene in scenes:
            named_shapes = [(x, r) for x in scene.ordered() if (r := ref_of(scene, x))]
            if not named_shapes:
                continue
            shape, ref = named_shapes[0]
            scores = sentence_logprobs(model, images[scene.image_id], [sentence(ref, v) for v in space])
            picked, present = space[int(scores.argmax())], {getattr(x, attribute) for x in scene.shapes}
            truth = getattr(shape, attribute)
            outcome["right" if picked == truth else "another" if picked in present else "absent"] += 1
            guessing.append(1 / len(present))
        n = sum(outcome.values())
        if n:
            print(
                f"{label:<26}{n:>7}{outcome['right'] / n:>8.3f}{outcome['another'] / n:>15.3f}"
                f"{outcome['absent'] / n:>8.3f}{sum(guessing) / n:>10.3f}"
            )


def open_world(path: str):
    """(directory, `WorldManifest`) of the synthetic world at `path`; exits with a message when there is none."""
    from mmgpt.synth.world import WorldManifest

    world = Path(path)
    if not (world / "world.json").exists():
        sys.exit(f"{world}: no synthetic world there; run `mmgpt demo` first or pass --world")
    return world, WorldManifest.load(world)


def load_probed_model(model: str | None, seed: int = 0, world: Path | None = None):
    """(directory, model in eval mode) of `model`, or, when None, of the base the demo of `world` tuned (from
    its tuning run's config.yaml), else the demo's cached base for that world's seed and scale (for world `seed`
    at the default scale without a world); exits with a message when there is no model there."""
    from mmgpt import load_model

    model_dir = Path(model) if model else default_base(world, seed)
    if not model_dir.exists():
        sys.exit(f"{model_dir}: no model there; run `mmgpt demo` first or pass --model")
    return model_dir, load_model(model_dir, merge_adapters=True).eval()


def default_base(world: Path | None, seed: int = 0) -> Path:
    """The model directory of the base a demo's `world` belongs to (see `load_probed_model`)."""
    import yaml

    from mmgpt.demo import base_dir_for
    from mmgpt.synth.world import WorldManifest

    if world is None or not (world / "world.json").exists():
        return base_dir_for(seed, False) / "model"
    recorded = world.parent / "tune" / "config.yaml"
    if recorded.exists():
        path = (yaml.safe_load(recorded.read_text()).get("model") or {}).get("path")
        if path:
            return Path(path)
    manifest = WorldManifest.load(world)
    return base_dir_for(manifest.seed, manifest.scale == "quick") / "model"


def image_probe_parser(description: str) -> argparse.ArgumentParser:
    """Options of the probes that read held-out images: --model (default: the demo's cached base), --world,
    --limit (held-out images probed, default 150)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default=None, help="model directory (default: the demo's cached base)")
    parser.add_argument("--world", default=str(ROOT / "runs" / "demo" / "world"))
    parser.add_argument("--limit", type=int, default=150, help="held-out images probed")
    return parser


def heldout_scenes(world: Path, manifest, limit: int) -> tuple[list, dict]:
    """The first `limit` held-out scenes of the world (`Scene`s) and {image id: PIL image} for them."""
    from mmgpt.data.dataset import load_image
    from mmgpt.synth.scene import Scene

    heldout = [s for s in manifest.scenes if s["split"] == "heldout"][:limit]
    images = {s["image_id"]: load_image(world / s["paths"][0]) for s in heldout}
    return [Scene.from_dict(s) for s in heldout], images


def main() -> None:
    parser = image_probe_parser(__doc__.splitlines()[0])
    parser.add_argument("--eval-items", default=str(ROOT / "runs" / "demo" / "eval_items.jsonl"))
    args = parser.parse_args()

    from tqdm import tqdm

    from mmgpt.synth.scene import MAX_SHAPES

    world, manifest = open_world(args.world)
    model_dir, model = load_probed_model(args.model, world=Path(args.world))
    scenes, images = heldout_scenes(world, manifest, args.limit)

    hits, truths = collections.Counter(), collections.defaultdict(list)
    for scene in tqdm(scenes, desc="probing", unit="image"):
        image = images[scene.image_id]
        colour, kind = scene.shapes[0].colour, scene.shapes[-1].kind
        probes = {
            "all shapes": ("shape", len(scene.shapes)),
            "shapes of one colour": (f"{colour} shape", scene.count(colour=colour)),
            "shapes of one kind": (kind, scene.count(kind=kind)),
        }
        for name, (noun, truth) in probes.items():
            scores = sentence_logprobs(model, image, [statement(n, noun) for n in range(MAX_SHAPES + 1)])
            hits[name] += int(scores.argmax()) == truth
            truths[name].append(truth)

    print(f"model {model_dir}, {len(scenes)} held-out images")
    print(f"{'statement counted':<24}{'right':>8}{'commonest N':>13}")
    for name, values in truths.items():
        commonest = collections.Counter(values).most_common(1)[0][1] / len(values)
        print(f"{name:<24}{hits[name] / len(values):>8.3f}{commonest:>13.3f}")
    print_binding(model, images, [s for s in scenes if len({x.colour for x in s.shapes}) > 1])
    source = Path(args.eval_items)
    if source.exists():
        import json

        items = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
        total_count_replies(items, source)
        print_referent_agreement(items)


if __name__ == "__main__":
    main()
