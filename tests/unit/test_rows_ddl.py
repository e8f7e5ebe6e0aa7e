"""Row flattening and DDL derivation, without any ClickHouse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from cxpulse.schemas.events import TouchpointEvent
from cxpulse.schemas.rows import (
    DEAD_LETTERS,
    MAX_DEAD_LETTER_PAYLOAD_BYTES,
    TOUCHPOINT_EVENTS,
    Column,
    DeadLetterRow,
    EventRow,
    TableSpec,
    ViewSpec,
    dead_letter_id,
    dead_letter_row,
    event_row,
    event_rows,
)
from cxpulse.schemas.tables import SPECS
from cxpulse.sinks.ddl import (
    LEGACY,
    MODERN,
    Capabilities,
    column_type,
    create_table_sql,
    render_markdown,
    schema_statements,
)
from cxpulse.sinks.errors import SinkConfigError
from cxpulse.streams.pipeline.records import record_of

DOCS = Path(__file__).resolve().parents[2] / "docs" / "clickhouse-tables.md"
NOW = datetime(2025, 6, 1, 12, 0, 0, 987654, tzinfo=UTC)


def event(**overrides: object) -> TouchpointEvent:
    raw: dict[str, object] = {
        "event_id": "7d3c6a52-1111-4a4a-8b8b-000000000001",
        "occurred_at": "2025-06-01T14:30:00.123456+02:00",
        "customer_id": "C-1",
        "channel": "atm",
        "touchpoint": "atm.withdrawal",
        "journey_stage": "post_purchase",
        "outcome": "failure",
    }
    raw.update(overrides)
    return TouchpointEvent.model_validate(raw)


def as_dict(row: tuple[object, ...]) -> dict[str, object]:
    assert len(row) == len(TOUCHPOINT_EVENTS.columns)
    return dict(zip(TOUCHPOINT_EVENTS.column_names, row, strict=True))


# -- event_row --------------------------------------------------------------------------


def test_minimal_event_flattens_with_empty_strings_and_nulls() -> None:
    row = as_dict(event_row(event(), source_partition=3, source_offset=42, ingested_at=NOW))
    assert row["event_id"] == "7d3c6a52-1111-4a4a-8b8b-000000000001"  # ids as text
    assert row["occurred_at"] == datetime(2025, 6, 1, 12, 30, 0, 123000, tzinfo=UTC)
    assert row["ingested_at"] == datetime(2025, 6, 1, 12, 0, 0, 987000, tzinfo=UTC)
    for name in (
        "touchpoint_instance",
        "journey_id",
        "intent",
        "tier",
        "segment",
        "error_code",
        "feedback_text",
        "feedback_language",
    ):
        assert row[name] == "", name
    for name in (
        "latency_ms",
        "http_status",
        "response_ms",
        "nps",
        "csat",
        "ces",
        "cash_dispensed",
        "wait_seconds",
    ):
        assert row[name] is None, name
    assert row["details_json"] == "{}" and row["attributes_json"] == "{}"
    assert (row["source_partition"], row["source_offset"]) == (3, 42)
    EventRow.model_validate(row)  # the tuple matches the declared model


@pytest.mark.parametrize(
    ("channel", "details", "expected"),
    [
        (
            "web",
            {"kind": "web", "latency_ms": 812.5, "http_status": 503, "steps": 4},
            {"latency_ms": 812.5, "http_status": 503, "steps": 4},
        ),
        ("app", {"kind": "app", "latency_ms": 95.0, "os": "ios"}, {"latency_ms": 95.0}),
        (
            "call_center",
            {
                "kind": "call_center",
                "wait_seconds": 340,
                "handle_seconds": 61.5,
                "transfers": 2,
                "ivr_steps": 5,
            },
            {"wait_seconds": 340, "handle_seconds": 61.5, "transfers": 2, "ivr_steps": 5},
        ),
        (
            "store",
            {"kind": "store", "queue_seconds": 900, "service_seconds": 300},
            {"queue_seconds": 900, "service_seconds": 300},
        ),
        (
            "atm",
            {"kind": "atm", "response_ms": 4100, "error_code": "E42", "cash_dispensed": False},
            {"response_ms": 4100, "error_code": "E42", "cash_dispensed": 0},
        ),
    ],
)
def test_channel_details_get_their_own_columns(
    channel: str, details: dict[str, object], expected: dict[str, object]
) -> None:
    ev = event(channel=channel, touchpoint=f"{channel}.x", details=details)
    row = as_dict(event_row(ev, source_partition=0, source_offset=0, ingested_at=NOW))
    for name, value in expected.items():
        assert row[name] == value, name
    assert '"kind":"' + channel + '"' in str(row["details_json"])
    EventRow.model_validate(row)


def test_feedback_tier_and_attributes() -> None:
    ev = event(
        touchpoint_instance="ATM-0042",
        journey_id="j-9",
        intent="cash",
        tier="A",
        segment="retail",
        attributes={"b": 1, "a": "说明"},
        feedback={"nps": 2, "csat": 1, "ces": 7, "text": "机器吞卡了", "language": "zh"},
    )
    row = as_dict(event_row(ev, source_partition=0, source_offset=0, ingested_at=NOW))
    assert (row["nps"], row["csat"], row["ces"]) == (2, 1, 7)
    assert (row["feedback_text"], row["feedback_language"]) == ("机器吞卡了", "zh")
    assert (row["touchpoint_instance"], row["tier"], row["segment"]) == ("ATM-0042", "A", "retail")
    assert row["attributes_json"] == '{"a":"说明","b":1}'  # sorted keys, UTF-8 kept


def test_details_and_attributes_json_text() -> None:
    """The contract's order for details (kind first, unset fields left out), sorted keys
    for attributes, compact, UTF-8 kept, integers exact: the same text from the validated
    model and from the trusted record the worker inserts from."""
    ev = event(
        channel="atm",
        touchpoint="atm.withdrawal",
        details={"kind": "atm", "response_ms": 4100.5, "error_code": 'E"42\u00e9'},
        attributes={"z": 2**64, "a": "说明\n", "m": 0.25, "b": True},
    )
    for source in (ev, record_of(ev)):
        row = as_dict(event_row(source, source_partition=0, source_offset=0, ingested_at=NOW))
        assert row["details_json"] == '{"kind":"atm","response_ms":4100.5,"error_code":"E\\"42é"}'
        assert row["attributes_json"] == (
            '{"a":"说明\\n","b":true,"m":0.25,"z":18446744073709551616}'
        )


def test_a_messages_rows_are_each_events_row() -> None:
    """``event_rows`` (the experience step's: a message's events, the ingestion time cut
    once) gives what ``event_row`` gives each event, records and models alike."""
    events = [
        event(),
        event(event_id="7d3c6a52-1111-4a4a-8b8b-000000000002", details={"kind": "atm"}),
        event(
            event_id="7d3c6a52-1111-4a4a-8b8b-000000000003",
            details={"kind": "atm", "response_ms": 840.5, "error_code": "E1"},
            feedback={"nps": 3, "text": "slow"},
            attributes={"b": 1, "a": "x"},
        ),
    ]
    for batch in (events, [record_of(e) for e in events]):
        rows = event_rows(batch, source_partition=2, source_offset=7, ingested_at=NOW)
        assert rows == [
            event_row(e, source_partition=2, source_offset=7, ingested_at=NOW) for e in batch
        ]
        assert {as_dict(r)["ingested_at"] for r in rows} == {NOW.replace(microsecond=987000)}
    assert event_rows([], source_partition=0, source_offset=0, ingested_at=NOW) == []


def test_replaying_an_event_gives_the_same_key() -> None:
    a = event_row(event(), source_partition=0, source_offset=1, ingested_at=NOW)
    b = event_row(event(), source_partition=0, source_offset=1, ingested_at=NOW)
    assert a == b and TOUCHPOINT_EVENTS.key_of(a) == (a[0],)


# -- dead_letter_row --------------------------------------------------------------------


def test_dead_letter_ids_are_deterministic_per_position() -> None:
    a = dead_letter_id("cx.touchpoints", 1, 10, None)
    assert a == dead_letter_id("cx.touchpoints", 1, 10, -1)
    assert a != dead_letter_id("cx.touchpoints", 1, 10, 0)
    assert a != dead_letter_id("cx.touchpoints", 2, 10, None)


def test_dead_letter_row_decodes_and_bounds_the_payload() -> None:
    kwargs = dict(
        source_topic="cx.touchpoints",
        source_partition=1,
        source_offset=10,
        reason="not JSON",
        received_at=NOW.astimezone(timezone(timedelta(hours=8))),
    )
    row = dead_letter_row(source_index=None, payload=b"\xff\xfeoops", **kwargs)  # type: ignore[arg-type]
    named = dict(zip(DEAD_LETTERS.column_names, row, strict=True))
    assert named["source_index"] == -1
    assert named["payload"] == "\ufffd\ufffdoops"
    assert named["payload_bytes"] == 6
    assert named["received_at"] == datetime(2025, 6, 1, 12, 0, 0, 987000, tzinfo=UTC)
    DeadLetterRow.model_validate(named)
    big = dead_letter_row(
        source_index=3,
        payload=b"x" * (MAX_DEAD_LETTER_PAYLOAD_BYTES + 5),
        payload_bytes=9_000_000,
        **kwargs,
    )  # type: ignore[arg-type]
    assert len(big[7]) == MAX_DEAD_LETTER_PAYLOAD_BYTES and big[8] == 9_000_000 and big[5] == 3


# -- DDL --------------------------------------------------------------------------------


def test_capabilities_by_version() -> None:
    assert not Capabilities.from_version("18.16.1").datetime64
    assert not LEGACY.low_cardinality and not LEGACY.ttl
    assert MODERN.datetime64 and MODERN.low_cardinality and MODERN.ttl
    assert Capabilities.from_version("26.9.2.1").datetime64
    with pytest.raises(SinkConfigError, match="too old"):
        Capabilities.from_version("1.1.54245")


def test_types_degrade_on_old_servers() -> None:
    assert column_type(Column("LowCardinality(String)", ""), LEGACY) == "String"
    assert column_type(Column("DateTime64(3, 'UTC')", ""), LEGACY) == "DateTime('UTC')"
    assert column_type(Column("Nullable(DateTime64(3))", ""), LEGACY) == "Nullable(DateTime)"
    assert column_type(Column("LowCardinality(Nullable(String))", ""), LEGACY) == "Nullable(String)"
    assert column_type(Column("LowCardinality(String)", "", fallback="FixedString(8)"), LEGACY) == (
        "FixedString(8)"
    )
    assert column_type(Column("LowCardinality(String)", ""), MODERN) == "LowCardinality(String)"


def test_modern_ddl() -> None:
    sql = create_table_sql(TOUCHPOINT_EVENTS, MODERN, "cx")
    assert sql.startswith("CREATE TABLE IF NOT EXISTS `cx`.`touchpoint_events`")
    assert "`occurred_at` DateTime64(3, 'UTC')" in sql
    assert "`channel` LowCardinality(String)" in sql
    assert "`nps` Nullable(UInt8)" in sql
    assert "ENGINE = ReplacingMergeTree(`ingested_at`)" in sql
    assert "PARTITION BY toYYYYMM(occurred_at)\nORDER BY (`event_id`)" in sql
    assert "TTL" not in sql  # events are history: no expiry
    dead = create_table_sql(DEAD_LETTERS, MODERN, "cx")
    assert dead.endswith("TTL toDateTime(`received_at`) + toIntervalDay(90)")


def test_legacy_ddl() -> None:
    for spec in (TOUCHPOINT_EVENTS, DEAD_LETTERS):
        sql = create_table_sql(spec, LEGACY, "cx")
        assert "LowCardinality" not in sql and "DateTime64" not in sql and "TTL" not in sql
        assert "DateTime('UTC')" in sql
        assert "ENGINE = ReplacingMergeTree(" in sql


def test_schema_statements_create_database_first_and_views_by_spec() -> None:
    view = ViewSpec(
        "daily_events",
        "SELECT toDate(occurred_at) AS day, count() AS n "
        "FROM {db}.touchpoint_events FINAL GROUP BY day",
        "Events per day.",
    )
    stmts = schema_statements([*SPECS, view], MODERN, "cx")
    assert stmts[0] == "CREATE DATABASE IF NOT EXISTS `cx`"
    assert len(stmts) == 1 + len(SPECS) + 1
    assert stmts[-1] == (
        "CREATE VIEW IF NOT EXISTS `cx`.`daily_events` AS SELECT toDate("
        "occurred_at) AS day, count() AS n FROM `cx`.touchpoint_events FINAL "
        "GROUP BY day"
    )
    with pytest.raises(SinkConfigError):
        schema_statements(SPECS, MODERN, "cx; DROP")


def test_a_spec_needs_a_column_per_field_and_real_keys() -> None:
    with pytest.raises(TypeError, match="not a column"):
        TableSpec("x", EventRow, order_by=("nope",), partition_by="tuple()", version=None, doc="")


def test_docs_list_every_table_and_column() -> None:
    """docs/clickhouse-tables.md embeds render_markdown(SPECS): regenerate it when it fails
    (python -c 'from cxpulse.sinks.ddl import render_markdown; from cxpulse.schemas.tables import
    SPECS;
    print(render_markdown(SPECS))')."""
    assert render_markdown(SPECS) in DOCS.read_text()


def test_a_takes_event_columns_hold_each_messages_events_partition_and_offset() -> None:
    """The experience step's touchpoint_events part (``event_parts``: a take's messages, as
    columns) is the rows of each message's events with that message's partition and
    offset, in order; no events give every column, empty."""
    from cxpulse.streams.pipeline.rows import event_parts

    first = [event(), event(event_id="7d3c6a52-1111-4a4a-8b8b-000000000002")]
    second = [
        event(
            event_id="7d3c6a52-1111-4a4a-8b8b-000000000003",
            details={"kind": "atm", "cash_dispensed": True, "response_ms": 9.5},
            feedback={"csat": 2, "language": "en", "text": "no cash"},
        )
    ]
    messages = [(first, 0, 11), (second, 3, 5)]
    [(table, columns)] = event_parts(NOW, messages)
    assert table == "touchpoint_events" and len(columns) == len(TOUCHPOINT_EVENTS.columns)
    assert list(zip(*columns, strict=True)) == [
        *event_rows(first, source_partition=0, source_offset=11, ingested_at=NOW),
        *event_rows(second, source_partition=3, source_offset=5, ingested_at=NOW),
    ]
    row = as_dict(list(zip(*columns, strict=True))[2])
    assert (row["cash_dispensed"], row["error_code"], row["csat"]) == (1, "", 2)
    assert (row["source_partition"], row["source_offset"]) == (3, 5)
    [(_, empty)] = event_parts(NOW, [])
    assert empty == [[] for _ in TOUCHPOINT_EVENTS.columns]


def test_moment_and_factor_columns_repeat_each_moments_values_per_factor() -> None:
    """``moment_columns``: a moment's row per moment; a ``moment_factors`` row per factor
    it read, carrying its moment's id, time, customer, channel, touchpoint, tier and
    segment, and the factor's reading, gap and impact."""
    from cxpulse.schemas.score_rows import MOMENT_FACTORS, MOMENTS, moment_columns
    from cxpulse.streams.core import apply_events
    from cxpulse.streams.dev.sample_events import sample_events
    from cxpulse.streams.model_check import load_model

    batch = [record_of(TouchpointEvent.model_validate(e)) for e in sample_events(5)]
    customer = batch[0].customer_id
    mine = [e for e in batch if e.customer_id == customer]
    _, produced = apply_events(None, mine, load_model(), NOW)
    moments = [m for m in produced if m is not None]
    assert len(moments) >= 2
    rows, factors = moment_columns(moments)
    assert len(rows) == len(MOMENTS.columns) and len(factors) == len(MOMENT_FACTORS.columns)
    moment_rows = [dict(zip(MOMENTS.column_names, r, strict=True)) for r in zip(*rows, strict=True)]
    factor_rows = [
        dict(zip(MOMENT_FACTORS.column_names, r, strict=True)) for r in zip(*factors, strict=True)
    ]
    assert len(factor_rows) == sum(len(m.readings) for m in moments)
    shared = ("event_id", "occurred_at", "customer_id", "channel", "touchpoint", "tier", "segment")
    at = 0
    for moment, row in zip(moments, moment_rows, strict=True):
        assert row["event_id"] == str(moment.event_id) and row["valence"] == moment.valence
        for factor, reading in moment.readings.items():
            f = factor_rows[at]
            at += 1
            assert {k: f[k] for k in shared} == {k: row[k] for k in shared}
            assert (f["factor"], f["reading"]) == (factor, reading)
            assert f["gap"] == moment.gaps.get(factor, 0.0)
            assert f["impact"] == moment.impacts.get(factor, 0.0)
    assert moment_columns([]) == (
        [[] for _ in MOMENTS.columns],
        [[] for _ in MOMENT_FACTORS.columns],
    )
