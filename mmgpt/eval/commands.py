"""`mmgpt eval`: generation-based metrics of a model on held-out data."""

from __future__ import annotations

import argparse
import json

from mmgpt.infer.commands import DTYPE_CHOICES, DTYPE_HELP


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `mmgpt eval`."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on held-out data",
        description="SPEC is a synthetic-world heldout.jsonl (counting, colour/shape, OCR, caption F1, language, "
        "follow-up accuracy, response length), or vqa:questions=Q.json,annotations=A.json,images=DIR"
        "[,pattern=COCO_val2014_{image_id:012d}.jpg][,prompt={question}] (VQA accuracy of each reply's short "
        "answer), or "
        "coco:ann=dataset_coco.json,images=DIR[,split=test] (CIDEr).",
    )
    p.add_argument(
        "--model",
        required=True,
        help="a model directory (a tuned model or an untuned base, prompted with the same template), or "
        "`chance` / `most-frequent` for the baselines of a held-out file (uniform guessing from the answer "
        "space / always the commonest answer of each question kind)",
    )
    p.add_argument("--data", required=True, metavar="SPEC")
    p.add_argument("--limit", type=int, default=None, help="items per kind (heldout) or in total (vqa/coco)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default=None,
        help=DTYPE_HELP,
    )
    p.add_argument("--out", help="write the JSON report here")
    p.add_argument(
        "--with-chance",
        action="store_true",
        help="also report the chance and most-frequent-answer baselines (heldout)",
    )
    p.set_defaults(func=_eval)


def _parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    from mmgpt.errors import ConfigError

    kind, _, rest = spec.partition(":")
    if kind not in ("vqa", "coco") or not rest:
        return "heldout", {"path": spec}
    fields = {}
    for part in rest.split(","):
        key, eq, value = part.partition("=")
        if not eq:
            raise ConfigError(f"--data {spec}: expected key=value, got {part!r}")
        fields[key.strip()] = value.strip()
    return kind, fields


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mmgpt.errors import ConfigError
    from mmgpt.eval import runner
    from mmgpt.model.checkpoints import load_model

    kind, fields = _parse_spec(args.data)
    if "{question}" not in fields.get("prompt", "{question}"):
        raise ConfigError(f"--data {args.data}: prompt= must contain {{question}}")
    baselines = {"chance": runner.chance, "most-frequent": runner.most_frequent}
    if args.model in baselines:
        if kind != "heldout":
            raise ConfigError(
                f"--model {args.model} needs a held-out jsonl file (it uses each item's answer and answer_space)"
            )
        shown = baselines[args.model](runner.load_heldout(fields["path"], args.limit))
        return _report({"model": args.model, "data": args.data, "metrics": shown}, shown, args.out)
    model = load_model(args.model, dtype=args.dtype, merge_adapters=True)
    dtype = str(model.dtype).removeprefix("torch.")  # what the replies were computed in, for the report
    if kind == "heldout":
        metrics, records = runner.evaluate_heldout(
            model, fields["path"], args.limit, args.batch_size, args.max_new_tokens
        )
        report: dict = {
            "model": args.model,
            "data": args.data,
            "dtype": dtype,
            "metrics": metrics,
            "items": records,
        }
        if args.with_chance:
            items = runner.load_heldout(fields["path"], args.limit)
            report["chance"] = runner.chance(items)
            report["most_frequent"] = runner.most_frequent(items)
        shown = metrics
    else:
        try:
            if kind == "vqa":
                shown, records = runner.evaluate_vqa(
                    model,
                    Path(fields["questions"]),
                    Path(fields["annotations"]),
                    Path(fields["images"]),
                    fields.get("pattern", "COCO_val2014_{image_id:012d}.jpg"),
                    args.limit,
                    args.batch_size,
                    args.max_new_tokens,
                    prompt=fields.get("prompt", "{question}"),
                )
            else:
                shown, records = runner.evaluate_coco(
                    model,
                    Path(fields["ann"]),
                    Path(fields["images"]),
                    fields.get("split", "test"),
                    args.limit,
                    args.batch_size,
                    args.max_new_tokens,
                )
        except KeyError as err:
            raise ConfigError(f"--data {args.data}: missing field {err}") from err
        report = {"model": args.model, "data": args.data, "dtype": dtype, "metrics": shown, "items": records}
    return _report(report, shown, args.out)


def _report(report: dict, shown: dict, out: str | None) -> int:
    """Print the headline metrics and write the JSON report."""
    from pathlib import Path

    from mmgpt.eval.runner import format_metric

    baselines = [b for b in ("chance", "most_frequent") if b in report]
    if baselines:
        print(f"{'':<22}{'model':>10}" + "".join(f"{b.replace('_', ' '):>15}" for b in baselines))
    for name, value in shown.items():
        shown_value = format_metric(value, "") if isinstance(value, float | None) else str(value)
        row = f"{shown_value:>10}" + "".join(f"{format_metric(report[b][name], ''):>15}" for b in baselines)
        print(f"{name:<22}" + (row if baselines else shown_value))
    if out:
        Path(out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"report written to {out}")
    return 0
