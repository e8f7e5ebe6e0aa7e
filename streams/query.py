"""Run SQL against the configured ClickHouse and print it for a person or a pipe.

An embedded chDB directory can be open in one process only, so while a worker runs, a
query is sent to that worker's loopback ``/query`` endpoint; otherwise the directory (or
the ClickHouse server) is opened directly.
"""

from __future__ import annotations

import csv
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from streams.readonly_sql import check_read_only
from streams.settings import ConfigError, Settings

Result = tuple[list[str], list[Sequence[Any]]]


def query_worker(settings: Settings, sql: str, timeout: float = 30.0) -> Result | None:
    """Ask the local worker; None when no worker answers on its web port."""
    url = f"http://127.0.0.1:{settings.web_port}/query"
    request = urllib.request.Request(url, data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            doc = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", str(exc))
        except ValueError:
            return None  # something else listens on that port
        raise ConfigError(f"query failed: {message}") from None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None
    return list(doc["columns"]), [tuple(r) for r in doc["rows"]]


def run_query(settings: Settings, sql: str) -> Result:
    """Columns and rows of one read query."""
    statement = check_read_only(sql)
    if settings.clickhouse_url.startswith("chdb://"):
        via_worker = query_worker(settings, statement)
        if via_worker is not None:
            return via_worker
    from sinks.clickhouse import open_backend

    try:
        backend = open_backend(settings.clickhouse_url, settings.clickhouse_password)
    except Exception as exc:
        raise ConfigError(f"cannot open ClickHouse: {str(exc).strip().splitlines()[0]}") from None
    try:
        columns, rows = backend.query(statement)
    except Exception as exc:
        raise ConfigError(f"query failed: {str(exc).strip().splitlines()[0][:500]}") from None
    finally:
        backend.close()
    return list(columns), list(rows)


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
