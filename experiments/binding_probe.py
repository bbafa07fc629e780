"""Where is the colour of each shape lost? A probe of what the vision side hands to the language model.

The count probe (count_probe.py) shows the language model naming the colours an image holds but not which shape
has which. This probe asks whether the image features still carry that binding. For each image it takes two
sets of tokens: the vision tower's patch tokens (what the perceiver reads) and the perceiver's latents (what the
cross-attention reads). A small probe is fitted on training images to answer "what colour is the <kind>?" for
every kind that occurs once in an image, reading the tokens the way a cross-attention head does: one query per
kind attends over the tokens, and a linear layer maps what it reads to a colour. The same probe with attention
forced uniform (the tokens' mean) shows what a summary without positions keeps. Two more readers may read one
token each, the one their query weighs most: a single query, and four (one per head, as the language model's
cross-attention has four heads), whose four tokens the linear layer reads together. They ask how much of the
binding a lookup whose weights have gone to one latent per head can reach. Each is scored on held-out images
with two colours or more, beside guessing among the image's own colours.

Then it follows the latents into the model's own cross-attention blocks. With each block's own keys and values
(or only its keys, or only its values, the rest fitted) and a query fitted per kind, it shows how much of the
binding the block's projections keep. Last, it runs "<image>The <kind> is" after each image and queries those
keys and values with the block's own query of the text state at the last token, with a query fitted from that
state, and with one fitted per kind: the first against the others shows what the model's query loses.

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


def fit_then_score(logits, parameters: list, train: list, test: list, target, steps: int, rng) -> float:
    """Fit `parameters` with Adam (lr 3e-3) for `steps` batches of up to 256 items drawn from `train` by `rng`,
    minimising the cross-entropy of `logits(items)` (B, classes) against `target(items)` (B,); returns the
    accuracy of `logits` on `test`. The one fitting loop of every reader here."""
    import torch
    from torch import nn

    optimiser = torch.optim.Adam(parameters, lr=3e-3)
    for _ in range(steps):
        batch = rng.sample(train, min(256, len(train)))
        loss = nn.functional.cross_entropy(logits(batch), target(batch))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        picked = logits(test).argmax(-1)
    return (picked == target(test)).float().mean().item()


def fit_and_score(
    tokens,
    train_rows,
    test_rows,
    n_kinds: int,
    n_colours: int,
    uniform: bool,
    steps: int,
    seed: int,
    one_token: bool = False,
    heads: int = 1,
    width: int = 64,
    own_keys=None,
    own_values=None,
) -> float:
    """Fit a one-query-per-kind attention probe on `tokens` (N, T, D) for `train_rows`; returns its accuracy on
    `test_rows`. Its attention is uniform when `uniform`; with `one_token`, each of its `heads` queries reads
    only the token it weighs most (trained through the soft weights, straight through), as a cross-attention
    head whose weights have all gone to one latent does. Each head reads `width` features. `own_keys` /
    `own_values` (N, T, heads, width), a model's own keys or values of the tokens, replace the probe's fitted
    ones (and set `heads` and `width`)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokens = (tokens - tokens.mean((0, 1))) / (tokens.std((0, 1)) + 1e-5)
    own = own_keys if own_keys is not None else own_values
    heads, width = (own.shape[2], own.shape[3]) if own is not None else (heads, width)
    query = nn.Embedding(n_kinds, width * heads)
    key, value = nn.Linear(tokens.shape[-1], width * heads), nn.Linear(tokens.shape[-1], width * heads)
    readout = nn.Linear(width * heads, n_colours)
    fitted = [query, readout] + [m for m, o in ((key, own_keys), (value, own_values)) if o is None]
    parameters = [p for m in fitted for p in m.parameters()]

    def logits(rows):
        idx, kind = torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])
        feats = tokens[idx]  # (B, T, D)
        keys = (
            own_keys[idx] if own_keys is not None else key(feats).unflatten(-1, (heads, width))
        )  # (B, T, H, W)
        values = own_values[idx] if own_values is not None else value(feats).unflatten(-1, (heads, width))
        queries = query(kind).unflatten(-1, (heads, width))  # (B, H, W)
        scores = torch.einsum("bthw,bhw->bth", keys, queries) / width**0.5
        if uniform:
            weights = torch.full_like(scores, 1 / scores.shape[1])
        else:
            weights = scores.softmax(1)
            if one_token:
                picked = torch.nn.functional.one_hot(weights.argmax(1), scores.shape[1]).transpose(1, 2)
                weights = picked + weights - weights.detach()
        read = torch.einsum("bth,bthw->bhw", weights, values).flatten(1)
        return readout(torch.relu(read))

    return fit_then_score(
        logits, parameters, train_rows, test_rows, lambda rows: torch.tensor([r[2] for r in rows]), steps, rng
    )


def cross_attention_kv(model, latents) -> dict:
    """{decoder layer index: (keys, values)} of each gated cross-attention block of `model` for `latents`
    (N, n, D), each (N, n, heads, dim_head) in float32: what the block's heads weigh and read."""
    import torch

    out = {}
    with torch.no_grad():
        for index, block in sorted(model.cross_attn_blocks().items()):
            dtype = next(block.parameters()).dtype
            keys, values = block.media_kv(latents[:, None].to(dtype))  # (N, heads, n, dim_head)
            out[index] = (keys.transpose(1, 2).float(), values.transpose(1, 2).float())
    return out


def text_states(model, images: list, rows: list[tuple[int, int, int]], kinds: list[str], batch: int = 128):
    """{decoder layer index: (len(rows), D) float32}: for each row (image, kind, colour), the text state entering
    each cross-attention block at the last token of "<image>The <kind> is", the colour statement up to its colour
    (what the count probe's binding rows score), read after the row's image."""
    import torch

    from mmgpt.synth.qa import colour_statement

    blocks = model.cross_attn_blocks()
    captured: dict[int, torch.Tensor] = {}
    handles = [
        block.register_forward_hook(
            lambda _m, args, _out, index=index: captured.__setitem__(index, args[0][:, -1].float())
        )
        for index, block in blocks.items()
    ]
    states: dict[int, torch.Tensor] = {}
    try:
        with torch.no_grad():
            for kind in sorted({r[1] for r in rows}):
                prompt = colour_statement(f"the {kinds[kind]}", "x").rsplit(" ", 1)[0]
                ids = model.tokenizer("<image>" + prompt, add_special_tokens=True).input_ids
                positions = [n for n, r in enumerate(rows) if r[1] == kind]
                for start in range(0, len(positions), batch):
                    chunk = positions[start : start + batch]
                    pixels = model.image_processor.batch([images[rows[n][0]] for n in chunk])
                    model(pixels[:, None, None].to(model.dtype), torch.tensor([ids] * len(chunk)))
                    for index in blocks:
                        if index not in states:
                            states[index] = torch.zeros(len(rows), captured[index].shape[-1])
                        states[index][chunk] = captured[index]
    finally:
        for handle in handles:
            handle.remove()
    return states


def fit_lookup(
    keys,
    values,
    states,
    rows: list[tuple[int, int, int]],
    n_train: int,
    n_kinds: int,
    n_colours: int,
    query: str,
    steps: int,
    seed: int,
    own_query=None,
) -> float:
    """Accuracy on rows[n_train:] of a reader fitted on rows[:n_train] that looks the colour up through a
    cross-attention block's own `keys` and `values` (N images, latents, heads, width) with a query that is
    - "own": the block's own query of the row's text state, `own_query(states) -> (R, heads * width)`;
    - "text": a linear map of the row's text state `states` (R, D), fitted;
    - "kind": one vector per kind, fitted;
    and maps what its heads read to a colour with a fitted linear layer."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    rng = random.Random(seed)
    heads, width = keys.shape[2], keys.shape[3]
    readout = nn.Linear(heads * width, n_colours)
    fitted: list[nn.Module] = [readout]
    if query == "text":
        fitted.append(nn.Linear(states.shape[1], heads * width))
    elif query == "kind":
        fitted.append(nn.Embedding(n_kinds, heads * width))
    elif query != "own":
        raise ValueError(f"unknown query {query!r}")
    if query == "own":
        with torch.no_grad():
            own = own_query(states).float()

    def logits(positions: list[int]):
        idx = torch.tensor([rows[n][0] for n in positions])
        if query == "own":
            q = own[positions]
        elif query == "text":
            q = fitted[1](states[positions])
        else:
            q = fitted[1](torch.tensor([rows[n][1] for n in positions]))
        scores = torch.einsum("bthw,bhw->bth", keys[idx], q.unflatten(-1, (heads, width))) / width**0.5
        read = torch.einsum("bth,bthw->bhw", scores.softmax(1), values[idx]).flatten(1)
        return readout(torch.relu(read))

    return fit_then_score(
        logits,
        [p for m in fitted for p in m.parameters()],
        list(range(n_train)),
        list(range(n_train, len(rows))),
        lambda positions: torch.tensor([rows[n][2] for n in positions]),
        steps,
        rng,
    )


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
    model_dir, model = load_probed_model(args.model, world=Path(args.world))
    train = [Scene.from_dict(s) for s in manifest.scenes if s["split"] == "train"][: args.train_images]
    heldout = [Scene.from_dict(s) for s in manifest.scenes if s["split"] == "heldout"][: args.limit]
    scenes = train + heldout
    paths = {s["image_id"]: world / s["paths"][0] for s in manifest.scenes}
    images = [load_image(paths[s.image_id]) for s in scenes]
    features = image_tokens(model, images)

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
    readers = {
        "attending": {"uniform": False},
        "mean of tokens": {"uniform": True},
        "one token": {"uniform": False, "one_token": True},
        "one per head, 4": {"uniform": False, "one_token": True, "heads": 4},
    }
    print(f"{'tokens':<20}{'shape':>10}" + "".join(f"{name:>17}" for name in readers) + f"{'guessing':>10}")
    for name, tokens in features.items():
        scores = [
            fit_and_score(
                tokens,
                train_rows,
                test_rows,
                len(kinds),
                len(colours),
                steps=args.steps,
                seed=args.seed,
                **kw,
            )
            for kw in readers.values()
        ]
        shape = "x".join(map(str, tokens.shape[1:]))
        print(f"{name:<20}{shape:>10}" + "".join(f"{x:>17.3f}" for x in scores) + f"{guessing:>10.3f}")

    # The same lookup through the model's own cross-attention: its keys and values of the latents, a query per
    # kind and head fitted as before; then with the keys or the values fitted instead, to see which loses more.
    latents = features["perceiver latents"]
    variants = {
        "own keys and values": (True, True),
        "own keys": (True, False),
        "own values": (False, True),
        "neither (fitted)": (False, False),
    }
    print()
    print("the latents through each cross-attention block, all heads attending:")
    print(
        f"{'block':<8}{'heads x width':>15}"
        + "".join(f"{name:>22}" for name in variants)
        + f"{'guessing':>10}"
    )
    block_kv = cross_attention_kv(model, latents)
    for number, (keys, values) in enumerate(block_kv.values(), start=1):
        scores = [
            fit_and_score(
                latents,
                train_rows,
                test_rows,
                len(kinds),
                len(colours),
                uniform=False,
                steps=args.steps,
                seed=args.seed,
                heads=keys.shape[2],
                width=keys.shape[3],
                own_keys=keys if own_k else None,
                own_values=values if own_v else None,
            )
            for own_k, own_v in variants.values()
        ]
        # "neither" has the block's heads and width, fitted: what a lookup of that size can read
        shape = f"{keys.shape[2]} x {keys.shape[3]}"
        print(f"{number:<8}{shape:>15}" + "".join(f"{x:>22.3f}" for x in scores) + f"{guessing:>10.3f}")

    # And with the queries the model asks: its own, of its text state after "<image>The <kind> is"; one fitted
    # from that state; one fitted per kind, each through the block's own keys and values.
    lookup_rows = train_rows + test_rows
    states = text_states(model, images, lookup_rows, kinds)
    queries = {"own query": "own", "fitted from its state": "text", "fitted per kind": "kind"}
    print()
    print('the same keys and values, queried at the last token of "<image>The <kind> is":')
    print(f"{'block':<8}" + "".join(f"{name:>24}" for name in queries) + f"{'guessing':>10}")
    blocks = model.cross_attn_blocks()
    for number, (index, (keys, values)) in enumerate(block_kv.items(), start=1):
        attn = blocks[index].attn
        dtype = next(attn.parameters()).dtype
        scores = [
            fit_lookup(
                keys,
                values,
                states[index],
                lookup_rows,
                len(train_rows),
                len(kinds),
                len(colours),
                query,
                args.steps,
                args.seed,
                own_query=lambda x, attn=attn, dtype=dtype: attn.to_q(attn.norm(x.to(dtype))),
            )
            for query in queries.values()
        ]
        print(f"{number:<8}" + "".join(f"{x:>24.3f}" for x in scores) + f"{guessing:>10.3f}")


if __name__ == "__main__":
    main()
