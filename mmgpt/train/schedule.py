"""The learning-rate schedule shared by every training loop."""

from __future__ import annotations

import math
from collections.abc import Callable


def cosine_lambda(total: int, warmup: int, min_ratio: float) -> Callable[[int], float]:
    """LR multiplier for step `step` of `total`: linear warmup over `warmup` steps, then cosine decay to `min_ratio`."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f
