"""The validate step as a function: one message that cannot be handled at all becomes a
dead letter with the reason, and every other message of the batch still goes on."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from cxpulse.schemas import envelope
from cxpulse.streams import routing
from cxpulse.streams.partitioning import partition_for
from cxpulse.streams.routing import Source, dead_letter_headers, route

PARTITIONS = 4


def event(customer: str = "C-1") -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-20T09:30:00+00:00",
        "customer_id": customer,
        "channel": "web",
        "touchpoint": "web.login",
        "journey_stage": "post_purchase",
        "outcome": "success",
    }


def src(offset: int) -> Source:
    return Source("cx.touchpoints", 2, offset)


def test_messages_that_used_to_raise_become_not_json_dead_letters() -> None:
    good = event("C-7")
    deep = b"[" * 100_000 + b"]" * 100_000
    big_int = b'[{"n": ' + b"1" * 5000 + b"}]"
    routed = route(
        [(src(0), deep), (src(1), json.dumps([good]).encode()), (src(2), big_int)], PARTITIONS
    )
    assert {p: [e.customer_id for e in es] for p, es in routed.by_partition.items()} == {
        partition_for("C-7", PARTITIONS): ["C-7"]
    }
    assert [(s.offset, r.kind) for s, r in routed.rejected] == [(0, "not_json"), (2, "not_json")]


def test_an_exception_while_handling_one_message_dead_letters_that_message_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever the cause (here a decoder bug, simulated), the message goes to the DLQ
    whole with the exception in the reason, and its batch-mates are routed as usual."""
    poison = b'{"poison": true}'
    real = routing.decode

    def decode(raw: bytes | None) -> Any:
        if raw == poison:
            raise KeyError("boom")
        return real(raw)

    monkeypatch.setattr(routing, "decode", decode)
    first, last = event("C-1"), event("C-2")
    routed = route(
        [
            (src(10), json.dumps(first).encode()),
            (src(11), poison),
            (src(12), json.dumps([last]).encode()),
        ],
        PARTITIONS,
    )
    assert sorted(e.customer_id for es in routed.by_partition.values() for e in es) == [
        "C-1",
        "C-2",
    ]
    assert routed.valid_count == 2
    [(source, rejected)] = routed.rejected
    assert source.offset == 11
    assert (rejected.index, rejected.kind, rejected.raw) == (None, "internal_error", poison)
    assert rejected.reason == "could not process the message: KeyError: 'boom'"


def test_a_failure_after_decoding_routes_no_part_of_that_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The health key of the second event raises: neither event of that message may be
    forwarded (the whole message is in the DLQ), or its first event would be both."""
    calls = {"n": 0}
    real = routing.health_key

    def health_key(e: Any) -> str:
        calls["n"] += 1
        if e.customer_id == "C-bad":
            raise ValueError("no key")
        return real(e)

    monkeypatch.setattr(routing, "health_key", health_key)
    message = json.dumps([event("C-ok"), event("C-bad")]).encode()
    routed = route([(src(0), message), (src(1), json.dumps(event("C-3")).encode())], PARTITIONS)
    assert [e.customer_id for es in routed.by_partition.values() for e in es] == ["C-3"]
    assert [e.customer_id for es in routed.by_health_partition.values() for e in es] == ["C-3"]
    assert [(s.offset, r.kind, r.raw) for s, r in routed.rejected] == [
        (0, "internal_error", message)
    ]


def test_headers_are_one_line_utf8_whatever_the_reason_quotes() -> None:
    rejected = envelope.Rejected(None, b"x", "first line\nsecond \udc80 line", "internal_error")
    headers = dict(dead_letter_headers(src(5), rejected))
    assert headers["cxpulse.reason"] == b"first line second ? line"


def test_each_partition_goes_on_in_event_time_whatever_the_delivery_order() -> None:
    """Messages taken together come round-robin from source partitions that sit at
    different points in event time (a catch-up); what goes on is in event time, so the
    health state's allowed lateness does not drop the backlog of a lagging partition."""

    def at(hour: int, minute: int = 0, customer: str = "C-1") -> dict[str, Any]:
        return dict(event(customer), occurred_at=f"2026-11-20T{hour:02}:{minute:02}:00+00:00")

    ahead = [at(h) for h in (14, 15, 16)]  # a source partition that got further
    behind = [at(h, 30) for h in (10, 11, 12)]  # one that lags hours behind
    tie = [at(15, customer="C-1"), at(15, customer="C-1")]
    messages = [
        (Source("cx.touchpoints", 0, 0), json.dumps(ahead).encode()),
        (Source("cx.touchpoints", 1, 0), json.dumps(behind).encode()),
        (Source("cx.touchpoints", 1, 1), json.dumps(tie).encode()),
    ]
    routed = route(messages, PARTITIONS)
    expected = sorted(ahead + behind + tie, key=lambda e: e["occurred_at"])  # stable
    for lists in (routed.by_partition, routed.by_health_partition):
        (events,) = lists.values()
        assert [str(e.event_id) for e in events] == [e["event_id"] for e in expected]


def test_an_attribute_integer_beyond_64_bits_is_carried_as_its_text_not_a_stuck_step() -> None:
    """The contract allows an attribute integer of any size; the internal topics carry
    msgpack, which has none beyond 64 bits. Such an event used to pass validation and then
    raise while its batch was encoded, outside the routing's guard, at every restart: it
    is now carried with that value as its decimal text, the rest of the batch as it was."""
    from cxpulse.streams.pipeline.records import decode_events, encode_events

    values = (2**64 - 1, -(2**63), 2**64, -(2**63) - 1, 10**400)
    events = [event(f"C-{i}") | {"attributes": {"n": n, "k": "v"}} for i, n in enumerate(values)]
    routed = route([(src(0), json.dumps(events).encode())], PARTITIONS)
    assert routed.rejected == []
    kept = [e for events in routed.by_partition.values() for e in events]
    decoded, rejected = decode_events(encode_events(kept))
    assert rejected == []
    carried = {e.customer_id: e.attributes for e in decoded}
    assert carried["C-0"] == {"n": 2**64 - 1, "k": "v"} and carried["C-1"]["n"] == -(2**63)
    assert carried["C-2"] == {"n": str(2**64), "k": "v"}
    assert carried["C-3"]["n"] == str(-(2**63) - 1) and carried["C-4"]["n"] == str(10**400)


def test_local_keeps_the_events_of_the_messages_own_partition_with_it() -> None:
    """``local=True`` (the experience step reading raw input): each message's events of
    customers of its own partition stay with it, in its order, and are in no group of
    customers; every valid event is still in a group of instances; rejects as ever."""
    customers = [f"C-{i}" for i in range(16)]
    here = [c for c in customers if partition_for(c, PARTITIONS) == 2]
    assert here and len(here) < len(customers)
    docs = [event(c) for c in customers]
    bad = dict(event("C-x"), channel="fax")
    routed = route(
        [(src(0), json.dumps([*docs[:8], bad, *docs[8:]]).encode()), (src(1), b"{oops")],
        PARTITIONS,
        local=True,
    )
    first, second = routed.messages
    assert [e.customer_id for e in first.local] == here
    assert [e.customer_id for e in first.events] == customers  # for the positions
    assert [r.index for r in first.rejected] == [8]
    assert second.events == second.local == [] and [r.kind for r in second.rejected] == ["not_json"]
    grouped = [e.customer_id for es in routed.by_partition.values() for e in es]
    assert sorted(grouped) == sorted(set(customers) - set(here))
    assert 2 not in routed.by_partition
    assert routed.valid_count == len(customers)
    assert [(s.offset, r.index) for s, r in routed.rejected] == [(0, 8), (1, None)]
    # without it, as before: every event grouped by its customer's partition
    assert route([(src(0), json.dumps(docs).encode())], PARTITIONS).messages == []
