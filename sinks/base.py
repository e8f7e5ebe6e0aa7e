"""The sink interface and what every ClickHouse backend offers.

A sink is two methods, ``add`` and ``flush`` (plus ``close``): the stream hands it rows,
the sink decides when to write them. Everything else (retries, backpressure, offsets)
belongs to the caller, which runs these blocking calls in an executor thread: keeping
the sinks synchronous keeps them simple to test and free of any event loop.

A backend is one ClickHouse (a server, chDB, or memory for tests). Row tuples travel in
the column order of their ``TableSpec``, with plain Python values (UUID, aware datetime,
str, int, float, None); each backend converts them to its fastest wire format. A backend
may also ``prepare`` rows ahead of their insert, on the caller's thread, into what its
``insert`` takes (chDB: an Arrow table; ``cxpulse.sinks.writer.SinkWriter.prepare``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Protocol, runtime_checkable

from cxpulse.schemas.rows import TableSpec, ViewSpec
from cxpulse.schemas.tables import SPECS

from .errors import SinkWriteError

Row = tuple[Any, ...]


class ColumnBatch:
    """Rows held as their columns (one list of values per column of the table, in its
    order), for a backend whose insert takes columns (clickhouse-driver's columnar
    insert: ``cxpulse.sinks.native``): the steps build their rows as columns, and the
    batch stays so until the insert, with no row tuple made on the step's thread nor
    turned back into columns on the sink's. ``len`` is its rows and ``slice`` a part of
    them, as for an Arrow table."""

    __slots__ = ("columns",)

    def __init__(self, columns: Sequence[Sequence[Any]]) -> None:
        if not columns or len({len(c) for c in columns}) != 1:
            raise ValueError("a column batch needs columns, all of the same length")
        self.columns = [c if isinstance(c, list) else list(c) for c in columns]

    def __len__(self) -> int:
        return len(self.columns[0])

    def slice(self, offset: int, length: int) -> ColumnBatch:
        return ColumnBatch([c[offset : offset + length] for c in self.columns])

    def rows(self) -> list[Row]:
        return list(zip(*self.columns, strict=True))

    @staticmethod
    def concat(parts: Sequence[ColumnBatch]) -> ColumnBatch:
        """The parts' rows in order, as one batch."""
        columns: list[list[Any]] = [[] for _ in parts[0].columns]
        for part in parts:
            for column, values in zip(columns, part.columns, strict=True):
                column += values
        return ColumnBatch(columns)


@runtime_checkable
class Backend(Protocol):
    """One ClickHouse. Every method blocks and raises a ``cxpulse.sinks.errors.SinkError``."""

    url: str
    database: str

    def server_version(self) -> str:
        """The server's ``SELECT version()``."""
        ...

    def ensure_schema(self, specs: Sequence[TableSpec | ViewSpec] = SPECS) -> None:
        """Create the database, tables and views that do not exist yet (idempotent)."""
        ...

    def insert(self, table: str | TableSpec, rows: Sequence[Row]) -> int:
        """Insert row tuples in one statement; returns the count. Raises on any failure."""
        ...

    def query(self, sql: str) -> tuple[list[str], list[Row]]:
        """Run SQL in the backend's database; returns column names and rows."""
        ...

    def read_table(self, table: str | TableSpec, *, final: bool = True) -> list[Row]:
        """All rows of a table as row tuples, deduplicated as with ``FINAL`` when
        ``final``, sorted by the table's key (``sort_by_key``). For tests and small tables."""
        ...

    def close(self) -> None: ...


class SpecRegistry:
    """The table specs a backend knows by name: cxpulse's own plus any it was given."""

    def __init__(self) -> None:
        self._specs: dict[str, TableSpec] = {s.name: s for s in SPECS if isinstance(s, TableSpec)}

    def remember(self, specs: Iterable[TableSpec | ViewSpec]) -> None:
        for s in specs:
            if isinstance(s, TableSpec):
                self._specs[s.name] = s

    def resolve(self, table: str | TableSpec) -> TableSpec:
        if isinstance(table, TableSpec):
            return table
        try:
            return self._specs[table]
        except KeyError:
            raise SinkWriteError(
                f"no row spec for table {table!r}: add it to cxpulse.schemas.rows.SPECS "
                "or pass its TableSpec"
            ) from None


def _to_datetime(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, int | float):  # epoch seconds, as DateTime reads back on some paths
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, date):
        return value
    return value


def _to_uuid(value: Any) -> Any:
    if isinstance(value, str):
        return uuid.UUID(value)
    if isinstance(value, bytes) and len(value) == 16:
        return uuid.UUID(bytes=value)
    return value


def normalize_rows(spec: TableSpec, rows: Iterable[Sequence[Any]]) -> list[Row]:
    """Rows in one set of Python types: aware UTC datetimes, ``uuid.UUID`` ids, lists.

    Backends differ in what a read returns (naive or aware datetimes, UUID objects or
    strings, epoch ints for DateTime over Arrow), and the row builders write ids as text
    (``cxpulse.schemas.rows.id_text``); normalising both sides lets one contract test
    compare them all.
    """
    converters: list[Callable[[Any], Any] | None] = []
    for _, col in spec.columns:
        if "DateTime" in col.type:
            converters.append(_to_datetime)
        elif col.type.startswith("UUID") or col.type == "Nullable(UUID)":
            converters.append(_to_uuid)
        elif col.type.startswith("Array("):
            converters.append(list)  # the row builders write tuples
        else:
            converters.append(None)
    out = []
    for row in rows:
        out.append(
            tuple(
                v if f is None or v is None else f(v) for f, v in zip(converters, row, strict=True)
            )
        )
    return out


def final_rows(spec: TableSpec, rows: Iterable[Row]) -> list[Row]:
    """ReplacingMergeTree semantics in Python: per key, the row with the highest version,
    the last inserted among equals; sorted by key."""
    best: dict[tuple[Any, ...], tuple[Any, Row]] = {}
    for row in rows:
        key = spec.key_of(row)
        version = spec.version_of(row)
        held = best.get(key)
        if held is None or version is None or not (version < held[0]):
            best[key] = (version, row)
    return [best[k][1] for k in sorted(best)]


def sort_by_key(spec: TableSpec, rows: Iterable[Row]) -> list[Row]:
    """Rows in key order as Python sorts keys (UUIDs by value). ClickHouse's own UUID
    order differs (it compares the low 64 bits first), so reads sort here: every backend
    then returns the same list."""
    return sorted(rows, key=spec.key_of)
