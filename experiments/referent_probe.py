"""Does an answer name what its question names? A teacher-forced probe of the question side of a lookup.

For each held-out counting or colour question that names a colour or a kind of shape ("What colour is the star?",
"How many blue shapes are there?"), the reference answer names it again ("The star is ...", "There are N blue
shapes ..."). The probe renders the question with the chat template, as the model is asked at evaluation, and
scores the reference answer up to and including that word once for every colour (or kind) of the world in its
place. The question names the right one, so a model that reads its question ranks it first whatever the image
holds. It does so three times: with the question's image, with a blank grey image, and with no image at all (the
question rendered as a language-only instruction). With the image, a model that names a shape the image holds,
not the one asked about, also scores well where the image holds only the asked one; with the blank image only the
question can tell, and a model that ignores the question ranks the asked word first about as often as uniform
guessing (one in five kinds, one in six colours). Without an image, the question is all the context there is: a
model that copies from its context there but not after a blank image lets the image override the question. A
last table tries plain prompts that only copying completes ("The star is red. The star is at the top. The"), as
text and after a blank image. With `--pretraining-format` the questions are rendered as the pretraining corpus
writes questions ("<image>Question: Q Answer: <reference cut after the word>"), not with the chat template: for an
untuned base, to see whether it copies in the text it was trained on.

    python experiments/referent_probe.py [--model DIR] [--world runs/demo/world] [--limit 600]
        [--pretraining-format]

The default model is the demo's tuned model, runs/demo/model (run `mmgpt demo` first).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from count_probe import load_probed_model, named, open_world, scored_logprobs  # noqa: E402  (not a package)

BLANK_GREY = (200, 200, 200)


@dataclass
class Probe:
    """One question whose reference answer repeats a colour or kind the question names.

    `prefixes` holds the reference answer cut right after that word, once per value of its space, with the
    asked value (`value`) at index `asked`."""

    item: dict
    attribute: str
    value: str
    prefixes: list[str]
    asked: int


def _forms(value: str) -> list[str]:
    """The spellings of a colour or kind the world's answers use, plural first so "stars" is not read as "star"."""
    from mmgpt.synth.nlg import plural

    return [plural(value, 2), value] if plural(value, 2) != value else [value]


def build_probes(items: list[dict]) -> list[Probe]:
    """Probes for the first-round counting and colour `items` (held-out records) whose question names a colour or
    a kind that their reference answer names again; one probe per named attribute."""
    from mmgpt.synth.vocab import COLOUR_NAMES, KINDS

    probes = []
    for item in items:
        if item["kind"] not in ("counting", "color") or item["history"]:
            continue
        for attribute, space in (("colour", COLOUR_NAMES), ("kind", KINDS)):
            asked = named(item["question"], attribute)
            if asked is None:
                continue
            for form in _forms(asked):
                match = re.search(rf"\b{re.escape(form)}\b", item["reference"])
                if match:
                    break
            else:
                continue
            plural_form = form != asked
            head = item["reference"][: match.start()]
            prefixes = [head + (_forms(v)[0] if plural_form else v) for v in space]
            probes.append(Probe(item, attribute, asked, prefixes, list(space).index(asked)))
    return probes


def candidate_logprobs(model, image, prompt_ids: list[int], continuations: list[str]):
    """Sum of token log-probabilities (len(continuations),) of each continuation after `prompt_ids`, every row
    with the same image (a PIL image), or with none when `image` is None."""
    from mmgpt.data.templates import encode_response

    # The response's ids as training renders them, without the closing EOS: the continuation is cut mid-answer.
    rows = [prompt_ids + encode_response(c, model.tokenizer)[:-1] for c in continuations]
    return scored_logprobs(model, image, rows, len(prompt_ids))


def pretraining_rows(
    tokenizer, question: str, num_images: int, continuations: list[str]
) -> tuple[list[int], list[list[int]]]:
    """(prompt ids, one row of ids per continuation) for the pretraining corpus' question format: BOS, then
    "<image>" per image, "Question: `question` Answer:" and " `continuation`", encoded as the pretraining encodes a
    line. Raises ValueError if a continuation would change how the prompt itself is split into tokens."""
    from mmgpt.model.tokenizer import special_token_ids

    bos = special_token_ids(tokenizer).bos
    head = [bos] if bos is not None else []
    prompt = "<image>" * num_images + f"Question: {question} Answer:"
    prompt_ids = head + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    rows = [head + tokenizer(f"{prompt} {c}", add_special_tokens=False)["input_ids"] for c in continuations]
    if any(row[: len(prompt_ids)] != prompt_ids for row in rows):
        raise ValueError(f"a continuation merges with the end of the prompt {prompt!r}")
    return prompt_ids, rows


def image_holds(manifest) -> dict[str, dict[str, set[str]]]:
    """Per held-out image path (relative to the world), the colours and kinds its shapes have, from the world's
    `WorldManifest`."""
    return {
        scene["paths"][0]: {
            "colour": {x["colour"] for x in scene["shapes"]},
            "kind": {x["kind"] for x in scene["shapes"]},
        }
        for scene in manifest.scenes
        if scene["split"] == "heldout"
    }


def condition_of(shown: str, asked: str, holds: set[str]) -> str:
    """The row a probe counts in: the blank image, or the real one split by whether it holds the asked value
    beside others (the telling case), only the asked value, or not the asked value."""
    if shown == "blank":
        return "blank image"
    if shown == "none":
        return "no image"
    if asked not in holds:
        return "image without it"
    return "image with it and others" if len(holds) > 1 else "image with it alone"


def run(
    model, world: Path, manifest, probes: list[Probe], pretraining_format: bool = False
) -> dict[str, dict[str, float]]:
    """Per attribute and condition (`condition_of`): probes, the share ranking the asked word first, uniform
    guessing's share, and (where the image holds the asked value) the share of guessing among the image's.
    Questions are rendered with the chat template, or as the pretraining corpus writes them when
    `pretraining_format` (`pretraining_rows`)."""
    from PIL import Image
    from tqdm import tqdm

    from mmgpt.data.dataset import load_image
    from mmgpt.data.templates import Conversation, Turn, encode_prompt

    holds = image_holds(manifest)
    tally: dict[str, dict[str, float]] = {}
    for probe in tqdm(probes, desc="probing", unit="question"):
        present = holds[probe.item["image"]][probe.attribute]
        image = load_image(world / probe.item["image"])
        blank = Image.new("RGB", image.size, BLANK_GREY)
        # The image and blank conditions share one prompt; without an image the question is rendered without one.
        prompts = [
            encode_prompt(Conversation([Turn(user=probe.item["question"], num_images=n)]), model.tokenizer)
            for n in (0, 1)
        ]
        for condition, shown in (("image", image), ("blank", blank), ("none", None)):
            if pretraining_format:
                question = probe.item["question"]
                prompt, rows = pretraining_rows(
                    model.tokenizer, question, int(shown is not None), probe.prefixes
                )
                scores = scored_logprobs(model, shown, rows, len(prompt))
            else:
                scores = candidate_logprobs(model, shown, prompts[shown is not None], probe.prefixes)
            key = f"{probe.attribute}, {condition_of(condition, probe.value, present)}"
            row = tally.setdefault(key, {"probes": 0, "first": 0, "guess": 0, "among": 0})
            row["probes"] += 1
            row["first"] += int(scores.argmax()) == probe.asked
            row["guess"] += 1 / len(probe.prefixes)
            row["among"] += 1 / len(present) if condition == "image" and probe.value in present else 0
    return {
        key: {
            "probes": row["probes"],
            "asked_first": row["first"] / row["probes"],
            "guess": row["guess"] / row["probes"],
            "among_image": row["among"] / row["probes"],
        }
        for key, row in sorted(tally.items())
    }


#: Plain-text prompts that only copying completes: (label, prompt with {v} for the value, attribute).
COPY_PROMPTS = (
    ("a kind said twice", "The {v} is red. The {v} is at the top. The", "kind"),
    ("a kind after a question", "Question: What about the {v}? Answer: The", "kind"),
    ("a colour after a question", "Question: What about the {v} star? Answer: The", "colour"),
)


def copy_prompts(model) -> dict[str, dict[str, float]]:
    """Per COPY_PROMPTS row, the share of the attribute's values the model continues the prompt with (its most
    likely value word next), as plain text and after a blank grey image."""
    import torch
    from PIL import Image

    from mmgpt.synth.vocab import COLOUR_NAMES, KINDS

    tok = model.tokenizer
    blank = model.image_processor.batch([Image.new("RGB", (64, 64), BLANK_GREY)])[None, :, None]
    results = {}
    for label, prompt, attribute in COPY_PROMPTS:
        space = KINDS if attribute == "kind" else COLOUR_NAMES
        value_ids = [tok(" " + v, add_special_tokens=False).input_ids[0] for v in space]
        hits = {"text": 0, "blank image": 0}
        for value in space:
            for condition, pixels, prefix in (("text", None, ""), ("blank image", blank, "<image>")):
                ids = torch.tensor([tok(prefix + prompt.format(v=value)).input_ids])
                with torch.no_grad():
                    logits = model(pixels, ids, attention_mask=torch.ones_like(ids)).logits[0, -1]
                hits[condition] += space[int(logits[value_ids].argmax())] == value
        results[label] = {k: v / len(space) for k, v in hits.items()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "runs" / "demo" / "model"))
    parser.add_argument("--world", default=str(ROOT / "runs" / "demo" / "world"))
    parser.add_argument(
        "--limit", type=int, default=600, help="held-out questions read (the probes come from them)"
    )
    parser.add_argument("--json", default=None, help="also write the table here")
    parser.add_argument(
        "--pretraining-format",
        action="store_true",
        help='render questions as the pretraining text does ("Question: ... Answer: ..."), not as chat prompts',
    )
    args = parser.parse_args()

    world, manifest = open_world(args.world)
    heldout = world / "eval" / "heldout.jsonl"
    if not heldout.exists():
        sys.exit(f"{heldout}: no held-out items there; run `mmgpt demo` first or pass --world")
    model_dir, model = load_probed_model(args.model, world=Path(args.world))
    items = [json.loads(line) for line in heldout.read_text().splitlines() if line.strip()]
    items = [x for x in items if x["kind"] in ("counting", "color")][: args.limit]
    table = run(model, world, manifest, build_probes(items), args.pretraining_format)
    print(f"model {model_dir}")
    print(
        f"{'named in the question, image shown':<44}{'probes':>8}{'asked first':>13}{'guessing':>10}"
        f"{'among the image':>17}"
    )
    for key, row in table.items():
        among = f"{row['among_image']:.3f}" if row["among_image"] else "-"
        print(f"{key:<44}{row['probes']:>8}{row['asked_first']:>13.3f}{row['guess']:>10.3f}{among:>17}")
    copying = copy_prompts(model)
    print(f"\n{'plain prompts only copying completes':<36}{'as text':>9}{'after a blank image':>21}")
    for label, row in copying.items():
        print(f"{label:<36}{row['text']:>9.3f}{row['blank image']:>21.3f}")
    if args.json:
        report = {"model": str(model_dir), "table": table, "copy_prompts": copying}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
