"""How the backends classify failures, on the real components: what the sink writer must
retry (the server is away) and what it must isolate (the rows' values are refused).

The server part follows the sink contract tests: skipped when CXPULSE_TEST_CLICKHOUSE_URL
is unset, a one-line failure when CI is set. It uses its own database (the configured one
with ``_errors`` appended), dropped first.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from cxpulse.schemas.rows import DEAD_LETTERS, dead_letter_row
from cxpulse.schemas.tables import SPECS
from cxpulse.sinks.base import Backend
from cxpulse.sinks.errors import SinkDataError, SinkUnavailable
from cxpulse.sinks.writer import SinkWriter
from cxpulse.streams.dev.broker import free_port
from tests.unit.test_sink_writer import PROBE

COL = DEAD_LETTERS.positions
AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def letter(offset: int, **changes: Any) -> tuple[Any, ...]:
    row = list(
        dead_letter_row(
            source_topic="cx.touchpoints",
            source_partition=0,
            source_offset=offset,
            source_index=-1,
            reason="not JSON",
            payload=b"x",
            received_at=AT,
        )
    )
    for name, value in changes.items():
        row[COL[name]] = value
    return tuple(row)


NULL_IN_ARRAY = ("p1", [None, "e-1"])  # a writer_probe row: Array(String) holds no NULL


def test_a_refused_connection_is_retryable() -> None:
    from cxpulse.sinks.native import NativeBackend

    with pytest.raises(SinkUnavailable) as info:
        NativeBackend(f"clickhouse://default:@127.0.0.1:{free_port()}/cxpulse")
    assert info.value.retryable
    assert "unreachable" in str(info.value)


@pytest.fixture
def http_port() -> Iterator[int]:
    """An HTTP server on a free loopback port, answering /ping as ClickHouse's does."""
    import http.server
    import threading

    class Ping(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"Ok.\n")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ping)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_an_http_port_is_named_as_such_with_the_native_port(http_port: int) -> None:
    """The native driver on an HTTP port: a configuration error naming the native port,
    not a minute's wait for a handshake that never comes."""
    from cxpulse.sinks.errors import SinkConfigError
    from cxpulse.sinks.native import answers_http, refuse_http_port

    assert answers_http("127.0.0.1", http_port, 2.0)
    with pytest.raises(SinkConfigError) as info:
        refuse_http_port("127.0.0.1", http_port, 2.0)
    message = str(info.value)
    assert f"127.0.0.1:{http_port} is ClickHouse's HTTP port" in message
    assert "usually 9000" in message and "CXPULSE_CLICKHOUSE_URL" in message
    assert "\n" not in message and not info.value.retryable
    # a refused port is not an HTTP port: it stays "unreachable" (and retryable)
    assert not answers_http("127.0.0.1", free_port(), 2.0)


@pytest.fixture(scope="module")
def chdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    from cxpulse.sinks.embedded import ChdbBackend

    directory: Path = tmp_path_factory.mktemp("chdb-errors")
    backend = ChdbBackend(f"chdb://{directory}?database=cxpulse_errors")
    backend.ensure_schema((*SPECS, PROBE))
    try:
        yield backend
    finally:
        backend.close()


@pytest.mark.clickhouse
def test_chdb_refusing_a_null_in_an_array_is_a_data_error(chdb: Backend) -> None:
    with pytest.raises(SinkDataError) as info:
        chdb.insert(PROBE, [NULL_IN_ARRAY])
    assert not info.value.retryable and info.value.code == 349


@pytest.mark.clickhouse
def test_chdb_arrow_type_errors_are_data_errors(chdb: Backend) -> None:
    for bad in (letter(1, payload_bytes=-5), letter(2, source_partition="three")):
        with pytest.raises(SinkDataError) as info:
            chdb.insert("dead_letters", [bad])
        assert not info.value.retryable
    chdb.insert("dead_letters", [letter(3)])  # the backend is fine for good rows
    assert [r[COL["source_offset"]] for r in chdb.read_table("dead_letters")] == [3]


# -- on the ClickHouse server (Debian's 18.16 in CI) ------------------------------------------


@pytest.fixture(scope="module")
def server_url() -> str:
    from tests.integration.conftest import clickhouse_server_url

    parts = urlsplit(clickhouse_server_url())
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/') or '/cxpulse'}_errors"))


@pytest.fixture(scope="module")
def server(server_url: str) -> Iterator[Backend]:
    from cxpulse.sinks.clickhouse import open_backend
    from cxpulse.sinks.native import NativeBackend

    backend = open_backend(server_url)
    assert isinstance(backend, NativeBackend)
    backend._run(f"DROP DATABASE IF EXISTS `{backend.database}`")
    backend.ensure_schema((*SPECS, PROBE))
    try:
        yield backend
    finally:
        backend._run(f"DROP DATABASE IF EXISTS `{backend.database}`")
        backend.close()


@pytest.mark.clickhouse
def test_server_refusals_of_values_are_data_errors(server: Backend) -> None:
    """On 18.16 DateTime is UInt32 seconds: a 1969 time fails clickhouse-driver's struct
    packing, which used to be classified retryable and so retried forever."""
    cases = {
        "a time before 1970": letter(1, received_at=datetime(1969, 12, 31, tzinfo=UTC)),
        "a negative UInt32": letter(2, payload_bytes=-5),
        "not a UUID": letter(3, dead_letter_id="zzz"),
        "None for a String": letter(4, reason=None),
        "a row of the wrong width": letter(5)[:-1],
    }
    for name, row in cases.items():
        with pytest.raises(SinkDataError) as info:
            server.insert("dead_letters", [row])
        assert not info.value.retryable, name
    with pytest.raises(SinkDataError):
        server.insert(PROBE, [NULL_IN_ARRAY])
    server.insert("dead_letters", [letter(6)])  # the connection recovered by itself
    assert [r[COL["source_offset"]] for r in server.read_table("dead_letters")] == [6]


@pytest.mark.clickhouse
def test_writer_on_the_server_sets_a_1969_row_aside_and_inserts_the_rest(
    server: Backend, server_url: str
) -> None:
    def connect() -> Backend:
        from cxpulse.sinks.clickhouse import open_backend

        backend = open_backend(server_url)
        backend.ensure_schema()
        return backend

    writer = SinkWriter(connect, retry_max_seconds=0.01, retry_initial_seconds=0.001)
    old = letter(11, received_at=datetime(1969, 7, 20, 20, 17, tzinfo=UTC))

    async def go() -> None:
        await writer.write("dead_letters", [letter(10), old, letter(12)])
        await writer.aclose()

    asyncio.run(go())
    rows = {
        r[COL["source_topic"]] + str(r[COL["source_offset"]]): r
        for r in server.read_table("dead_letters")
    }
    assert {"cx.touchpoints10", "cx.touchpoints12", "dead_letters-1"} <= set(rows)
    assert "cx.touchpoints11" not in rows
    wrapped = rows["dead_letters-1"]
    assert wrapped[COL["reason"]].startswith("rejected by ClickHouse (dead_letters): ClickHouse at")
    assert json.loads(wrapped[COL["payload"]])["received_at"] == "1969-07-20T20:17:00+00:00"
