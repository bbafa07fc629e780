"""The synthetic world: a deterministic generator of shape images, instruction data about them written in the
public datasets' own file formats, a pretraining corpus and a held-out evaluation set.

Public API: `generate_world(out_dir, seed=0, scale="default") -> WorldManifest`; answer extraction for the
evaluator lives in `mmgpt.synth.answers` (imported lazily so `import mmgpt.synth` stays light).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmgpt.synth.world import SCALES, WorldManifest, generate_world

__all__ = ["SCALES", "WorldManifest", "generate_world"]


def __getattr__(name: str):
    """Lazy access to the world generator (keeps PIL/numpy out of `import mmgpt.synth`)."""
    if name in __all__:
        from mmgpt.synth import world

        return getattr(world, name)
    raise AttributeError(name)
