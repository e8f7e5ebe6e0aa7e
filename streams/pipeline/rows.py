"""Rows computed where their data is, moved as compact msgpack to the sink.

The experience step turns its moments and score updates into the very row tuples of
``moments``, ``moment_factors`` and ``customer_scores`` (``schemas.score_rows``); the
sink agents only decode and insert them. A batch message is ``FORMAT`` then a msgpack
array of tables, each a list of rows (msgpack arrays in column order), decoded into
typed tuples (UUIDs, aware datetimes) straight from the row models' field types: no
validation, no model objects on the way.

A message without the prefix is the JSON array of ``Moment`` or ``ScoreUpdate`` models
of earlier workers: validated and turned into rows as then, so an upgrade over a backlog
loses nothing.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec
from pydantic import AwareDatetime, TypeAdapter

from schemas.rows import TableSpec
from schemas.score_rows import MOMENT_FACTORS, MOMENTS, SCORE_HISTORY, moment_rows, score_row
from schemas.scoring import Moment, ScoreUpdate
from streams.pipeline.records import FORMAT

Row = tuple[Any, ...]

_encoder = msgspec.msgpack.Encoder()


def _plain(t: Any) -> Any:
    """The Python type msgspec decodes a column into (pydantic-only types mapped)."""
    if t is AwareDatetime:
        return datetime
    args = typing.get_args(t)
    origin = typing.get_origin(t)
    if origin is typing.Annotated:
        return _plain(args[0])
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_plain(a) for a in args)]  # noqa: UP007 - built at run time
    if origin is list:
        return list[_plain(args[0])]  # type: ignore[misc]
    return t


def row_type(spec: TableSpec) -> Any:
    """The typed tuple of one row of ``spec``."""
    fields = [_plain(f.annotation) for f in spec.model.model_fields.values()]
    return tuple.__class_getitem__(tuple(fields))


def encode_rows(*tables: Sequence[Row]) -> bytes:
    """One batch message holding rows of one or more tables."""
    return FORMAT + _encoder.encode(tables)


def decoder(*specs: TableSpec) -> Callable[[bytes], tuple[list[Row], ...]]:
    """A decoder of messages made by ``encode_rows`` for these tables, in this order."""
    typed = msgspec.msgpack.Decoder(
        tuple.__class_getitem__(tuple(list[row_type(s)] for s in specs))  # type: ignore[misc]
    )

    def decode(raw: bytes) -> tuple[list[Row], ...]:
        return typed.decode(memoryview(raw)[len(FORMAT) :])

    return decode


_moments = decoder(MOMENTS, MOMENT_FACTORS)
_scores = decoder(SCORE_HISTORY)
_LEGACY_MOMENTS = TypeAdapter(list[Moment])
_LEGACY_SCORES = TypeAdapter(list[ScoreUpdate])


def moment_rows_of(moments: Sequence[Moment]) -> tuple[list[Row], list[Row]]:
    """The ``moments`` rows and the ``moment_factors`` rows of these moments."""
    rows: list[Row] = []
    factors: list[Row] = []
    for moment in moments:
        row, factor_rows = moment_rows(moment)
        rows.append(row)
        factors.extend(factor_rows)
    return rows, factors


def moments_message(moments: Sequence[Moment]) -> bytes:
    """The ``moments`` and ``moment_factors`` rows of these moments, as one message."""
    return encode_rows(*moment_rows_of(moments))


def scores_message(updates: Sequence[ScoreUpdate]) -> bytes:
    """The ``customer_scores`` (and ``score_history``) rows of these updates."""
    return encode_rows([score_row(u) for u in updates])


def moments_of(raw: bytes) -> tuple[list[Row], list[Row]]:
    """(moments rows, moment_factors rows) of a message on the moments topic."""
    if raw[: len(FORMAT)] == FORMAT:
        rows, factors = _moments(raw)
        return rows, factors
    rows, factors = [], []
    for moment in _LEGACY_MOMENTS.validate_json(raw):
        row, factor_rows = moment_rows(moment)
        rows.append(row)
        factors.extend(factor_rows)
    return rows, factors


def scores_of(raw: bytes) -> list[Row]:
    """The score rows of a message on the scores topic."""
    if raw[: len(FORMAT)] == FORMAT:
        return _scores(raw)[0]
    return [score_row(u) for u in _LEGACY_SCORES.validate_json(raw)]
