"""Where is the colour of each shape lost? A probe of what the vision side hands to the language model.

The count probe (count_probe.py) shows the language model naming the colours an image holds but not which shape
has which. This probe asks whether the image features still carry that binding. For each image it takes two
sets of tokens: the vision tower's patch tokens (what the perceiver reads) and the perceiver's latents (what the
cross-attention reads). A small probe is fitted on training images to answer "what colour is the <kind>?" for
every kind that occurs once in an image, reading the tokens the way a cross-attention head does: one query per
kind attends over the tokens, and a linear layer maps what it reads to a colour. The same probe with attention
forced uniform (the tokens' mean) shows what a summary without positions keeps. It is scored on held-out images
with two colours or more, beside guessing among the image's own colours.

    python experiments/binding_probe.py [--model DIR] [--world runs/demo/world] [--train-images 2000]

The default model is the demo's cached base (run `mmgpt demo` first).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def image_tokens(model, images: list, batch: int = 64):
    """{"patch tokens": (N, patches, vision width), "perceiver latents": (N, latents, vision width)} as float32,
    for a list of N PIL images: `Flamingo.encode_vision`'s two steps, each kept."""
    import torch

    from mmgpt.model.flamingo import patch_tokens

    tower_dtype = next(model.vision_encoder.parameters()).dtype
    patches, latents = [], []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            pixels = model.image_processor.batch(images[start : start + batch])
            hidden = patch_tokens(model.vision_encoder, pixels.to(tower_dtype))
            patches.append(hidden.float())
            latents.append(model.perceiver(hidden[:, None, None].to(model.dtype))[:, 0].float())
    return {"patch tokens": torch.cat(patches), "perceiver latents": torch.cat(latents)}


def binding_rows(scenes: list, kinds: list[str], colours: list[str]) -> list[tuple[int, int, int]]:
    """(scene index, kind index, colour index) for every shape whose kind occurs once in its scene."""
    return [
        (i, kinds.index(shape.kind), colours.index(shape.colour))
        for i, scene in enumerate(scenes)
        for shape in scene.shapes
        if scene.count(kind=shape.kind) == 1
    ]


def fit_and_score(
    tokens, train_rows, test_rows, n_kinds: int, n_colours: int, uniform: bool, steps: int, seed: int
) -> float:
    """Fit a one-query-per-kind attention probe (attention uniform when `uniform`) on `tokens` (N, T, D) for
    `train_rows`; returns its accuracy on `test_rows`."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokens = (tokens - tokens.mean((0, 1))) / (tokens.std((0, 1)) + 1e-5)
    width = 64
    query = nn.Embedding(n_kinds, width)
    key, value = nn.Linear(tokens.shape[-1], width), nn.Linear(tokens.shape[-1], width)
    readout = nn.Linear(width, n_colours)
    params = [p for m in (query, key, value, readout) for p in m.parameters()]
    optimiser = torch.optim.Adam(params, lr=3e-3)

    def logits(rows):
        idx, kind = torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])
        feats = tokens[idx]
        scores = (key(feats) @ query(kind)[:, :, None])[..., 0] / width**0.5
        weights = torch.full_like(scores, 1 / scores.shape[1]) if uniform else scores.softmax(-1)
        return readout(torch.relu((weights[..., None] * value(feats)).sum(1)))

    for _ in range(steps):
        rows = rng.sample(train_rows, min(256, len(train_rows)))
        loss = nn.functional.cross_entropy(logits(rows), torch.tensor([r[2] for r in rows]))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        picked = logits(test_rows).argmax(-1)
    return (picked == torch.tensor([r[2] for r in test_rows])).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: the demo's cached base)")
    parser.add_argument("--world", default=str(ROOT / "runs" / "demo" / "world"))
    parser.add_argument(
        "--train-images", type=int, default=2000, help="training images the probe is fitted on"
    )
    parser.add_argument("--limit", type=int, default=300, help="held-out images scored")
    parser.add_argument("--steps", type=int, default=1500, help="probe optimisation steps (batches of 256)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from count_probe import load_probed_model, open_world

    from mmgpt.data.dataset import load_image
    from mmgpt.synth.scene import Scene
    from mmgpt.synth.vocab import COLOUR_NAMES, KINDS

    world, manifest = open_world(args.world)
    model_dir, model = load_probed_model(args.model)
    train = [Scene.from_dict(s) for s in manifest.scenes if s["split"] == "train"][: args.train_images]
    heldout = [Scene.from_dict(s) for s in manifest.scenes if s["split"] == "heldout"][: args.limit]
    scenes = train + heldout
    paths = {s["image_id"]: world / s["paths"][0] for s in manifest.scenes}
    features = image_tokens(model, [load_image(paths[s.image_id]) for s in scenes])

    kinds, colours = list(KINDS), list(COLOUR_NAMES)
    rows = binding_rows(scenes, kinds, colours)
    train_rows = [r for r in rows if r[0] < len(train)]
    test_rows = [r for r in rows if r[0] >= len(train) and len(scenes[r[0]].colours()) > 1]
    if not train_rows or not test_rows:
        sys.exit(
            f"{world}: too few images with a kind that occurs once (train {len(train_rows)}, held out {len(test_rows)})"
        )
    guessing = sum(1 / len(scenes[r[0]].colours()) for r in test_rows) / len(test_rows)

    print(f"model {model_dir}: probe fitted on {len(train_rows)} shapes of {len(train)} training images,")
    print(f"scored on {len(test_rows)} shapes of held-out images with two colours or more")
    print(f"{'tokens':<20}{'shape':>14}{'attending':>11}{'mean of tokens':>16}{'guessing':>10}")
    for name, tokens in features.items():
        attending, pooled = (
            fit_and_score(
                tokens, train_rows, test_rows, len(kinds), len(colours), uniform, args.steps, args.seed
            )
            for uniform in (False, True)
        )
        shape = "x".join(map(str, tokens.shape[1:]))
        print(f"{name:<20}{shape:>14}{attending:>11.3f}{pooled:>16.3f}{guessing:>10.3f}")


if __name__ == "__main__":
    main()
