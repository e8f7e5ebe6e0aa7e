"""``cxpulse query`` and the worker's ``/query`` under attack, on real components.

Each attack runs against real data on chDB and, when ``CXPULSE_TEST_CLICKHOUSE_URL`` is
set (CI: Debian's clickhouse-server 18.16), on the server, in a database of its own. A
refusal must be one line, and nothing may have happened: no row inserted, no file
written, no request made. ``test_clickhouse_itself_refuses`` sends the raw statements to
the read-only session, past cxpulse's check, to show which refusals are ClickHouse's own.
The HTTP tests run a real worker (bundled broker, chDB) and the ``cxpulse query`` CLI.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from cxpulse.schemas.rows import dead_letter_row
from cxpulse.sinks.errors import SinkError
from cxpulse.sinks.writer import SinkWriter
from cxpulse.streams.query import WorkerMismatch, clickhouse_identity, query_worker
from cxpulse.streams.readonly_sql import QueryError, run_read_only
from cxpulse.streams.settings import ConfigError, Settings, load_settings
from cxpulse.streams.web import query_answer
from tests.integration.conftest import clickhouse_server_url

pytestmark = [pytest.mark.clickhouse]


@dataclass
class Store:
    """One ClickHouse with cxpulse's tables, a dead letter in them, and a second database
    holding a secret. ``backend`` is the full-privilege connection, for setting up and
    checking; the attacks go through its read-only session."""

    kind: str
    url: str
    backend: Any
    other_db: str
    directory: Path | None = None

    @property
    def other(self) -> str:
        return f"{self.other_db}.secrets"

    @property
    def identity(self) -> str:
        return clickhouse_identity(self.url)

    def count(self, table: str = "dead_letters") -> int:
        return int(self.backend.query(f"SELECT count() FROM {table}")[1][0][0])

    def tables(self) -> set[str]:
        _, rows = self.backend.query(
            "SELECT name FROM system.tables WHERE database = currentDatabase()"
        )
        return {str(r[0]) for r in rows}

    def connect(self) -> Any:
        from cxpulse.sinks.clickhouse import open_backend

        return open_backend(self.url)


def _seed(backend: Any, other_db: str, run: Callable[[str], Any]) -> None:
    backend.ensure_schema()
    row = dead_letter_row(
        source_topic="qsec",
        source_partition=0,
        source_offset=1,
        source_index=-1,
        reason="seed",
        payload=b"x",
        received_at=datetime.now(UTC),
    )
    backend.insert("dead_letters", [row])
    run(f"CREATE DATABASE IF NOT EXISTS {other_db}")
    run(f"CREATE TABLE IF NOT EXISTS {other_db}.secrets (s String) ENGINE = Memory")
    run(f"INSERT INTO {other_db}.secrets SELECT 'hunter2'")


@pytest.fixture(scope="module")
def chdb_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    from cxpulse.sinks.embedded import ChdbBackend

    directory = tmp_path_factory.mktemp("qsec-chdb")
    url = f"chdb://{directory}"
    backend = ChdbBackend(url)
    try:
        _seed(backend, "qsec_other", backend.query)
        yield Store("chdb", url, backend, "qsec_other", directory)
    finally:
        backend.close()


@pytest.fixture(scope="module")
def server_store() -> Iterator[Store]:
    from cxpulse.sinks.clickhouse import open_backend

    parts = urlsplit(clickhouse_server_url())
    name = f"cxpulse_qsec_{uuid.uuid4().hex[:8]}"
    url = urlunsplit(parts._replace(path=f"/{name}"))
    backend: Any = open_backend(url)
    try:
        _seed(backend, f"{name}_other", backend._run)
        yield Store("server", url, backend, f"{name}_other")
    finally:
        backend._run(f"DROP DATABASE IF EXISTS {name}_other")
        backend._run(f"DROP DATABASE IF EXISTS {name}")
        backend.close()


@pytest.fixture(params=["chdb", "server"])
def store(request: pytest.FixtureRequest) -> Store:
    found: Store = request.getfixturevalue(f"{request.param}_store")
    return found


@dataclass
class Listener:
    url: str
    hits: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    """An HTTP server on loopback that records every request it gets."""
    hits: list[str] = []

    class Record(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(f"{self.command} {self.path}")
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.end_headers()
            self.wfile.write(b"a\n")

        do_POST = do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Record)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Listener(f"http://127.0.0.1:{server.server_address[1]}/x.csv", hits)
    finally:
        server.shutdown()
        server.server_close()


def one_line(message: str) -> str:
    assert "\n" not in message and "Traceback" not in message, message
    return message


# -- attacks through the whole path (check, then ClickHouse) ---------------------------

ATTACKS = {
    "with-insert": "WITH 1 AS x INSERT INTO dead_letters SELECT * FROM dead_letters LIMIT 1",
    "insert": "INSERT INTO dead_letters SELECT * FROM dead_letters LIMIT 1",
    "alter": "ALTER TABLE dead_letters DELETE WHERE 1",
    "drop": "DROP TABLE dead_letters",
    "create": "CREATE TABLE qsec_new (a UInt8) ENGINE = Memory",
    "set": "SET readonly = 0",
    "settings-readonly-0": "SELECT count() FROM dead_letters SETTINGS readonly = 0",
    "settings-in-subquery": "SELECT * FROM (SELECT 1 SETTINGS readonly = 0)",
    "into-outfile": "SELECT 'x' INTO OUTFILE '{out}'",
    "insert-into-function-file": "INSERT INTO FUNCTION file('{out}', 'CSV', 'a UInt8') SELECT 1",
    "file-table-function": "SELECT * FROM file('/etc/passwd', 'CSV', 'line String')",
    "file-function": "SELECT file('/etc/passwd')",
    "apply-file": "SELECT * APPLY(file) FROM (SELECT '/etc/passwd' AS p)",
    "url": "SELECT * FROM url('{url}', 'CSV', 'a String')",
    "remote": "SELECT * FROM remote('127.0.0.1:9000', system.one)",
    "other-database": "SELECT * FROM {other}",
    "other-database-in": "SELECT 1 WHERE 'hunter2' IN {other}",
    "other-database-merge": "SELECT * FROM merge('{other_db}', '.*')",
    "system-processes": "SELECT query FROM system.processes",
    "two-statements": "SELECT 1; INSERT INTO dead_letters SELECT * FROM dead_letters LIMIT 1",
    "paren-escape": "SELECT 1) ; SYSTEM STOP MERGES; SELECT (1",
    "system": "SYSTEM STOP MERGES",
    "kill": "KILL QUERY WHERE 1",
    "dictget": "SELECT dictGet('d', 'a', toUInt64(1))",
    "format": "SELECT 1 FORMAT JSONEachRow",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_an_attack_is_refused_in_one_line_and_changes_nothing(
    store: Store, attack: str, listener: Listener, tmp_path: Path
) -> None:
    out = tmp_path / "written"
    sql = ATTACKS[attack].format(
        out=out, url=listener.url, other=store.other, other_db=store.other_db
    )
    before, tables, hits = store.count(), store.tables(), len(listener.hits)

    with pytest.raises(QueryError) as refused:
        run_read_only(store.backend.read_only(), sql)

    one_line(str(refused.value))
    assert "hunter2" not in str(refused.value)
    assert store.count() == before
    assert store.tables() == tables
    assert not out.exists()
    assert len(listener.hits) == hits


def test_the_url_listener_would_have_seen_a_request(store: Store, listener: Listener) -> None:
    """The control for the url() attack: on the full-privilege connection the same
    table function reaches the listener, so "no request arrived" above means refused."""
    hits = len(listener.hits)
    store.backend.query(f"SELECT * FROM url('{listener.url}', 'CSV', 'a String')")
    assert len(listener.hits) > hits


# -- what ClickHouse refuses by itself, past cxpulse's check ----------------------------

READONLY, SYNTAX = 164, 62
RAW = {
    "insert": ("INSERT INTO dead_letters SELECT * FROM dead_letters LIMIT 1", {READONLY}),
    # 18.16 cannot parse WITH before INSERT at all
    "with-insert": (
        "WITH 1 AS x INSERT INTO dead_letters SELECT * FROM dead_letters LIMIT 1",
        {READONLY, SYNTAX},
    ),
    "alter": ("ALTER TABLE dead_letters DELETE WHERE 1", {READONLY}),
    "drop": ("DROP TABLE dead_letters", {READONLY}),
    "create": ("CREATE TABLE qsec_new (a UInt8) ENGINE = Memory", {READONLY}),
    "set": ("SET readonly = 0", {READONLY}),
    "settings-readonly-0": ("SELECT count() FROM dead_letters SETTINGS readonly = 0", {READONLY}),
    "insert-into-function-file": (
        "INSERT INTO FUNCTION file('{out}', 'CSV', 'a UInt8') SELECT 1",
        {READONLY},
    ),
    "file-table-function": ("SELECT * FROM file('/etc/passwd', 'CSV', 'line String')", {READONLY}),
    "url": ("SELECT * FROM url('{url}', 'CSV', 'a String')", {READONLY}),
    "remote": ("SELECT * FROM remote('127.0.0.1:9000', system.one)", {READONLY}),
    # the statement as it runs, a subquery: the parser takes nothing but a SELECT there
    "into-outfile-as-run": ("SELECT * FROM (SELECT 'x' INTO OUTFILE '{out}')", {SYNTAX}),
    "insert-as-run": ("SELECT * FROM (INSERT INTO dead_letters SELECT 1)", {SYNTAX}),
    "system-as-run": ("SELECT * FROM (SYSTEM STOP MERGES)", {SYNTAX}),
}


@pytest.mark.parametrize("raw", sorted(RAW))
def test_clickhouse_itself_refuses(
    store: Store, raw: str, listener: Listener, tmp_path: Path
) -> None:
    template, codes = RAW[raw]
    out = tmp_path / "written"
    sql = template.format(out=out, url=listener.url)
    before, tables, hits = store.count(), store.tables(), len(listener.hits)

    with pytest.raises(SinkError) as refused:
        store.backend.read_only().query(sql)

    assert getattr(refused.value, "code", None) in codes, str(refused.value)
    one_line(str(refused.value))
    assert store.count() == before
    assert store.tables() == tables
    assert not out.exists()
    assert len(listener.hits) == hits


# -- what a read may do ------------------------------------------------------------------


def test_reads_of_the_own_database_and_the_schema_tables_run(store: Store) -> None:
    session = store.backend.read_only()

    assert run_read_only(session, "SELECT count() FROM dead_letters")[1] == [(1,)]
    _, rows = run_read_only(
        session,
        "SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name",
    )
    assert ("dead_letters",) in [tuple(r) for r in rows]
    columns, rows = run_read_only(
        session,
        "WITH 'seed' AS why SELECT reason, count() AS n FROM dead_letters "
        "WHERE reason = why GROUP BY reason UNION ALL SELECT 'none', 0",
    )
    assert columns == ["reason", "n"]
    assert sorted(tuple(r) for r in rows) == [("none", 0), ("seed", 1)]


def test_a_result_over_the_limit_is_refused_and_the_next_query_is_right(store: Store) -> None:
    """chDB 4.4.0 hands the rest of a failed result to the connection's next query; the
    session is replaced after a failure, so the next answer is its own."""
    with pytest.raises(QueryError) as refused:
        run_read_only(store.backend.read_only(), "SELECT number FROM system.numbers LIMIT 1500000")
    assert "add a LIMIT or aggregate" in one_line(str(refused.value))

    assert run_read_only(store.backend.read_only(), "SELECT 42 AS answer") == (
        ["answer"],
        [(42,)],
    )


def test_a_query_over_the_time_limit_is_stopped(store: Store) -> None:
    from cxpulse.sinks.clickhouse import open_read_only
    from cxpulse.sinks.embedded import ChdbReader
    from cxpulse.sinks.targets import read_only_settings

    if store.directory is not None:  # this process has the directory open already
        session: Any = ChdbReader(
            str(store.directory), "cxpulse", read_only_settings(max_execution_time=1)
        )
    else:
        session = open_read_only(store.url, max_execution_time=1)
    try:
        with pytest.raises(QueryError) as refused:
            run_read_only(session, "SELECT count() FROM system.numbers")
    finally:
        session.close()
    assert "narrow it" in one_line(str(refused.value))


def test_a_slow_query_holds_no_insert_up(chdb_store: Store) -> None:
    """The insert finishes while a query still sleeps: they run on their own connections
    and threads (before, queries ran on the sink thread: five sleep(3) froze inserts 15 s)."""

    async def go() -> bool:
        writer = SinkWriter(chdb_store.connect)
        try:
            query = asyncio.create_task(writer.query("SELECT sleep(2) AS slept"))
            deadline = time.monotonic() + 20
            while not _running(chdb_store, "sleep(2)"):
                assert not query.done(), query.result()
                assert time.monotonic() < deadline, "the query never started"
                await asyncio.sleep(0.05)
            row = dead_letter_row(
                source_topic="qsec",
                source_partition=0,
                source_offset=2,
                source_index=-1,
                reason="during a query",
                payload=b"y",
                received_at=datetime.now(UTC),
            )
            await writer.write("dead_letters", [row])
            still_sleeping = not query.done()
            assert (await query) == (["slept"], [(0,)])
            return still_sleeping
        finally:
            await writer.aclose()

    assert asyncio.run(go())
    _, rows = chdb_store.backend.query(
        "SELECT count() FROM dead_letters WHERE reason = 'during a query'"
    )
    assert rows == [(1,)]


def _running(store: Store, fragment: str) -> bool:
    _, rows = store.backend.query(
        f"SELECT count() FROM system.processes WHERE query LIKE '%{fragment}%' "
        "AND query NOT LIKE '%system.processes%'"
    )
    return int(rows[0][0]) > 0


# -- the request handling of /query, with a real writer ---------------------------------


def _answer(
    store: Store,
    headers: dict[str, str],
    body: Any,
    *,
    remote: str = "127.0.0.1",
    port: int = 6066,
) -> tuple[dict[str, Any], int]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()

    async def read() -> bytes:
        return raw

    async def go() -> tuple[dict[str, Any], int]:
        writer = SinkWriter(store.connect)
        try:
            return await query_answer(writer, store.identity, port, remote, headers, read)
        finally:
            await writer.aclose()

    return asyncio.run(go())


JSON = {"Content-Type": "application/json", "Host": "127.0.0.1:6066"}
INSERT = "INSERT INTO dead_letters SELECT * FROM dead_letters LIMIT 1"


def test_the_endpoint_refuses_what_a_browser_can_send(store: Store) -> None:
    before = store.count()
    mine = {"sql": INSERT, "clickhouse": store.identity}
    cases = [
        ({"Content-Type": "text/plain", "Host": "127.0.0.1:6066"}, INSERT.encode(), 415),
        ({"Host": "127.0.0.1:6066"}, INSERT.encode(), 415),
        ({**JSON, "Origin": "http://evil.example"}, mine, 403),
        ({**JSON, "Origin": "null"}, mine, 403),
        ({**JSON, "Origin": "http://127.0.0.1:6067"}, mine, 403),
        ({**JSON, "Host": "evil.example:6066"}, mine, 403),
        (JSON, b"{not json", 400),
        (JSON, {"sql": INSERT}, 400),
    ]
    for headers, body, status in cases:
        answer, got = _answer(store, headers, body)
        assert got == status, (headers, answer)
        one_line(answer["error"])
    answer, got = _answer(store, JSON, mine, remote="10.1.2.3")
    assert got == 403
    assert store.count() == before


def test_the_endpoint_answers_only_for_the_directory_it_has_open(store: Store) -> None:
    query = {"sql": "SELECT count() AS n FROM dead_letters", "clickhouse": store.identity}
    answer, status = _answer(store, {**JSON, "Origin": "http://127.0.0.1:6066"}, query)
    if store.kind == "server":  # a server is read directly, never through a worker
        assert status == 409 and "reads a ClickHouse server directly" in answer["error"]
        return
    assert (status, answer) == (200, {"columns": ["n"], "rows": [[store.count()]]})

    other = {**query, "clickhouse": "chdb:///somewhere/else?database=cxpulse"}
    answer, status = _answer(store, JSON, other)
    assert status == 409
    assert answer["worker_clickhouse"] == store.identity
    assert "/somewhere/else" in one_line(answer["error"]) and store.identity in answer["error"]

    answer, status = _answer(store, JSON, {**query, "sql": INSERT})
    assert status == 400 and "only a SELECT query" in one_line(answer["error"])


# -- a real worker and the cxpulse query CLI ---------------------------------------------


@dataclass
class Worker:
    settings: Settings
    directory: Path


@pytest.fixture(scope="module")
def worker(kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A ``cxpulse worker`` on chDB with one dead letter (from an invalid message)."""
    from kafka import KafkaProducer

    from cxpulse.streams.admin import ensure_topics
    from cxpulse.streams.app import TABLE_NAMES
    from cxpulse.streams.dev.demo import WorkerProcess, free_port
    from cxpulse.streams.topics import all_topics, touchpoints

    root = tmp_path_factory.mktemp("qsec-worker")
    name = f"q{uuid.uuid4().hex[:10]}"
    settings = load_settings(
        kafka_url=kafka_broker.url,
        clickhouse_url=f"chdb://{root / 'chdb'}",
        app_id=f"cxpulse-{name}",
        topic_prefix=name,
        partitions=2,
        web_port=free_port(),
        data_dir=root / "var",
        sink_flush_seconds=0.3,
    )
    ensure_topics(settings, all_topics(settings, TABLE_NAMES))
    process = WorkerProcess(settings, root / "worker.log")
    process.start()
    try:
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        producer.send(touchpoints(settings), b"not json")
        producer.flush()
        producer.close()
        deadline = time.monotonic() + 90
        while True:
            assert process.alive(), f"worker died:\n{process.log_tail(40)}"
            assert time.monotonic() < deadline, f"no dead letter in 90 s\n{process.log_tail(40)}"
            result = query_worker(settings, "SELECT count() FROM dead_letters", timeout=10)
            if result is not None and result[1] and result[1][0][0] >= 1:
                break
            time.sleep(0.3)
        yield Worker(settings, root / "chdb")
    finally:
        process.stop()


def _post(port: int, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/query", data=body, method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _dead_letters(worker: Worker) -> int:
    result = query_worker(worker.settings, "SELECT count() FROM dead_letters")
    assert result is not None
    return int(result[1][0][0])


@pytest.mark.kafka
@pytest.mark.slow
def test_a_worker_refuses_forged_and_writing_requests(worker: Worker, tmp_path: Path) -> None:
    port = worker.settings.web_port
    before = _dead_letters(worker)
    mine = clickhouse_identity(worker.settings.clickhouse_url)

    status, answer = _post(port, INSERT.encode(), {"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in one_line(answer["error"])
    forged = json.dumps({"sql": INSERT, "clickhouse": mine}).encode()
    headers = {"Content-Type": "application/json", "Origin": "http://evil.example"}
    status, answer = _post(port, forged, headers)
    assert status == 403 and "cross-origin" in one_line(answer["error"])

    for sql in (ATTACKS["with-insert"], ATTACKS["two-statements"], ATTACKS["system"]):
        with pytest.raises(ConfigError) as refused:
            query_worker(worker.settings, sql)
        assert one_line(refused.value.message).startswith("query refused: ")
    out = tmp_path / "written"
    with pytest.raises(ConfigError):
        query_worker(worker.settings, f"SELECT 'x' INTO OUTFILE '{out}'")
    assert not out.exists()
    assert _dead_letters(worker) == before


@pytest.mark.kafka
@pytest.mark.slow
def test_a_worker_with_another_directory_open_is_named_and_never_used(
    worker: Worker, chdb_store: Store, tmp_path: Path
) -> None:
    elsewhere = load_settings(
        clickhouse_url=f"chdb://{tmp_path / 'elsewhere'}", web_port=worker.settings.web_port
    )
    with pytest.raises(WorkerMismatch) as mismatch:
        query_worker(elsewhere, "SELECT 1")
    said = one_line(mismatch.value.message)
    assert str(worker.directory) in said and str(tmp_path / "elsewhere") in said

    # cxpulse query then opens the configured directory itself, if no one else has it
    result = _cli(elsewhere.clickhouse_url, worker, "SELECT 1")
    assert result.returncode == 2
    said = one_line(result.stderr.strip())
    assert str(worker.directory) in said and "there is no chDB directory" in said

    result = _cli(chdb_store.url, worker, "SELECT 1")  # this test process has it open
    assert result.returncode == 2
    said = one_line(result.stderr.strip())
    assert str(worker.directory) in said and f"in use by process {os.getpid()}" in said

    fresh = tmp_path / "fresh"
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cxpulse.sinks.embedded import ChdbBackend; "
            "b = ChdbBackend(sys.argv[1]); b.ensure_schema(); b.close()",
            f"chdb://{fresh}",
        ],
        check=True,
        timeout=60,
    )
    result = _cli(f"chdb://{fresh}", worker, "SELECT count() AS n FROM dead_letters")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "n\n0\n"
    assert str(worker.directory) in result.stderr and "reading it directly" in result.stderr

    # with no worker at all, the same checks and the same one-line refusals
    from cxpulse.streams.dev.demo import free_port

    for sql, said in [
        (ATTACKS["file-table-function"], "table function file()"),
        (ATTACKS["with-insert"], "only a SELECT query"),
        ("SELECT sleep(3); SELECT 1", "one statement at a time"),
    ]:
        result = _cli(f"chdb://{fresh}", worker, sql, port=free_port())
        assert result.returncode == 2
        assert said in one_line(result.stderr.strip()), result.stderr


@pytest.mark.kafka
@pytest.mark.slow
def test_cxpulse_query_through_a_worker_reads_and_refuses_in_one_line(worker: Worker) -> None:
    result = _cli(worker.settings.clickhouse_url, worker, "SELECT count() AS n FROM dead_letters")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "n"

    result = _cli(worker.settings.clickhouse_url, worker, ATTACKS["with-insert"])
    assert result.returncode == 2
    assert one_line(result.stderr.strip()).startswith("cxpulse: query refused: only a SELECT")


def _cli(
    url: str, worker: Worker, sql: str, port: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    web_port = worker.settings.web_port if port is None else port
    env.update(CXPULSE_CLICKHOUSE_URL=url, CXPULSE_WEB_PORT=str(web_port))
    return subprocess.run(
        [sys.executable, "-m", "cxpulse.streams.cli", "query", "--format", "tsv", sql],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
