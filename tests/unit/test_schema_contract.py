"""The event contract: the committed JSON Schema matches the models, and decoding the wire
format accepts what it should and rejects, item by item, what it should not."""

from __future__ import annotations

import calendar
import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxpulse.schemas import export
from cxpulse.schemas.envelope import (
    MAX_BATCH_EVENTS,
    MAX_MESSAGE_BYTES,
    MAX_REJECTED_BYTES,
    decode_message,
    encode_batch,
)
from cxpulse.schemas.events import TouchpointEvent
from cxpulse.streams.dev.sample_events import CUSTOMERS, sample_events, sample_invalid

# The checkout (the package's files may be reached through cxpulse/schemas, a symlink).
ROOT = Path(__file__).resolve().parents[2]


def event(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-20T09:30:00+08:00",
        "customer_id": "C-1001",
        "channel": "atm",
        "touchpoint": "atm.withdrawal",
        "touchpoint_instance": "ATM-0042",
        "journey_stage": "post_purchase",
        "outcome": "failure",
        "details": {"kind": "atm", "error_code": "E-CASH-JAM"},
        "tier": "A",
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def without(field: str) -> dict[str, Any]:
    doc = event()
    del doc[field]
    return doc


def raw(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


# -- the committed JSON Schema --------------------------------------------------------------


def test_committed_json_schema_matches_the_models() -> None:
    committed = export.SCHEMA_PATH.read_text(encoding="utf-8")
    assert committed == export.render(), (
        f"{export.SCHEMA_PATH.name} is stale: run python -m cxpulse.schemas.export"
    )


def test_committed_case_schema_matches_the_model() -> None:
    committed = export.CASE_SCHEMA_PATH.read_text(encoding="utf-8")
    assert committed == export.render_case(), (
        f"{export.CASE_SCHEMA_PATH.name} is stale: run python -m cxpulse.schemas.export"
    )
    schema = json.loads(committed)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    from tests.unit.test_cases_logic import opened

    case = opened().to_json()
    assert not [e.message for e in cls(schema).iter_errors(case)]


def test_export_check_mode_reports_a_stale_file(tmp_path: Any) -> None:
    stale = tmp_path / "schema.json"
    stale.write_text("{}\n")
    assert export.main(["--check", "--output", str(stale)]) == 1
    assert export.main(["--output", str(stale)]) == 0
    assert export.main(["--check", "--output", str(stale)]) == 0


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(export.SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_sample_events_validate_against_the_exported_json_schema(
    validator: jsonschema.protocols.Validator,
) -> None:
    for doc in sample_events(seed=3):
        errors = [e.message for e in validator.iter_errors(doc)]
        assert not errors, (doc["event_id"], errors)


def test_json_schema_rejects_what_pydantic_rejects_field_by_field(
    validator: jsonschema.protocols.Validator,
) -> None:
    for bad in (
        without("customer_id"),
        event(channel="fax"),
        event(customer_id="has space"),
        event(unknown_field=1),
        event(feedback={"nps": 11}),
    ):
        assert not validator.is_valid(bad), bad


# -- decoding: valid ------------------------------------------------------------------------


def test_single_event_message_decodes() -> None:
    doc = event()
    events, rejected = decode_message(raw(doc))
    assert rejected == []
    assert [str(e.event_id) for e in events] == [doc["event_id"]]
    assert events[0].occurred_at.utcoffset() is not None


def test_batch_message_decodes_every_item_in_order() -> None:
    docs = [event(customer_id=f"C-{i}") for i in range(5)]
    events, rejected = decode_message(raw(docs))
    assert rejected == []
    assert [e.customer_id for e in events] == [f"C-{i}" for i in range(5)]


def test_encode_batch_round_trips() -> None:
    models = [TouchpointEvent.model_validate(event()) for _ in range(3)]
    events, rejected = decode_message(encode_batch(models))
    assert rejected == [] and events == models


def test_chinese_feedback_survives_decoding() -> None:
    text = "排队排了二十多分钟"
    doc = event(feedback={"csat": 1, "text": text, "language": "zh"})
    events, _ = decode_message(raw(doc))
    assert events[0].feedback is not None and events[0].feedback.text == text


# -- decoding: invalid, each kind -----------------------------------------------------------

INVALID_ITEMS = {
    "missing field": (without("customer_id"), "customer_id: Field required"),
    "wrong type": (event(feedback={"nps": "ten"}), "feedback.nps:"),
    "bad enum": (event(channel="fax"), "channel:"),
    "details of another channel": (
        event(channel="web", touchpoint="web.login"),
        "details.kind is 'atm' but channel is 'web'",
    ),
    "naive timestamp": (event(occurred_at="2026-11-20T09:30:00"), "occurred_at:"),
    "unknown field": (event(colour="red"), "colour: Extra inputs are not permitted"),
    "empty feedback": (event(feedback={}), "feedback"),
    "string too long": (event(feedback={"text": "x" * 2001}), "feedback.text:"),
    "identifier too long": (event(customer_id="C" * 65), "customer_id:"),
    "too many attributes": (
        event(attributes={f"k{i}": i for i in range(33)}),
        "attributes:",
    ),
    "attribute value too long": (event(attributes={"note": "y" * 257}), "attributes.note"),
    "occurred before 2000 (a reset device clock)": (
        event(occurred_at="1970-01-01T00:00:00+00:00"),
        "occurred_at: Input should be greater than or equal to 2000-01-01T00:00:00Z",
    ),
    "occurred in 1969 (negative epoch seconds)": (
        event(occurred_at="1969-12-31T23:59:59+00:00"),
        "occurred_at: Input should be greater than or equal to 2000-01-01T00:00:00Z",
    ),
    "occurred in 2100 or later": (
        event(occurred_at="2100-01-01T00:00:00+00:00"),
        "occurred_at: Input should be less than 2100-01-01T00:00:00Z",
    ),
    "just before 2000 in UTC, although 2000 in its own offset": (
        event(occurred_at="2000-01-01T07:59:59+08:00"),
        "occurred_at: Input should be greater than or equal to",
    ),
}


@pytest.mark.parametrize("name", sorted(INVALID_ITEMS))
def test_invalid_single_message_is_rejected_whole_with_its_original_bytes(name: str) -> None:
    doc, reason = INVALID_ITEMS[name]
    message = raw(doc)
    events, rejected = decode_message(message)
    assert events == []
    assert len(rejected) == 1
    assert rejected[0].index is None
    assert rejected[0].raw == message  # untouched
    assert reason in rejected[0].reason, rejected[0].reason


@pytest.mark.parametrize("name", sorted(INVALID_ITEMS))
def test_one_bad_item_does_not_take_its_batch_mates_down(name: str) -> None:
    bad, reason = INVALID_ITEMS[name]
    good = [event(), event()]
    events, rejected = decode_message(raw([good[0], bad, good[1]]))
    assert [str(e.event_id) for e in events] == [good[0]["event_id"], good[1]["event_id"]]
    assert len(rejected) == 1
    assert rejected[0].index == 1
    assert json.loads(rejected[0].raw) == bad  # the item alone, re-encoded compactly
    assert b", " not in rejected[0].raw
    assert reason in rejected[0].reason


@pytest.mark.parametrize(
    ("message", "kind", "reason"),
    [
        (b"", "empty", "empty message"),
        (b"{not json", "not_json", "not JSON"),
        (b"[1, 2", "not_json", "not JSON"),
        (b"\xff\xfe[]", "not_json", "not JSON"),
        (b'"just a string"', "not_object", "got string"),
        (b"42", "not_object", "got number"),
    ],
)
def test_unusable_messages_are_rejected_whole(message: bytes, kind: str, reason: str) -> None:
    events, rejected = decode_message(message)
    assert events == []
    assert [(r.index, r.kind) for r in rejected] == [(None, kind)]
    assert reason in rejected[0].reason
    assert rejected[0].raw == message


def test_non_object_items_of_a_batch_are_rejected_one_by_one() -> None:
    good = event()
    events, rejected = decode_message(raw([good, 7, "text", None, [good]]))
    assert [str(e.event_id) for e in events] == [good["event_id"]]
    assert [(r.index, r.kind) for r in rejected] == [(i, "not_object") for i in (1, 2, 3, 4)]
    assert rejected[0].raw == b"7"


@pytest.mark.parametrize("message", [b"[]", b" [ ]\n", b"\xef\xbb\xbf[]"])
def test_an_empty_batch_leaves_a_dead_letter(message: bytes) -> None:
    """An empty array holds no event, but a producer sending them is likely broken: it
    goes to the DLQ (and so into cxpulse_events_invalid_total{reason="empty_batch"})."""
    events, rejected = decode_message(message)
    assert events == []
    assert [(r.index, r.kind, r.reason) for r in rejected] == [
        (None, "empty_batch", "empty batch: the array holds no events")
    ]
    assert rejected[0].raw == message


def test_a_utf8_bom_before_an_object_or_an_array_is_skipped() -> None:
    one, two = event(), event()
    events, rejected = decode_message(b"\xef\xbb\xbf" + raw(one))
    assert rejected == [] and [str(e.event_id) for e in events] == [one["event_id"]]
    events, rejected = decode_message(b"\xef\xbb\xbf" + raw([one, two]))
    assert rejected == [] and len(events) == 2


def test_a_bom_before_an_invalid_event_keeps_the_message_as_sent() -> None:
    message = b"\xef\xbb\xbf" + raw(event(channel="fax"))
    events, rejected = decode_message(message)
    assert events == [] and rejected[0].raw == message
    assert rejected[0].reason.startswith("channel:")


def test_batch_over_the_event_bound_is_rejected_whole() -> None:
    message = b"[" + b",".join([b"{}"] * (MAX_BATCH_EVENTS + 1)) + b"]"
    events, rejected = decode_message(message)
    assert events == []
    assert [(r.index, r.kind) for r in rejected] == [(None, "too_large")]
    assert str(MAX_BATCH_EVENTS) in rejected[0].reason


def test_message_over_the_byte_bound_is_rejected_without_parsing() -> None:
    message = b"[" + b" " * MAX_MESSAGE_BYTES + b"]"
    events, rejected = decode_message(message)
    assert events == []
    assert rejected[0].kind == "too_large"
    assert len(rejected[0].raw) <= 1024  # a dead letter never carries the whole 8 MB


@pytest.mark.parametrize(
    "moment",
    ["2000-01-01T00:00:00+00:00", "2000-01-01T08:00:00+08:00", "2099-12-31T23:59:59.999+00:00"],
)
def test_occurred_at_bounds_are_inclusive_below_exclusive_above(moment: str) -> None:
    events, rejected = decode_message(raw(event(occurred_at=moment)))
    assert rejected == [] and len(events) == 1


@pytest.mark.parametrize(
    "value",
    [1764840600, 1764840600.5, "1764840600", "2026-12-04", "2026-12-04 09:30:00+08:00", True],
)
def test_occurred_at_is_only_an_rfc3339_string(value: Any) -> None:
    """pydantic alone reads an epoch number (or its digits as a string) as a UTC time."""
    events, rejected = decode_message(raw(event(occurred_at=value)))
    assert events == [] and rejected[0].kind == "rfc3339"
    assert rejected[0].reason.startswith(
        "occurred_at: Input should be an RFC 3339 string with an offset, "
        "such as 2026-12-04T09:30:00+08:00"
    ), rejected[0].reason


def test_occurred_at_without_offset_keeps_its_reason() -> None:
    events, rejected = decode_message(raw(event(occurred_at="2026-12-04T09:30:00")))
    assert events == []
    assert rejected[0].reason == "occurred_at: Input should have timezone info"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("2026-12-04T09:30:00+08:00", True),
        ("2026-12-04T09:30:00.123456Z", True),
        ("2026-12-04t09:30:00z", True),
        ("2026-12-04T09:30:00", False),  # the case: the schema let it pass
        ("2026-12-04T09:30:00+0800", False),
        ("2026-12-04", False),
        ("1764840600", False),
        (1764840600, False),
    ],
)
def test_json_schema_and_worker_agree_on_occurred_at(value: Any, valid: bool) -> None:
    schema = json.loads(export.SCHEMA_PATH.read_text(encoding="utf-8"))
    assert "pattern" in schema["properties"]["occurred_at"]
    doc = event(occurred_at=value)
    assert jsonschema.Draft202012Validator(schema).is_valid(doc) is valid
    events, _ = decode_message(raw(doc))
    assert bool(events) is valid


def _two(n: int) -> str:
    return f"{n:02d}"


@st.composite
def date_times(draw: st.DrawFn) -> str:
    """Strings shaped like date-times, well and badly: each number in or just out of its
    range, every separator and offset form producers get wrong, with and without
    fractions. Years stay clear of the 2000..2100 bounds, and a day is one of its month's
    or the 32nd (a February 30 is the worker's to refuse: a pattern cannot count days)."""
    year = draw(st.integers(2001, 2098))
    month = draw(st.integers(0, 13))
    last = calendar.monthrange(year, month)[1] if 1 <= month <= 12 else 28
    day = draw(st.integers(0, last) | st.just(32))
    hour, minute, second = (
        draw(st.integers(0, 24)),
        draw(st.integers(0, 60)),
        draw(st.integers(0, 60)),
    )
    sep = draw(st.sampled_from(["T", "t", " ", "_"]))
    fraction = draw(st.sampled_from(["", ".", ".5", ".123456", ".1234567891", ",5"]))
    seconds = draw(st.sampled_from([f":{_two(second)}", ""]))
    sign = draw(st.sampled_from("+-"))
    oh, om = _two(draw(st.integers(0, 24))), _two(draw(st.integers(0, 60)))
    offset = draw(
        st.sampled_from(["Z", "z", "", f"{sign}{oh}:{om}", f"{sign}{oh}{om}", f"{sign}{oh}"])
    )
    date = f"{year}-{_two(month)}-{_two(day)}"
    return f"{date}{sep}{_two(hour)}:{_two(minute)}{seconds}{fraction}{offset}"


@settings(max_examples=400, deadline=None)
@given(value=date_times())
def test_json_schema_and_worker_agree_on_generated_date_times(value: str) -> None:
    """The schema's pattern against the pydantic model the worker decodes with."""
    schema = json.loads(export.SCHEMA_PATH.read_text(encoding="utf-8"))
    doc = event(occurred_at=value)
    events, rejected = decode_message(raw(doc))
    by_schema = jsonschema.Draft202012Validator(schema).is_valid(doc)
    assert by_schema is bool(events), (value, [r.reason for r in rejected])


def test_json_schema_states_the_occurred_at_range() -> None:
    schema = json.loads(export.SCHEMA_PATH.read_text(encoding="utf-8"))
    text = schema["properties"]["occurred_at"]["description"]
    assert "2000-01-01T00:00:00Z" in text and "2100-01-01T00:00:00Z" in text


# -- decoding: input that used to raise -------------------------------------------------------


def test_deeply_nested_array_is_a_not_json_rejection_not_a_recursion_error() -> None:
    message = b"[" * 100_000 + b"]" * 100_000
    events, rejected = decode_message(message)
    assert events == []
    assert [(r.index, r.kind) for r in rejected] == [(None, "not_json")]
    assert rejected[0].reason.startswith("not JSON: nested too deeply")
    assert rejected[0].size == 200_000  # what it was, although the value kept is cut


def test_batch_with_a_5000_digit_integer_is_a_not_json_rejection() -> None:
    good = raw([event()])
    message = good[:-2] + b', "attributes": {"n": ' + b"7" * 5000 + b"}}]"
    events, rejected = decode_message(message)
    assert events == []
    assert [(r.index, r.kind) for r in rejected] == [(None, "not_json")]
    assert rejected[0].reason.startswith("not JSON: a number has too many digits")
    assert "4300 digits" in rejected[0].reason
    assert rejected[0].raw == message  # under the cut: the whole message


def test_single_object_with_a_5000_digit_integer_is_not_json_too() -> None:
    events, rejected = decode_message(b'{"n": ' + b"7" * 5000 + b"}")
    assert events == [] and [r.kind for r in rejected] == ["not_json"]


def test_lone_surrogate_in_a_batch_item_rejects_that_item_only() -> None:
    """A lone surrogate escape is legal JSON but no Unicode text: pydantic refuses it, and
    the item cannot be re-encoded as UTF-8, so its dead letter keeps the JSON escape."""
    good = event()
    bad = event(feedback={"text": "ab\ud800cd"})
    message = json.dumps([good, bad]).encode()  # ensure_ascii: the escape stays as text
    events, rejected = decode_message(message)
    assert [str(e.event_id) for e in events] == [good["event_id"]]
    assert [(r.index, r.kind) for r in rejected] == [(1, "string_unicode")]
    assert b"\\ud800" in rejected[0].raw
    assert json.loads(rejected[0].raw) == bad


def test_non_finite_attribute_numbers_are_rejected() -> None:
    """Python's json and pydantic accept NaN and Infinity, which JSON does not have; such an
    attribute would be re-encoded as null on the internal topic and then be refused there,
    silently dropping a validated event. So the contract refuses it at the door."""
    message = b"[" + raw(event())[:-1] + b', "attributes": {"x": NaN}}]'
    events, rejected = decode_message(message)
    assert events == []
    assert rejected[0].index == 0
    assert rejected[0].reason.startswith("attributes.x")


def test_a_huge_rejected_item_is_cut_and_keeps_its_size() -> None:
    bad = event(attributes={f"k{i}": "v" * 256 for i in range(400)})  # over the 32-key bound
    events, rejected = decode_message(raw([bad]))
    assert events == []
    full = len(json.dumps(bad, ensure_ascii=False, separators=(",", ":")).encode())
    assert full > MAX_REJECTED_BYTES
    assert rejected[0].size == full
    assert len(rejected[0].raw) == MAX_REJECTED_BYTES


def test_message_over_the_byte_bound_keeps_its_original_size() -> None:
    message = b"[" + b" " * MAX_MESSAGE_BYTES + b"]"
    _, rejected = decode_message(message)
    assert rejected[0].size == MAX_MESSAGE_BYTES + 2


# -- the built-in sample --------------------------------------------------------------------


def test_sample_events_are_all_valid_and_cover_every_channel_and_tier() -> None:
    docs = sample_events(seed=0, now=datetime(2026, 11, 20, 12, 0, tzinfo=UTC))
    assert 60 <= len(docs) <= 100
    events, rejected = decode_message(raw(docs))
    assert rejected == []
    assert len(events) == len(docs)
    assert {e.channel for e in events} == {"web", "app", "call_center", "store", "atm"}
    assert {e.tier for e in events} == {"A", "B", "C"}
    assert {e.customer_id for e in events} == {c[0] for c in CUSTOMERS}
    languages = {e.feedback.language for e in events if e.feedback and e.feedback.text}
    assert {"en", "zh"} <= languages
    assert any(e.feedback and e.feedback.nps is not None for e in events)
    atm_failures = [e for e in events if e.touchpoint_instance == "ATM-0042"]
    assert len(atm_failures) >= 5 and all(e.outcome == "failure" for e in atm_failures)
    assert len({e.event_id for e in events}) == len(events)


def test_sample_events_are_deterministic_given_seed_and_now() -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert sample_events(seed=5, now=now) == sample_events(seed=5, now=now)
    assert sample_events(seed=5, now=now) != sample_events(seed=6, now=now)
    assert max(d["occurred_at"] for d in sample_events(now=now)) <= now.isoformat()


def test_sample_invalid_messages_are_all_rejected_one_dead_letter_each() -> None:
    messages = sample_invalid()
    assert len(messages) >= 4
    kinds = set()
    for message in messages:
        events, rejected = decode_message(message)
        assert events == [] and len(rejected) == 1, message
        kinds.add(rejected[0].kind)
    assert {"missing", "literal_error", "value_error", "not_json"} <= kinds


# -- the documentation's examples --------------------------------------------------------------


def test_wire_format_doc_examples_are_valid_and_cover_every_channel(
    validator: jsonschema.protocols.Validator,
) -> None:
    doc = (ROOT / "docs" / "wire-format.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", doc, flags=re.DOTALL)
    examples = [json.loads(b) for b in blocks if b.lstrip().startswith('{"event_id"')]
    assert len(examples) == 5
    for example in examples:
        TouchpointEvent.model_validate(example)
        assert validator.is_valid(example), example
    assert sorted(e["channel"] for e in examples) == sorted(
        ["web", "app", "call_center", "store", "atm"]
    )
