"""ClickHouse server backend over the native protocol (clickhouse-driver).

Inserts are columnar with datetimes pre-converted to integer ticks: measured here, that
is about twice as fast as handing the driver rows of datetime objects, because the
driver's per-value timezone handling is skipped. The steps build their rows as columns,
and ``prepare_columns`` keeps them so (``ColumnBatch``) until the insert: no row tuples
made on the step's thread and turned back into columns on the sink's.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors
from pydantic import SecretStr

from cxpulse.schemas.rows import Columns, TableSpec, ViewSpec
from cxpulse.schemas.tables import SPECS

from . import ddl
from .base import ColumnBatch, Row, SpecRegistry, normalize_rows, sort_by_key
from .ddl import Capabilities, column_type, quote_ident
from .errors import (
    DATA_ERROR_CODES,
    SinkConfigError,
    SinkDataError,
    SinkError,
    SinkUnavailable,
    SinkWriteError,
)
from .targets import parse_server_url, read_only_settings, redact

log = logging.getLogger(__name__)
# clickhouse-driver logs every failed connection attempt as a WARNING with a traceback;
# the SinkUnavailable raised here says the same on one line, with the fix.
logging.getLogger("clickhouse_driver.connection").setLevel(logging.ERROR)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_S = timedelta(seconds=1)

# Server error codes that mean the configuration is wrong (retrying cannot help).
_AUTH_CODES = {192, 193, 194, 516}  # UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD, AUTH
_UNKNOWN_DATABASE = 81
_READONLY = 164
# Codes that mean the statement or its data is wrong: a retry would fail the same way.
# Of these, DATA_ERROR_CODES blame the rows (SinkDataError: the writer isolates them).
_PERMANENT_CODES = {
    16,
    43,
    44,
    47,
    60,
    62,
    81,
    164,
    192,
    193,
    194,
    497,
    516,
} | DATA_ERROR_CODES
# Client-side errors of encoding a value for its column (clickhouse-driver raises most as
# TypeMismatchError, code 53; these escape when a value is not even of the right kind).
_ENCODING_ERRORS = (TypeError, ValueError, AttributeError, OverflowError, struct.error)


class NativeBackend:
    """A ClickHouse server. One connection; use it from one thread at a time."""

    def __init__(self, url: str, password: SecretStr | None = None) -> None:
        self.url = redact(url)
        cfg = parse_server_url(url, password)
        secret: SecretStr = cfg.pop("password")
        self.database: str = cfg.pop("database")
        self._where = f"{cfg['host']}:{cfg['port']}"
        self._user = cfg["user"]
        self._registry = SpecRegistry()
        self._cfg = dict(cfg)  # for the read-only session's own connection
        self._reader: NativeReader | None = None
        self._reader_lock = threading.Lock()
        if cfg["port"] in HTTP_PORTS:
            refuse_http_port(cfg["host"], cfg["port"], float(cfg["connect_timeout"]))
        # Connect without a database: ensure_schema may be about to create it, and a
        # missing database should be reported as such, not as a failed connection.
        self._client = Client(
            database="default",
            client_name="cxpulse",
            password=secret.get_secret_value(),
            **cfg,
        )
        try:
            self._version = str(self._run("SELECT version()")[0][0])
        except SinkUnavailable:
            # A port that accepts the connection and never answers the handshake may be
            # an HTTP port on another number: say so rather than "unreachable".
            refuse_http_port(cfg["host"], cfg["port"], float(cfg["connect_timeout"]))
            raise
        self.capabilities = Capabilities.from_version(self._version)

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
        return [str(row[0]) for row in self._run(f"DESCRIBE TABLE {target}")]

    def _view_definition(self, name: str) -> str | None:
        rows = self._run(
            "SELECT create_table_query FROM system.tables "
            "WHERE database = %(database)s AND name = %(name)s",
            {"database": self.database, "name": name},
        )
        return str(rows[0][0]) if rows else None

    def prepare_columns(self, table: str | TableSpec, columns: Columns) -> ColumnBatch:
        """A batch's columns (one sequence of values per column of the table, in its
        order, as ``cxpulse.schemas`` builds them) kept as columns for ``insert``, which
        the driver takes as they are (``columnar=True``): no row tuples in between.
        Reads nothing but the table's spec, so a step may call it on its own thread
        (``SinkWriter.prepare_columns``)."""
        spec = self._registry.resolve(table)
        if len(columns) != len(spec.columns):
            raise SinkDataError(
                f"cannot encode rows for {spec.name}: {len(columns)} columns, the table "
                f"{len(spec.columns)}"
            )
        return ColumnBatch(columns)

    def insert(self, table: str | TableSpec, rows: Sequence[Row] | ColumnBatch) -> int:
        """Row tuples, or the columns ``prepare_columns`` kept, in one statement."""
        spec = self._registry.resolve(table)
        if not len(rows):
            return 0
        try:
            if isinstance(rows, ColumnBatch):
                columns = list(rows.columns)  # replaced below, never changed in place
            else:
                columns = [list(c) for c in zip(*rows, strict=True)]
            if len(columns) != len(spec.columns):
                raise ValueError(f"rows have {len(columns)} values, the table {len(spec.columns)}")
            for i, (_, col) in enumerate(spec.columns):
                ctype = column_type(col, self.capabilities)
                if ctype.startswith("DateTime64"):
                    columns[i] = [None if v is None else (v - _EPOCH) // _MS for v in columns[i]]
                elif ctype.startswith("DateTime"):
                    columns[i] = [None if v is None else (v - _EPOCH) // _S for v in columns[i]]
        except _ENCODING_ERRORS as exc:
            raise SinkDataError(f"cannot encode rows for {spec.name}: {exc}") from None
        names = ", ".join(quote_ident(n) for n in spec.column_names)
        target = f"{quote_ident(self.database)}.{quote_ident(spec.name)}"
        self._run(f"INSERT INTO {target} ({names}) VALUES", columns, columnar=True)
        return len(rows)

    def query(self, sql: str) -> tuple[list[str], list[Row]]:
        rows, meta = self._run(sql, with_column_types=True, use_database=True)
        return [name for name, _ in meta], [tuple(r) for r in rows]

    def read_table(self, table: str | TableSpec, *, final: bool = True) -> list[Row]:
        spec = self._registry.resolve(table)
        names = ", ".join(quote_ident(n) for n in spec.column_names)
        rows = self._run(
            f"SELECT {names} FROM {quote_ident(self.database)}.{quote_ident(spec.name)}"
            f"{' FINAL' if final else ''}"
        )
        return sort_by_key(spec, normalize_rows(spec, rows))

    def read_only(self) -> NativeReader:
        """The read-only query session beside this connection (``NativeReader`` with
        ``read_only_settings()``): opened on first use, closed with the backend."""
        with self._reader_lock:
            if self._reader is None or self._reader.closed:
                self._reader = NativeReader(self._cfg, self.database, read_only_settings())
            return self._reader

    def close(self) -> None:
        with self._reader_lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
        self._client.disconnect()

    # -- errors -------------------------------------------------------------------

    def _run(self, sql: str, params: Any = None, *, use_database: bool = False, **kw: Any) -> Any:
        """Execute, turning every driver error into a one-line ``SinkError``."""
        try:
            if use_database:
                # Unqualified names in ad-hoc queries resolve to our database. Unquoted:
                # clickhouse-driver remembers a USE'd name verbatim, backticks included,
                # for its next handshake (the name was checked by quote_ident).
                quote_ident(self.database)
                self._client.execute(f"USE {self.database}")
            return self._client.execute(sql, params, **kw)
        except SinkError:
            raise
        except ch_errors.ServerException as exc:
            raise self._server_error(exc) from None
        except (OSError, ch_errors.NetworkError, ch_errors.SocketTimeoutError, EOFError) as exc:
            self._client.disconnect()
            raise _unreachable(self._where, exc) from None
        except ch_errors.Error as exc:
            self._client.disconnect()
            if exc.code in DATA_ERROR_CODES:  # the driver could not encode a value
                raise SinkDataError(
                    f"ClickHouse at {self._where}: {_first_line(exc)}", code=exc.code
                ) from None
            raise SinkWriteError(
                f"ClickHouse at {self._where}: {_first_line(exc)}", retryable=True, code=exc.code
            ) from None
        except _ENCODING_ERRORS as exc:
            # The driver could not serialise a value: the rows do not fit the table.
            self._client.disconnect()
            raise SinkDataError(f"cannot encode rows for ClickHouse: {_first_line(exc)}") from None

    def _server_error(self, exc: ch_errors.ServerException) -> SinkError:
        code = exc.code
        text = _first_line(exc)
        if code in _AUTH_CODES:
            return SinkConfigError(
                f"ClickHouse at {self._where} refused user {self._user!r} ({text}): "
                "fix the user/password in CXPULSE_CLICKHOUSE_URL or CXPULSE_CLICKHOUSE_PASSWORD"
            )
        if code == _UNKNOWN_DATABASE:
            return SinkConfigError(
                f"database {self.database!r} does not exist on {self._where}: start the worker "
                "once (it creates it) or fix the database in CXPULSE_CLICKHOUSE_URL"
            )
        if code in DATA_ERROR_CODES:
            where = self._where
            return SinkDataError(f"ClickHouse at {where} refused the values: {text}", code=code)
        return SinkWriteError(
            f"ClickHouse at {self._where} refused the statement: {text}",
            retryable=code not in _PERMANENT_CODES,
            code=code,
        )


class NativeReader:
    """A read-only query session on a ClickHouse server: a connection of its own, in
    ``database``, whose every query carries ``settings`` (``read_only_settings()``).

    The server applies those before the statement's own ``SETTINGS`` clause, so with
    readonly=1 among them it refuses every write, DDL, ``SET``, settings change and table
    function (on 18.16 even ``numbers()``). It does not limit which databases the user
    may read: that is the server's user configuration (a read-only user with
    ``allow_databases``, see docs/operations.md). Queries run one at a time.
    """

    def __init__(self, cfg: Mapping[str, Any], database: str, settings: Mapping[str, Any]):
        self.database = database
        self._where = f"{cfg['host']}:{cfg['port']}"
        self._user = cfg["user"]
        self._cfg = dict(cfg)
        self._readonly = str(settings.get("readonly", ""))
        if cfg["port"] in HTTP_PORTS:
            refuse_http_port(cfg["host"], cfg["port"], float(cfg["connect_timeout"]))
        self._client = self._connect(settings)
        self._lock = threading.Lock()
        self._checked = False
        self.closed = False

    def _connect(self, settings: Mapping[str, Any]) -> Client:
        cfg = dict(self._cfg)
        secret = cfg.pop("password", None)
        # The password stays a SecretStr until this call (stack dumps print locals).
        password = secret.get_secret_value() if isinstance(secret, SecretStr) else secret or ""
        return Client(
            database=self.database,
            client_name="cxpulse-query",
            settings=dict(settings),
            password=password,
            **cfg,
        )

    def parser(self) -> AbstractContextManager[Callable[[str], str]]:
        """ClickHouse's parser for checking a query before it runs: the chDB engine that
        comes with cxpulse (the server's own, 18.16, has no way to show a query's tree)."""
        from .embedded import sql_parser

        return sql_parser()

    def query(self, sql: str) -> tuple[list[str], list[Row]]:
        with self._lock:
            if self.closed:
                raise SinkUnavailable(f"the query session on ClickHouse at {self._where} is closed")
            if not self._checked:
                self._check()
                self._checked = True
            rows, meta = self._execute(sql, with_column_types=True)
        return [name for name, _ in meta], [tuple(r) for r in rows]

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._client.disconnect()

    def _check(self) -> None:
        """Refuse to serve unless readonly is in force for the session."""
        check = "SELECT value FROM system.settings WHERE name = 'readonly'"
        try:
            got = self._execute(check)
        except SinkWriteError as exc:
            if exc.code == _UNKNOWN_DATABASE:
                raise SinkConfigError(
                    f"database {self.database!r} does not exist on {self._where}: start the "
                    "worker once (it creates it) or fix the database in CXPULSE_CLICKHOUSE_URL"
                ) from None
            if exc.code != _READONLY:
                raise
            # The user's own profile is read-only already, and the server refuses any
            # setting sent with a query (servers newer than 18.16 do): go without, under
            # the profile's readonly and limits, checked below like ours.
            self._client.disconnect()
            self._client = self._connect({})
            got = self._execute(check)
        if not got or str(got[0][0]) != self._readonly:
            raise SinkConfigError(
                f"ClickHouse at {self._where} did not put the query session in "
                f"readonly={self._readonly} mode (it has {got[0][0] if got else '?'}): "
                "refusing to run queries in it; give the user readonly = 1 in its profile"
            )

    def _execute(self, sql: str, **kw: Any) -> Any:
        try:
            return self._client.execute(sql, **kw)
        except ch_errors.ServerException as exc:
            text = _first_line(exc).removesuffix("Stack trace:").strip()
            if exc.code in _AUTH_CODES:
                raise SinkConfigError(
                    f"ClickHouse at {self._where} refused user {self._user!r} ({text}): fix "
                    "the user/password in CXPULSE_CLICKHOUSE_URL or CXPULSE_CLICKHOUSE_PASSWORD"
                ) from None
            raise SinkWriteError(
                f"ClickHouse at {self._where} refused the query: Code: {exc.code}. {text}",
                retryable=False,
                code=exc.code,
            ) from None
        except (OSError, ch_errors.NetworkError, ch_errors.SocketTimeoutError, EOFError) as exc:
            self._client.disconnect()
            raise _unreachable(self._where, exc) from None
        except ch_errors.Error as exc:
            self._client.disconnect()
            raise SinkWriteError(
                f"ClickHouse at {self._where}: {_first_line(exc)}", retryable=False, code=exc.code
            ) from None


#: ClickHouse's HTTP port: a clickhouse:// URL naming it is checked
#: before connecting, because the native handshake sent to an HTTP port is never answered
#: (the driver waits its send_receive_timeout, a minute, then says "unreachable").
HTTP_PORTS = {8123}


def answers_http(host: str, port: int, timeout: float) -> bool:
    """Whether ``host:port`` answers an HTTP request (ClickHouse's ``/ping``)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(f"GET /ping HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            return conn.recv(16).startswith(b"HTTP/")
    except OSError:
        return False


def refuse_http_port(host: str, port: int, timeout: float) -> None:
    """Raise a one-line SinkConfigError when ``host:port`` is an HTTP port."""
    if answers_http(host, port, timeout):
        raise SinkConfigError(
            f"{host}:{port} is ClickHouse's HTTP port (it answers HTTP), but clickhouse:// "
            "speaks the native protocol: use the native port, usually 9000 (9440 with "
            "?secure=1), in CXPULSE_CLICKHOUSE_URL"
        )


def _unreachable(where: str, exc: BaseException) -> SinkUnavailable:
    cause = _first_line(exc)
    if not (cause.startswith("(") and cause.endswith(")")):
        cause = f"({cause})"
    return SinkUnavailable(
        f"ClickHouse at {where} is unreachable {cause}: "
        "start the server or fix host/port in CXPULSE_CLICKHOUSE_URL"
    )


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = str(text).strip().splitlines()[0] if str(text).strip() else type(exc).__name__
    return text[:300]
