"""A real worker one of whose rows ClickHouse cannot take (fault injection for tests).

The first row of the first ``touchpoint_events`` insert gets a ``schema_version`` no
UInt8 holds, in that insert and every retry of it, so the real backend refuses it for
its values and the sink writer sets it aside (logged, counted, kept in
``dead_letters``); every other row reaches ClickHouse.
Run as ``python -m tests.integration.refusing_worker``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import faust

from cxpulse.schemas.rows import TableSpec
from cxpulse.schemas.tables import SPECS
from cxpulse.sinks.writer import rows_of
from cxpulse.streams.app import create_app, default_connect
from cxpulse.streams.settings import get_settings
from cxpulse.streams.worker import preflight


class RefusingBackend:
    spoiled: object = None  # the event_id of the row that is refused, every time
    lock = threading.Lock()

    def __init__(self, real: Any) -> None:
        self.real = real

    def insert(self, table: Any, rows: Sequence[Any]) -> Any:
        name = getattr(table, "name", table)
        if name == "touchpoint_events" and len(rows):
            rows = rows_of(rows)  # however the backend prepared them (a server: columns)
            spec = next(s for s in SPECS if s.name == name and isinstance(s, TableSpec))
            with RefusingBackend.lock:
                if RefusingBackend.spoiled is None:
                    RefusingBackend.spoiled = rows[0][0]
            version = spec.column_names.index("schema_version")
            rows = [
                (*row[:version], 1_000, *row[version + 1 :])  # over UInt8
                if row[0] == RefusingBackend.spoiled
                else row
                for row in rows
            ]
        return self.real.insert(table, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def main() -> None:
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings = preflight(settings)
    connect = default_connect(settings)
    app = create_app(settings, connect=lambda: RefusingBackend(connect()))
    faust.Worker(app, loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
