"""decode: validate once, at the boundary, in one pass of msgspec.

The contract is ``cxpulse.schemas.events.TouchpointEvent`` (pydantic). Reading a batch with
pydantic then copying each model into its record cost about 7.5 µs an event, most of a
worker's validate step. Here msgspec reads the raw JSON straight into structs typed with
the contract's own bounds, and the records are made from them: about a third of that.

This path only accepts. It is stricter than pydantic: the lax forms pydantic reads
(numbers as strings, booleans as numbers, ``1.0`` for an integer, UUIDs as URNs or in
braces), times with more than six digits of fraction, a repeated discriminator, and every
invalid item make it return None, and the message goes to ``decode_message`` (pydantic),
which accepts the lax forms and gives each rejected item its reason. So whatever a
message holds, the records and the rejections are what pydantic alone gives; a property
test over generated valid and invalid batches holds this path to exactly that
(tests/unit/test_boundary_decode.py).

The structs are derived from the contract's models (``_wire``), never written by hand: a
bound changed there is changed here. What msgspec cannot state is checked after the
decode, in ``records``: the event time's bounds and shape, and the two model validators
(details of the event's own channel; feedback not empty). A construct the derivation does
not know (a new kind of validator, a new type) stops the import with what to do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from operator import attrgetter
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from uuid import UUID

import annotated_types as at
import msgspec
from pydantic import BaseModel, StringConstraints
from pydantic.fields import FieldInfo
from pydantic.functional_validators import BeforeValidator

from cxpulse.schemas import events as contract
from cxpulse.schemas.envelope import MAX_BATCH_EVENTS, MAX_MESSAGE_BYTES, Rejected, decode_message
from cxpulse.streams.pipeline import records

#: The model validators this module checks itself, by model (in ``_record``).
KNOWN_MODEL_VALIDATORS = {
    contract.TouchpointEvent: {"_details_match_channel"},
    contract.Feedback: {"_not_empty"},
}
#: The event time on this path: the contract's RFC 3339 shape with an offset, at most six
#: digits of fraction (exact microseconds; pydantic and msgspec round longer fractions
#: apart), the whole string (``\\Z``: Python's ``$`` would let a final newline through).
TIME_PATTERN = contract.RFC3339_WITH_OFFSET.replace(r"(\.[0-9]+)?", r"(\.[0-9]{1,6})?")


def _whole(pattern: str) -> str:
    """A contract pattern (``^...$``, matched by pydantic's Rust regex, where ``$`` is the
    end of the text) as msgspec matches it (Python's ``re.search``)."""
    if not (pattern.startswith("^") and pattern.endswith("$")):
        raise TypeError(f"a contract pattern should be anchored (^...$): {pattern!r}")
    return "^(?:" + pattern[1:-1] + r")\Z"


_BOUNDS = {at.Ge: "ge", at.Le: "le", at.Gt: "gt", at.Lt: "lt", at.MaxLen: "max_length"}
_BOUNDS[at.MinLen] = "min_length"


def _meta(
    items: list[Any], into: dict[str, Any], patterns: list[str] | None = None
) -> dict[str, Any]:
    """msgspec's ``Meta`` keywords for a contract type's metadata; a pattern goes to
    ``patterns`` instead when it is given (checked after the decode: ``_Matched``)."""
    for m in items:
        if isinstance(m, StringConstraints):
            for name in ("strip_whitespace", "to_upper", "to_lower", "strict", "ascii_only"):
                if getattr(m, name) is not None:
                    raise TypeError(f"no msgspec form for {name} of {m!r}: extend decode._meta")
            if m.min_length is not None:
                into["min_length"] = m.min_length
            if m.max_length is not None:
                into["max_length"] = m.max_length
            if m.pattern is not None:
                if patterns is None:
                    into["pattern"] = _whole(str(m.pattern))
                else:
                    patterns.append(_whole(str(m.pattern)))
        elif isinstance(m, FieldInfo):
            _meta(m.metadata, into, patterns)
        elif type(m) in _BOUNDS:
            into[_BOUNDS[type(m)]] = getattr(m, _BOUNDS[type(m)])  # Ge.ge, MaxLen.max_length
        elif type(m).__name__ == "AllowInfNan" and not m.allow_inf_nan:
            pass  # msgspec's JSON yields no NaN or infinity (NaN is not JSON, 1e400 refused)
        else:
            raise TypeError(f"no msgspec form for {m!r}: extend decode._meta")
    return into


def _wire(tp: Any, patterns: list[str] | None = None) -> Any:
    """The msgspec type of a contract annotation; the patterns of the annotation itself
    (not of a model or dict within it) go to ``patterns`` when it is given."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *meta = get_args(tp)
        if any(isinstance(m, FieldInfo) and m.discriminator for m in meta):
            return _wire(base)  # tagged structs: the tag is each model's Literal ``kind``
        keywords = _meta(meta, {}, patterns)
        inner = _wire(base, patterns)
        return Annotated[inner, msgspec.Meta(**keywords)] if keywords else inner
    if origin in (Union, UnionType):
        return Union[tuple(_wire(a, patterns) for a in get_args(tp))]  # noqa: UP007
    if origin is Literal:
        return tp
    if origin is dict:
        key, value = get_args(tp)
        return dict[_wire(key), _wire(value)]  # type: ignore[misc]
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _struct(tp)
    if tp in (str, int, float, bool, UUID, NoneType):
        return tp
    raise TypeError(f"no msgspec form for {tp!r}: extend decode._wire")


_STRUCTS: dict[type[BaseModel], type[msgspec.Struct]] = {}
#: A detail struct -> its ``kind`` (the channel it belongs to).
_KIND: dict[type[Any], str] = {}


def _struct(
    model: type[BaseModel],
    order: tuple[str, ...] = (),
    patterns: dict[str, str] | None = None,
) -> type[msgspec.Struct]:
    """A struct of the model's fields (in ``order``, then the model's), unknown fields
    refused; a Literal ``kind`` with a default becomes the struct's tag. With
    ``patterns``, the patterns of the model's own fields (not the event time's) go there
    by field name, to be checked after the decode (``_Matched``), not by msgspec."""
    if model in _STRUCTS:
        return _STRUCTS[model]
    if model.model_config.get("extra") != "forbid":
        raise TypeError(f"{model.__name__} does not forbid unknown fields: extend decode")
    validators = set(model.__pydantic_decorators__.model_validators)
    validators |= set(model.__pydantic_decorators__.field_validators)
    if validators != KNOWN_MODEL_VALIDATORS.get(model, set()):
        raise TypeError(f"{model.__name__}'s validators {sorted(validators)} are not checked here")
    fields = model.model_fields
    names = [n for n in order if n in fields] + [n for n in fields if n not in order]
    if set(order) - set(fields):
        raise TypeError(f"{model.__name__} lacks {sorted(set(order) - set(fields))}")
    times = _times(model)
    tag: str | None = None
    spec: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for name in names:
        f = fields[name]
        if name == "kind" and get_origin(f.annotation) is Literal:
            tag = f.default
            continue
        tp: Any
        if name in times:
            if patterns is None or name != "occurred_at":
                raise TypeError(f"{model.__name__}.{name} is a time not read here: extend decode")
            tp = str  # TIME_PATTERN is searched after the decode (``records_of``)
        else:
            found: list[str] | None = None if patterns is None else []
            tp = _wire(Annotated[f.annotation, *f.metadata] if f.metadata else f.annotation, found)
            if found:
                if len(found) > 1:
                    raise TypeError(f"{model.__name__}.{name} has patterns {found}: extend decode")
                assert patterns is not None
                patterns[name] = found[0]
        if f.is_required():
            spec.append((name, tp))
        elif f.default_factory is dict:
            spec.append((name, tp, msgspec.field(default_factory=dict)))
        else:
            spec.append((name, tp, f.default))
    options: dict[str, Any] = {"forbid_unknown_fields": True, "frozen": True, "gc": False}
    if tag is not None:
        options |= {"tag_field": "kind", "tag": tag}
    struct = msgspec.defstruct(f"Wire{model.__name__}", spec, **options)
    _STRUCTS[model] = struct
    if tag is not None:
        _KIND[struct] = tag
    return struct


def _times(model: type[BaseModel]) -> dict[str, tuple[datetime, datetime]]:
    """The model's event-time fields and their bounds ``[ge, lt)``: read on this path as
    strings of ``TIME_PATTERN``, then as times (``records``)."""
    out = {}
    for name, f in model.model_fields.items():
        if f.annotation is not contract.AwareDatetime:
            continue
        bounds = {type(m): m for m in f.metadata}
        before = bounds.get(BeforeValidator)
        if before is None or before.func is not contract._rfc3339_only:
            raise TypeError(f"{model.__name__}.{name} is read otherwise: extend decode._times")
        if set(bounds) != {at.Ge, at.Lt, BeforeValidator}:
            raise TypeError(f"{model.__name__}.{name}'s bounds are not ge/lt: extend decode")
        out[name] = (bounds[at.Ge].ge, bounds[at.Lt].lt)
    return out


(_OCCURRED_MIN, _OCCURRED_END) = _times(contract.TouchpointEvent)["occurred_at"]


class _Matched:
    """One field's pattern, checked after the decode on the distinct values of a batch,
    with the values known to match (the same ``re.search`` msgspec makes; a value that
    matched once always does).

    Why not in msgspec: it searches every value of every event (an event's identifiers
    are six patterns, two thirds of the decode's time), while identifiers recur (a
    customer's, a touchpoint's, an intent's): here a batch's values are one set, and only
    those not seen before are searched. At most ``KEEP`` values are kept a field: then
    they are forgotten and searched again."""

    KEEP = 65_536

    def __init__(self, name: str, pattern: str) -> None:
        self.name = name
        self.get = attrgetter(name)
        self.search = re.compile(pattern).search
        self.known: set[str] = set()

    def all_match(self, wires: list[Any]) -> bool:
        """Whether every value of the field in ``wires`` matches (an absent one is None)."""
        new = set(map(self.get, wires))
        new.discard(None)
        new -= self.known
        if not new:
            return True
        search = self.search
        if not all(search(v) for v in new):
            return False
        if len(self.known) + len(new) > self.KEEP:
            self.known.clear()
        self.known |= new
        return True


#: The event's own fields' patterns, by field name (``_struct``).
_PATTERNS: dict[str, str] = {}
WireEvent: Any = _struct(contract.TouchpointEvent, records.Event.__struct_fields__, _PATTERNS)
_MATCHED = [_Matched(name, pattern) for name, pattern in _PATTERNS.items()]
_TIME = re.compile(_whole(TIME_PATTERN)).search
_batch: msgspec.json.Decoder[list[Any]] = msgspec.json.Decoder(list[WireEvent])
_single: msgspec.json.Decoder[Any] = msgspec.json.Decoder(WireEvent)
_DETAIL_RECORD: dict[type[Any], Callable[..., Any]] = {
    s: records._DETAILS[k] for s, k in _KIND.items()
}
_astuple = msgspec.structs.astuple


def decode(raw: bytes | None) -> tuple[list[records.Event], list[Rejected]]:
    """The boundary step: a raw message's valid events as trusted records, and its
    rejected items with their reasons. The one pass when it takes the message, pydantic
    (``decode_message``) otherwise. Never raises."""
    found = records_of(raw)
    if found is not None:
        return found, []
    events, rejected = decode_message(raw)
    return list(map(records.record_of, events)), rejected


def records_of(raw: bytes | None) -> list[records.Event] | None:
    """The records of a message whose every event is valid in the strict form this path
    reads; None for anything else (``decode_message`` then reads it). Never raises."""
    if not raw or len(raw) > MAX_MESSAGE_BYTES:
        return None
    try:
        head = raw.lstrip()[:1]
        if head == b"[":
            wires = _batch.decode(raw)
            if not 0 < len(wires) <= MAX_BATCH_EVENTS:
                return None
        elif head == b"{":
            wires = [_single.decode(raw)]
        else:
            return None
        if not all(m.all_match(wires) for m in _MATCHED):
            return None
        stamps = [w.occurred_at for w in wires]
        if not all(map(_TIME, stamps)):  # every one differs: no values to keep
            return None
        times = msgspec.convert(stamps, list[datetime])
        return [_record(w, t) for w, t in zip(wires, times, strict=True)]
    except Exception:  # invalid, refused after the decode, or unforeseen: pydantic decides
        return None


class _Refused(Exception):
    """An item this path leaves to pydantic (one of the checks after the decode)."""


def _record(w: Any, t: datetime) -> records.Event:
    if not _OCCURRED_MIN <= t < _OCCURRED_END:
        raise _Refused
    details = w.details
    if details is not None:
        if _KIND[type(details)] != w.channel:
            raise _Refused  # the contract's TouchpointEvent._details_match_channel
        details = _DETAIL_RECORD[type(details)](*_astuple(details))
    feedback = w.feedback
    if feedback is not None:
        answered = feedback.nps is not None or feedback.csat is not None
        if not (answered or feedback.ces is not None or feedback.text):
            raise _Refused  # the contract's Feedback._not_empty
        feedback = records.Feedback(*_astuple(feedback))
    return records.Event(
        w.event_id,
        t,
        w.customer_id,
        w.channel,
        w.touchpoint,
        w.journey_stage,
        w.outcome,
        w.schema_version,
        w.touchpoint_instance,
        w.journey_id,
        w.intent,
        details,
        feedback,
        w.tier,
        w.segment,
        w.attributes,
    )
