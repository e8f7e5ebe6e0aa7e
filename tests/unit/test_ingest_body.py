"""HTTP ingest without Kafka: reading a body into items, the answer's statuses, the token.

The reasons must be word for word the publisher SDK's (``validate_event``), which is what
``cxpulse publish`` prints and what the integration tests find in the dead-letter topic.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from cxpulse.schemas.envelope import EMPTY_BATCH_REASON, Rejected
from cxpulse.schemas.events import TouchpointEvent
from cxpulse.streams.ingest import (
    BodyError,
    Item,
    answer,
    authorized,
    body_digest,
    claimed_event_id,
    read_items,
    refuse_without_token,
)
from cxpulse.streams.pipeline.decode import decode
from cxpulse.streams.publisher import encode_event, validate_event
from cxpulse.streams.settings import ConfigError, load_settings


def event(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-20T09:30:00+00:00",
        "customer_id": "C-1",
        "channel": "atm",
        "touchpoint": "atm.withdrawal",
        "journey_stage": "purchase",
        "outcome": "success",
    }
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def reasons(items: list[Item]) -> list[str | None]:
    return [None if it.rejected is None else it.rejected.reason for it in items]


def test_one_object_is_one_item() -> None:
    doc = event()
    (item,) = read_items(json.dumps(doc).encode())
    assert item.event is not None and item.event.customer_id == "C-1"
    assert (item.index, item.event_id, item.rejected) == (0, doc["event_id"], None)


def test_a_valid_body_goes_on_as_sent_and_the_worker_reads_what_the_sdk_would_send() -> None:
    """An array of valid events (pretty-printed, a null optional field) is read by the
    worker's boundary and each event goes on as its text in the body; the message made
    of them reads as the SDK's (the contract's model written out) would."""
    docs = [event(customer_id=f"C-{i}", journey_id=None) for i in range(3)]
    docs[1]["journey_id"] = None  # sent as null: pydantic's form leaves it out
    body = json.dumps(docs, indent=2).encode()
    items = read_items(body)
    accepted = [it.event for it in items if it.event is not None]
    assert [a.customer_id for a in accepted] == ["C-0", "C-1", "C-2"]
    assert accepted[1].json == json.dumps(docs[1], indent=2).replace("\n", "\n  ").encode()
    as_sent = b"[" + b",".join(a.json for a in accepted) + b"]"
    sdk = b"[" + b",".join(encode_event(TouchpointEvent.model_validate(d)) for d in docs) + b"]"
    assert as_sent != sdk and decode(as_sent) == decode(sdk)
    assert decode(as_sent)[1] == []


def test_json_lines_of_valid_events_go_on_as_sent_with_their_lines() -> None:
    a, b = event(customer_id="C-a"), event(customer_id="C-b")
    lines = [json.dumps(a), json.dumps(b, separators=(", ", ": "))]
    items = read_items(f"{lines[0]}\n\n  \n{lines[1]}\n".encode())
    assert [(it.index, it.line, it.event_id) for it in items] == [
        (0, 1, a["event_id"]),
        (1, 4, b["event_id"]),
    ]
    assert [it.event.json for it in items if it.event] == [line.encode() for line in lines]


def test_a_line_holding_two_events_is_not_read_as_two_lines() -> None:
    """Lines are read at once as the array of them, but only when each line is exactly
    one item of it: a line with two objects is a rejected line, as the SDK says."""
    a, b, c = event(), event(), event()
    body = f"{json.dumps(a)}\n{json.dumps(b)}, {json.dumps(c)}\n".encode()
    items = read_items(body)
    assert [it.event is not None for it in items] == [True, False]
    assert reasons(items)[1] == validate_event(f"{json.dumps(b)}, {json.dumps(c)}".encode())


def test_a_valid_event_padded_past_any_real_size_goes_on_compact() -> None:
    doc = event()
    padded = json.dumps(doc).replace(", ", "," + " " * (300 * 1024), 1)
    body = f"[{padded}]".encode()
    (item,) = read_items(body)
    assert item.event is not None
    assert item.event.json == encode_event(TouchpointEvent.model_validate(doc))


def test_a_lax_but_valid_body_goes_on_in_the_sdks_form() -> None:
    """What pydantic accepts and the worker's strict boundary leaves to it (here a UUID
    as a URN) is read by pydantic and written out as the SDK writes it."""
    doc = event()
    lax = dict(doc, event_id=f"urn:uuid:{doc['event_id']}")
    (item,) = read_items(json.dumps([lax]).encode())
    assert item.event is not None and item.event_id == doc["event_id"]
    assert item.event.json == encode_event(TouchpointEvent.model_validate(doc))


def test_a_pretty_printed_object_is_one_item() -> None:
    (item,) = read_items(json.dumps(event(), indent=2).encode())
    assert item.event is not None


def test_an_array_of_valid_events() -> None:
    docs = [event(customer_id=f"C-{i}") for i in range(5)]
    items = read_items(json.dumps(docs).encode())
    assert [it.event_id for it in items] == [d["event_id"] for d in docs]
    assert [it.index for it in items] == list(range(5))
    assert all(it.rejected is None for it in items)


def test_mixed_array_items_have_the_sdks_reasons_and_the_dead_letter_value() -> None:
    bad = event(channel="fax")
    docs: list[Any] = [event(), bad, 42, "text", None, [event()], event()]
    body = "[\n" + ",\n".join(json.dumps(d) for d in docs) + "\n]"  # item i on line i + 2
    items = read_items(body.encode())
    assert [it.event is not None for it in items] == [True, False, False, False, False, False, True]
    assert reasons(items)[1] == validate_event(bad)
    assert reasons(items)[1].startswith("channel: Input should be")  # type: ignore[union-attr]
    assert reasons(items)[2:6] == [
        "expected a JSON object, got number",
        "expected a JSON object, got string",
        "expected a JSON object, got null",
        "expected a JSON object, got array",
    ]
    rejected = [it.rejected for it in items if it.rejected is not None]
    # An array's item goes to the DLQ alone, as compact JSON (as the worker does).
    assert rejected[0].raw == json.dumps(bad, separators=(",", ":")).encode()
    assert [r.raw for r in rejected[1:4]] == [b"42", b'"text"', b"null"]
    assert [r.kind for r in rejected] == ["literal_error"] + ["not_object"] * 4
    assert items[1].event_id == bad["event_id"]  # the id it claims, to match the result
    assert items[1].line == 3  # the line the item starts on


def test_json_lines_with_blank_lines_keep_line_numbers() -> None:
    a, b = event(), event(outcome="meh")
    body = f"{json.dumps(a)}\n\n   \n{json.dumps(b)}\nnot json\n\n".encode()
    items = read_items(body)
    assert [it.index for it in items] == [0, 1, 2]
    assert [it.line for it in items] == [1, 4, 5]
    assert items[0].event is not None
    assert reasons(items)[1] == validate_event(json.dumps(b).encode())
    assert reasons(items)[2] is not None and reasons(items)[2].startswith("not JSON: ")  # type: ignore[union-attr]
    assert items[2].rejected is not None and items[2].rejected.raw == b"not json"
    assert items[2].rejected.kind == "not_json"


@pytest.mark.parametrize("shape", ["array", "lines"])
def test_a_byte_order_mark_is_ignored(shape: str) -> None:
    docs = [event(), event()]
    text = json.dumps(docs) if shape == "array" else "\n".join(json.dumps(d) for d in docs)
    items = read_items(b"\xef\xbb\xbf" + text.encode())
    assert [it.event_id for it in items] == [d["event_id"] for d in docs]


def test_an_empty_array_is_refused_as_on_kafka() -> None:
    with pytest.raises(BodyError) as err:
        read_items(b" [ ] ")
    assert (err.value.status, err.value.message, err.value.kind) == (
        400,
        EMPTY_BATCH_REASON,
        "empty_batch",
    )


@pytest.mark.parametrize("body", [b"", b"  \n\n \r\n"])
def test_an_empty_body_is_refused(body: bytes) -> None:
    with pytest.raises(BodyError) as err:
        read_items(body)
    assert err.value.status == 400 and err.value.kind == "empty"
    assert err.value.message.startswith("the request body is empty")


@pytest.mark.parametrize("body", [b"42", b'"an event"', b"null", b"true"])
def test_a_json_value_that_is_not_an_object_or_array_is_refused(body: bytes) -> None:
    with pytest.raises(BodyError) as err:
        read_items(body)
    assert err.value.status == 400
    assert "neither JSON Lines nor a JSON array of events" in err.value.message


def test_a_broken_array_is_refused_whole_with_where() -> None:
    body = ("[" + json.dumps(event()) + ",\n" + json.dumps(event())[:40]).encode()
    with pytest.raises(BodyError) as err:
        read_items(body)
    assert err.value.status == 400 and "line 2" in err.value.message
    assert "\n" not in err.value.message


def test_too_many_items_is_413() -> None:
    docs = [event() for _ in range(4)]
    for body in (json.dumps(docs), "\n".join(json.dumps(d) for d in docs)):
        with pytest.raises(BodyError) as err:
            read_items(body.encode(), max_items=3)
        assert err.value.status == 413 and "at most 3 per request" in err.value.message
    assert len(read_items(json.dumps(docs).encode(), max_items=4)) == 4


def test_claimed_event_id() -> None:
    assert claimed_event_id({"event_id": "abc"}) == "abc"
    assert claimed_event_id(b'{"event_id": "abc", "x": ') is None
    assert claimed_event_id(b'{"event_id": 5}') is None
    assert claimed_event_id(b'{"event_id": "x"}') == "x"
    assert claimed_event_id(42) is None


def test_body_digest_is_stable_and_a_kafka_offset() -> None:
    assert body_digest(b"[1]") == body_digest(b"[1]") != body_digest(b"[2]")
    assert 0 <= body_digest(b"x" * 1000) < 2**63


# -- the answer -------------------------------------------------------------------------


def ok(i: int) -> Item:
    (item,) = read_items(json.dumps(event()).encode())
    item.index = i
    return item


def bad(i: int) -> Item:
    return Item(i, i + 1, None, Rejected(i, b"{}", "customer_id: Field required"), None)


def test_all_accepted_is_200() -> None:
    first = ok(0)
    a = answer([first, ok(1)], None)
    assert a.status == 200
    assert (a.body["accepted"], a.body["rejected"], a.body["failed"]) == (2, 0, 0)
    assert a.body["results"][0] == {"index": 0, "status": "accepted", "event_id": first.event_id}


def test_some_rejected_is_207_with_each_reason() -> None:
    a = answer([ok(0), bad(1)], None)
    assert a.status == 207
    assert a.body["results"][1] == {
        "index": 1,
        "status": "rejected",
        "line": 2,
        "reason": "customer_id: Field required",
    }


def test_nothing_accepted_is_400() -> None:
    assert answer([bad(0), bad(1)], None).status == 400


def test_kafka_not_acknowledging_is_503_and_the_valid_items_failed() -> None:
    a = answer([ok(0), bad(1)], "KafkaTimeoutError: no broker")
    assert a.status == 503 and a.headers["Retry-After"] == "5"
    assert (a.body["accepted"], a.body["rejected"], a.body["failed"]) == (0, 1, 1)
    assert a.body["results"][0]["status"] == "failed"
    assert "send the same request again" in a.body["error"]


# -- the token ----------------------------------------------------------------------------

TOKEN = SecretStr("t0ken-of-at-least-16-chars")


def test_no_token_configured_lets_everything_pass() -> None:
    assert authorized(None, None) is None
    assert authorized("Bearer whatever", None) is None


def test_the_bearer_token_is_checked() -> None:
    assert authorized(f"Bearer {TOKEN.get_secret_value()}", TOKEN) is None
    assert authorized(f"bearer  {TOKEN.get_secret_value()} ", TOKEN) is None
    missing = authorized(None, TOKEN)
    wrong = authorized("Bearer nope", TOKEN)
    scheme = authorized(f"Basic {TOKEN.get_secret_value()}", TOKEN)
    assert missing is not None and missing.startswith("no bearer token")
    assert wrong is not None and wrong.startswith("wrong bearer token")
    assert scheme is not None and "Authorization: Bearer" in scheme
    for reason in (missing, wrong, scheme):
        assert TOKEN.get_secret_value() not in reason


def test_no_token_is_refused_off_loopback() -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        refuse_without_token(host, None)
    refuse_without_token("0.0.0.0", TOKEN)
    with pytest.raises(ConfigError) as err:
        refuse_without_token("0.0.0.0", None)
    assert "CXPULSE_INGEST_TOKEN" in err.value.message and "--host 127.0.0.1" in err.value.message


def test_a_short_token_is_a_config_error_that_never_shows_it() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(ingest_token="short-secret")
    assert "CXPULSE_INGEST_TOKEN='***'" in err.value.message
    assert "short-secret" not in err.value.message
    settings = load_settings(ingest_token=TOKEN.get_secret_value())
    assert TOKEN.get_secret_value() not in repr(settings)
    assert load_settings(ingest_token="").ingest_token is None
