"""The validate step (the first of the experience agent's, for raw messages) under Faust's
test_context(): what it sends where, and what it keeps to score where it is.

Sends to other topics leave the process, so they are captured here instead of produced;
the Kafka round trip itself is covered by tests/integration.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from cxpulse.schemas.rows import TOUCHPOINT_EVENTS
from cxpulse.streams.app import create_app
from cxpulse.streams.partitioning import partition_for
from cxpulse.streams.pipeline.records import decode_events
from cxpulse.streams.settings import load_settings
from tests.agents.fakes import Recorder, put_on

PARTITIONS = 4


def event(customer: str = "cust-1", **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-20T09:30:00+00:00",
        "customer_id": customer,
        "channel": "atm",
        "touchpoint": "atm.withdrawal",
        "touchpoint_instance": "ATM-0042",
        "journey_stage": "post_purchase",
        "outcome": "failure",
        "details": {"kind": "atm", "error_code": "E-CASH-JAM"},
    }
    doc.update(overrides)
    return doc


def elsewhere(value: bytes) -> int:
    """A partition none of the message's customers belong to (0 when it cannot be read):
    put there, every valid event of it goes on through cx.events."""
    try:
        doc = json.loads(value)
        items = doc if isinstance(doc, list) else [doc]
        theirs = {partition_for(str(i["customer_id"]), PARTITIONS) for i in items}
    except (ValueError, TypeError, KeyError, RecursionError):
        return 0
    return next((p for p in range(PARTITIONS) if p not in theirs), 0)


async def run_validate(
    messages: list[bytes] | list[tuple[bytes, int, float]],
    sent: list[dict[str, Any]],
    expect: int,
    *,
    partition: int | None = None,
    rows: Recorder | None = None,
    scored: int = 0,
) -> dict[str, Any]:
    """Put each message (or ``(value, offset, record timestamp)``) on the raw topic, on
    ``partition`` (by default one where none of its customers is: see ``elsewhere``),
    until ``expect`` sends and ``scored`` touchpoint_events rows; the customer states."""
    settings = load_settings(
        kafka_url="kafka://127.0.0.1:1",
        partitions=PARTITIONS,
        sink_flush_seconds=0.05,
        state_store="memory",
    )
    rows = rows or Recorder()
    app = create_app(settings, connect=lambda: rows)  # type: ignore[arg-type,return-value]
    app.finalize()
    app.flow_control.resume()
    table = app.tables["customer_state"]
    async with app.agents["experience"].test_context() as agent:
        for message in messages:
            timestamp = None
            if isinstance(message, bytes):
                value = message
            else:
                value, agent.sent_offset, timestamp = message  # a replay: the same offset
            where = elsewhere(value) if partition is None else partition
            await put_on(agent, "cx.touchpoints", value, partition=where, timestamp=timestamp)
        for _ in range(600):
            if len(sent) >= expect and len(rows.rows.get("touchpoint_events", ())) >= scored:
                break
            await asyncio.sleep(0.01)
    return {k.decode(): v for k, v in table.items()}


def test_valid_events_are_batched_by_customer_partition(sent: list[dict[str, Any]]) -> None:
    """Events of customers of other partitions than their message's go on through
    cx.events, batched by their customer's partition."""
    customers = [c for c in (f"cust-{i}" for i in range(40)) if partition_for(c, PARTITIONS)][:12]
    batch = json.dumps([event(c) for c in customers]).encode()
    single = json.dumps(event("cust-0")).encode()
    expected_partitions = {partition_for(c, PARTITIONS) for c in [*customers, "cust-0"]}

    asyncio.run(run_validate([batch, single], sent, len(expected_partitions)))

    to_events = [s for s in sent if s["topic"] == "cx.events"]
    assert {s["partition"] for s in to_events} == expected_partitions
    seen = []
    for s in to_events:
        events, rejected = decode_events(s["value"])
        assert rejected == []
        assert {partition_for(e.customer_id, PARTITIONS) for e in events} == {s["partition"]}
        seen.extend(e.customer_id for e in events)
    assert sorted(seen) == sorted([*customers, "cust-0"])
    assert not [s for s in sent if s["topic"] == "cx.touchpoints.dlq"]


def test_the_customers_of_the_messages_own_partition_are_scored_there(
    sent: list[dict[str, Any]],
) -> None:
    """A raw message's events of customers of its own partition take no hop: they are
    scored from it (their rows say so: the raw topic's partition and offset); the others
    go on through cx.events to their partitions; every event goes to the health step."""
    customers = [f"cust-{i}" for i in range(12)]
    docs = [event(c) for c in customers]
    here = [c for c in customers if partition_for(c, PARTITIONS) == 0]
    others = {partition_for(c, PARTITIONS) for c in customers} - {0}
    assert here and others  # the customers are spread over the partitions
    rows = Recorder()

    states = asyncio.run(
        run_validate(
            [json.dumps(docs).encode()],
            sent,
            len(others) + 1,  # cx.events partitions, and at least one cx.health message
            partition=0,
            rows=rows,
            scored=len(here),
        )
    )

    assert sorted(states) == sorted(here)
    to_events = [s for s in sent if s["topic"] == "cx.events"]
    assert {s["partition"] for s in to_events} == others
    forwarded = [e.customer_id for s in to_events for e in decode_events(s["value"])[0]]
    assert sorted(forwarded) == sorted(set(customers) - set(here))
    to_health = [e for s in sent if s["topic"] == "cx.health" for e in decode_events(s["value"])[0]]
    assert sorted(e.customer_id for e in to_health) == sorted(customers)
    scored = rows.docs("touchpoint_events", TOUCHPOINT_EVENTS)
    assert sorted(d["customer_id"] for d in scored) == sorted(here)
    assert {(d["source_partition"], d["source_offset"]) for d in scored} == {(0, 0)}


def test_bad_event_goes_to_dlq_without_its_batch_mates(sent: list[dict[str, Any]]) -> None:
    bad = event("cust-9", channel="fax")
    good = event("cust-1")
    batch = json.dumps([good, bad]).encode()

    asyncio.run(run_validate([batch, b"not json at all"], sent, 3))

    dlq = [s for s in sent if s["topic"] == "cx.touchpoints.dlq"]
    assert len(dlq) == 2
    headers = [dict(s["headers"]) for s in dlq]
    by_index = {h["cxpulse.source.index"]: (h, s) for h, s in zip(headers, dlq, strict=True)}
    item_headers, item_sent = by_index[b"1"]
    assert b"channel" in item_headers["cxpulse.reason"]
    assert json.loads(item_sent["value"]) == bad
    whole_headers, whole_sent = by_index[b"-1"]
    assert whole_sent["value"] == b"not json at all"
    assert whole_headers["cxpulse.reason"].startswith(b"not JSON")
    assert whole_headers["cxpulse.source.topic"] == b"cx.touchpoints"

    to_events = [s for s in sent if s["topic"] == "cx.events"]
    assert len(to_events) == 1
    events, _ = decode_events(to_events[0]["value"])
    assert [str(e.event_id) for e in events] == [good["event_id"]]


def test_messages_that_used_to_crash_the_agent_go_to_the_dlq(sent: list[dict[str, Any]]) -> None:
    """A deeply nested array and a batch with a 5,000-digit integer once raised out of the
    agent (the partition stopped committing and crashed again after a restart); now each
    is a dead letter, and the messages around them go on."""
    deep = b"[" * 100_000 + b"]" * 100_000
    big_int = b'[{"attributes": {"n": ' + b"1" * 5000 + b"}}]"
    before, after = event("cust-1"), event("cust-2")
    messages = [json.dumps(before).encode(), deep, big_int, json.dumps([after]).encode()]

    asyncio.run(run_validate(messages, sent, 4))

    dlq = [s for s in sent if s["topic"] == "cx.touchpoints.dlq"]
    reasons = sorted(dict(s["headers"])["cxpulse.reason"] for s in dlq)
    assert [dict(s["headers"])["cxpulse.reason_kind"] for s in dlq] == [b"not_json"] * 2
    assert reasons[0].startswith(b"not JSON: a number has too many digits")
    assert reasons[1].startswith(b"not JSON: nested too deeply")
    forwarded = [
        str(e.event_id)
        for s in sent
        if s["topic"] == "cx.events"
        for e in decode_events(s["value"])[0]
    ]
    assert sorted(forwarded) == sorted([before["event_id"], after["event_id"]])


def test_an_unexpected_error_on_one_message_dead_letters_it_and_the_rest_go_on(
    sent: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cxpulse.streams import metrics, routing

    poison = json.dumps(event("cust-poison")).encode()
    real = routing.decode

    def decode(raw: bytes | None) -> Any:
        if raw == poison:
            raise RuntimeError("a bug nobody foresaw")
        return real(raw)

    monkeypatch.setattr(routing, "decode", decode)
    counted = metrics.EVENTS_INVALID.labels("internal_error")
    before_count = counted._value.get()
    good = event("cust-3")

    asyncio.run(run_validate([poison, json.dumps([good]).encode()], sent, 2))

    [dead] = [s for s in sent if s["topic"] == "cx.touchpoints.dlq"]
    headers = dict(dead["headers"])
    assert dead["value"] == poison
    assert (
        headers["cxpulse.reason"]
        == b"could not process the message: RuntimeError: a bug nobody foresaw"
    )
    assert headers["cxpulse.source.index"] == b"-1"
    assert counted._value.get() == before_count + 1
    [forwarded] = [s for s in sent if s["topic"] == "cx.events"]
    assert [str(e.event_id) for e in decode_events(forwarded["value"])[0]] == [good["event_id"]]


class _Record:
    """What the dead-letter sink reads of a DLQ record: value, headers, record time."""

    def __init__(self, sent: dict[str, Any], timestamp: float) -> None:
        self.value = sent["value"]
        self.headers = sent["headers"]
        self.message = type("M", (), {"topic": "cx.touchpoints.dlq", "timestamp": timestamp})


def test_a_replayed_invalid_message_yields_the_very_same_dead_letter_row(
    sent: list[dict[str, Any]],
) -> None:
    """After a restart the same source record is validated again and its dead letter is
    produced again, later (another record time, maybe another month): the row is the same,
    received_at included, because it comes from the source record's timestamp."""
    from datetime import UTC, datetime

    from cxpulse.streams.agents.sinks import dead_letter_of

    source_time = datetime(2026, 11, 30, 23, 59, 58, 250000, tzinfo=UTC).timestamp()
    bad = json.dumps([event("cust-1"), event("cust-2", channel="fax")]).encode()

    asyncio.run(run_validate([(bad, 41, source_time), (bad, 41, source_time)], sent, 2))

    first, replay = [s for s in sent if s["topic"] == "cx.touchpoints.dlq"]
    assert (
        dict(first["headers"])["cxpulse.source.timestamp"] == b"1796083198250"
    )  # by hand: 20787 days + 86398.25 s
    december = datetime(2026, 12, 1, 0, 5, tzinfo=UTC).timestamp()  # the replay, a month on
    row = dead_letter_of(_Record(first, source_time + 0.5))
    assert dead_letter_of(_Record(replay, december)) == row
    assert row[1] == datetime(2026, 11, 30, 23, 59, 58, 250000, tzinfo=UTC)  # received_at
    assert (row[4], row[5]) == (41, 1)  # source offset, index


def test_an_oversize_message_dead_letter_says_its_real_size(sent: list[dict[str, Any]]) -> None:
    from cxpulse.schemas.envelope import MAX_MESSAGE_BYTES
    from cxpulse.streams.agents.sinks import dead_letter_of

    huge = b"[" + b" " * MAX_MESSAGE_BYTES + b"]"

    asyncio.run(run_validate([huge], sent, 1))

    [dead] = [s for s in sent if s["topic"] == "cx.touchpoints.dlq"]
    assert len(dead["value"]) == 1024
    assert dict(dead["headers"])["cxpulse.source.bytes"] == str(MAX_MESSAGE_BYTES + 2).encode()
    row = dead_letter_of(_Record(dead, 1.0))
    assert row[-1] == MAX_MESSAGE_BYTES + 2  # payload_bytes: the message, not the 1 KiB kept
