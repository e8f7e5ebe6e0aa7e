"""Rows computed where their data is.

The experience step turns its moments and score updates into the very row tuples of
``moments``, ``moment_factors`` and ``customer_scores`` (``cxpulse.schemas.score_rows``) and hands
them to its checkpoint (``cxpulse.streams.pipeline.checkpoint``), which inserts them.

Workers before the checkpoint sent moments and score updates to ``cx.moments`` and
``cx.scores`` as JSON arrays of ``Moment`` and ``ScoreUpdate`` models; the sink agents
still drain such a backlog with ``moments_of`` and ``scores_of`` (decoded into the same
structs and turned into rows as then), so an upgrade loses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from cxpulse.schemas.score_rows import moment_rows, score_row
from cxpulse.schemas.scoring import Moment, ScoreUpdate

Row = tuple[Any, ...]

_LEGACY_MOMENTS = msgspec.json.Decoder(list[Moment])
_LEGACY_SCORES = msgspec.json.Decoder(list[ScoreUpdate])


def moment_rows_of(moments: Sequence[Moment]) -> tuple[list[Row], list[Row]]:
    """The ``moments`` rows and the ``moment_factors`` rows of these moments."""
    rows: list[Row] = []
    factors: list[Row] = []
    for moment in moments:
        row, factor_rows = moment_rows(moment)
        rows.append(row)
        factors.extend(factor_rows)
    return rows, factors


def moments_of(raw: bytes) -> tuple[list[Row], list[Row]]:
    """(moments rows, moment_factors rows) of a message an earlier worker left on
    cx.moments."""
    return moment_rows_of(_LEGACY_MOMENTS.decode(raw))


def scores_of(raw: bytes) -> list[Row]:
    """The score rows of a message an earlier worker left on cx.scores."""
    return [score_row(u) for u in _LEGACY_SCORES.decode(raw)]
