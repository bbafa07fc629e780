"""Progress bars that read well both on a terminal and in a log file.

On a terminal a bar redraws itself in place as often as tqdm likes. Written to a file or a pipe (`mmgpt demo >
demo.log 2>&1`, a CI log, a job scheduler's output), tqdm's in-place redraws pile up as one line of carriage
returns hundreds of kilobytes long; there a bar instead writes a plain line at most every `LOG_INTERVAL` seconds.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

# Seconds between two lines of a bar that is not on a terminal.
LOG_INTERVAL = 30.0


class LineWriter:
    """A text stream for a bar off the terminal: each redraw it keeps becomes one line of its own.

    It keeps the first redraw, then at most one every `interval` seconds (tqdm redraws more often, and on every
    `set_postfix`), and the bar's last state when tqdm closes the bar with a bare newline.
    """

    def __init__(self, stream: TextIO, interval: float = LOG_INTERVAL, clock: Any = time.monotonic):
        self.stream = stream
        self.interval = interval
        self.clock = clock
        self.last_written: str | None = None
        self.last_time = -math.inf
        self.pending: str | None = None

    def write(self, text: str) -> int:
        """Take tqdm's output (`\r` + status + padding, or a newline when a bar closes); returns len(text)."""
        line = text.split("\r")[-1].strip()
        if line:
            self.pending = line
            if self.clock() - self.last_time >= self.interval:
                self._emit()
        elif "\n" in text:
            self._emit()
        return len(text)

    def flush(self) -> None:
        """Flush the underlying stream."""
        self.stream.flush()

    def _emit(self) -> None:
        if self.pending is not None and self.pending != self.last_written:
            self.stream.write(self.pending + "\n")
            self.last_written, self.last_time = self.pending, self.clock()
        self.pending = None


def progress_bar(iterable: Any = None, *, stream: TextIO | None = None, **options: Any) -> Any:
    """A tqdm bar over `iterable` (or with `total=` for manual updates), drawn on `stream` (default stderr).

    `options` are tqdm's. On a terminal they pass through unchanged; elsewhere the bar writes a line as it starts,
    at most one every `LOG_INTERVAL` seconds, and one at its end, instead of redrawing in place.
    """
    from tqdm import tqdm
    from tqdm.autonotebook import tqdm as notebook_or_plain

    if notebook_or_plain is not tqdm and stream is None:
        return notebook_or_plain(iterable, **options)  # a Jupyter kernel: its own widget
    stream = stream if stream is not None else sys.stderr
    if _is_terminal(stream):
        return tqdm(iterable, file=stream, **options)
    options.pop("dynamic_ncols", None)  # a log has no width to follow
    return tqdm(iterable, file=LineWriter(stream), ncols=100, **options)


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
