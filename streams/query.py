"""Run read-only SQL against the configured ClickHouse and print it for a person or a pipe.

An embedded chDB directory can be open in one process only, so while a worker runs, a
query is sent to that worker's loopback ``/query`` endpoint, as JSON naming the
directory the query is meant for; otherwise the directory (or the ClickHouse server) is
opened directly, in a read-only session only. Either way the query runs as
``cxpulse.streams.readonly_sql`` says: ClickHouse refuses anything but reading.

When the worker on ``CXPULSE_WEB_PORT`` has another directory open, the configured one is
opened directly. That is safe: chDB's lock refuses a directory another process (another
worker) has open, and then the error names both directories.
"""

from __future__ import annotations

import csv
import http.client
import json
import logging
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cxpulse.streams.settings import ConfigError, Settings

Result = tuple[list[str], list[Sequence[Any]]]


class WorkerMismatch(ConfigError):
    """The worker on the web port has another ClickHouse open than the one configured."""

    def __init__(self, message: str, worker: str) -> None:
        super().__init__(message)
        self.worker = worker


def clickhouse_identity(url: str) -> str:
    """Which ClickHouse a URL means, comparable between processes and without a password:
    ``chdb:///abs/dir?database=db`` (the directory resolved in this process's current
    directory, as the backend resolves it) or ``clickhouse://user@host:port/db``."""
    from cxpulse.sinks.errors import SinkError
    from cxpulse.sinks.targets import parse_chdb_url, parse_server_url, redact

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    try:
        if scheme == "chdb":
            path, database = parse_chdb_url(url)
            return f"chdb://{Path(path).resolve()}?database={database}"
        if scheme == "clickhouse":
            cfg = parse_server_url(url)
            return f"clickhouse://{cfg['user']}@{cfg['host']}:{cfg['port']}/{cfg['database']}"
    except SinkError as exc:
        raise ConfigError(str(exc)) from None
    return redact(url).split("?", 1)[0]


def query_worker(settings: Settings, sql: str, timeout: float = 30.0) -> Result | None:
    """Ask the local worker; None when no worker answers on its web port.

    Raises ``WorkerMismatch`` when the worker there has another ClickHouse open, and
    ``ConfigError`` (one line) when it refuses the query."""
    where = f"127.0.0.1:{settings.web_port}"
    mine = clickhouse_identity(settings.clickhouse_url)
    body = json.dumps({"sql": sql, "clickhouse": mine}).encode()
    request = urllib.request.Request(
        f"http://{where}/query",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            doc = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read())
        except ValueError:
            return None  # something else listens on that port
        if not isinstance(answer, dict) or "error" not in answer:
            return None
        message = str(answer["error"]).strip().splitlines()[0] if answer["error"] else ""
        if exc.code == 409 and isinstance(answer.get("worker_clickhouse"), str):
            theirs = answer["worker_clickhouse"]
            raise WorkerMismatch(
                f"the worker on {where} has {theirs} open, not {mine} (CXPULSE_CLICKHOUSE_URL)",
                worker=theirs,
            ) from None
        raise ConfigError(f"query refused: {message}") from None
    except TimeoutError:
        raise ConfigError(
            f"the worker on {where} did not answer within {timeout:.0f}s (it runs queries one "
            "at a time): try again, or narrow the query"
        ) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise ConfigError(
                f"the worker on {where} did not answer within {timeout:.0f}s (it runs "
                "queries one at a time): try again, or narrow the query"
            ) from None
        return None
    except (ConnectionError, http.client.HTTPException, ValueError):
        return None
    return list(doc["columns"]), [tuple(r) for r in doc["rows"]]


def run_query(settings: Settings, sql: str) -> Result:
    """Columns and rows of one read query (see the module's docstring)."""
    from cxpulse.sinks.clickhouse import open_read_only
    from cxpulse.sinks.errors import SinkError
    from cxpulse.streams.readonly_sql import QueryError, QueryUnavailable, run_read_only

    # clickhouse-driver logs a failed connection with its traceback; the error that
    # follows says it in one line (a worker's own logging still gets the record)
    driver_log = logging.getLogger("clickhouse_driver")
    if not any(isinstance(h, logging.NullHandler) for h in driver_log.handlers):
        driver_log.addHandler(logging.NullHandler())
    mismatch: WorkerMismatch | None = None
    if settings.clickhouse_url.startswith("chdb://"):
        try:
            via_worker = query_worker(settings, sql)
        except WorkerMismatch as exc:
            mismatch, via_worker = exc, None
        if via_worker is not None:
            return via_worker
    try:
        session = open_read_only(settings.clickhouse_url, settings.clickhouse_password)
    except SinkError as exc:
        said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if mismatch is not None:
            raise ConfigError(f"{mismatch.message}; and {said}") from None
        raise ConfigError(f"cannot open ClickHouse: {said}") from None
    if mismatch is not None:
        print(f"cxpulse: {mismatch.message}: reading it directly", file=sys.stderr)
    try:
        return run_read_only(session, sql)
    except QueryUnavailable as exc:
        raise ConfigError(f"cannot open ClickHouse: {exc}") from None
    except QueryError as exc:
        raise ConfigError(f"query refused: {exc}") from None
    finally:
        session.close()


def print_result(columns: list[str], rows: list[Sequence[Any]], fmt: str = "auto") -> None:
    """``table`` for people (default on a terminal), ``tsv``/``csv``/``json`` for pipes."""
    if fmt == "auto":
        fmt = "table" if sys.stdout.isatty() else "tsv"
    if fmt == "json":
        for row in rows:
            doc = dict(zip(columns, row, strict=False))
            print(json.dumps(doc, default=str, ensure_ascii=False))
    elif fmt in ("tsv", "csv"):
        delimiter = "\t" if fmt == "tsv" else ","
        writer = csv.writer(sys.stdout, delimiter=delimiter, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(*columns, show_lines=False)
        for row in rows:
            table.add_row(*(cell(v) for v in row))
        Console().print(table)
        print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}")


def cell(value: Any) -> str:
    """A value as a person reads it: floats (Float32 columns) to at most 3 decimals."""
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else "nan"
    return "" if value is None else str(value)
