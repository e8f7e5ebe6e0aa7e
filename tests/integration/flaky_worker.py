"""A real worker whose ClickHouse inserts fail on purpose (fault injection for tests).

The first ``CXPULSE_TEST_FAIL_INSERTS`` inserts raise before reaching ClickHouse; after
that the real backend receives every row. Run as ``python -m tests.integration.flaky_worker``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import faust

from cxpulse.streams.app import create_app, default_connect
from cxpulse.streams.settings import get_settings
from cxpulse.streams.worker import preflight


class FlakyBackend:
    failures_left = int(os.environ.get("CXPULSE_TEST_FAIL_INSERTS", "3"))
    lock = threading.Lock()

    def __init__(self, real: Any) -> None:
        self.real = real

    def insert(self, table: str, rows: Sequence[Any]) -> Any:
        with FlakyBackend.lock:
            if FlakyBackend.failures_left > 0:
                FlakyBackend.failures_left -= 1
                raise ConnectionError("injected insert failure")
        return self.real.insert(table, rows)

    def query(self, sql: str) -> Any:
        return self.real.query(sql)

    def close(self) -> None:
        self.real.close()


def main() -> None:
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings = preflight(settings)
    connect = default_connect(settings)
    app = create_app(settings, connect=lambda: FlakyBackend(connect()))
    faust.Worker(app, loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
