"""CLI: `mmgpt synth --out DIR [--seed S] [--scale quick|default|large] [--image-size N]`."""

from __future__ import annotations

import argparse
from pathlib import Path

# literal here so that building the CLI does not import the generator; a test checks them against it
SCALE_CHOICES = ("quick", "default", "large")
READING_CHOICES = ("none", "instructions", "all")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `synth` sub-command to the top-level CLI."""
    parser = subparsers.add_parser(
        "synth",
        help="generate the synthetic world (images + instruction data in the public formats)",
        description="Render the synthetic shapes world and write LLaVA, cc_sbu_align, A-OKVQA, COCO, OCR-VQA, "
        "Dolly, Alpaca and VQA v2 files, the pretraining corpus, the held-out set and the dataset recipes.",
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed + scale = same bytes)")
    parser.add_argument("--scale", choices=SCALE_CHOICES, default="default", help="world size")
    parser.add_argument("--image-size", type=int, default=64, help="image side in pixels")
    parser.add_argument(
        "--reading",
        choices=READING_CHOICES,
        default="none",
        help="also put passages of the instruction data (its instructions, or its instructions and responses) "
        "into the plain pretraining text, one a line and unpaired, so that the base reads every word the tuning "
        "uses (default: none, the demo's world; see experiments/README.md, 'Words the base never read')",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=handler)


def prepare_output_dir(out: Path) -> None:
    """Make `out` ready for a world: an earlier world there is removed (a smaller one would leave the larger
    one's files behind); any other non-empty directory is refused, so that nothing else is written into or over.
    """
    import shutil

    from mmgpt.errors import ConfigError

    if not out.is_dir() or not any(out.iterdir()):
        return
    if not (out / "world.json").is_file():
        raise ConfigError(
            f"--out {out} is not empty and holds no synthetic world: give a new or empty directory"
        )
    shutil.rmtree(out)


def handler(args: argparse.Namespace) -> int:
    """Generate the world and print a one-screen summary; returns the exit code."""
    import time

    from mmgpt.synth.world import generate_world

    prepare_output_dir(Path(args.out))
    start = time.perf_counter()
    manifest = generate_world(
        args.out,
        seed=args.seed,
        scale=args.scale,
        image_size=args.image_size,
        progress=not args.no_progress,
        reading=args.reading,
    )
    elapsed = time.perf_counter() - start
    counts = manifest.counts
    print(
        f"synthetic world ({args.scale}, seed {args.seed}) written to {args.out} in {elapsed:.1f}s: "
        f"{counts['train_images']} train + {counts['heldout_images']} held-out images, "
        f"{len(manifest.image_files())} image files"
    )
    for key in sorted(counts):
        print(f"  {key:24s} {counts[key]}")
    print(f"train with {args.out}/datasets.yaml; evaluate on {args.out}/eval/heldout.jsonl")
    return 0
