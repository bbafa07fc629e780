"""The paper's findings, measured on the synthetic world.

- RQ1: joint (vision-language + language-only) tuning vs vision-language-only tuning: language-task accuracy and
  dialogue (follow-up) accuracy.
- RQ2: adding one/two-word VQA answers to the mix shortens replies to open-ended prompts (mean words); and
  `mmgpt data inspect` flags that data.
- RQ3: the untuned base prompted with the template vs the tuned model: instruction following is learned.

Reuses the demo's world and its cached base (run `mmgpt demo` first; the base is found by the demo's cache key).
Every variant is tuned exactly like the demo (configs/synthetic_mmgpt.yaml plus the demo's step count) and
evaluated on the same held-out items. Writes experiments/results/ablations.{md,json,png}.

    python experiments/ablations.py [--demo-dir runs/demo] [--cache-dir ~/.cache/mmgpt] [--steps N]
        [--base-steps N]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TUNE_CONFIG = ROOT / "configs" / "synthetic_mmgpt.yaml"
MOST_FREQUENT = "most frequent answer"
VARIANTS = {
    "joint (paper)": "datasets.yaml",
    "vision-language only": "datasets_vl_only.yaml",
    "joint + VQA short answers": "datasets_with_vqa.yaml",
}


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def _tuned_as(demo: Path, overrides: list[str]) -> bool:
    """Whether the demo in `demo` tuned its model with these overrides (its tuning run's recorded settings, steps
    included), so that its model can stand for the joint variant instead of being tuned again."""
    from mmgpt.train.config import changed_settings, load_train_config

    recorded = demo / "tune" / "config.yaml"
    if not (demo / "model" / "config.json").exists() or not recorded.exists():
        return False
    wanted = load_train_config(TUNE_CONFIG, overrides)
    steps = yaml.safe_load(recorded.read_text()).get("optim", {}).get("max_steps")
    return steps == wanted.optim.max_steps and not changed_settings(demo / "tune", wanted)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", default=str(ROOT / "runs" / "demo"))
    parser.add_argument(
        "--cache-dir", default=None, help="the demo's base cache (default: the demo's default)"
    )
    parser.add_argument("--steps", type=int, default=None, help="tuning steps (default: the demo's)")
    parser.add_argument(
        "--base-steps", type=int, default=None, help="the demo's --base-steps, which picks its cached base"
    )
    parser.add_argument("--eval-limit", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results"))
    args = parser.parse_args()

    from mmgpt.demo import base_dir_for, evaluate_model_dir, train_in_fresh_process, tuning_overrides
    from mmgpt.eval.runner import chance, load_heldout, most_frequent
    from mmgpt.synth.world import WorldManifest

    demo = Path(args.demo_dir)
    world = demo / "world"
    if not (world / "world.json").exists():
        sys.exit(f"no world in {demo}: run `mmgpt demo --out {demo}` first")
    meta = WorldManifest.load(world)
    cache = Path(args.cache_dir) if args.cache_dir else None
    base_dir = base_dir_for(meta.seed, meta.scale == "quick", cache, args.base_steps) / "model"
    if not (base_dir / "config.json").exists():
        sys.exit(f"no cached base at {base_dir}: run `mmgpt demo --out {demo}` first")
    heldout = world / "eval" / "heldout.jsonl"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, data in VARIANTS.items():
        run = out / "runs" / data.replace(".yaml", "")
        overrides = [
            f"data.config={world / data}",
            f"model.path={base_dir}",
            f"output_dir={run}",
            "logging.progress=false",
        ]
        overrides += tuning_overrides(quick=meta.scale == "quick", steps=args.steps)
        start = time.perf_counter()
        # a variant tuned earlier is reused only if it was tuned the same way (overrides and config file) on the
        # same world and base
        key = json.dumps(
            {
                "overrides": overrides,
                "config": hashlib.sha256(TUNE_CONFIG.read_bytes()).hexdigest(),
                "world": [meta.seed, meta.scale, meta.generator],
            }
        )
        if data == "datasets.yaml" and _tuned_as(demo, overrides):
            run = demo  # the demo's tuned model is exactly this variant: same config, steps and seed
        elif not (run / "model" / "config.json").exists() or _read(run / "ablation_key.json") != key:
            train_in_fresh_process(TUNE_CONFIG, overrides, resume=False)
            (run / "ablation_key.json").write_text(key)
        metrics, _, _ = evaluate_model_dir(run / "model", heldout, args.eval_limit)
        results[name] = metrics
        print(f"{name}: {metrics} ({time.perf_counter() - start:.0f} s)", flush=True)
    results["untuned base + template"], _, _ = evaluate_model_dir(base_dir, heldout, args.eval_limit)
    items = load_heldout(heldout, args.eval_limit)
    results["chance"] = chance(items)
    results[MOST_FREQUENT] = most_frequent(items)
    (out / "ablations.json").write_text(json.dumps(results, indent=2) + "\n")

    inspect = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmgpt",
            "-q",
            "data",
            "inspect",
            "--config",
            str(world / "datasets_with_vqa.yaml"),
            "--model",
            str(base_dir),
            "--limit",
            "0",
        ],
        capture_output=True,
        text=True,
    )
    warnings = [line for line in inspect.stdout.splitlines() if line.startswith("WARNING")]
    from mmgpt.eval.runner import format_metric

    metrics = list(next(iter(results.values())))
    lines = ["| variant | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for name, m in results.items():
        lines.append(f"| {name} | " + " | ".join(format_metric(m[k]) for k in metrics) + " |")
    lines += ["", *_findings(results), ""]
    lines += [
        "`mmgpt data inspect` on the VQA-augmented mix:",
        "",
        *[f"    {w}" for w in warnings or ["(no warning)"]],
    ]
    (out / "ablations.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(results, out / "ablations.png")


def _findings(results: dict) -> list[str]:
    """One line per research question, with the measured numbers (whatever direction they point)."""
    joint, vl, vqa = (results[n] for n in VARIANTS)
    base = results["untuned base + template"]

    def diff(a: dict, b: dict, key: str) -> str:
        return f"{a[key]:.3f} vs {b[key]:.3f} ({a[key] - b[key]:+.3f})"

    better = [k for k in joint if k != "mean_response_words" and joint[k] > base[k]]
    return [
        f"- RQ1 joint vs vision-language-only tuning: language accuracy {diff(joint, vl, 'language_acc')}; "
        f"follow-up accuracy {diff(joint, vl, 'followup_acc')}.",
        f"- RQ2 adding one/two-word VQA data: mean words on open-ended prompts "
        f"{diff(vqa, joint, 'mean_response_words')} (with VQA vs without).",
        f"- RQ3 tuned vs untuned base with the same template: tuned is higher on {len(better)} of "
        f"{len(joint) - 1} accuracy metrics ({', '.join(better) or 'none'}).",
    ]


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in results if n not in ("chance", MOST_FREQUENT)]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    keys = ["counting_acc", "color_acc", "ocr_em", "language_acc", "followup_acc"]
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        heights = [results[name][k] or 0.0 for k in keys]  # a metric no item measured is drawn as 0
        a.bar([k + i * width for k in range(len(keys))], heights, width, label=name)
    a.set_xticks(
        [k + 0.4 - width / 2 for k in range(len(keys))], [k.replace("_", " ") for k in keys], fontsize=8
    )
    a.set_ylabel("accuracy")
    a.set_ylim(0, 1)  # headroom: the legend sits above the bars, not on them
    a.legend(fontsize=7, ncol=2, loc="upper left")
    b.bar(range(len(names)), [results[n]["mean_response_words"] or 0.0 for n in names], color="tab:gray")
    b.set_xticks(range(len(names)), names, fontsize=7, rotation=15)
    b.set_ylabel("mean words, open-ended prompts")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
