"""The one-pass decode at the boundary (``cxpulse.streams.pipeline.decode``: msgspec reads a
message straight into structs with the contract's bounds) against pydantic
(``decode_message``, then ``record_of``): whenever it returns records, pydantic accepts
every item of the message and gives the very same records, byte for byte once encoded
(types, attribute order, times); whenever it does not, the message is left to pydantic,
which gives the events and the reasons of the rejects. What publishers send (the
contract's canonical JSON) takes the one pass.

The messages are the generated ones of ``test_batch_fast_path``: every field in the lax
forms pydantic accepts and just out of its bounds, wrong JSON types, missing, unknown and
repeated keys, numbers both parsers may read apart, lone surrogates, invalid UTF-8.
"""

from __future__ import annotations

import json
import sys
from typing import Any, get_args

import msgspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cxpulse.schemas.envelope import decode_message, encode_batch
from cxpulse.schemas.events import ChannelDetails, TouchpointEvent
from cxpulse.schemas.events import Feedback as Feedback_
from cxpulse.streams.pipeline import decode
from cxpulse.streams.pipeline.decode import records_of
from cxpulse.streams.pipeline.records import Event, encode_events, record_of
from cxpulse.streams.routing import Source, route
from tests.unit.test_batch_fast_path import (
    DETAILS,
    EVENT,
    FEEDBACK,
    FIELDS,
    ITEM_BY_ITEM,
    ONE_CALL,
    Obj,
    Style,
    batch,
    dump,
    messages,
)
from tests.unit.test_pipeline_records import events


def check(message: bytes | None) -> bool:
    """The property for one message; True when the one pass took it."""
    fast = records_of(message)
    events_, rejected = decode_message(message)
    if fast is not None:
        assert rejected == [], [r.reason for r in rejected]
        slow = [record_of(e) for e in events_]
        assert fast == slow
        assert encode_events(fast) == encode_events(slow)
        for a, b in zip(fast, slow, strict=True):
            assert list(a.attributes) == list(b.attributes)
            assert [type(v) for v in a.attributes.values()] == [
                type(v) for v in b.attributes.values()
            ]
    return fast is not None


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=messages())
def test_what_the_one_pass_accepts_pydantic_accepts_as_the_same_records(message: bytes) -> None:
    event("one pass" if check(message) else "pydantic")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=messages(rate=0))
def test_valid_batches_in_every_lax_form(message: bytes) -> None:
    event("one pass" if check(message) else "pydantic")


@st.composite
def one_value_changed(draw: st.DrawFn) -> bytes:
    """A batch of the contract's canonical JSON where one event has one value, at the top,
    in its details or in its feedback, drawn from that field's values, good (at and near
    its bounds, in every lax form) or bad: most events here are what the one pass reads."""
    docs = [
        json.loads(e.model_dump_json(exclude_none=True))
        for e in draw(st.lists(events(), min_size=1, max_size=4))
    ]
    doc = draw(st.sampled_from(docs))
    where, fields = doc, FIELDS
    if "details" in doc and draw(st.booleans()):
        where, fields = doc["details"], DETAILS[doc["details"]["kind"]]
    elif "feedback" in doc and draw(st.booleans()):
        where, fields = doc["feedback"], FEEDBACK
    name = draw(st.sampled_from(sorted(fields)))
    where[name] = draw(st.one_of(fields[name].good, fields[name].bad))
    return dump(_objects(docs), Style(False, ""))


def _objects(value: Any) -> Any:
    """Dicts as ``Obj`` (the test writer's objects), however deep."""
    if isinstance(value, dict):
        return Obj(tuple((k, _objects(v)) for k, v in value.items()))
    if isinstance(value, list):
        return [_objects(v) for v in value]
    return value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=one_value_changed())
def test_one_value_changed_in_canonical_events(message: bytes) -> None:
    event("one pass" if check(message) else "pydantic")


@settings(max_examples=200, deadline=None)
@given(st.lists(events(), min_size=1, max_size=8))
def test_what_publishers_send_takes_the_one_pass(batch_: list[TouchpointEvent]) -> None:
    """The contract's own JSON of valid events (as the SDK and the simulator write it),
    as a batch and one by one."""
    message = encode_batch(batch_)
    assert check(message)
    assert records_of(message) == [record_of(e) for e in batch_]
    for e in batch_:
        assert records_of(e.model_dump_json().encode()) == [record_of(e)]


def test_route_gives_the_same_partitions_and_dead_letters_either_way() -> None:
    good, bad = batch(), batch(',"attributes":{"n":NaN}')
    routed = route([(Source("t", 0, 0), good), (Source("t", 0, 1), bad)], 4)
    assert routed.valid_count == 3
    assert [(s.offset, r.index, r.kind) for s, r in routed.rejected] == [(1, 0, "string_type")]


def of_customers(*ids: str) -> bytes:
    """A batch of the template event, one a customer id (as JSON text)."""
    items = [EVENT.replace('"C-1"', json.dumps(i)) % "" for i in ids]
    return ("[" + ",".join(items) + "]").encode()


def test_identifiers_known_to_match_are_not_searched_again_and_new_ones_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The identifiers' patterns are searched after the decode, on a batch's values not
    known to match yet (``decode._Matched``): a known value passes without a search, a
    new one that does not match sends the message to pydantic however many known values
    are beside it, and the values kept are bounded (``KEEP``), then searched again."""
    customers = next(m for m in decode._MATCHED if m.name == "customer_id")
    assert check(of_customers("C-known-1", "C-known-2")) is True
    assert {"C-known-1", "C-known-2"} <= customers.known
    searched: list[str] = []
    search = customers.search
    monkeypatch.setattr(customers, "search", lambda v: searched.append(v) or search(v))
    assert check(of_customers("C-known-2", "C-known-1")) is True
    assert searched == []
    assert check(of_customers("C-known-1", "C-known-2\n")) is False  # a final newline
    assert searched == ["C-known-2\n"]
    monkeypatch.setattr(decode._Matched, "KEEP", len(customers.known))
    assert check(of_customers("C-known-1", "C-known-3")) is True
    assert customers.known == {"C-known-3"}  # beyond KEEP: the others forgotten


# -- hand-written cases ----------------------------------------------------------------------


def one(extra: str) -> bytes:
    return (EVENT % extra).encode("utf-8", "surrogatepass")


ONE_PASS = {
    "plain": batch(),
    "one event alone": one(""),
    "whitespace and newlines around": b" \n" + batch() + b"\n",
    "last of duplicate keys": batch(',"attributes":{"a":1,"b":2,"a":3}'),
    "integer beyond 64 bits": batch(',"attributes":{"n":18446744073709551616}'),
    "4300-digit integer": batch(',"attributes":{"n":' + "9" * 4300 + "}"),
    "exponent float": batch(',"attributes":{"n":1E2,"m":123456789012345678901234567890e-10}'),
    "negative zeros": batch(',"attributes":{"n":-0,"m":-0.0}'),
    "escaped surrogate pair": batch(',"attributes":{"s":"\\ud83d\\ude00"}'),
    "upper-case UUID": batch(',"event_id":"6F1C2A1E-0000-4000-8000-000000000002"'),
    "UUID as hex": batch(',"event_id":"6f1c2a1e000040008000000000000002"'),
    "lower-case t and z": batch(',"occurred_at":"2026-12-04t09:30:00z"'),
    "six digits of fraction": batch(',"occurred_at":"2026-12-04T09:30:00.123456+08:00"'),
    "first instant allowed": batch(',"occurred_at":"2000-01-01T00:00:00Z"'),
    "details and feedback": batch(
        ',"details":{"kind":"web","latency_ms":12,"steps":3},"feedback":{"text":"ok"}'
    ),
}
TO_PYDANTIC = {
    "nanoseconds (pydantic and msgspec round apart)": batch(
        ',"occurred_at":"2026-12-04T09:30:00.123456789+08:00"'
    ),
    "numbers as strings": batch(',"details":{"kind":"web","latency_ms":" 1.5 "}'),
    "integral float for an integer": batch(',"details":{"kind":"web","steps":1e2}'),
    "UUID as URN": batch(',"event_id":"urn:uuid:6f1c2a1e-0000-4000-8000-000000000002"'),
    "schema_version 1.0": batch(',"schema_version":1.0'),
    "a final newline in an identifier": batch(',"journey_id":"J-1\\n"'),
    "a final newline in the time": batch(',"occurred_at":"2026-12-04T09:30:00Z\\n"'),
    "time without colon in the offset": batch(',"occurred_at":"2026-12-04T09:30:00+0800"'),
    "space for T": batch(',"occurred_at":"2026-12-04 09:30:00Z"'),
    "before 2000": batch(',"occurred_at":"1999-12-31T23:59:59Z"'),
    "from 2100": batch(',"occurred_at":"2100-01-01T00:00:00Z"'),
    "2100 reached through the offset": batch(',"occurred_at":"2099-12-31T23:30:00-01:00"'),
    "details of another channel": batch(',"details":{"kind":"app"}'),
    "feedback without anything": batch(',"feedback":{"text":""}'),
    "unknown field in details": batch(',"details":{"kind":"web","extra":1}'),
    "byte order mark": b"\xef\xbb\xbf" + batch(),
    "empty batch": b"[]",
    "not an object": b"[1]",
    "nothing": b"",
}


@pytest.mark.parametrize("name", sorted(ONE_PASS))
def test_the_one_pass_takes(name: str) -> None:
    assert check(ONE_PASS[name]) is True


@pytest.mark.parametrize("name", sorted(TO_PYDANTIC | ITEM_BY_ITEM))
def test_left_to_pydantic(name: str) -> None:
    assert check((TO_PYDANTIC | ITEM_BY_ITEM)[name]) is False


@pytest.mark.parametrize("name", sorted(ONE_CALL))
def test_what_pydantic_reads_in_one_call_is_read_alike(name: str) -> None:
    check(ONE_CALL[name])


def test_none_and_the_int_digit_limit_of_the_process() -> None:
    assert check(None) is False
    message = batch(',"attributes":{"n":' + "9" * 1200 + "}")
    assert check(message) is True
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(1000)
    try:
        assert check(message) is False
    finally:
        sys.set_int_max_str_digits(before)


# -- the structs are the contract's ----------------------------------------------------------


def test_the_structs_have_the_contracts_fields_and_bounds() -> None:
    """Derived from the models: the same fields, in the record's order; the bounds of the
    contract's JSON Schema (which pydantic derives from the same annotations)."""
    assert decode.WireEvent.__struct_fields__ == Event.__struct_fields__
    details = {d.model_fields["kind"].default: d for d in get_args(get_args(ChannelDetails)[0])}
    assert set(decode._KIND.values()) == set(details)
    for struct, kind in decode._KIND.items():
        assert struct.__struct_fields__ == tuple(details[kind].model_fields)[1:]
    ours = msgspec.json.schema(decode.WireEvent)
    theirs = TouchpointEvent.model_json_schema()

    def bounds(schema: dict[str, Any], defs: dict[str, Any]) -> Any:
        if "$ref" in schema:
            return bounds(defs[schema["$ref"].split("/")[-1]], defs)
        out: dict[str, Any] = {}
        for key in ("minLength", "maxLength", "minimum", "maximum", "maxProperties"):
            if key in schema:
                out[key] = schema[key]
        for key in ("anyOf", "oneOf"):
            if key in schema:
                out["any"] = sorted(
                    (repr(b) for b in (bounds(s, defs) for s in schema[key]) if b), key=str
                )
        for key in ("properties",):
            if key in schema:
                out[key] = {k: bounds(v, defs) for k, v in schema[key].items() if k != "kind"}
        if "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
            out["values"] = bounds(schema["additionalProperties"], defs)
        if "propertyNames" in schema:
            out["keys"] = bounds(schema["propertyNames"], defs)
        return out

    ours_ = bounds(ours, ours.get("$defs", {}))
    theirs_ = bounds(theirs, theirs.get("$defs", {}))
    ours_["properties"].pop("occurred_at")  # a string here, a date-time there
    theirs_["properties"].pop("occurred_at")
    assert ours_ == theirs_
    assert list(Feedback_.model_fields) == list(decode._STRUCTS[Feedback_].__struct_fields__)
