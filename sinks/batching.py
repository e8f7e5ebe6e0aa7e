"""One size-and-time batcher for every sink.

ClickHouse wants few, large inserts (thousands of rows, about one insert a second per
table), while a stream delivers rows one small batch at a time. The batcher decides *when*
a batch is due and nothing else: it does no I/O and reads time only through the injected
clock, so it is tested without sleeping and reused unchanged by every sink.

It has no background thread: time-based batches become due when the owner next looks
(``due()``), so the owner (a Faust timer, a test) calls ``seconds_until_due()`` to know
when to look again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    """Rows waiting for an insert; due when ``max_items`` are waiting or the oldest has
    waited ``max_seconds``.

    Rows leave only through ``commit(n)`` after the owner's insert succeeded, so a failed
    insert loses nothing: the same rows are offered again by the next ``peek()``.
    """

    def __init__(
        self,
        max_items: int,
        max_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_items < 1:
            raise ValueError("max_items must be at least 1")
        if max_seconds <= 0:
            raise ValueError("max_seconds must be positive")
        self.max_items = max_items
        self.max_seconds = max_seconds
        self._clock = clock
        self._items: list[T] = []
        self._oldest_at: float | None = None

    def __len__(self) -> int:
        return len(self._items)

    def add(self, items: Iterable[T]) -> None:
        """Queue rows; the age clock starts with the first row of an empty batch."""
        before = len(self._items)
        self._items.extend(items)
        if before == 0 and self._items:
            self._oldest_at = self._clock()

    def due(self) -> bool:
        """True when a full batch is waiting or the oldest row has waited long enough."""
        if not self._items:
            return False
        if len(self._items) >= self.max_items:
            return True
        assert self._oldest_at is not None
        return self._clock() - self._oldest_at >= self.max_seconds

    def seconds_until_due(self) -> float | None:
        """How long until ``due()`` turns true by age alone (0 if it is); None when empty."""
        if not self._items:
            return None
        if len(self._items) >= self.max_items:
            return 0.0
        assert self._oldest_at is not None
        return max(0.0, self.max_seconds - (self._clock() - self._oldest_at))

    def peek(self) -> list[T]:
        """The next batch: the oldest rows, at most ``max_items`` of them."""
        return self._items[: self.max_items]

    def commit(self, n: int) -> None:
        """Forget the first ``n`` rows (they are durable now)."""
        del self._items[:n]
        # Rows left over belong to a full batch already due by size, or arrived after
        # the batch they now lead: restart their age so they get their full wait.
        self._oldest_at = self._clock() if self._items else None
