"""The paper's findings, measured on the synthetic world.

- RQ1: joint (vision-language + language-only) tuning vs vision-language-only tuning: language-task accuracy and
  dialogue (follow-up) accuracy.
- RQ2: adding one/two-word VQA answers to the mix shortens replies to open-ended prompts (mean words); and
  `mmgpt data inspect` flags that data.
- RQ3: the untuned base prompted with the template vs the tuned model: instruction following is learned.

Reuses the demo's world and cached base (run `mmgpt demo` first, or pass --demo-dir). Writes
experiments/results/ablations.md and ablations.png.

    python experiments/ablations.py [--demo-dir runs/demo] [--steps 400]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {
    "joint (paper)": "datasets.yaml",
    "vision-language only": "datasets_vl_only.yaml",
    "joint + VQA short answers": "datasets_with_vqa.yaml",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-dir", default=str(ROOT / "runs" / "demo"))
    parser.add_argument("--steps", type=int, default=None, help="tuning steps (default: the config's)")
    parser.add_argument("--eval-limit", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "experiments" / "results"))
    args = parser.parse_args()

    from mmgpt.eval.runner import chance, evaluate_heldout, load_heldout
    from mmgpt.model.checkpoints import load_model
    from mmgpt.train.config import load_train_config
    from mmgpt.train.loop import run_training

    demo = Path(args.demo_dir)
    world = demo / "world"
    bases = sorted((demo / ".cache").glob("base-*/model/config.json"))
    if not world.exists() or not bases:
        sys.exit(f"no world/base in {demo}: run `mmgpt demo --out {demo}` first")
    base_dir = bases[-1].parent
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
        if args.steps:
            overrides.append(f"optim.max_steps={args.steps}")
        start = time.perf_counter()
        if not (run / "model" / "config.json").exists():
            run_training(
                load_train_config(ROOT / "configs" / "synthetic_mmgpt.yaml", overrides), resume=False
            )
        metrics, _ = evaluate_heldout(
            load_model(run / "model"), heldout, args.eval_limit, batch_size=32, progress=False
        )
        results[name] = metrics
        print(f"{name}: {metrics} ({time.perf_counter() - start:.0f} s)", flush=True)
    results["untuned base + template"], _ = evaluate_heldout(
        load_model(base_dir), heldout, args.eval_limit, batch_size=32, progress=False
    )
    results["chance"] = chance(load_heldout(heldout, args.eval_limit))
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
    metrics = list(next(iter(results.values())))
    lines = ["| variant | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for name, m in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in metrics) + " |")
    lines += ["", "`mmgpt data inspect` on the VQA-augmented mix:", "", *[f"    {w}" for w in warnings]]
    (out / "ablations.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _plot(results, out / "ablations.png")


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in results if n != "chance"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    keys = ["counting_acc", "color_acc", "ocr_em", "language_acc", "followup_acc"]
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        a.bar([k + i * width for k in range(len(keys))], [results[name][k] for k in keys], width, label=name)
    a.set_xticks(
        [k + 0.4 - width / 2 for k in range(len(keys))], [k.replace("_", " ") for k in keys], fontsize=8
    )
    a.set_ylabel("accuracy")
    a.legend(fontsize=7)
    b.bar(range(len(names)), [results[n]["mean_response_words"] for n in names], color="tab:gray")
    b.set_xticks(range(len(names)), names, fontsize=7, rotation=15)
    b.set_ylabel("mean words, open-ended prompts")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
