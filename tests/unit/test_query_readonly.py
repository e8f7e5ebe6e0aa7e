"""The check every read query passes before it runs (``cxpulse.streams.readonly_sql``), on
ClickHouse's own parser (chDB in memory, as for a ClickHouse server), and the identity a
``cxpulse query`` client sends its worker. The attacks against real data, on chDB and the
server, are in tests/integration/test_query_security.py."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cxpulse.sinks.errors import SinkWriteError
from cxpulse.streams.query import clickhouse_identity, query_worker
from cxpulse.streams.readonly_sql import NotReadOnly, read_only_statement, refusal
from cxpulse.streams.settings import load_settings

DB = "cxpulse"


@pytest.fixture(scope="module")
def parse() -> Iterator[Callable[[str], str]]:
    """ClickHouse's parser as a server query gets it: a fresh ``sql_parser()`` session for
    each call (a session closes after a failed query), on an engine kept up meanwhile."""
    from cxpulse.sinks.embedded import ChdbReader, sql_parser

    def text(sql: str) -> str:
        with sql_parser() as run:
            return run(sql)

    engine = ChdbReader(None, None, {"readonly": 1})
    try:
        yield text
    finally:
        engine.close()


ALLOWED = [
    "SELECT count() FROM alerts FINAL",
    "select rule, count() AS n from alerts group by rule order by n desc limit 3 -- note",
    "WITH 2 AS k SELECT number * k FROM numbers(3)",
    "WITH recent AS (SELECT * FROM alerts) SELECT count() FROM recent",
    "SELECT 1 UNION ALL SELECT 2",
    "SELECT a.rule FROM alerts AS a JOIN cxpulse.open_alerts AS o USING (alert_id)",
    "SELECT name FROM system.tables WHERE database = currentDatabase()",
    "SELECT name, type FROM system.columns WHERE table = 'alerts'",
    "SELECT customer_id FROM customer_scores WHERE customer_id IN customer_scores_ids",
    "SELECT * FROM view(SELECT 1 AS x)",
    "SELECT 1;",
]


@pytest.mark.clickhouse
@pytest.mark.parametrize("sql", ALLOWED)
def test_a_read_of_the_own_database_runs_as_clickhouse_renders_it_in_a_subquery(
    parse: Callable[[str], str], sql: str
) -> None:
    statement = read_only_statement(sql, DB, parse)

    assert statement.startswith("SELECT * FROM (") and statement.endswith(")")
    assert "\n" not in statement and "--" not in statement and ";" not in statement


REFUSED = [
    ("WITH 1 AS x INSERT INTO alerts SELECT * FROM alerts LIMIT 1", "not INSERT"),
    ("INSERT INTO alerts SELECT * FROM alerts", "not INSERT"),
    ("ALTER TABLE alerts DELETE WHERE 1", "not ALTER"),
    ("DROP TABLE alerts", "not DROP"),
    ("CREATE TABLE x (a UInt8) ENGINE = Memory", "not CREATE"),
    ("SET readonly = 0", "not SET"),
    ("SYSTEM STOP MERGES", "not SYSTEM"),
    ("KILL QUERY WHERE 1", "not KILL"),
    ("SHOW TABLES", "SELECT name FROM system.tables"),
    ("DESCRIBE TABLE alerts", "SELECT name, type FROM system.columns"),
    ("EXISTS TABLE alerts", "SELECT count() FROM system.tables"),
    ("SELECT 1 SETTINGS readonly = 0", "SETTINGS cannot be changed"),
    ("SELECT * FROM (SELECT 1 SETTINGS max_execution_time = 1000)", "SETTINGS cannot be changed"),
    ("SELECT 'x' INTO OUTFILE '/tmp/x'", "INTO OUTFILE is not allowed"),
    ("SELECT 1 FORMAT JSON", "FORMAT is not allowed"),
    ("SELECT 1; SELECT 2", "one statement at a time"),
    ("SELECT 1; INSERT INTO alerts SELECT * FROM alerts", "one statement at a time"),
    ("SELECT 1) ; SYSTEM STOP MERGES; SELECT (1", "cannot take this as one query"),
    ("SELECT * FROM file('/etc/passwd', 'CSV', 'line String')", "table function file()"),
    ("SELECT * FROM url('http://127.0.0.1:1/', 'CSV', 'a String')", "table function url()"),
    ("SELECT * FROM remote('127.0.0.1:9000', system.one)", "table function remote()"),
    ("SELECT * FROM s3('http://127.0.0.1:1/b/k.csv')", "table function s3()"),
    ("SELECT * FROM merge('other', '.*')", "table function merge()"),
    ("SELECT * FROM mergeTreeIndex('other', 't')", "table function mergeTreeIndex()"),
    ("SELECT * FROM alerts AS a PASTE JOIN file('/etc/passwd') AS f", "table function file()"),
    ("SELECT file('/etc/passwd')", "file() is not allowed"),
    ("SELECT FILE('/etc/passwd')", "FILE() is not allowed"),
    ("SELECT * APPLY(file) FROM (SELECT '/etc/passwd' AS p)", "file() is not allowed"),
    ("SELECT arrayMap(x -> file(x), ['/etc/passwd'])", "file() is not allowed"),
    ("SELECT * REPLACE (file('/etc/passwd') AS p) FROM (SELECT 1 AS p)", "file() is not allowed"),
    ("SELECT dictGet('d', 'a', toUInt64(1))", "dictGet() is not allowed"),
    ("SELECT joinGet('other.j', 'a', 1)", "joinGet() is not allowed"),
    ("SELECT aiGenerate('hi')", "aiGenerate() is not allowed"),
    ("SELECT hasColumnInTable('other', 't', 'c')", "hasColumnInTable() is not allowed"),
    ("SELECT getServerSetting('path')", "getServerSetting() is not allowed"),
    ("SELECT * FROM other.t", "other.t is not readable here"),
    ("SELECT * FROM `other`.`t`", "other.t is not readable here"),
    ("SELECT * FROM system.processes", "system.processes is not readable here"),
    ("SELECT * FROM system.query_log", "system.query_log is not readable here"),
    ("SELECT * FROM alerts JOIN other.t USING (a)", "other.t is not readable here"),
    ("SELECT 1 WHERE 1 IN other.t", "other.t is not readable here"),
    ("SELECT 1 WHERE 1 GLOBAL NOT IN other.t", "other.t is not readable here"),
    ("SELECT 1 WHERE 1 IN (SELECT a FROM other.t)", "other.t is not readable here"),
    ("WITH x AS (SELECT * FROM other.t) SELECT * FROM x", "other.t is not readable here"),
    ("SELECT (SELECT max(a) FROM other.t)", "other.t is not readable here"),
    ("SELECT * FROM view(SELECT * FROM other.t)", "other.t is not readable here"),
    ("SELECT 1 UNION ALL SELECT a FROM other.t", "other.t is not readable here"),
    ("", "empty query"),
    (" ; ", "empty query"),
    ("SELEC 1", "cannot take this as one query"),
]


@pytest.mark.clickhouse
@pytest.mark.parametrize(("sql", "said"), REFUSED)
def test_anything_but_a_read_of_the_own_database_is_refused_in_one_line(
    parse: Callable[[str], str], sql: str, said: str
) -> None:
    with pytest.raises(NotReadOnly) as refused:
        read_only_statement(sql, DB, parse)

    message = str(refused.value)
    assert said in message
    assert "\n" not in message and len(message) < 600


def test_a_refusal_by_clickhouse_says_what_to_do() -> None:
    def said(code: int) -> str:
        return refusal(SinkWriteError(f"chDB refused the query: Code: {code}. X", code=code))

    assert "only SELECT queries run here" in said(164)
    assert "add a LIMIT or aggregate" in said(396)
    assert "narrow it" in said(159)
    assert "memory" in said(241)
    assert said(47) == "chDB refused the query: Code: 47. X"


def test_the_identity_is_the_resolved_directory_and_never_a_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    assert (
        clickhouse_identity("chdb:///./var/chdb") == f"chdb://{tmp_path}/var/chdb?database=cxpulse"
    )
    assert (
        clickhouse_identity(f"chdb://{tmp_path}/d?database=x") == f"chdb://{tmp_path}/d?database=x"
    )
    server = clickhouse_identity("clickhouse://reader:s3cret@db.example:9440/cx?secure=1")
    assert server == "clickhouse://reader@db.example:9440/cx"
    assert "s3cret" not in clickhouse_identity("clickhouse://u:s3cret@h/db")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_worker_on_the_port_means_no_answer(tmp_path: Path) -> None:
    settings = load_settings(clickhouse_url=f"chdb://{tmp_path}/d", web_port=_free_port())

    assert query_worker(settings, "SELECT 1", timeout=5) is None


def test_something_else_on_the_port_means_no_answer(tmp_path: Path) -> None:
    class NotAWorker(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>not here</html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotAWorker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = int(server.server_address[1])
        settings = load_settings(clickhouse_url=f"chdb://{tmp_path}/d", web_port=port)
        assert query_worker(settings, "SELECT 1", timeout=5) is None
    finally:
        server.shutdown()
        server.server_close()


def test_an_unreachable_server_is_one_line_without_a_traceback() -> None:
    env = dict(os.environ)
    env["CXPULSE_CLICKHOUSE_URL"] = f"clickhouse://default@127.0.0.1:{_free_port()}/cxpulse"
    result = subprocess.run(
        [sys.executable, "-m", "cxpulse.streams.cli", "query", "SELECT 1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("cxpulse: cannot open ClickHouse: ")
    assert len(result.stderr.strip().splitlines()) == 1
