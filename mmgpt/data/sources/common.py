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
    where: str = ""  # "file:record" of the source record, for messages about this sample


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


def _read_text(path: Path) -> str:
    """The file's text as UTF-8 (a leading byte-order mark is dropped); errors name the file and line."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        # utf-8-sig: editors on Windows often save UTF-8 with a byte-order mark, which json rejects
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start}); "
            "save the file as UTF-8"
        ) from err


def load_json(path: Path) -> Any:
    """Parse a JSON file; unreadable files and syntax errors are DataErrors naming the file and line."""
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        hint = ""
        if err.msg == "Extra data" and text.lstrip().startswith("{"):
            # several top-level objects, one per line: JSON Lines given to a reader of one JSON document
            hint = "; the file looks like JSON Lines (one object per line), but this reader expects one JSON document"
        raise DataError(f"{path}:{err.lineno}: invalid JSON ({err.msg}, column {err.colno}){hint}") from err


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed object) for each non-blank line; a bad line is a DataError naming it.

    A file holding one JSON array instead of one object per line is a DataError saying so.
    """
    text = _read_text(path)
    if text.lstrip().startswith("["):
        raise DataError(
            f"{path}: the file is a JSON array, but this reader expects JSON Lines (one object per line)"
        )
    # split on "\n" only: str.splitlines would also break at characters such as U+2028 that JSON allows raw
    # inside strings; a "\r" left by CRLF endings is whitespace to the JSON parser
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{lineno}: invalid JSON ({err.msg}, column {err.colno})") from err


def not_a_list(ann_path: Path, data: Any, what: str = "records") -> DataError:
    """The error for a file that should hold a JSON array of `what` and holds `data` instead; a single object in
    a `.jsonl` file is one line of JSON Lines, and the message says so."""
    hint = ""
    if isinstance(data, dict) and ann_path.suffix == ".jsonl":
        hint = " (the file looks like JSON Lines, one object per line; this reader expects one JSON array)"
    return DataError(f"{ann_path}: expected a JSON list of {what}, got {type(data).__name__}{hint}")


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


def field_error(err: Exception) -> str:
    """A readable description of a field problem raised while parsing a record.

    str(KeyError) quotes its argument, and a bare KeyError carries only the key, so both are rewritten.
    """
    if isinstance(err, KeyError):
        arg = err.args[0] if err.args else ""
        return arg if isinstance(arg, str) and arg.startswith("missing field") else f"missing field {arg!r}"
    return str(err)


def require_int(record: dict, key: str) -> int:
    """record[key] as an int (an integer or a string of digits); KeyError/TypeError/ValueError name the field."""
    if key not in record:
        raise KeyError(f"missing field '{key}'")
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"field '{key}' is {type(value).__name__}, expected an integer")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"field '{key}' is {value!r}, expected an integer") from None


def invalid_text(sample: Sample) -> str | None:
    """Which text of a sample cannot be encoded as UTF-8 (a lone surrogate from a \\ud800-style JSON escape,
    which tokenizers reject), or None when all of it can."""
    for number, turn in enumerate(sample.conversation.turns):
        for name, text in (("question", turn.user), ("response", turn.assistant), ("input", turn.input)):
            if text is None:
                continue
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return f"round {number} {name} holds a lone surrogate (invalid Unicode)"
    return None


def seeded_subset(items: list[Any], n: int | None, seed: int, name: str) -> list[Any]:
    """A deterministic subset of n items (all when n is None or >= len), in original order."""
    if n is None or n >= len(items):
        return items
    rng = random.Random(zlib.crc32(f"{seed}:{name}".encode()))
    chosen = sorted(rng.sample(range(len(items)), n))
    return [items[i] for i in chosen]
