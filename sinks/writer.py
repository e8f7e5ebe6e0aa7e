"""Run blocking ClickHouse inserts off Faust's event loop, retrying until they succeed, and
setting aside the rows ClickHouse refuses so that they cannot block the rest.

The insert runs in one dedicated thread (chDB and clickhouse-driver connections are not
shared across threads), so the event loop keeps heart-beating Kafka while ClickHouse is
slow. ``write`` returns only once every row is durable, and its failures get one of
three answers:

- **ClickHouse or the connection** (down, restarting, too many parts, anything not
  known to be the rows' fault): the same insert is retried with capped exponential
  backoff for as long as it takes. The agent awaiting it stops pulling batches, its
  buffer fills, and Faust pauses consumption. That is the backpressure: nothing is
  dropped and memory stays bounded by the stream buffers, while the offsets of the
  waiting events stay uncommitted.
- **The statement or the configuration** (an unknown table, a wrong password, a
  read-only user: ``retryable`` False, but no fault of the rows): retried the same way,
  logged as errors, since they do not heal by waiting. Each retry reconnects, which
  re-creates a dropped table, and a fixed password is picked up without a restart.
  Setting rows aside here would move every row of the table into ``dead_letters``.
- **The rows** (``SinkDataError``: a value out of range or of the wrong type, which no
  retry can fix): the batch is split in halves, each inserted on its own, recursively,
  until every refused row is alone; all the others go in. A refused row is logged with
  the reason, counted in ``cxpulse_sink_rows_refused_total{table}`` and inserted into
  ``dead_letters`` (reason ``rejected by ClickHouse (<table>): ...``, the row as JSON),
  so a person can find it, fix it and insert it. Finding k refused rows among n costs
  about 2·k·log2(n/k) inserts, only on this rare path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol, TypeAlias

import pyarrow as pa
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_not_exception_type,
    wait_exponential_jitter,
)

from cxpulse.schemas.rows import (
    DEAD_LETTERS,
    Columns,
    TableSpec,
    refused_row_dead_letter,
    row_json,
)
from cxpulse.schemas.tables import SPECS
from cxpulse.sinks.base import ColumnBatch
from cxpulse.sinks.errors import SinkDataError, SinkError
from cxpulse.streams import metrics

log = logging.getLogger(__name__)

_TABLES: dict[str, TableSpec] = {s.name: s for s in SPECS if isinstance(s, TableSpec)}
#: How much of a refused row a log line shows (the whole row is in dead_letters).
_LOGGED_ROW_CHARS = 2000


class InsertBackend(Protocol):
    """The part of a ClickHouse backend the writer needs (see ``sinks``). A backend may
    also have ``prepare(table, rows)`` and ``prepare_columns(table, columns)``: a batch
    in the form its ``insert`` takes it fastest (chDB: an Arrow table), made on the
    caller's thread (``SinkWriter.prepare``, ``SinkWriter.prepare_columns``)."""

    def insert(self, table: str, rows: Any) -> Any: ...


#: What the writer inserts: row tuples, or what a backend's ``prepare`` made of them (an
#: Arrow table for chDB, a ``ColumnBatch`` for a server: ``len`` is its rows, ``slice`` a
#: part of them).
Batch: TypeAlias = Sequence[Any] | pa.Table | ColumnBatch


def merge(parts: Sequence[Batch]) -> Batch:
    """One batch of the parts of a checkpoint's table (each a take's rows): the Arrow
    tables concatenated when every part is one (no copy of their columns), the column
    batches when every part is one, else the rows of all of them in order."""
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, pa.Table) for p in parts):
        return pa.concat_tables(parts)
    batches = [p for p in parts if isinstance(p, ColumnBatch)]
    if len(batches) == len(parts):
        return ColumnBatch.concat(batches)
    rows: list[Any] = []
    for p in parts:
        rows += rows_of(p)
    return rows


def rows_of(batch: Batch) -> list[Any]:
    """A batch as rows (an Arrow table's as tuples of the values Python reads back)."""
    if isinstance(batch, pa.Table):
        return list(zip(*(c.to_pylist() for c in batch.columns), strict=True))
    if isinstance(batch, ColumnBatch):
        return batch.rows()
    return list(batch)


def _part(batch: Batch, start: int, stop: int) -> Batch:
    if isinstance(batch, pa.Table | ColumnBatch):
        return batch.slice(start, stop - start)
    return batch[start:stop]


class SinkWriter:
    """Durable, ordered inserts for the agents of one worker."""

    def __init__(
        self,
        connect: Callable[[], InsertBackend],
        retry_max_seconds: float = 30.0,
        *,
        retry_initial_seconds: float = 0.2,
    ) -> None:
        """``connect`` opens the backend (and ensures its tables); it is called on the sink
        thread itself, lazily and again after a failure, so a ClickHouse that is down at
        start or restarts later is simply retried like any failed insert."""
        self._connect = connect
        self._backend: InsertBackend | None = None
        self.retry_max_seconds = retry_max_seconds
        self.retry_initial_seconds = retry_initial_seconds
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxpulse-sink")
        #: table -> (monotonic time its current run of failed attempts began, last error)
        self._failing: dict[str, tuple[float, str]] = {}

    def failing(self, now: float | None = None) -> tuple[str, float, str] | None:
        """The table whose inserts have been failing longest without a success between,
        as (table, seconds, last error); None when every insert's latest attempt worked.

        This is what a health check needs: a worker that retries forever is doing the
        right thing for the data (backpressure, nothing lost) and looks alive, so only
        the length of the failing run tells operations that ClickHouse needs them.
        """
        if not self._failing:
            return None
        table, (since, error) = min(self._failing.items(), key=lambda kv: kv[1][0])
        return table, (time.monotonic() if now is None else now) - since, error

    def prepare(self, table: str, rows: Sequence[Any]) -> Batch:
        """``rows`` in the form the backend inserts fastest, made here, on the caller's
        thread (the step that made them, a take at a time): the backend's ``prepare``
        when it has one and is open, else the rows themselves. Rows it cannot prepare
        stay rows: the insert finds and sets aside the refused ones as it always does."""
        prepare = getattr(self._backend, "prepare", None)
        if prepare is None or not rows:
            return rows
        try:
            return prepare(table, rows)
        except SinkError:
            return rows

    def prepare_columns(self, table: str, columns: Columns) -> Batch:
        """``prepare`` of a batch given as its columns (one sequence of values per column,
        as ``cxpulse.schemas`` builds them straight from the records): the backend's
        ``prepare_columns`` when it has one and is open, else the rows they make (as for
        columns it cannot prepare)."""
        prepare = getattr(self._backend, "prepare_columns", None)
        if prepare is not None and columns and len(columns[0]):
            try:
                return prepare(table, columns)
            except SinkError:
                pass
        return list(zip(*columns, strict=True))

    @property
    def is_open(self) -> bool:
        """Whether the backend is open (at start, or by an insert that opened it)."""
        return self._backend is not None

    def arrow_capabilities(self) -> Any:
        """The capabilities the open backend types its Arrow batches by, when its batches
        are Arrow tables made from columns (chDB's ``prepare_columns``: ``arrow_batches``),
        else None (not open yet, or a backend that takes rows or plain columns): whether
        a step may have its rows made into batches elsewhere
        (``cxpulse.streams.pipeline.rows_process``)."""
        backend = self._backend
        if not getattr(backend, "arrow_batches", False):
            return None
        return getattr(backend, "capabilities", None)

    def _insert(self, table: str, rows: Batch) -> float:
        """Insert on the sink thread; returns the seconds the insert itself took (not the
        wait for the thread, nor a connection opened first)."""
        if self._backend is None:
            self._backend = self._connect()
        try:
            started = time.perf_counter()
            self._backend.insert(table, rows)
            return time.perf_counter() - started
        except SinkDataError:
            raise  # the rows' fault: the connection is fine, keep it for the halves
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

    async def write(self, table: str, rows: Batch) -> None:
        """Insert ``rows`` (row tuples, or what ``prepare`` made of them) into ``table``;
        returns only once they are durable: in ``table``, or (refused for their values)
        in ``dead_letters``."""
        await self._write(table, rows, keep_refused=True)

    async def _write(self, table: str, rows: Batch, *, keep_refused: bool) -> None:
        if not len(rows):
            return
        pending = metrics.SINK_PENDING_ROWS.labels(table)
        pending.inc(len(rows))
        try:
            batch = rows if isinstance(rows, pa.Table | ColumnBatch) else list(rows)
            refused = await self._insert_isolating(table, batch)
        finally:
            pending.dec(len(rows))
        if refused:
            await self._set_aside(table, refused, keep=keep_refused)

    async def _insert_isolating(self, table: str, rows: Batch) -> list[tuple[Any, SinkDataError]]:
        """Insert every row ClickHouse accepts; return the refused ones, with the error."""
        try:
            await self._insert_retrying(table, rows)
        except SinkDataError as exc:
            metrics.SINK_FAILURES.labels(table).inc()
            if len(rows) == 1:
                return [(rows_of(rows)[0], exc)]
            log.warning(
                "ClickHouse refused values in a batch of %d rows for %s; splitting it to "
                "insert the others and set the refused rows aside: %s",
                len(rows),
                table,
                exc,
            )
            mid = len(rows) // 2
            first = await self._insert_isolating(table, _part(rows, 0, mid))
            return first + await self._insert_isolating(table, _part(rows, mid, len(rows)))
        return []

    async def _insert_retrying(self, table: str, rows: Batch) -> None:
        loop = asyncio.get_running_loop()

        def before_sleep(state: RetryCallState) -> None:
            metrics.SINK_FAILURES.labels(table).inc()
            exc = state.outcome.exception() if state.outcome else None
            since = self._failing.get(table, (time.monotonic(), ""))[0]
            self._failing[table] = (since, str(exc).strip().splitlines()[0][:300] if exc else "")
            stuck = isinstance(exc, SinkError) and not exc.retryable
            log.log(
                logging.ERROR if stuck else logging.WARNING,
                "insert of %d rows into %s failed (attempt %d), retrying in %.1fs%s: %s",
                len(rows),
                table,
                state.attempt_number,
                state.next_action.sleep if state.next_action else 0.0,
                " (this will not heal by waiting: fix what the error says)" if stuck else "",
                exc,
            )

        elapsed = 0.0
        async for attempt in AsyncRetrying(
            retry=retry_if_not_exception_type(SinkDataError),
            wait=wait_exponential_jitter(
                multiplier=self.retry_initial_seconds, max=self.retry_max_seconds
            ),
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                elapsed = await loop.run_in_executor(self._executor, self._insert, table, rows)
        self._failing.pop(table, None)
        metrics.SINK_INSERT_SECONDS.labels(table).observe(elapsed)
        metrics.SINK_ROWS.labels(table).inc(len(rows))
        metrics.SINK_BATCHES.labels(table).inc()
        metrics.SINK_LAST_INSERT.labels(table).set_to_current_time()

    async def _set_aside(
        self, table: str, refused: list[tuple[Any, SinkDataError]], *, keep: bool
    ) -> None:
        """Log and count each refused row, and keep it in ``dead_letters``. A dead letter
        built here is refused only if something is deeply wrong; then (``keep`` False) the
        log line, with the whole row, is the one place left that holds it."""
        spec = _TABLES.get(table)
        if not keep:
            for row, exc in refused:
                metrics.SINK_ROWS_REFUSED.labels(table).inc()
                log.error(
                    "ClickHouse refused a row of %s and it cannot be kept in dead_letters "
                    "either (%s); the row: %s",
                    table,
                    exc,
                    row_json(spec.column_names if spec else None, tuple(row)),
                )
            return
        now = datetime.now(UTC)
        letters = []
        for row, exc in refused:
            metrics.SINK_ROWS_REFUSED.labels(table).inc()
            letter = refused_row_dead_letter(
                table=table, row=tuple(row), error=str(exc), received_at=now, spec=spec
            )
            log.error(
                "ClickHouse refused a row of %s, kept in dead_letters as %s: %s; the row: %s",
                table,
                letter[0],
                exc,
                letter[DEAD_LETTERS.positions["payload"]][:_LOGGED_ROW_CHARS],
            )
            letters.append(letter)
        await self._write(DEAD_LETTERS.name, letters, keep_refused=False)

    async def open(self) -> None:
        """Open the backend now, on the sink thread, rather than at the first insert: the
        steps' rows are prepared for it (``prepare``) only once it is open. A backend
        that cannot open now is left to the first insert, which retries it as any failed
        insert."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._query)
        except Exception as exc:
            log.info("ClickHouse not open yet (the first insert retries it): %s", exc)

    def _query(self) -> InsertBackend:
        """The sink's backend, opened here on the sink thread if it is not open yet."""
        if self._backend is None:
            self._backend = self._connect()
        return self._backend

    async def query(self, sql: str) -> tuple[list[str], list[Sequence[Any]]]:
        """Run one read query for someone (the worker's ``/query``): in the backend's
        read-only session (``cxpulse.streams.readonly_sql.run_read_only``: ClickHouse refuses
        anything but reading), on a query thread of its own, so that a slow query holds
        no insert up. An embedded chDB directory can be open in one process only, so while
        a worker runs, reads must go through it. Raises ``QueryError``."""
        from cxpulse.streams.readonly_sql import (
            QueryError,
            QueryUnavailable,
            refusal,
            run_read_only,
        )

        loop = asyncio.get_running_loop()
        executor: ThreadPoolExecutor | None = getattr(self, "_query_executor", None)
        if executor is None:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxpulse-query")
            self._query_executor = executor
        backend = self._backend
        if backend is None:
            try:
                backend = await loop.run_in_executor(self._executor, self._query)
            except SinkError as exc:
                raise QueryUnavailable(refusal(exc)) from None
        read_only = getattr(backend, "read_only", None)
        if read_only is None:
            raise QueryError(
                f"the {type(backend).__name__} backend has no read-only query session: "
                "query a chDB directory or a ClickHouse server"
            )

        def run() -> tuple[list[str], list[Sequence[Any]]]:
            try:
                session = read_only()
            except SinkError as exc:
                raise QueryUnavailable(refusal(exc)) from None
            return run_read_only(session, sql)

        return await loop.run_in_executor(executor, run)

    def close(self) -> None:
        """Close the backend after any insert in flight, without blocking the caller."""
        self._executor.submit(self._drop_backend)
        self._executor.shutdown(wait=False)

    async def aclose(self) -> None:
        """Close the backend after any insert in flight, and wait until it is closed (a
        chDB directory can be opened again in this process only after that)."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._drop_backend)
        self._executor.shutdown(wait=False)
