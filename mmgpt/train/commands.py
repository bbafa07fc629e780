"""`mmgpt train` and `mmgpt merge`."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the training room's sub-commands."""
    p = subparsers.add_parser(
        "train",
        help="LoRA instruction tuning (or pretraining of a tiny base) from a YAML config",
        description="Train from a YAML config; any key can be overridden as dotted.key=value. Launch on several "
        "processes with torchrun or accelerate launch (see README). A run resumes from the newest checkpoint in its output directory.",
    )
    p.add_argument("--config", help="training YAML (configs/*.yaml)")
    p.add_argument("--output-dir", help="run directory (overrides output_dir)")
    p.add_argument("--max-steps", type=int, help="stop after N optimizer steps (overrides optim.max_steps)")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument(
        "--resume",
        action="store_true",
        help="resume from the newest checkpoint (the default when one exists)",
    )
    resume.add_argument(
        "--no-resume",
        action="store_true",
        help="start over: the run directory's existing checkpoints are deleted",
    )
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=1e-4")
    p.set_defaults(func=_train)

    m = subparsers.add_parser("merge", help="fold LoRA adapters into the base weights")
    m.add_argument("--model", required=True, help="model directory with adapters")
    m.add_argument("--out", required=True, help="output model directory")
    m.set_defaults(func=_merge)


def _train(args: argparse.Namespace) -> int:
    from mmgpt.errors import ConfigError
    from mmgpt.train.checkpointing import list_checkpoints
    from mmgpt.train.config import load_train_config
    from mmgpt.train.loop import run_training

    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"output_dir={args.output_dir}")
    if args.max_steps is not None:  # 0 or less is refused by the config's check, not silently ignored
        overrides.append(f"optim.max_steps={args.max_steps}")
    config = load_train_config(args.config, overrides)
    from pathlib import Path

    if args.resume and not list_checkpoints(Path(config.output_dir)):
        raise ConfigError(f"--resume: no checkpoint in {config.output_dir}/checkpoints")
    model_dir = run_training(config, resume=not args.no_resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"model written to {model_dir}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from mmgpt.model.checkpoints import load_model, save_model_dir
    from mmgpt.model.lora import has_lora, merge_lora

    model = load_model(args.model)
    if not has_lora(model):
        print(f"{args.model} has no LoRA adapters; writing it unchanged")
    merge_lora(model)
    save_model_dir(model, args.out)
    print(f"merged model written to {args.out}")
    return 0
