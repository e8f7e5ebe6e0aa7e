"""Sink agents under Faust's test_context(): an insert carries ``sink_batch_size`` rows,
counted from each batch message's ``cxpulse.count`` header, whether the messages hold
many items or one (the ClickHouse round trip itself is covered by tests/integration).
The agent here is the drain of cx.moments, which earlier workers filled with JSON arrays
of moments (today's experience step inserts its rows itself)."""

from __future__ import annotations

import asyncio
import functools
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from cxpulse.schemas.events import TouchpointEvent
from cxpulse.schemas.scoring import Moment
from cxpulse.streams.app import create_app
from cxpulse.streams.core import apply_events
from cxpulse.streams.model_check import load_model
from cxpulse.streams.pipeline.records import record_of
from cxpulse.streams.runtime import COUNT_HEADER, count_headers, items_in
from cxpulse.streams.settings import load_settings

MODEL = load_model()


class Recorder:
    """Stands in for ClickHouse behind the sink writer: records each insert's size."""

    def __init__(self) -> None:
        self.inserts: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def insert(self, table: str, rows: Sequence[Any]) -> int:
        with self.lock:
            self.inserts.append((table, len(rows)))
        return len(rows)

    def moments(self) -> list[tuple[str, int]]:
        with self.lock:
            return [i for i in self.inserts if i[0] == "moments"]

    def query(self, sql: str) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


@functools.cache
def one_moment() -> Moment:
    """The moment of one event, scored by the core."""
    event = TouchpointEvent.model_validate(
        {
            "event_id": str(uuid.UUID(int=1)),
            "occurred_at": "2026-11-20T09:30:00+00:00",
            "customer_id": "cust-0",
            "channel": "web",
            "touchpoint": "web.login",
            "journey_stage": "post_purchase",
            "outcome": "success",
        }
    )
    _, [moment] = apply_events(None, [record_of(event)], MODEL, datetime.now(UTC))
    assert moment is not None
    return moment


def envelope(n: int, start: int) -> bytes:
    """A cx.moments message of an earlier worker: a JSON array of ``n`` moments."""
    moments = [
        msgspec.structs.replace(one_moment(), event_id=uuid.UUID(int=start + i + 1))
        for i in range(n)
    ]
    return msgspec.json.encode(moments)


async def run_sink(
    messages: list[tuple[bytes, int | None]], batch_rows: int, expect: int
) -> Recorder:
    recorder = Recorder()
    settings = load_settings(
        kafka_url="kafka://127.0.0.1:1", sink_batch_size=batch_rows, sink_flush_seconds=30
    )
    app = create_app(settings, connect=lambda: recorder)
    app.finalize()
    app.flow_control.resume()
    async with app.agents["sink_moments"].test_context() as agent:
        for value, count in messages:
            headers = count_headers(count) if count is not None else None
            await agent.put(value, headers=headers)
        for _ in range(300):
            if len(recorder.moments()) >= expect:
                break
            await asyncio.sleep(0.01)
    return recorder


def test_an_insert_carries_the_configured_rows_not_a_number_of_messages() -> None:
    messages = [(envelope(400, 400 * i), 400) for i in range(6)]
    recorder = asyncio.run(run_sink(messages, batch_rows=1000, expect=2))
    # 400 + 400 + 400 reach 1,000 rows: an insert of three messages, twice (by size: the
    # flush interval is 30 s here, longer than the test)
    assert recorder.moments() == [("moments", 1200), ("moments", 1200)]


def test_messages_without_the_header_count_one_row_each() -> None:
    messages = [(envelope(1, i), None) for i in range(6)]
    recorder = asyncio.run(run_sink(messages, batch_rows=3, expect=2))
    assert recorder.moments() == [("moments", 3), ("moments", 3)]


def test_the_count_header_is_read_back_and_bad_values_count_one() -> None:
    class Event:
        def __init__(self, headers: Any) -> None:
            self.headers = headers

    assert items_in(Event(count_headers(500))) == 500
    assert items_in(Event({COUNT_HEADER: b"12"})) == 12
    assert items_in(Event([(COUNT_HEADER, b"lots")])) == 1
    assert items_in(Event([(COUNT_HEADER, b"0")])) == 1
    assert items_in(Event(None)) == 1
