"""Does the language model's cross-attention look for what the text names? A probe of a model's image lookup.

For held-out images holding two shapes whose kinds occur once each, the model reads the binding sentence of
count_probe up to its last word for each of the two ("<image>The square is", "<image>The circle is"); likewise
for two colours that occur once ("<image>The red shape is a"). Per cross-attention layer and head, at the named
word and at the last token, the probe reports
- spread: the entropy of the attention over the image's latents divided by its maximum (1 = uniform);
- difference: the total variation distance between the two prompts' attention (0 = the same weights whatever the
  text names, 1 = none in common);
- at the last token, the latent (numbered from 1) that most often gets the head's largest weight, the share of
  images in which it does, and its mean weight: a head that reads the same latent of every image shows 1.00.
A model that looks up the named shape attends differently for the two prompts; one that reads the image the same
way for every word does not. Then it runs count_probe's binding probe twice: as the model is, and with every
cross-attention query set to zero, which makes each head's weights uniform over the image's latents (each text
token then reads their mean value). Scores that stay where they are mean the model reads the image as a mean.

    python experiments/attention_probe.py [--model DIR] [--world runs/demo/world] [--limit 150]

The default model is the demo's cached base (run `mmgpt demo` first).
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from count_probe import (  # noqa: E402  (not a package)
    heldout_scenes,
    image_probe_parser,
    load_probed_model,
    open_world,
    print_binding,
)


@contextlib.contextmanager
def uniform_cross_attention(model) -> Iterator[None]:
    """Within the block, every cross-attention query of `model` is zero, so each head weighs the latents of the
    image a token sees equally (the masks are untouched); the model is restored on exit."""
    import torch

    handles = [
        block.attn.to_q.register_forward_hook(lambda _module, _args, out: torch.zeros_like(out))
        for block in model.cross_attn_blocks().values()
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def recorded_cross_attention(model) -> Iterator[dict[int, object]]:
    """Within the block, each forward pass of `model` on a single image stores, per decoder layer index, the
    cross-attention weights (B, heads, L, latents) of its last call in the yielded dict."""
    import torch

    from mmgpt.model.perceiver import split_heads

    weights: dict[int, torch.Tensor] = {}

    def hook(index: int):
        def record(module, args, _out) -> None:
            x, (k, _v), _text_time, latents_per_image = args
            if k.shape[-2] != latents_per_image:
                raise ValueError("the attention probe reads prompts with one image each")
            q = split_heads(module.to_q(module.norm(x)), module.heads).float()
            weights[index] = ((q @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5).softmax(dim=-1)

        return record

    handles = [
        block.attn.register_forward_hook(hook(index)) for index, block in model.cross_attn_blocks().items()
    ]
    try:
        yield weights
    finally:
        for handle in handles:
            handle.remove()


def spread(weights):
    """Entropy of attention weights (..., n) over their last axis divided by log(n): (...) in [0, 1]."""
    entropy = -(weights * weights.clamp_min(1e-12).log()).sum(dim=-1)
    return entropy / math.log(weights.shape[-1])


def difference(a, b):
    """Total variation distance (...) between attention weights a and b (..., n)."""
    return 0.5 * (a - b).abs().sum(dim=-1)


def prompt_pairs(scene) -> list[tuple[str, list[tuple[str, str]]]]:
    """("kind" or "colour", two (prompt, its words up to the named one)) for a scene: the colour sentence about two
    shapes whose kinds occur once ("The square is", "The square"), and the kind sentence about two whose colours
    occur once ("The red shape is a", "The red")."""
    from mmgpt.synth.qa import colour_statement, kind_statement

    pairs = []
    for attribute, sentence, ref in (
        ("kind", colour_statement, lambda s: f"the {s.kind}"),
        ("colour", kind_statement, lambda s: f"the {s.colour} shape"),
    ):
        values = [getattr(s, attribute) for s in scene.shapes]
        unique = [s for s in scene.shapes if values.count(getattr(s, attribute)) == 1][:2]
        if len(unique) == 2:
            prompts = []
            for shape in unique:
                # the sentence up to its last word (the value the binding probe scores)
                prompt, value = sentence(ref(shape), "x").rsplit(" ", 1)[0], getattr(shape, attribute)
                prompts.append((prompt, prompt[: prompt.index(value) + len(value)]))
            pairs.append((attribute, prompts))
    return pairs


def attention_at(model, image, prompt: str, named: str):
    """Cross-attention weights of `prompt` after `image` at the last token of `named` (a prefix of the prompt)
    and at the prompt's last token: two tensors (layers, heads, latents)."""
    import torch

    tok = model.tokenizer
    ids = tok("<image>" + prompt, add_special_tokens=True).input_ids
    named_ids = tok("<image>" + named, add_special_tokens=True).input_ids
    if ids[: len(named_ids)] != named_ids:
        raise ValueError(f"{named!r} does not tokenise as a prefix of {prompt!r}")
    pixels = model.image_processor.batch([image])[None, :, None]
    with recorded_cross_attention(model) as weights, torch.no_grad():
        model(pixels, torch.tensor([ids]))
    layers = torch.stack([weights[i][0] for i in sorted(weights)])  # (layers, heads, L, latents)
    return layers[:, :, len(named_ids) - 1], layers[:, :, -1]


def lookup_table(model, images: dict, scenes: list) -> dict[str, dict[str, object]]:
    """{"kind"/"colour": {"pairs": n, "spread word", "spread last", "difference word", "difference last":
    (layers, heads) means over the image pairs, "top latent": (layers, heads) the latent that most often has the
    largest weight at the last token, "top share": how often it has, "top weight": its mean weight there}} for the
    scenes with a pair of prompts of that attribute (spread and the top-latent columns from the first prompt of
    each pair)."""
    import torch

    collected: dict[str, list] = {}
    for scene in scenes:
        for attribute, prompts in prompt_pairs(scene):
            (word_a, last_a), (word_b, last_b) = (
                attention_at(model, images[scene.image_id], prompt, named) for prompt, named in prompts
            )
            collected.setdefault(attribute, []).append((word_a, last_a, word_b, last_b))
    table = {}
    for attribute, pairs in collected.items():
        # each (pairs, layers, heads, latents)
        word_a, last_a, word_b, last_b = (torch.stack(column) for column in zip(*pairs, strict=True))
        top = last_a.argmax(dim=-1).mode(dim=0).values  # (layers, heads)
        table[attribute] = {
            "pairs": len(pairs),
            "spread word": spread(word_a).mean(dim=0),
            "spread last": spread(last_a).mean(dim=0),
            "difference word": difference(word_a, word_b).mean(dim=0),
            "difference last": difference(last_a, last_b).mean(dim=0),
            "top latent": top,
            "top share": (last_a.argmax(dim=-1) == top).float().mean(dim=0),
            "top weight": last_a.gather(-1, top[None, :, :, None].expand(len(pairs), -1, -1, 1))[..., 0].mean(
                dim=0
            ),
        }
    return table


def print_lookup_table(table: dict[str, dict[str, object]]) -> None:
    """Print `lookup_table`'s result, one row per layer and head."""
    for attribute, row in table.items():
        print(f"\nprompts naming a {attribute}: {row['pairs']} image pairs")
        print(
            f"{'layer':>5}{'head':>5}{'spread at word':>16}{'at last':>9}{'difference at word':>20}{'at last':>9}"
            f"{'top latent at last':>20}{'share':>7}{'weight':>8}"
        )
        keys = ("spread word", "spread last", "difference word", "difference last", "top share", "top weight")
        layers, heads = row["spread word"].shape
        for layer in range(layers):
            for head in range(heads):
                cells = [row[k][layer, head].item() for k in keys]
                print(
                    f"{layer + 1:>5}{head + 1:>5}{cells[0]:>16.3f}{cells[1]:>9.3f}{cells[2]:>20.3f}{cells[3]:>9.3f}"
                    f"{row['top latent'][layer, head].item() + 1:>20}{cells[4]:>7.2f}{cells[5]:>8.3f}"
                )


def main() -> None:
    args = image_probe_parser(__doc__.splitlines()[0]).parse_args()
    world, manifest = open_world(args.world)
    model_dir, model = load_probed_model(args.model, world=Path(args.world))
    scenes, images = heldout_scenes(world, manifest, args.limit)
    print(f"model {model_dir}, {len(scenes)} held-out images")
    print_lookup_table(lookup_table(model, images, scenes))
    binding = [s for s in scenes if len({x.colour for x in s.shapes}) > 1]
    print("\nthe model's own cross-attention:")
    print_binding(model, images, binding)
    print("\nevery cross-attention head uniform over the latents:")
    with uniform_cross_attention(model):
        print_binding(model, images, binding)


if __name__ == "__main__":
    main()
