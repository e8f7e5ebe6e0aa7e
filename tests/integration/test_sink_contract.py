"""The sink contract, run unchanged against memory, chDB and a real ClickHouse server.

The in-memory backend is only trustworthy because it passes the same assertions as the
real ones: schema creation is idempotent, rows round-trip, duplicates collapse like
ReplacingMergeTree + FINAL, batches go out by size and by age, an empty flush does
nothing, and a failing insert raises a ``SinkError`` while keeping its rows.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cxpulse.schemas.events import TouchpointEvent
from cxpulse.schemas.rows import (
    DEAD_LETTERS,
    TOUCHPOINT_EVENTS,
    TableSpec,
    dead_letter_row,
    event_row,
)
from cxpulse.sinks.base import Backend, Row, final_rows, normalize_rows
from cxpulse.sinks.clickhouse import open_backend
from cxpulse.sinks.errors import (
    SinkConfigError,
    SinkError,
    SinkLocked,
    SinkUnavailable,
    SinkWriteError,
)
from cxpulse.sinks.targets import parse_chdb_url

pytestmark = pytest.mark.clickhouse

T0 = datetime(2024, 3, 31, 23, 59, 58, 123456, tzinfo=UTC)  # a month boundary ahead
# Dead letters expire after 90 days (TTL): an old received_at would vanish on insert.
DL_T0 = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=654321)


def fresh(spec: TableSpec) -> TableSpec:
    """The spec under a name no other test uses, so tests share a backend safely."""
    return dataclasses.replace(spec, name=f"{spec.name}_{uuid.uuid4().hex[:8]}")


def make_events(n: int, *, start: int = 0) -> list[TouchpointEvent]:
    """Events over every channel, with and without details and feedback."""
    details: list[dict[str, Any] | None] = [
        {"kind": "web", "latency_ms": 812.5, "http_status": 503, "page": "/login", "steps": 4},
        {"kind": "app", "latency_ms": 95.0, "os": "ios", "steps": 2},
        {
            "kind": "call_center",
            "wait_seconds": 340.0,
            "handle_seconds": 610.5,
            "transfers": 2,
            "ivr_steps": 5,
            "queue": "cards-en",
        },
        {"kind": "store", "queue_seconds": 900.0, "service_seconds": 300.0},
        {"kind": "atm", "response_ms": 4100.0, "error_code": "E42", "cash_dispensed": False},
    ]
    channels = ["web", "app", "call_center", "store", "atm"]
    out = []
    for i in range(start, start + n):
        k = i % 5
        raw: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=(i * 7919 + 1) << 64 | (i + 1))),
            "occurred_at": (T0 + timedelta(seconds=i)).isoformat(),
            "customer_id": f"cust-{i % 13}",
            "channel": channels[k],
            "touchpoint": f"{channels[k]}.touch",
            "journey_stage": ("pre_purchase", "purchase", "post_purchase")[i % 3],
            "outcome": ("success", "failure", "abandoned")[i % 3],
            "attributes": {"n": i, "flag": i % 2 == 0, "note": "说明"},
        }
        if i % 4 != 3:
            raw["details"] = details[k]
            raw["touchpoint_instance"] = f"inst-{k}"
            raw["tier"] = "ABC"[i % 3]
            raw["intent"] = "card_block"
        if i % 3 == 0:
            raw["feedback"] = {
                "nps": i % 11,
                "csat": 1 + i % 5,
                "ces": 1 + i % 7,
                "text": "柜员很耐心" if i % 2 else "ATM ate my card",
                "language": "zh",
            }
        out.append(TouchpointEvent.model_validate(raw))
    return out


def rows_for(events: list[TouchpointEvent], ingested_at: datetime = T0) -> list[Row]:
    return [
        event_row(e, source_partition=i % 4, source_offset=1000 + i, ingested_at=ingested_at)
        for i, e in enumerate(events)
    ]


def dead_rows(n: int) -> list[Row]:
    return [
        dead_letter_row(
            source_topic="cx.touchpoints",
            source_partition=i % 3,
            source_offset=50 + i,
            source_index=None if i % 2 else i,
            reason=f"occurred_at: Field required (item {i})",
            payload=b'{"bad": true, "bytes": "\xff\xfe"}',
            received_at=DL_T0 + timedelta(milliseconds=i),
        )
        for i in range(n)
    ]


def as_stored(backend: Backend, spec: TableSpec, rows: list[Row]) -> list[Row]:
    """What a backend gives back for ``rows``: deduplicated and key-sorted, with times at
    the server's precision (whole seconds where DateTime64 is missing, i.e. 18.16)."""
    caps = getattr(backend, "capabilities", None)
    if caps is not None and not caps.datetime64:
        rows = [
            tuple(v.replace(microsecond=0) if isinstance(v, datetime) else v for v in r)
            for r in rows
        ]
    return final_rows(spec, normalize_rows(spec, rows))  # ids written as text read as UUIDs


# -- contract -------------------------------------------------------------------------


def test_ensure_schema_is_idempotent_and_keeps_data(backend: Backend) -> None:
    spec = fresh(TOUCHPOINT_EVENTS)
    backend.ensure_schema([spec])
    rows = rows_for(make_events(3))
    backend.insert(spec, rows)
    backend.ensure_schema([spec])
    backend.ensure_schema([spec, fresh(DEAD_LETTERS)])
    assert backend.read_table(spec) == as_stored(backend, spec, rows)


def test_events_round_trip(backend: Backend) -> None:
    spec = fresh(TOUCHPOINT_EVENTS)
    backend.ensure_schema([spec])
    rows = rows_for(make_events(40))
    assert backend.insert(spec, rows) == 40
    assert backend.read_table(spec) == as_stored(backend, spec, rows)


@pytest.mark.parametrize("name", ["chdb", "server"])
def test_columns_prepared_for_the_backend_insert_the_rows_they_hold(
    name: str, request: pytest.FixtureRequest
) -> None:
    """What a step does with a take's rows on a backend that prepares columns (chDB: an
    Arrow table; a server: the columns as they are): two takes prepared, merged into one
    batch for the checkpoint, inserted once, read back as the row tuples."""
    from cxpulse.sinks.base import ColumnBatch
    from cxpulse.sinks.writer import merge

    backend: Any = request.getfixturevalue(f"{name}_backend")
    spec = fresh(TOUCHPOINT_EVENTS)
    backend.ensure_schema([spec])
    first, second = rows_for(make_events(7)), rows_for(make_events(5))
    parts = [backend.prepare_columns(spec, list(zip(*r, strict=True))) for r in (first, second)]
    if name == "server":
        assert all(isinstance(p, ColumnBatch) for p in parts)
    assert backend.insert(spec, merge(parts)) == 12
    assert backend.read_table(spec) == as_stored(backend, spec, [*first, *second])


def test_dead_letters_round_trip(backend: Backend) -> None:
    spec = fresh(DEAD_LETTERS)
    backend.ensure_schema([spec])
    rows = dead_rows(6)
    backend.insert(spec, rows)
    got = backend.read_table(spec)
    assert got == as_stored(backend, spec, rows)
    assert {r[5] for r in got} == {-1, 0, 2, 4}  # source_index: -1 = the whole message
    assert all("\ufffd" in r[7] for r in got)  # undecodable bytes became U+FFFD


def test_duplicates_collapse_to_one_row_per_key(backend: Backend) -> None:
    spec = fresh(TOUCHPOINT_EVENTS)
    backend.ensure_schema([spec])
    events = make_events(20)
    first = rows_for(events)
    replay = rows_for(events[5:15], ingested_at=T0 + timedelta(hours=1))
    backend.insert(spec, first)
    backend.insert(spec, first)  # a retried insert
    backend.insert(spec, replay)  # a replay from Kafka, validated again later
    got = backend.read_table(spec)
    assert len(got) == 20
    assert got == as_stored(backend, spec, first + replay)
    newest = {r[0] for r in got if r[2] == as_stored(backend, spec, replay)[0][2]}
    assert newest == {e.event_id for e in events[5:15]}  # the newest copy wins


def test_one_inserts_duplicates_are_left_to_final(backend: Backend) -> None:
    """Two rows of one key in one insert (an event delivered twice before a checkpoint)
    read as one, the newer, with FINAL. chDB stores both until a merge, as it stores a
    replay's (``optimize_on_insert = 0``: collapsing them at the insert was a third of its
    time); an old server may collapse them at once."""
    spec = fresh(TOUCHPOINT_EVENTS)
    backend.ensure_schema([spec])
    events = make_events(10)
    rows = rows_for(events) + rows_for(events, ingested_at=T0 + timedelta(hours=1))
    backend.insert(spec, rows)
    got = backend.read_table(spec)
    assert got == as_stored(backend, spec, rows)
    assert len(got) == 10
    if backend.url.startswith("chdb://"):
        assert backend.query(f"SELECT count() FROM {spec.name}")[1] == [(20,)]


def test_failing_insert_raises_one_line_and_the_same_rows_go_in_once_fixed(
    backend: Backend,
) -> None:
    missing = fresh(TOUCHPOINT_EVENTS)
    rows = rows_for(make_events(3))
    with pytest.raises(SinkError) as info:
        backend.insert(missing, rows)
    assert not info.value.retryable  # an unknown table does not heal by waiting
    assert "\n" not in str(info.value)
    backend.ensure_schema([missing])  # fix the cause, and the same rows go through
    assert backend.insert(missing, rows) == 3
    assert backend.read_table(missing) == as_stored(backend, missing, rows)


def test_query_returns_names_and_rows(backend: Backend) -> None:
    spec = fresh(DEAD_LETTERS)
    backend.ensure_schema([spec])
    backend.insert(spec, dead_rows(4))
    if backend.server_version() == "memory":
        with pytest.raises(SinkConfigError):
            backend.query("SELECT 1")
        return
    names, rows = backend.query(
        f"SELECT count() AS n, max(received_at) AS last FROM {spec.name} FINAL"
    )
    assert names == ["n", "last"]
    assert rows[0][0] == 4
    assert isinstance(rows[0][1], datetime)
    assert rows[0][1].astimezone(UTC).replace(microsecond=0) == DL_T0.replace(microsecond=0)


# -- errors a user meets, one line each -------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["kafka://x:9092", "clickhouse://", "clickhouse://h:notaport/db", "chdb://host/dir", "chdb://"],
)
def test_bad_urls_say_what_to_write(url: str) -> None:
    with pytest.raises(SinkConfigError) as info:
        open_backend(url)
    assert "\n" not in str(info.value)
    assert "://" in str(info.value)


def test_chdb_url_paths() -> None:
    assert parse_chdb_url("chdb:///abs/dir") == ("/abs/dir", "cxpulse")
    assert parse_chdb_url("chdb:///./var/chdb") == ("./var/chdb", "cxpulse")
    assert parse_chdb_url("chdb:///../x?database=cx") == ("../x", "cx")


def test_unreachable_server_is_unavailable() -> None:
    with pytest.raises(SinkUnavailable) as info:
        open_backend("clickhouse://default:@127.0.0.1:1/cxpulse_test?connect_timeout=1")
    assert info.value.retryable
    assert "127.0.0.1:1" in str(info.value) and "\n" not in str(info.value)


def test_server_wrong_password_and_database() -> None:
    from tests.integration.conftest import clickhouse_server_url

    url = clickhouse_server_url()
    host = url.split("@", 1)[1].split("/", 1)[0]
    with pytest.raises(SinkConfigError) as info:
        open_backend(f"clickhouse://nobody:wrong@{host}/x")
    assert "user" in str(info.value) and "\n" not in str(info.value)
    backend = open_backend(f"clickhouse://default:@{host}/no_such_db_{uuid.uuid4().hex[:6]}")
    try:
        with pytest.raises(SinkConfigError) as info:
            backend.query("SELECT 1")
        assert "does not exist" in str(info.value)
    finally:
        backend.close()


def test_chdb_directory_in_use_by_another_process(chdb_backend: Backend) -> None:
    """chDB locks its directory: a second process fails at once with ``SinkLocked``."""
    directory = chdb_backend.directory  # type: ignore[attr-defined]
    code = textwrap.dedent(
        f"""
        from cxpulse.sinks.clickhouse import open_backend
        from cxpulse.sinks.errors import SinkLocked
        try:
            open_backend("chdb://{directory}")
        except SinkLocked as exc:
            print("LOCKED", exc.holder_pid, exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    ).stdout
    import os

    assert out.startswith(f"LOCKED {os.getpid()} "), out
    assert issubclass(SinkLocked, SinkUnavailable)
    # The holder is unharmed.
    assert chdb_backend.query("SELECT 1")[1] == [(1,)]


def test_sink_error_classes_are_one_family() -> None:
    for cls in (SinkConfigError, SinkUnavailable, SinkLocked, SinkWriteError):
        assert issubclass(cls, SinkError)


def test_server_gone_mid_run_is_unavailable_and_keeps_rows(server_backend: Backend) -> None:
    """The server stops answering after the backend connected: a retryable
    ``SinkUnavailable``, and the same rows go in once it is back."""
    from cxpulse.sinks.native import NativeBackend

    assert isinstance(server_backend, NativeBackend)
    spec = fresh(TOUCHPOINT_EVENTS)
    server_backend.ensure_schema([spec])
    rows = rows_for(make_events(2))
    connection = server_backend._client.connection
    real_hosts = connection.hosts
    connection.disconnect()
    connection.hosts = type(real_hosts)([("127.0.0.1", 1)])  # as if the server went away
    try:
        with pytest.raises(SinkUnavailable) as info:
            server_backend.insert(spec, rows)
        assert info.value.retryable
    finally:
        connection.hosts = real_hosts
    assert server_backend.insert(spec, rows) == 2  # back: the same rows go through
