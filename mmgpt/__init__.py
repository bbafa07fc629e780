"""mmgpt: MultiModal-GPT, multi-round vision-language dialogue on an OpenFlamingo model tuned with LoRA.

The public entry points are re-exported lazily so that `import mmgpt` stays cheap (no torch import) for the CLI.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": ("mmgpt.model.checkpoints", "load_model"),
    "Flamingo": ("mmgpt.model.flamingo", "Flamingo"),
    "FlamingoConfig": ("mmgpt.model.config", "FlamingoConfig"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'mmgpt' has no attribute {name!r}")
