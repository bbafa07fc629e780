"""Import the scripts of experiments/ and bench/ (not packages) as modules, for their tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str, folder: str = "experiments") -> ModuleType:
    """`folder`/`name`.py as a module named `name`; the scripts it imports from its folder resolve while it
    loads, and it is registered in sys.modules so that its dataclasses resolve their annotations."""
    directory = ROOT / folder
    sys.path.insert(0, str(directory))
    try:
        spec = importlib.util.spec_from_file_location(name, directory / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(directory))
    return module
