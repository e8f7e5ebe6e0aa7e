"""Run blocking ClickHouse inserts off Faust's event loop, retrying until they succeed.

The insert runs in one dedicated thread (chDB and clickhouse-driver connections are not
shared across threads), so the event loop keeps heart-beating Kafka while ClickHouse is
slow. A failing insert is retried with capped exponential backoff for as long as it
takes: the agent awaiting it stops pulling batches, its buffer fills, and Faust pauses
consumption. That is the backpressure: nothing is dropped and memory stays bounded by
the stream buffers, while the offsets of the waiting events stay uncommitted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

from streams import metrics

log = logging.getLogger(__name__)


class InsertBackend(Protocol):
    """The part of a ClickHouse backend the writer needs (see ``sinks``)."""

    def insert(self, table: str, rows: Sequence[Any]) -> Any: ...


class SinkWriter:
    """Durable, ordered inserts for the agents of one worker."""

    def __init__(
        self, connect: Callable[[], InsertBackend], retry_max_seconds: float = 30.0
    ) -> None:
        """``connect`` opens the backend (and ensures its tables); it is called on the sink
        thread itself, lazily and again after a failure, so a ClickHouse that is down at
        start or restarts later is simply retried like any failed insert."""
        self._connect = connect
        self._backend: InsertBackend | None = None
        self.retry_max_seconds = retry_max_seconds
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxpulse-sink")

    def _insert(self, table: str, rows: Sequence[Any]) -> None:
        if self._backend is None:
            self._backend = self._connect()
        try:
            self._backend.insert(table, rows)
        except Exception:
            self._drop_backend()
            raise

    def _drop_backend(self) -> None:
        backend, self._backend = self._backend, None
        close = getattr(backend, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # closing a broken connection may fail too
                log.debug("closing the failed backend raised %r", exc)

    async def write(self, table: str, rows: Sequence[Any]) -> None:
        """Insert ``rows`` into ``table``; returns only once they are durable."""
        if not rows:
            return
        loop = asyncio.get_running_loop()
        pending = metrics.SINK_PENDING_ROWS.labels(table)
        pending.inc(len(rows))

        def before_sleep(state: RetryCallState) -> None:
            metrics.SINK_FAILURES.labels(table).inc()
            exc = state.outcome.exception() if state.outcome else None
            log.warning(
                "insert of %d rows into %s failed (attempt %d), retrying in %.1fs: %s",
                len(rows),
                table,
                state.attempt_number,
                state.next_action.sleep if state.next_action else 0.0,
                exc,
            )

        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(Exception),
                wait=wait_exponential_jitter(initial=0.2, max=self.retry_max_seconds),
                before_sleep=before_sleep,
                reraise=True,
            ):
                with attempt:
                    started = time.perf_counter()
                    await loop.run_in_executor(self._executor, self._insert, table, rows)
                    elapsed = time.perf_counter() - started
            metrics.SINK_INSERT_SECONDS.labels(table).observe(elapsed)
            metrics.SINK_ROWS.labels(table).inc(len(rows))
            metrics.SINK_BATCHES.labels(table).inc()
        finally:
            pending.dec(len(rows))

    def _query(self, sql: str) -> Any:
        if self._backend is None:
            self._backend = self._connect()
        return self._backend.query(sql)  # type: ignore[attr-defined]

    async def query(self, sql: str) -> Any:
        """Run a read query on the sink thread: an embedded chDB directory can be open in
        one process only, so while a worker runs, reads must go through it."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._query, sql)

    def close(self) -> None:
        """Close the backend after any insert in flight, without blocking the caller."""
        self._executor.submit(self._drop_backend)
        self._executor.shutdown(wait=False)
