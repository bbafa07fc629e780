"""State of one forward call, passed to the model's hooks and layers without living on its modules.

The media context, the token selection and the labelled positions each travel in a `CallScoped` value: a context
variable bound for the duration of a block. A context variable is private to the calling thread and asyncio
task, so concurrent calls on one model (a server's requests) each see their own. Code that runs outside the
binding block, as a checkpointed layer's recomputation in backward does, must capture the values it needs
(`FlamingoLayer` does).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class CallScoped(Generic[T]):
    """A value bound per call: `get()` returns what the innermost enclosing `bound(value)` set in this thread or
    task, or None outside any."""

    def __init__(self, name: str):
        self._var: contextvars.ContextVar[T | None] = contextvars.ContextVar(name, default=None)

    def get(self) -> T | None:
        """The value of the innermost enclosing `bound` block, or None."""
        return self._var.get()

    @contextmanager
    def bound(self, value: T | None) -> Iterator[None]:
        """Make `value` current for the duration of the block; the previous value comes back after it."""
        token = self._var.set(value)
        try:
            yield
        finally:
            self._var.reset(token)
