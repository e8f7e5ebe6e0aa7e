"""Embedded ClickHouse (chDB): the ClickHouse engine in-process, data in a local directory.

The default for a laptop, tests and CI: no server to run, the same SQL and table engines.

Two limits of chDB 4.x shape this module (both measured here):

- one directory per process: once a process opened a directory, opening another fails
  until every connection to the first is closed; opening the same one again is fine.
- one process per directory: the engine takes an exclusive lock on ``<dir>/status``.
  A second process opening a directory in use fails at once (no waiting), read-only
  options included. ``SinkLocked`` reports that, with the holder's pid, instead of
  chDB's own message ("Error initializing EmbeddedServer").

Inserts turn a batch into typed Arrow columns and hand the engine their Arrow IPC stream
(``send_insert`` in the ``ArrowStream`` format): the engine parses it without calling back
into Python. Its ``Python()`` table function reads an Arrow table in place, but through
the interpreter, which the worker's event loop holds most of the time. Measured with
chDB 4.4.0, 3,000 rows of 23 columns, the stream's serialisation included: 7.6-9.3 ms
against 11.3-11.8 alone, 27-33 ms against 43-54 while another thread holds the GIL
(docs/benchmarks.md, session 37). An insert does not deduplicate its own rows
(``optimize_on_insert = 0``): the tables are ReplacingMergeTree, read with ``FINAL``, so
a key's rows across inserts (a replay's) already wait for a merge or ``FINAL``, and the
rows of one insert now do too. Collapsing each batch's rows of one key as it was written
was a quarter to a third of an insert's time (chDB 4.4.0, 10,000 rows as an Arrow
stream, medians of 7 alternated: touchpoint_events 35.6 → 23.9 ms, moments 25.0 → 16.9,
moment_factors 15.7 → 10.5, customer_scores 20.1 → 15.4; docs/benchmarks.md, session 41).

Read queries for people (``cxpulse query``, the worker's ``/query``) run in a
``ChdbReader``: a second connection to the same directory, opened with ``readonly=1`` and
limits. Measured with chDB 4.4.0: each connection keeps its own settings, readonly=1 in
force refuses every write, DDL, ``SET``/``SETTINGS`` and the table functions that reach
outside (file, url, remote, s3, Python, ...), and the two connections run queries in
parallel (five ``SELECT sleep(3)`` on the reader left a concurrent insert loop's longest
gap at 0.1 s).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec
import pyarrow as pa

from cxpulse.schemas.rows import Columns, TableSpec, ViewSpec
from cxpulse.schemas.tables import SPECS

from . import ddl
from .base import Row, SpecRegistry, normalize_rows, sort_by_key
from .ddl import Capabilities, column_type, quote_ident
from .errors import (
    DATA_ERROR_CODES,
    SinkConfigError,
    SinkDataError,
    SinkError,
    SinkLocked,
    SinkUnavailable,
    SinkWriteError,
)
from .targets import parse_chdb_url, read_only_settings

log = logging.getLogger(__name__)

# Codes that a retry cannot fix; DATA_ERROR_CODES among them blame the rows themselves.
_PERMANENT_CODES = {16, 43, 44, 47, 60, 62, 81, 164} | DATA_ERROR_CODES
_CODE = re.compile(r"Code:\s*(\d+)")

_process_lock = threading.Lock()
_open_dir: str | None = None
_open_count = 0

_SIMPLE_ARROW = {
    "UInt8": pa.uint8(),
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Int8": pa.int8(),
    "Int16": pa.int16(),
    "Int32": pa.int32(),
    "Int64": pa.int64(),
    "Float32": pa.float32(),
    "Float64": pa.float64(),
    "String": pa.string(),
    "UUID": pa.string(),
    "Bool": pa.bool_(),
    "Date": pa.date32(),
}


def arrow_type(ch_type: str) -> tuple[pa.DataType, bool]:
    """The Arrow type that carries a ClickHouse column, and whether the value is a UUID."""
    t = ch_type
    while True:
        m = re.fullmatch(r"(?:Nullable|LowCardinality)\((.*)\)", t)
        if not m:
            break
        t = m.group(1)
    if t.startswith("DateTime64"):
        precision = int(re.findall(r"\d+", t)[1])
        unit = {0: "s", 3: "ms", 6: "us", 9: "ns"}[precision]
        return pa.timestamp(unit, tz="UTC"), False
    if t.startswith("DateTime"):
        return pa.timestamp("s", tz="UTC"), False
    if t in _SIMPLE_ARROW:
        return _SIMPLE_ARROW[t], t == "UUID"
    if t.startswith("Array(String") or t.startswith("Array("):
        inner, _ = arrow_type(t[len("Array(") : -1])
        return pa.list_(inner), False
    raise SinkConfigError(
        f"no Arrow mapping for ClickHouse type {ch_type!r}: add one in cxpulse.sinks.embedded"
    )


def _column(values: Sequence[Any], atype: pa.DataType, is_uuid: bool) -> pa.Array:
    """One column's values as an Arrow array of ``atype``.

    UUIDs and times are turned into text by msgspec and times parsed back by Arrow, a
    column at a time in C: a UUID's ``str()`` costs ten times more, and Arrow reading an
    aware ``datetime`` object three times more (it asks each value for its offset). Times
    without a zone (which ``pa.array`` reads as UTC) keep the value by value path.
    """
    if is_uuid:
        return pa.array(msgspec.to_builtins(values), type=pa.string())
    if pa.types.is_timestamp(atype) and atype.tz is not None:
        try:
            text = pa.array(msgspec.to_builtins(values), type=pa.string())
            exact = text.cast(pa.timestamp("us", tz=atype.tz))
            return exact.cast(atype, safe=False)  # to ms, as pa.array truncates
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
            pass
    return pa.array(values, type=atype)


def ipc_stream(table: pa.Table) -> pa.Buffer:
    """The Arrow IPC stream of ``table`` (what an ``ArrowStream`` insert reads, and what
    the rows process hands back: ``cxpulse.streams.pipeline.rows_process``)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def arrow_table(spec: TableSpec, columns: Columns, capabilities: Capabilities) -> pa.Table:
    """Columns of values (one sequence per column of ``spec``, in its order) → an Arrow
    table typed like the ClickHouse columns of a server with ``capabilities``: what
    ``ChdbBackend.prepare_columns`` inserts, made wherever the columns are (the worker's
    rows process makes them too: ``cxpulse.streams.pipeline.rows_process``)."""
    if len(columns) != len(spec.columns):
        raise ValueError(f"{len(columns)} columns for the {len(spec.columns)} of {spec.name}")
    if len({len(values) for values in columns}) > 1:
        raise ValueError(f"columns of different lengths for {spec.name}")
    arrays = []
    for (_, col), values in zip(spec.columns, columns, strict=True):
        atype, is_uuid = arrow_type(column_type(col, capabilities))
        arrays.append(_column(values, atype, is_uuid))
    return pa.Table.from_arrays(arrays, names=list(spec.column_names))


def holder_pid(directory: str) -> int | None:
    """The pid written in a chDB/ClickHouse data directory's status file, if any."""
    try:
        text = Path(directory, "status").read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"PID:\s*(\d+)", text)
    return int(m.group(1)) if m else None


def _release(conn: Any) -> None:
    """Close one of this process's chDB connections; the last one closed frees the
    process to open another directory."""
    global _open_dir, _open_count
    with _process_lock:
        try:
            conn.close()
        finally:
            _open_count -= 1
            if _open_count <= 0:
                _open_dir, _open_count = None, 0


def _locked_by_other_process(directory: str) -> bool:
    """Probe the engine's exclusive lock on ``<dir>/status`` without taking it for long."""
    status = Path(directory, "status")
    if not status.exists():
        return False
    try:
        fd = os.open(status, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


#: Every insert's settings. A NULL where the column holds none (an array's item) is
#: refused, as an INSERT ... SELECT refuses it, not read as the type's default value; the
#: rows of one insert are not deduplicated there (the module's docstring).
INSERT_SETTINGS = "input_format_null_as_default = 0, optimize_on_insert = 0"


class ChdbBackend:
    """A chDB directory. One connection; use it from one thread at a time."""

    #: ``prepare_columns`` makes Arrow tables (``SinkWriter.arrow_capabilities``).
    arrow_batches = True

    def __init__(self, url: str) -> None:
        global _open_dir, _open_count
        path, self.database = parse_chdb_url(url)
        self.url = url
        self.directory = str(Path(path).resolve())
        self._registry = SpecRegistry()
        try:
            Path(self.directory).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkConfigError(
                f"cannot create the chDB directory {self.directory}: {exc.strerror}; "
                "fix CXPULSE_CLICKHOUSE_URL or the directory's permissions"
            ) from None
        with _process_lock:
            if _open_dir is not None and _open_dir != self.directory:
                raise SinkConfigError(
                    f"chDB already has {_open_dir} open in this process and cannot open "
                    f"{self.directory} too (one chDB directory per process): use one "
                    "CXPULSE_CLICKHOUSE_URL per process"
                )
            if _open_dir is None and _locked_by_other_process(self.directory):
                raise self._locked()
            import chdb

            try:
                self._conn: Any = chdb.connect(self.directory)
            except Exception as exc:
                if _locked_by_other_process(self.directory):
                    raise self._locked() from None
                raise SinkUnavailable(
                    f"chDB could not open {self.directory}: {_first_line(exc)}"
                ) from None
            _open_dir = self.directory
            _open_count += 1
        self._closed = False
        self._reader: ChdbReader | None = None
        self._reader_lock = threading.Lock()
        self._version = str(chdb.engine_version)
        self.capabilities = Capabilities.from_version(self._version)

    def _locked(self) -> SinkLocked:
        return _locked_error(self.directory)

    def read_only(self) -> ChdbReader:
        """The read-only query session beside this connection (``ChdbReader`` with
        ``read_only_settings()``): opened on first use, closed with the backend. Use it
        from one thread at a time; chDB runs it in parallel with this connection."""
        with self._reader_lock:
            self._check_open()
            if self._reader is None or self._reader.closed:
                self._reader = ChdbReader(self.directory, self.database, read_only_settings())
            return self._reader

    # -- the Backend interface ------------------------------------------------------

    def server_version(self) -> str:
        return self._version

    def ensure_schema(self, specs: Sequence[TableSpec | ViewSpec] = SPECS) -> None:
        self._registry.remember(specs)
        ddl.ensure_schema(
            specs,
            self.capabilities,
            self.database,
            self._run,
            self._column_names,
            self._view_definition,
        )

    def _column_names(self, name: str) -> list[str]:
        target = f"{quote_ident(self.database)}.{quote_ident(name)}"
        desc = self._run(f"DESCRIBE TABLE {target}")
        return [str(n) for n in desc.column("name").to_pylist()]

    def _view_definition(self, name: str) -> str | None:
        found = self._run(
            "SELECT create_table_query FROM system.tables WHERE database = "
            f"{ddl.string_literal(self.database)} AND name = {ddl.string_literal(name)}"
        )
        values = found.column("create_table_query").to_pylist()
        return str(values[0]) if values else None

    def prepare(self, table: str | TableSpec, rows: Sequence[Row]) -> pa.Table:
        """Row tuples → the Arrow table ``insert`` takes (``prepare_columns`` of their
        columns)."""
        return self.prepare_columns(table, list(zip(*rows, strict=True)))

    def prepare_columns(self, table: str | TableSpec, columns: Columns) -> pa.Table:
        """A batch's columns (one sequence of values per column of the table, in its
        order, as ``cxpulse.schemas`` builds them straight from the records) → the Arrow
        table ``insert`` takes, typed like the columns. It reads nothing but the table's
        spec and the engine's capabilities, so a step may call it on its own thread as it
        makes the rows (``SinkWriter.prepare_columns``): rows waiting for their checkpoint
        then wait as Arrow columns, not as Python objects the garbage collector scans and
        the caches hold. Raises ``SinkDataError`` for a value no column can hold."""
        spec = self._registry.resolve(table)
        try:
            return self.to_arrow_columns(spec, columns)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise SinkDataError(f"cannot encode rows for {spec.name}: {exc}") from None

    def insert(self, table: str | TableSpec, rows: Sequence[Row] | pa.Table) -> int:
        """Row tuples, or the Arrow table ``prepare`` made of them, in one statement."""
        spec = self._registry.resolve(table)
        if not len(rows):
            return 0
        self._check_open()
        arrow_batch = rows if isinstance(rows, pa.Table) else self.prepare(spec, rows)
        if tuple(arrow_batch.column_names) != spec.column_names:
            raise SinkWriteError(
                f"an Arrow batch for {spec.name} with columns {arrow_batch.column_names}: "
                f"make it with prepare({spec.name!r}, rows)"
            )
        target = f"{quote_ident(self.database)}.{quote_ident(spec.name)}"
        names = ", ".join(quote_ident(n) for n in spec.column_names)
        stream = ipc_stream(arrow_batch)
        try:
            sql = f"INSERT INTO {target} ({names}) SETTINGS {INSERT_SETTINGS}"
            with self._conn.send_insert(sql, "ArrowStream") as ins:
                ins.append(memoryview(stream))
                ins.finish()
        except Exception as exc:
            raise self._error(exc) from None
        return len(rows)

    def to_arrow_columns(self, spec: TableSpec, columns: Columns) -> pa.Table:
        """Columns of values → an Arrow table typed like the ClickHouse columns."""
        return arrow_table(spec, columns, self.capabilities)

    def query(self, sql: str) -> tuple[list[str], list[Row]]:
        """Run SQL; unqualified table names resolve to the backend's database."""
        table = self._run(sql, database=self.database)
        names = list(table.column_names)
        columns = [c.to_pylist() for c in table.columns]
        # Arrow has no seconds-precision timestamp from ClickHouse: DateTime arrives as
        # UInt32. Ask the server which columns those are and turn them into datetimes.
        if any(pa.types.is_uint32(f.type) for f in table.schema):
            types = self._describe(sql)
            for i, ctype in enumerate(types):
                if i < len(columns) and re.match(r"^(Nullable\()?DateTime(\(|\)|$)", ctype):
                    columns[i] = [None if v is None else _from_epoch(v) for v in columns[i]]
        return names, list(zip(*columns, strict=True)) if columns else []

    def _describe(self, sql: str) -> list[str]:
        try:
            desc = self._run(f"DESCRIBE ({sql.rstrip().rstrip(';')})", database=self.database)
        except SinkError:
            return []
        return [str(t) for t in desc.column("type").to_pylist()]

    def read_table(self, table: str | TableSpec, *, final: bool = True) -> list[Row]:
        spec = self._registry.resolve(table)
        names = ", ".join(quote_ident(n) for n in spec.column_names)
        result = self._run(
            f"SELECT {names} FROM {quote_ident(self.database)}.{quote_ident(spec.name)}"
            f"{' FINAL' if final else ''}"
        )
        columns = [c.to_pylist() for c in result.columns]
        if not columns:
            return []
        return sort_by_key(spec, normalize_rows(spec, zip(*columns, strict=True)))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._reader_lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()  # after the query in flight, if any (max_execution_time at most)
        _release(self._conn)

    # -- plumbing -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise SinkUnavailable(f"the chDB backend for {self.directory} is closed")

    def _run(self, sql: str, *, database: str | None = None) -> Any:
        self._check_open()
        try:
            if database is not None:
                self._conn.query(f"USE {quote_ident(database)}")
            return self._conn.query(sql, "ArrowTable")
        except Exception as exc:
            raise self._error(exc) from None

    def _error(self, exc: BaseException) -> SinkError:
        text = _first_line(exc)
        m = _CODE.search(str(exc))
        code = int(m.group(1)) if m else None
        if code == 81:
            return SinkConfigError(
                f"database {self.database!r} does not exist in {self.directory}: start the "
                "worker once (it creates it) or fix ?database= in CXPULSE_CLICKHOUSE_URL"
            )
        if code in DATA_ERROR_CODES:
            return SinkDataError(f"chDB ({self.directory}) refused the values: {text}", code=code)
        return SinkWriteError(
            f"chDB ({self.directory}) refused the statement: {text}",
            retryable=code is not None and code not in _PERMANENT_CODES,
            code=code,
        )


class ChdbReader:
    """A read-only query session on a chDB directory, or on an engine in memory.

    A connection of its own: beside the sink's when this process has the directory open
    (chDB keeps settings per connection and runs connections in parallel), alone
    otherwise (``cxpulse query`` with no worker). ``settings`` (``read_only_settings()``)
    are set when the connection opens, ``readonly=1`` among them, and checked to be in
    force, so no statement can lift them: ClickHouse refuses changing any setting under
    readonly=1. Queries run one at a time; ``close`` waits for the one in flight.
    """

    def __init__(
        self,
        directory: str | None,
        database: str | None,
        settings: Mapping[str, Any],
        *,
        must_exist: bool = False,
    ) -> None:
        global _open_dir, _open_count
        self.directory = str(Path(directory).resolve()) if directory is not None else None
        self.database = database or ""
        where = self.directory or ":memory:"
        self._where = where
        if "?" in where:
            raise SinkConfigError(
                f"cannot open a query session on {where}: chDB takes '?' in a path for its "
                "options; move the directory to a path without '?'"
            )
        if must_exist and self.directory and not Path(self.directory, "metadata").is_dir():
            # chDB would make any directory a data directory, writing into it
            raise SinkConfigError(
                f"there is no chDB directory {self.directory}: a worker creates it when it "
                "starts; or fix CXPULSE_CLICKHOUSE_URL"
            )
        self._lock = threading.Lock()
        self.closed = True
        params = urlencode({k: str(v) for k, v in settings.items()})
        with _process_lock:
            if _open_dir is not None and _open_dir != where:
                raise SinkConfigError(
                    f"chDB already has {_open_dir} open in this process and cannot open "
                    f"{where} too (one chDB directory per process)"
                )
            if _open_dir is None and self.directory and _locked_by_other_process(where):
                raise _locked_error(where)
            import chdb

            try:
                self._conn: Any = chdb.connect(f"{where}?{params}")
            except Exception as exc:
                if self.directory and _locked_by_other_process(where):
                    raise _locked_error(where) from None
                raise SinkUnavailable(f"chDB could not open {where}: {_first_line(exc)}") from None
            _open_dir = where
            _open_count += 1
        self.closed = False
        try:
            self._start(settings)
        except BaseException:
            self.close()
            raise

    def _start(self, settings: Mapping[str, Any]) -> None:
        """Refuse to serve unless readonly is in force; then make the database current."""
        wanted = str(settings.get("readonly", ""))
        if wanted:
            got = self.text("SELECT getSetting('readonly')").strip()
            if got != wanted:
                raise SinkConfigError(
                    f"chDB opened the query session on {self._where} with readonly={got}, "
                    f"not {wanted}: refusing to run queries in it (check the chdb version)"
                )
        if self.database:
            try:
                self._conn.query(f"USE {quote_ident(self.database)}")
            except Exception as exc:
                if _code(exc) == 81:
                    raise SinkConfigError(
                        f"database {self.database!r} does not exist in {self._where}: start "
                        "the worker once (it creates it) or fix ?database= in "
                        "CXPULSE_CLICKHOUSE_URL"
                    ) from None
                raise self._error(exc) from None

    def parser(self) -> AbstractContextManager[Callable[[str], str]]:
        """ClickHouse's parser for checking a query before it runs: this session's own."""
        return nullcontext(self.text)

    def text(self, sql: str) -> str:
        """Run ``sql``; its result as TabSeparatedRaw text."""
        with self._lock:
            self._check_open()
            try:
                return str(self._conn.query(sql, "TabSeparatedRaw"))
            except Exception as exc:
                raise self._failed(exc) from None

    def query(self, sql: str) -> tuple[list[str], list[Row]]:
        """Column names and rows of one query (DateTime columns as aware datetimes)."""
        with self._lock:
            self._check_open()
            try:
                table = self._conn.query(sql, "ArrowTable")
                names = list(table.column_names)
                columns = [c.to_pylist() for c in table.columns]
                # DateTime arrives through Arrow as UInt32: ask which columns those are.
                if any(pa.types.is_uint32(f.type) for f in table.schema):
                    desc = self._conn.query(f"DESCRIBE ({sql})", "ArrowTable")
                    for i, ctype in enumerate(desc.column("type").to_pylist()):
                        if i < len(columns) and re.match(r"^(Nullable\()?DateTime(\(|\)|$)", ctype):
                            columns[i] = [None if v is None else _from_epoch(v) for v in columns[i]]
            except Exception as exc:
                raise self._failed(exc) from None
        return names, list(zip(*columns, strict=True)) if columns else []

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        _release(self._conn)

    def _failed(self, exc: BaseException) -> SinkError:
        """A query failed: close the session (``read_only()`` opens a new one). Measured
        with chDB 4.4.0: after a query that fails part way (a result over
        max_result_rows), the connection's next query returns the rest of the failed
        one's output instead of its own."""
        error = self._error(exc)
        self._close()
        return error

    def _check_open(self) -> None:
        if self.closed:
            raise SinkUnavailable(f"the chDB query session on {self._where} is closed")

    def _error(self, exc: BaseException) -> SinkError:
        return SinkWriteError(
            f"chDB ({self._where}) refused the query: {_first_line(exc)}",
            retryable=False,
            code=_code(exc),
        )


@contextmanager
def sql_parser() -> Iterator[Callable[[str], str]]:
    """ClickHouse's own parser for SQL meant for a ClickHouse server: a short read-only
    session on the chDB engine this process has open, or else on one in memory."""
    with _process_lock:
        open_dir = _open_dir
    directory = None if open_dir in (None, ":memory:") else open_dir
    reader = ChdbReader(directory, None, {"readonly": 1})
    try:
        yield reader.text
    finally:
        reader.close()


def _locked_error(directory: str) -> SinkLocked:
    pid = holder_pid(directory)
    who = f"process {pid}" if pid else "another process"
    return SinkLocked(
        f"the chDB directory {directory} is in use by {who} (chDB allows one "
        "process per directory): stop it, query through it, or use a ClickHouse server",
        holder_pid=pid,
    )


def _code(exc: BaseException) -> int | None:
    m = _CODE.search(str(exc))
    return int(m.group(1)) if m else None


def _from_epoch(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
