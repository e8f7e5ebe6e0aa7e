"""An in-memory ClickHouse stand-in for tests of agents and sinks.

It keeps ClickHouse's semantics where tests depend on them: tables must be created before
inserts, a row of the wrong width is refused, and reads with ``final=True`` deduplicate
exactly like ``ReplacingMergeTree`` + ``FINAL``. The contract tests run the same
assertions against it and against both real backends, which is what makes it trustworthy.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from cxpulse.schemas.rows import TableSpec, ViewSpec
from cxpulse.schemas.tables import SPECS

from .base import Row, SpecRegistry, final_rows, normalize_rows
from .errors import SinkConfigError, SinkUnavailable, SinkWriteError


class MemoryBackend:
    """Tables as lists of row tuples. Thread-safe, so an executor thread may insert."""

    def __init__(self, url: str = "memory://", database: str = "cxpulse") -> None:
        self.url = url
        self.database = database
        self._tables: dict[str, list[Row]] = {}
        self._registry = SpecRegistry()
        self._lock = threading.Lock()
        self._closed = False
        #: Set to an exception to make the next inserts fail (tests of retry paths).
        self.fail_inserts_with: Exception | None = None

    def server_version(self) -> str:
        return "memory"

    def ensure_schema(self, specs: Sequence[TableSpec | ViewSpec] = SPECS) -> None:
        self._check_open()
        with self._lock:
            self._registry.remember(specs)
            for spec in specs:
                if isinstance(spec, TableSpec):
                    self._tables.setdefault(spec.name, [])

    def insert(self, table: str | TableSpec, rows: Sequence[Row]) -> int:
        self._check_open()
        spec = self._registry.resolve(table)
        if self.fail_inserts_with is not None:
            raise self.fail_inserts_with
        width = len(spec.columns)
        with self._lock:
            stored = self._tables.get(spec.name)
            if stored is None:
                raise SinkWriteError(
                    f"table {self.database}.{spec.name} does not exist: run ensure_schema first",
                    code=60,
                )
            for row in rows:
                if len(row) != width:
                    raise SinkWriteError(
                        f"row for {spec.name} has {len(row)} values, the table has {width} columns",
                        code=53,
                    )
            # in the types a ClickHouse read returns (ids written as text are UUIDs)
            stored.extend(normalize_rows(spec, rows))
        return len(rows)

    def query(self, sql: str) -> tuple[list[str], list[Row]]:
        raise SinkConfigError(
            "the memory backend runs no SQL: use read_table(), or a chdb:// URL for queries"
        )

    def read_table(self, table: str | TableSpec, *, final: bool = True) -> list[Row]:
        self._check_open()
        spec = self._registry.resolve(table)
        with self._lock:
            if spec.name not in self._tables:
                raise SinkWriteError(f"table {self.database}.{spec.name} does not exist", code=60)
            rows = list(self._tables[spec.name])
        return final_rows(spec, rows) if final else rows

    def close(self) -> None:
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise SinkUnavailable("the memory backend is closed")
