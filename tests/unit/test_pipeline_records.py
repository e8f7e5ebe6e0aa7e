"""Trusted records and rows between a worker's steps (cxpulse.streams.pipeline): what the validate
step encodes, the next steps decode to the same values without validating again; the
earlier JSON format still reads; rows arrive in the sink as the step computed them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any, get_args
from uuid import UUID

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from cxpulse.schemas.envelope import encode_batch
from cxpulse.schemas.events import ChannelDetails, TouchpointEvent
from cxpulse.schemas.events import Feedback as Feedback_
from cxpulse.schemas.score_rows import moment_rows, score_row
from cxpulse.streams.core import apply_events, score_update
from cxpulse.streams.model_check import load_model
from cxpulse.streams.pipeline.records import (
    _DETAILS,
    FORMAT,
    Event,
    EventHead,
    Feedback,
    decode_events,
    decode_heads,
    encode_events,
    head_of,
    record_of,
)
from cxpulse.streams.pipeline.rows import moment_rows_of, moments_of, scores_of

START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

DETAILS: dict[str, Any] = {
    "web": {"kind": "web", "latency_ms": 850.0, "http_status": 200, "page": "/login"},
    "app": {"kind": "app", "latency_ms": 400.5, "os": "ios", "steps": 3, "app_version": "9.1"},
    "call_center": {"kind": "call_center", "wait_seconds": 300.0, "transfers": 2, "queue": "q"},
    "store": {"kind": "store", "queue_seconds": 600.0, "terminal_id": "T-1"},
    "atm": {"kind": "atm", "error_code": "E-CASH-JAM", "cash_dispensed": False},
}

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


@st.composite
def events(draw: st.DrawFn) -> TouchpointEvent:
    channel = draw(st.sampled_from(sorted(DETAILS)))
    doc: dict[str, Any] = {
        "event_id": str(UUID(int=draw(st.integers(0, 2**128 - 1)))),
        "occurred_at": (START + timedelta(microseconds=draw(st.integers(0, 10**12))))
        .astimezone(draw(st.sampled_from([UTC, datetime.now().astimezone().tzinfo])))
        .isoformat(),
        "customer_id": draw(st.from_regex(r"C-[0-9]{1,6}", fullmatch=True)),
        "channel": channel,
        "touchpoint": f"{channel}.thing",
        "journey_stage": draw(st.sampled_from(["pre_purchase", "purchase", "post_purchase"])),
        "outcome": draw(st.sampled_from(["success", "failure", "abandoned"])),
    }
    if draw(st.booleans()):
        doc["details"] = DETAILS[channel]
    if draw(st.booleans()):
        doc["feedback"] = {"csat": draw(st.integers(1, 5)), "text": draw(texts) or "ok"}
    for name in ("touchpoint_instance", "journey_id", "segment"):
        if draw(st.booleans()):
            doc[name] = draw(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True))
    if draw(st.booleans()):
        doc["tier"] = draw(st.sampled_from("ABC"))
    if draw(st.booleans()):
        doc["attributes"] = {
            "n": draw(st.integers(-(2**40), 2**40)),
            "f": draw(st.floats(allow_nan=False, allow_infinity=False)),
            "s": draw(texts),
            "b": draw(st.booleans()),
        }
    return TouchpointEvent.model_validate(doc)


@settings(max_examples=200, deadline=None)
@given(st.lists(events(), min_size=1, max_size=8))
def test_records_round_trip_to_the_same_event(batch: list[TouchpointEvent]) -> None:
    records = [record_of(e) for e in batch]
    message = encode_events(records)
    assert message[:2] == FORMAT
    decoded, rejected = decode_events(message)
    assert rejected == []
    assert decoded == records
    for event, record in zip(batch, decoded, strict=True):
        # The dead-letter form validates back to the very event.
        assert TouchpointEvent.model_validate_json(record.to_json()) == event
        assert record.occurred_at == event.occurred_at
        assert record.event_id == event.event_id


def field_by_field(event: TouchpointEvent) -> Event:
    """A record read attribute by attribute and keyword by keyword (what ``record_of``
    reads from the models' ``__dict__`` in order, for speed)."""
    d, f = event.details, event.feedback
    return Event(
        event_id=event.event_id,
        occurred_at=event.occurred_at,
        customer_id=event.customer_id,
        channel=event.channel,
        touchpoint=event.touchpoint,
        journey_stage=event.journey_stage,
        outcome=event.outcome,
        schema_version=event.schema_version,
        touchpoint_instance=event.touchpoint_instance,
        journey_id=event.journey_id,
        intent=event.intent,
        details=None
        if d is None
        else _DETAILS[d.kind](**{k: getattr(d, k) for k in type(d).model_fields if k != "kind"}),
        feedback=None
        if f is None
        else Feedback(**{k: getattr(f, k) for k in Feedback_.model_fields}),
        tier=event.tier,
        segment=event.segment,
        attributes=event.attributes,
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(events(), min_size=1, max_size=8))
def test_record_of_reads_every_field_where_it_belongs(batch: list[TouchpointEvent]) -> None:
    for event in batch:
        record = record_of(event)
        assert record == field_by_field(event)
        assert encode_events([record]) == encode_events([field_by_field(event)])


@settings(max_examples=200, deadline=None)
@given(st.lists(events(), min_size=1, max_size=8))
def test_a_record_reads_as_its_head(batch: list[TouchpointEvent]) -> None:
    """What the health step reads: each record's first fields, the same values as the
    whole record's, from either wire form (records, or the JSON of earlier workers)."""
    whole = [record_of(e) for e in batch]
    heads = [head_of(r) for r in whole]
    assert all(type(h) is EventHead for h in heads)
    for h, r in zip(heads, whole, strict=True):
        assert {f: getattr(h, f) for f in EventHead.__struct_fields__} == {
            f: getattr(r, f) for f in EventHead.__struct_fields__
        }
    assert decode_heads(encode_events(whole)) == (heads, [])
    assert decode_heads(encode_batch(batch)) == (heads, [])


def test_a_head_is_the_start_of_a_record() -> None:
    """A record is its head's fields, then its own (``Event`` extends ``EventHead``): a
    record decodes as its head while this holds (msgspec skips an array's trailing
    fields)."""
    n = len(EventHead.__struct_fields__)
    assert issubclass(Event, EventHead)
    assert Event.__struct_fields__[:n] == EventHead.__struct_fields__
    assert Event.__struct_config__.array_like and EventHead.__struct_config__.array_like


def test_the_models_keep_their_fields_in_their_records_order() -> None:
    """``record_of`` reads a details or feedback model's values in order into its record."""
    model = {d.model_fields["kind"].default: d for d in get_args(get_args(ChannelDetails)[0])}
    assert set(model) == set(_DETAILS)
    for kind, record_type in _DETAILS.items():
        assert list(model[kind].model_fields) == ["kind", *record_type.__struct_fields__]
    assert list(Feedback_.model_fields) == list(Feedback.__struct_fields__)
    assert set(TouchpointEvent.model_fields) == set(Event.__struct_fields__)


@settings(max_examples=25, deadline=None)
@given(st.lists(events(), min_size=1, max_size=8))
def test_event_ids_travel_as_their_16_bytes_and_records_with_the_text_still_read(
    batch: list[TouchpointEvent],
) -> None:
    """A record's event id is a msgpack binary of its 16 bytes; records of earlier
    workers, which carry the canonical text, decode to the same records and heads."""
    records = [record_of(e) for e in batch]
    message = encode_events(records)
    items = msgspec.msgpack.decode(message[2:])
    assert [item[0] for item in items] == [r.event_id.bytes for r in records]
    earlier = FORMAT + msgspec.msgpack.encode(records)  # the text, as earlier workers wrote
    assert [item[0] for item in msgspec.msgpack.decode(earlier[2:])] == [
        str(r.event_id) for r in records
    ]
    assert decode_events(earlier) == decode_events(message) == (records, [])
    assert decode_heads(earlier) == decode_heads(message)
    assert len(message) < len(earlier)


def test_a_message_of_the_earlier_json_format_is_still_read() -> None:
    event = TouchpointEvent.model_validate(
        {
            "event_id": str(UUID(int=7)),
            "occurred_at": START.isoformat(),
            "customer_id": "C-1",
            "channel": "atm",
            "touchpoint": "atm.withdrawal",
            "journey_stage": "post_purchase",
            "outcome": "failure",
            "details": DETAILS["atm"],
        }
    )
    bad = json.dumps({"event_id": "nope"}).encode()
    legacy = b"[" + encode_batch([event])[1:-1] + b"," + bad + b"]"
    decoded, rejected = decode_events(legacy)
    assert decoded == [record_of(event)]
    assert [r.index for r in rejected] == [1]


def test_the_core_gives_the_same_result_on_records_and_on_models() -> None:
    model = load_model()
    batch = [
        TouchpointEvent.model_validate(
            {
                "event_id": str(UUID(int=i + 1)),
                "occurred_at": (START + timedelta(minutes=3 * i)).isoformat(),
                "customer_id": "C-1",
                "channel": channel,
                "touchpoint": f"{channel}.thing",
                "journey_stage": "post_purchase",
                "outcome": "failure" if i % 3 == 0 else "success",
                "details": DETAILS[channel],
                "feedback": {"csat": 1 + i % 5},
                "tier": "A",
            }
        )
        for i, channel in enumerate(sorted(DETAILS) * 3)
    ]
    now = START + timedelta(days=1)
    from_models, moments_a = apply_events(None, batch, model, now)
    from_records, moments_b = apply_events(None, [record_of(e) for e in batch], model, now)
    assert from_records == from_models
    assert moments_b == moments_a
    assert score_update(from_records, model) == score_update(from_models, model)


def test_rows_arrive_in_the_sink_as_the_step_computed_them() -> None:
    model = load_model()
    records = [
        Event(
            event_id=UUID(int=i + 1),
            occurred_at=START + timedelta(minutes=i, microseconds=1234),
            customer_id=f"C-{i % 2}",
            channel="web",
            touchpoint="web.login",
            journey_stage="purchase",
            outcome="failure" if i % 2 else "success",
            tier="B",
        )
        for i in range(6)
    ]
    state, produced = apply_events(None, records[::2], model, START + timedelta(days=1))
    moments = [m for m in produced if m is not None]
    rows, factors = moment_rows_of(moments)
    expected = [moment_rows(m) for m in moments]
    assert rows == [row for row, _ in expected]
    assert factors == [f for _, fs in expected for f in fs]
    # A backlog of an earlier worker's JSON messages drains to the very same rows.
    legacy = msgspec.json.encode(moments)
    assert moments_of(legacy) == (rows, factors)
    update = score_update(state, model)
    assert scores_of(msgspec.json.encode([update])) == [score_row(update)]
