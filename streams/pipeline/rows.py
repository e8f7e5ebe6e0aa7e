"""Rows computed where their data is.

The experience step turns its moments and score updates into the columns of
``moments``, ``moment_factors`` and ``customer_scores`` (``cxpulse.schemas.score_rows``,
straight from the records) and hands them to its checkpoint
(``cxpulse.streams.pipeline.checkpoint``, ``TakeRows``), which inserts them.

Workers before the checkpoint sent moments and score updates to ``cx.moments`` and
``cx.scores`` as JSON arrays of ``Moment`` and ``ScoreUpdate`` models; the sink agents
still drain such a backlog with ``moments_of`` and ``scores_of`` (decoded into the same
structs and turned into rows as then), so an upgrade loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from cxpulse.schemas.rows import Columns, event_columns
from cxpulse.schemas.score_rows import moment_columns, score_columns, score_row
from cxpulse.schemas.scoring import Moment, ScoreUpdate

if TYPE_CHECKING:  # the rows process imports this module: not the checkpoint's imports
    from cxpulse.streams.pipeline.checkpoint import Checkpointer

Row = tuple[Any, ...]

#: How many records (events, moments, score updates) a step turns into one part of rows
#: (``TakeRows``, ``rows_process.ProcessRows``).
PART_ROWS = 2_048

_LEGACY_MOMENTS = msgspec.json.Decoder(list[Moment])
_LEGACY_SCORES = msgspec.json.Decoder(list[ScoreUpdate])


Part = tuple[str | tuple[str, ...], Columns]
#: A message's share of a take's touchpoint_events rows: its events, partition and offset.
MessageEvents = tuple[Sequence[Any], int, int]


def event_parts(ingested_at: datetime, messages: Sequence[MessageEvents]) -> list[Part]:
    """The ``touchpoint_events`` columns of these messages' events (``TakeRows``' build
    for the events of a take: every validated event's row, scored or not)."""
    events = [e for evs, _, _ in messages for e in evs]
    partitions = [p for evs, p, _ in messages for _ in evs]
    offsets = [o for evs, _, o in messages for _ in evs]
    return [("touchpoint_events", event_columns(events, partitions, offsets, ingested_at))]


def events_in(message: MessageEvents) -> int:
    """How many records a message's share counts for in a part (``TakeRows``' size)."""
    return len(message[0])


def moment_parts(moments: Sequence[Moment]) -> list[Part]:
    """The ``moments`` and ``moment_factors`` columns of these moments."""
    rows, factors = moment_columns(moments)
    return [("moments", rows), ("moment_factors", factors)]


def score_parts(updates: Sequence[ScoreUpdate]) -> list[Part]:
    """The columns of these score updates, for ``customer_scores`` and ``score_history``
    alike (every score update is history too: the same rows, prepared once)."""
    return [(("customer_scores", "score_history"), score_columns(updates))]


def moment_rows_of(moments: Sequence[Moment]) -> tuple[list[Row], list[Row]]:
    """The ``moments`` rows and the ``moment_factors`` rows of these moments."""
    rows, factors = moment_columns(moments)
    return list(zip(*rows, strict=True)), list(zip(*factors, strict=True))


def moments_of(raw: bytes) -> tuple[list[Row], list[Row]]:
    """(moments rows, moment_factors rows) of a message an earlier worker left on
    cx.moments."""
    return moment_rows_of(_LEGACY_MOMENTS.decode(raw))


def scores_of(raw: bytes) -> list[Row]:
    """The score rows of a message an earlier worker left on cx.scores."""
    return [score_row(u) for u in _LEGACY_SCORES.decode(raw)]


class TakeRows:
    """The rows a take makes for some tables, recorded in the current checkpoint in parts
    as they are made: a step adds its records (moments, score updates, ...) with ``add``,
    and every ``PART_ROWS`` records, and at ``close`` at the end of the take, ``build``
    turns them into ``(tables, columns)`` pairs (``cxpulse.schemas``' column builders:
    one table's, or several tables' of the same records, such as moments and their
    factors), each recorded as a part with ``Checkpointer.add_columns``. A take that fails
    part way leaves its parts in a checkpoint that is rolled back with the states
    (``run_takes``). A subclass records its parts otherwise (``_record``: the rows
    process's, ``cxpulse.streams.pipeline.rows_process.ProcessRows``)."""

    __slots__ = ("_add", "_build", "_size", "count", "items")

    def __init__(
        self,
        checkpoints: Checkpointer,
        build: Callable[[list[Any]], Iterable[tuple[str | tuple[str, ...], Columns]]],
        *,
        size: Callable[[Any], int] | None = None,
    ) -> None:
        """``size``: how many records an item counts for (one each without it; the events
        of a message, say)."""
        self._add = checkpoints.add_columns
        self._build = build
        self._size = size
        self.items: list[Any] = []
        self.count = 0

    def add(self, items: list[Any]) -> None:
        self.items += items
        self.count += len(items) if self._size is None else sum(map(self._size, items))
        if self.count >= PART_ROWS:
            self.close()

    def add_encoded(
        self, raw: bytes, decode: Callable[[bytes], list[Any]], counts: dict[str, int]
    ) -> None:
        """Add records that came encoded (``decode`` reads them; ``counts``: the rows they
        make, by table). A subclass whose parts are built elsewhere from records encoded
        so hands ``raw`` on as it is (``ProcessRows``)."""
        self.add(decode(raw))

    def close(self) -> None:
        """Record the rows of the records added since the last part."""
        if self.items:
            items, self.items, self.count = self.items, [], 0
            self._record(items)

    def _record(self, items: list[Any]) -> None:
        for tables, columns in self._build(items):
            self._add(tables, columns)
