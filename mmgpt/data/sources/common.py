"""What every reader shares: the `Sample` record, file loading with located errors, and skip accounting."""

from __future__ import annotations

import json
import logging
import random
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmgpt.data.templates import Conversation
from mmgpt.errors import DataError

logger = logging.getLogger(__name__)


@dataclass
class Sample:
    """One training sample: a conversation and the image files its turns attach, in order."""

    dataset: str
    id: str
    conversation: Conversation
    images: list[Path] = field(default_factory=list)


class Skips:
    """Counts skipped records per reason and remembers the first few `file:record` locations.

    With `strict=True` the first skip raises a DataError naming the file, the record and the problem.
    """

    def __init__(self, strict: bool = False, keep: int = 5):
        self.strict = strict
        self.keep = keep
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, reason: str, where: str, detail: str = "") -> None:
        """Record one skipped record (`where` is "file:record")."""
        message = f"{where}: {reason}" + (f" ({detail})" if detail else "")
        if self.strict:
            raise DataError(message)
        self.counts[reason] += 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < self.keep:
            examples.append(message)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: Skips) -> None:
        """Add another counter's counts and examples into this one."""
        self.counts.update(other.counts)
        for reason, examples in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(examples[: max(0, self.keep - len(mine))])

    def summary(self) -> str:
        if not self.counts:
            return "no records skipped"
        return ", ".join(f"{reason}: {n}" for reason, n in self.counts.most_common())


def load_json(path: Path) -> Any:
    """Parse a JSON file; unreadable files and syntax errors are DataErrors naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: invalid JSON ({err.msg}, column {err.colno})") from err


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed object) for each non-blank line; a bad line is a DataError naming it."""
    try:
        handle = path.open(encoding="utf-8")
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from err
    with handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: invalid JSON ({err.msg})") from err


def require_str(record: Any, key: str, allow_empty: bool = False) -> str:
    """record[key] as a string; raises KeyError/TypeError/ValueError describing the field otherwise."""
    if not isinstance(record, dict):
        raise TypeError("record is not an object")
    if key not in record:
        raise KeyError(f"missing field '{key}'")
    value = record[key]
    if not isinstance(value, str):
        raise TypeError(f"field '{key}' is {type(value).__name__}, expected string")
    if not allow_empty and not value.strip():
        raise ValueError(f"field '{key}' is empty")
    return value


def seeded_subset(items: list[Any], n: int | None, seed: int, name: str) -> list[Any]:
    """A deterministic subset of n items (all when n is None or >= len), in original order."""
    if n is None or n >= len(items):
        return items
    rng = random.Random(zlib.crc32(f"{seed}:{name}".encode()))
    chosen = sorted(rng.sample(range(len(items)), n))
    return [items[i] for i in chosen]
