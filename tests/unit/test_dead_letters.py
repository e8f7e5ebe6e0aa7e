"""Dead-letter rows from DLQ records: lineage and sizes from the headers, the source
record's time as received_at, and headers another producer got wrong never stop the sink."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cxpulse.schemas.envelope import Rejected
from cxpulse.schemas.rows import DEAD_LETTERS, dead_letter_id
from cxpulse.streams.agents.sinks import dead_letter_of
from cxpulse.streams.routing import Source, dead_letter_headers

COLUMNS = DEAD_LETTERS.column_names


class Record:
    def __init__(self, value: bytes | None, headers: Any, timestamp: float) -> None:
        self.value = value
        self.headers = headers
        self.message = type("M", (), {"topic": "cx.touchpoints.dlq", "timestamp": timestamp})


def row_of(record: Record) -> dict[str, Any]:
    return dict(zip(COLUMNS, dead_letter_of(record), strict=True))


def test_headers_carry_the_original_size_and_the_source_record_time() -> None:
    cut = Rejected(
        None, b"x" * 5000, "message is 9000000 bytes, over 8388608", "too_large", 9_000_000
    )
    headers = dict(dead_letter_headers(Source("cx.touchpoints", 3, 77, 1_796_083_198_250), cut))
    assert headers["cxpulse.source.bytes"] == b"9000000"
    assert headers["cxpulse.source.timestamp"] == b"1796083198250"
    plain = dict(dead_letter_headers(Source("cx.touchpoints", 3, 78), Rejected(2, b"{}", "r")))
    assert plain["cxpulse.source.bytes"] == b"2"
    assert "cxpulse.source.timestamp" not in plain  # unknown: the sink falls back


def test_row_uses_the_source_time_and_the_original_size() -> None:
    headers = [
        ("cxpulse.reason", b"message is 9000000 bytes, over 8388608"),
        ("cxpulse.source.topic", b"cx.touchpoints"),
        ("cxpulse.source.partition", b"3"),
        ("cxpulse.source.offset", b"77"),
        ("cxpulse.source.index", b"-1"),
        ("cxpulse.source.bytes", b"9000000"),
        ("cxpulse.source.timestamp", b"946684800000"),  # 2000-01-01T00:00:00Z
    ]
    row = row_of(Record(b"[" * 1024, headers, timestamp=1_800_000_000.0))
    assert row["received_at"] == datetime(2000, 1, 1, tzinfo=UTC)
    assert row["payload_bytes"] == 9_000_000
    assert row["dead_letter_id"] == dead_letter_id("cx.touchpoints", 3, 77, None)
    assert (row["source_partition"], row["source_offset"], row["source_index"]) == (3, 77, -1)


def test_records_without_the_new_headers_fall_back_to_their_own_time_and_length() -> None:
    row = row_of(Record(b"abc", {"cxpulse.reason": b"old worker"}, timestamp=946684800.5))
    assert row["received_at"] == datetime(2000, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert row["payload_bytes"] == 3
    assert row["source_topic"] == "cx.touchpoints.dlq"
    assert (row["source_partition"], row["source_offset"], row["source_index"]) == (-1, -1, -1)


def test_junk_headers_from_another_producer_do_not_raise() -> None:
    headers = {
        "cxpulse.source.partition": b"three",
        "cxpulse.source.offset": b"",
        "cxpulse.source.index": b"\xff",
        "cxpulse.source.bytes": b"-",
        "cxpulse.source.timestamp": b"99999999999999999999",  # far beyond any datetime
    }
    row = row_of(Record(None, headers, timestamp=946684800.0))
    assert row["received_at"] == datetime(2000, 1, 1, tzinfo=UTC)
    assert (row["source_partition"], row["source_offset"], row["source_index"]) == (-1, -1, -1)
    assert (row["payload"], row["payload_bytes"], row["reason"]) == ("", 0, "unknown")
