"""`mmgpt data inspect`: render samples with supervised spans shown, and a per-dataset quality table."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mmgpt data ...` sub-commands."""
    data = subparsers.add_parser("data", help="inspect training data")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p = data_sub.add_parser(
        "inspect",
        help="render samples and report lengths, skips and short-answer share per dataset",
        description="Show rendered samples with the supervised spans highlighted and a quality table per dataset.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="data config YAML (see configs/datasets/paper.yaml)")
    source.add_argument(
        "--dataset", help="one dataset type (llava, minigpt4, aokvqa, coco_caption, ocr_vqa, vqa, dolly, ...)"
    )
    p.add_argument("--ann", help="annotation file (with --dataset)")
    p.add_argument("--image-root", help="image folder (with --dataset)")
    p.add_argument("--split", help="split (coco_caption, ocr_vqa)")
    p.add_argument("--question-path", help="questions file (vqa)")
    tok = p.add_mutually_exclusive_group(required=True)
    tok.add_argument("--tokenizer", help="tokenizer directory")
    tok.add_argument("--model", help="model directory (its tokenizer is used)")
    p.add_argument("--limit", type=int, default=3, help="rendered samples shown per dataset (default 3)")
    p.add_argument("--max-length", type=int, default=None, help="override the config's max_length")
    p.add_argument("--jsonl", help="write one JSON object per kept sample to this file")
    p.add_argument("--plot", help="save a response-length histogram per dataset (PNG)")
    p.set_defaults(func=_inspect)
    data.set_defaults(func=lambda args: (data.print_help(), 2)[1])


def _highlight(tokenizer, input_ids: list[int], labels: list[int], color: bool) -> str:
    """Decode with supervised runs marked: ANSI green on a terminal, [[...]] otherwise."""
    out, run, supervised = [], [], False
    start, end = ("\033[1;32m", "\033[0m") if color else ("[[", "]]")
    for token, label in zip(input_ids, labels, strict=True):
        is_sup = label != -100
        if is_sup != supervised and run:
            text = tokenizer.decode(run)
            out.append(f"{start}{text}{end}" if supervised else text)
            run = []
        supervised = is_sup
        run.append(token)
    if run:
        text = tokenizer.decode(run)
        out.append(f"{start}{text}{end}" if supervised else text)
    return "".join(out)


def _inspect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from transformers import AutoTokenizer

    from mmgpt.data.config import DataConfig, load_data_config
    from mmgpt.data.dataset import read_dataset
    from mmgpt.data.report import build_report, format_table, plot_lengths
    from mmgpt.data.sources import LANGUAGE_TYPES
    from mmgpt.data.templates import SampleTooLong, encode_conversation, supervised_spans
    from mmgpt.errors import ConfigError
    from mmgpt.model.tokenizer import add_flamingo_special_tokens

    if args.config:
        config = load_data_config(args.config)
    else:
        if not args.ann:
            raise ConfigError("--dataset needs --ann")
        spec = {"type": args.dataset, "ann_path": str(Path(args.ann).resolve())}
        if args.image_root:
            spec["image_root"] = str(Path(args.image_root).resolve())
        if args.split:
            spec["split"] = args.split
        if args.question_path:
            spec["question_path"] = str(Path(args.question_path).resolve())
        stream = "language" if args.dataset in LANGUAGE_TYPES else "vision_language"
        config = DataConfig.from_dict({stream: [spec]}, where="--dataset")
    if args.max_length:
        config.max_length = args.max_length
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or args.model)
    add_flamingo_special_tokens(tokenizer)
    color = sys.stdout.isatty()
    reports = []
    jsonl = open(args.jsonl, "w", encoding="utf-8") if args.jsonl else None  # noqa: SIM115
    try:
        for spec in config.vision_language + config.language:
            result = read_dataset(spec, config)
            reports.append(build_report(result, tokenizer, config.max_length))
            shown = 0
            for sample in result.samples:
                try:
                    enc = encode_conversation(sample.conversation, tokenizer, config.max_length)
                except SampleTooLong:
                    continue
                if shown < args.limit:
                    print(
                        f"=== {spec.label} / {sample.id} ({enc.num_images} image(s), {len(enc.input_ids)} tokens)"
                    )
                    print(_highlight(tokenizer, enc.input_ids, enc.labels, color))
                    print()
                    shown += 1
                if jsonl:
                    row = {
                        "dataset": spec.label,
                        "id": sample.id,
                        "text": tokenizer.decode(enc.input_ids),
                        "supervised": [tokenizer.decode(s) for s in supervised_spans(enc)],
                        "num_images": enc.num_images,
                        "num_tokens": len(enc.input_ids),
                    }
                    jsonl.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if jsonl:
            jsonl.close()
    print(format_table(reports))
    if args.plot:
        plot_lengths(reports, args.plot)
        print(f"wrote {args.plot}")
    if sum(r.kept for r in reports) == 0:
        print("error: no usable sample in any dataset (see the skip reasons above)", file=sys.stderr)
        return 1
    return 0
