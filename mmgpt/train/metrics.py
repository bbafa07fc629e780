"""metrics.jsonl (one object per optimizer step) and the loss-curve plot."""

from __future__ import annotations

import json
from pathlib import Path


class MetricsWriter:
    """Appends one JSON object per step; on resume drops lines past the resumed step (they will be redone)."""

    def __init__(self, path: Path, truncate_after: int = 0):
        self.path = path
        kept = []
        if path.exists():
            kept = [
                line
                for line in path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= truncate_after
            ]
        path.write_text("".join(line + "\n" for line in kept))

    def write(self, row: dict) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")


def plot_losses(metrics_path: Path, out: Path) -> None:
    """Save total, VL and language loss against step as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = [r["step"] for r in rows]
    for key, label in (("loss", "total"), ("loss_vl", "vision-language"), ("loss_lang", "language")):
        ax.plot(steps, [r[key] for r in rows], label=label, linewidth=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
