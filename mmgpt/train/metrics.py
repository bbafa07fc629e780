"""metrics.jsonl (one object per optimizer step), optional TensorBoard / wandb mirrors, and the loss-curve plot."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mmgpt.errors import ConfigError

logger = logging.getLogger(__name__)


class MetricsWriter:
    """Appends one JSON object per step; on resume drops lines past the resumed step (they will be redone), and
    a line cut short by a crash (a full disk, a power cut)."""

    def __init__(self, path: Path, truncate_after: int = 0):
        self.path = path
        kept = []
        if path.exists():
            for number, line in enumerate(path.read_text().splitlines(), 1):
                row = _parse_row(line)
                if row is None and line.strip():
                    logger.warning("%s:%d: dropping an unreadable line (cut short by a crash?)", path, number)
                if row is not None and row["step"] <= truncate_after:
                    kept.append(line)
        path.write_text("".join(line + "\n" for line in kept))

    def write(self, row: dict) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")


def _parse_row(line: str) -> dict | None:
    """The metrics row on `line`, None when it is blank or not a JSON object with a step."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) and isinstance(row.get("step"), int) else None


class Trackers:
    """Mirrors each metrics row to TensorBoard (`run_dir/tensorboard`) and/or wandb when enabled.

    Both are optional installs: enabling one that is not installed is a ConfigError naming the key, raised before
    training starts rather than after the first step.
    """

    def __init__(self, run_dir: Path, tensorboard: bool, wandb: bool, wandb_project: str, config: dict):
        self._sinks: list[Any] = []
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ConfigError(
                    "logging.tensorboard is true but TensorBoard is not installed (pip install tensorboard)"
                ) from err
            self._sinks.append(_TensorBoardSink(SummaryWriter(log_dir=str(run_dir / "tensorboard"))))
        if wandb:
            try:
                import wandb as wandb_module
            except ImportError as err:
                raise ConfigError(
                    "logging.wandb is true but wandb is not installed (pip install wandb)"
                ) from err
            run = wandb_module.init(project=wandb_project, dir=str(run_dir), config=config, resume="allow")
            self._sinks.append(_WandbSink(run))

    def log(self, row: dict) -> None:
        """Send one metrics row (`step` plus numeric values) to every enabled tracker."""
        values = {k: float(v) for k, v in row.items() if k != "step" and isinstance(v, (int, float))}
        for sink in self._sinks:
            sink.log(row["step"], values)

    def close(self) -> None:
        """Flush and close every tracker."""
        for sink in self._sinks:
            sink.close()


class _TensorBoardSink:
    def __init__(self, writer: Any):
        self.writer = writer

    def log(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(f"train/{key}", value, step)

    def close(self) -> None:
        self.writer.close()


class _WandbSink:
    def __init__(self, run: Any):
        self.run = run

    def log(self, step: int, values: dict[str, float]) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


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
