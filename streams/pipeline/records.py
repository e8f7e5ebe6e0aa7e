"""Trusted event records: what moves between a worker's steps after validation.

The public contract is ``cxpulse.schemas.events.TouchpointEvent`` (pydantic, the source of the
JSON Schema). An event is validated against it once, in the validate step; from there on
it travels as an ``Event`` record: a msgspec Struct with the same attribute names, so the
scoring core reads either, encoded as msgpack on the internal topics (cx.events,
cx.health). Decoding a record is a trusted, typed decode, not a validation: about ten
times cheaper than pydantic re-reading JSON, and the bytes are about half the size.

Wire form of a batch message: the two bytes ``FORMAT`` then a msgpack array of records,
each an array of its fields in the order below (``array_like``). 0xC1 is the one byte
msgpack never uses and JSON never starts with, so a message is recognised for what it is;
the second byte is the format's version. A message without the prefix is the JSON array
of earlier workers, read (and validated, as then) by ``cxpulse.schemas.envelope.decode_message``,
so a worker upgraded over a backlog of the old format goes on.

The event id is written as a msgpack binary of its 16 bytes; records of earlier workers
carry its canonical text, which decodes the same (a UUID field reads either).

Adding a field: append it at the end with a default (older records decode with the
default). Anything else (removing, reordering, changing a type) takes a new version byte
and a decoder for the old one beside the new.
"""

from __future__ import annotations

import json
from datetime import datetime
from operator import itemgetter
from typing import Any
from uuid import UUID

import msgspec

from cxpulse.schemas.envelope import Rejected, decode_message
from cxpulse.schemas.events import TouchpointEvent

FORMAT = b"\xc1\x01"

#: Records hold no reference cycles, so the garbage collector need not track them (decoding
#: 500 records otherwise triggers collections that cost three times the decode).
_OPTIONS: dict[str, Any] = {"frozen": True, "omit_defaults": True, "array_like": True, "gc": False}


class WebDetails(msgspec.Struct, tag="web", **_OPTIONS):
    latency_ms: float | None = None
    http_status: int | None = None
    page: str | None = None
    steps: int | None = None


class AppDetails(msgspec.Struct, tag="app", **_OPTIONS):
    latency_ms: float | None = None
    http_status: int | None = None
    screen: str | None = None
    app_version: str | None = None
    os: str | None = None
    steps: int | None = None


class CallCenterDetails(msgspec.Struct, tag="call_center", **_OPTIONS):
    wait_seconds: float | None = None
    handle_seconds: float | None = None
    transfers: int | None = None
    ivr_steps: int | None = None
    queue: str | None = None
    agent_id: str | None = None


class StoreDetails(msgspec.Struct, tag="store", **_OPTIONS):
    queue_seconds: float | None = None
    service_seconds: float | None = None
    terminal_id: str | None = None
    staff_id: str | None = None


class AtmDetails(msgspec.Struct, tag="atm", **_OPTIONS):
    response_ms: float | None = None
    error_code: str | None = None
    cash_dispensed: bool | None = None


Details = WebDetails | AppDetails | CallCenterDetails | StoreDetails | AtmDetails
_DETAILS: dict[str, type[Any]] = {
    "web": WebDetails,
    "app": AppDetails,
    "call_center": CallCenterDetails,
    "store": StoreDetails,
    "atm": AtmDetails,
}


class Feedback(msgspec.Struct, **_OPTIONS):
    nps: int | None = None
    csat: int | None = None
    ces: int | None = None
    text: str | None = None
    language: str | None = None


class EventHead(msgspec.Struct, **_OPTIONS):
    """The head of an event record: its first fields, which ``Event`` extends. A step
    that reads no more (touchpoint health) decodes a record as its head: msgspec skips an
    array's trailing fields, so the details, feedback and attributes of each event are
    never made (about a third of the decode's time). A field is never added here: it
    would move every field of the record after it."""

    event_id: UUID
    occurred_at: datetime
    customer_id: str
    channel: str
    touchpoint: str
    journey_stage: str
    outcome: str
    schema_version: int = 1
    touchpoint_instance: str | None = None


class Event(EventHead, **_OPTIONS):
    """A validated touchpoint event (``TouchpointEvent``'s fields and meaning; the event
    time in UTC): its head's fields, then these. Never built from untrusted input: see
    ``record_of``."""

    journey_id: str | None = None
    intent: str | None = None
    details: Details | None = None
    feedback: Feedback | None = None
    tier: str | None = None
    segment: str | None = None
    attributes: dict[str, str | int | float | bool] = {}

    def to_json(self) -> bytes:
        """The event as the contract's JSON object (a dead letter's value): re-publishing
        it validates like the original."""
        return json.dumps(contract_dict(self), ensure_ascii=False, separators=(",", ":")).encode()


def _struct_dict(obj: Any) -> dict[str, Any]:
    return {f: v for f in obj.__struct_fields__ if (v := getattr(obj, f)) is not None}


def contract_dict(ev: Event) -> dict[str, Any]:
    """The event's fields as the public contract names them (JSON-ready values)."""
    doc = _struct_dict(ev)
    doc["event_id"] = str(ev.event_id)
    doc["occurred_at"] = ev.occurred_at.isoformat().replace("+00:00", "Z")
    if ev.details is not None:
        doc["details"] = {
            "kind": type(ev.details).__struct_config__.tag,
            **_struct_dict(ev.details),
        }
    if ev.feedback is not None:
        doc["feedback"] = _struct_dict(ev.feedback)
    if not ev.attributes:
        doc.pop("attributes", None)
    return doc


#: ``TouchpointEvent``'s fields as ``Event`` orders them, up to ``intent``.
_HEAD = itemgetter(
    "event_id",
    "occurred_at",
    "customer_id",
    "channel",
    "touchpoint",
    "journey_stage",
    "outcome",
    "schema_version",
    "touchpoint_instance",
    "journey_id",
    "intent",
)


def record_of(event: TouchpointEvent) -> Event:
    """The trusted record of a validated event (field by field: no re-validation).

    Read from the model's ``__dict__``, where pydantic keeps a validated model's fields in
    their declared order: a details model's are ``kind`` then its record's fields in the
    same order, a feedback's its record's (a unit test holds the orders equal).
    """
    v = event.__dict__
    details = v["details"]
    if details is not None:
        kind, *values = details.__dict__.values()
        details = _DETAILS[kind](*values)
    feedback = v["feedback"]
    if feedback is not None:
        feedback = Feedback(*feedback.__dict__.values())
    fields = (*_HEAD(v), details, feedback, v["tier"], v["segment"], v["attributes"])
    return Event(*fields)


#: Event ids as msgpack binaries of their 16 bytes (18 bytes a record, the canonical text
#: took 38; a tenth of a record, and decoded without parsing hex). The typed decoders read
#: either form, so records written by earlier workers (the text) still decode.
_encoder = msgspec.msgpack.Encoder(uuid_format="bytes")
_decoder = msgspec.msgpack.Decoder(list[Event])
_heads = msgspec.msgpack.Decoder(list[EventHead])
_HEAD_FIELDS = len(EventHead.__struct_fields__)


def encode_events(events: list[Event]) -> bytes:
    """One batch message of records.

    The contract allows an attribute integer of any size and msgpack has none beyond 64
    bits: such a value (rare, so only after the encoder refuses the batch) is carried as
    its decimal text, exact, instead of stopping the validate step at every restart."""
    try:
        return FORMAT + _encoder.encode(events)
    except OverflowError:
        return FORMAT + _encoder.encode([_within_64_bits(e) for e in events])


def _within_64_bits(event: Event) -> Event:
    attributes = event.attributes
    if not any(type(v) is int and not -(2**63) <= v < 2**64 for v in attributes.values()):
        return event
    carried = {
        k: str(v) if type(v) is int and not -(2**63) <= v < 2**64 else v
        for k, v in attributes.items()
    }
    return msgspec.structs.replace(event, attributes=carried)


def decode_events(raw: bytes | None) -> tuple[list[Event], list[Rejected]]:
    """The records of a batch message, trusted; a message of the earlier JSON format is
    validated and converted (its rejects returned, as ``decode_message`` gives them)."""
    if raw is not None and raw[:2] == FORMAT:
        return _decoder.decode(memoryview(raw)[2:]), []
    events, rejected = decode_message(raw)
    return [record_of(e) for e in events], rejected


def decode_heads(raw: bytes | None) -> tuple[list[EventHead], list[Rejected]]:
    """``decode_events`` giving each record's head (``EventHead``): the same events in
    the same order, and the same rejects for a message of the earlier JSON format."""
    if raw is not None and raw[:2] == FORMAT:
        return _heads.decode(memoryview(raw)[2:]), []
    events, rejected = decode_events(raw)
    return [head_of(e) for e in events], rejected


def head_of(event: Event) -> EventHead:
    """The head of a record."""
    return EventHead(*msgspec.structs.astuple(event)[:_HEAD_FIELDS])
