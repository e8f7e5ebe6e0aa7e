"""The chDB backend's Arrow columns: UUIDs and times are converted a column at a time
(msgspec to text, Arrow parsing the times back), and must read exactly as the value by
value conversion (``str(uuid)``, ``pa.array`` of the ``datetime`` objects) does, then round
trip through the real engine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import pyarrow as pa
import pytest
from pydantic import AwareDatetime, BaseModel

from cxpulse.schemas.rows import Column, TableSpec
from cxpulse.sinks.base import Backend

_TS = "DateTime64(3, 'UTC')"


class _TimesRow(BaseModel):
    n: Annotated[int, Column("UInt32", "The key.")]
    some_id: Annotated[uuid.UUID, Column("UUID", "An id.")]
    maybe_id: Annotated[uuid.UUID | None, Column("Nullable(UUID)", "An id or NULL.")]
    at: Annotated[AwareDatetime, Column(_TS, "A time.")]
    maybe_at: Annotated[AwareDatetime | None, Column(f"Nullable({_TS})", "A time or NULL.")]


TIMES = TableSpec(
    name="columns_probe",
    model=_TimesRow,
    order_by=("n",),
    partition_by="tuple()",
    version=None,
    doc="A test table.",
)

ID = uuid.UUID("0b5e8f0c-63a4-4f1c-9a51-2f0d1c7e9b11")
UTC_MICROS = datetime(2026, 11, 20, 9, 0, 0, 123456, tzinfo=UTC)  # truncated to .123
PLUS_ONE = datetime(2026, 11, 20, 10, 0, tzinfo=timezone(timedelta(hours=1)))
BEFORE_1970 = datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)

ROWS = [
    (1, ID, None, UTC_MICROS, None),
    (2, str(ID), ID, PLUS_ONE, BEFORE_1970),  # an id already text is taken as it is
    (3, uuid.UUID(int=0), str(uuid.UUID(int=1)), BEFORE_1970, PLUS_ONE),
]


@pytest.fixture(scope="module")
def chdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    from cxpulse.sinks.embedded import ChdbBackend

    directory: Path = tmp_path_factory.mktemp("chdb-columns")
    backend = ChdbBackend(f"chdb://{directory}?database=cxpulse_columns")
    backend.ensure_schema((TIMES,))
    try:
        yield backend
    finally:
        backend.close()


def value_by_value(rows: list[tuple[object, ...]]) -> pa.Table:
    """The columns as ``pa.array`` makes them from each Python value."""
    ms = pa.timestamp("ms", tz="UTC")
    n, some, maybe, at, maybe_at = zip(*rows, strict=True)
    return pa.Table.from_arrays(
        [
            pa.array(n, type=pa.uint32()),
            pa.array([str(v) for v in some], type=pa.string()),
            pa.array([None if v is None else str(v) for v in maybe], type=pa.string()),
            pa.array(at, type=ms),
            pa.array(maybe_at, type=ms),
        ],
        names=list(TIMES.column_names),
    )


@pytest.mark.clickhouse
def test_ids_and_times_make_the_columns_value_by_value_conversion_makes(chdb: Backend) -> None:
    made = chdb.to_arrow_columns(TIMES, list(zip(*ROWS, strict=True)))  # type: ignore[attr-defined]
    expected = value_by_value(ROWS)
    assert made.schema == expected.schema
    assert made.equals(expected)
    assert made.column("at").to_pylist()[0] == datetime(2026, 11, 20, 9, 0, 0, 123000, tzinfo=UTC)


@pytest.mark.clickhouse
def test_times_without_a_zone_are_read_as_utc_as_before(chdb: Backend) -> None:
    naive = [(4, ID, None, datetime(2026, 1, 1, 10, 0), datetime(2026, 1, 1, 11, 0))]
    made = chdb.to_arrow_columns(TIMES, list(zip(*naive, strict=True)))  # type: ignore[attr-defined]
    assert made.equals(value_by_value(naive))
    assert made.column("at").to_pylist() == [datetime(2026, 1, 1, 10, 0, tzinfo=UTC)]


@pytest.mark.clickhouse
def test_the_columns_round_trip_through_the_engine(chdb: Backend) -> None:
    chdb.insert(TIMES, ROWS)
    back = {r[0]: r for r in chdb.read_table(TIMES)}
    assert back[1] == (1, ID, None, UTC_MICROS.replace(microsecond=123000), None)
    assert back[2] == (2, ID, ID, PLUS_ONE.astimezone(UTC), BEFORE_1970)
    assert back[3] == (3, uuid.UUID(int=0), uuid.UUID(int=1), BEFORE_1970, PLUS_ONE)
