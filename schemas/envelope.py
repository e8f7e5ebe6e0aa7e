"""Decoding the wire format: one message carries one event (a JSON object) or a batch
(a JSON array of objects).

Faust costs far more per Kafka message than pydantic costs per event, so batches are the
normal case. Each item of a batch is validated on its own: one bad event never takes its
batch-mates down with it.

A batch whose every item is valid (the normal case) is validated in one call of pydantic
on the raw JSON (parsed and validated in Rust, about twice as fast as Python's JSON parser
then the model item by item); when anything in it is wrong, it is read again item by item,
which gives each rejected item its reason. Both are the same model, and where pydantic's
JSON parser and Python's could read the same bytes differently the one call fails, so
its events are exactly those the item-by-item path gives (``_whole_batch`` says where).

The worker reads a message of valid events in canonical JSON in one pass of msgspec first
(``cxpulse.streams.pipeline.decode``, about twice as fast again) and comes here for
everything else, so the reasons of rejected items are always this module's.

``decode_message`` never raises, whatever the bytes: a message that crashed the validate
agent would crash it again after every restart (its offset is never committed), so any
failure to read a message becomes a rejection with a reason, like any other bad input.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import FailFast, TypeAdapter, ValidationError

from cxpulse.schemas.events import TouchpointEvent

# A dead letter keeps at most this much of its payload: enough to diagnose, bounded so a
# hostile 8 MiB message does not become an 8 MiB ClickHouse string per replay (the
# dead_letters row, cxpulse.schemas.rows, reads it from here: the client install imports
# this module, and the rows' module needs the worker's dependencies).
MAX_DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
UTF8_BOM = b"\xef\xbb\xbf"
#: The reason of a message holding an empty JSON array (a dead letter of kind empty_batch).
EMPTY_BATCH_REASON = "empty batch: the array holds no events"
MAX_BATCH_EVENTS = 10_000
#: What a rejection keeps of a message over the size bounds: enough to recognise it.
TOO_LARGE_KEPT_BYTES = 1024
#: What a rejection keeps of any other rejected input. The dead_letters table keeps no
#: more, and a dead-letter record far larger than this could exceed the producer's
#: request size (1 MB by default) and fail the very send meant to set it aside.
MAX_REJECTED_BYTES = MAX_DEAD_LETTER_PAYLOAD_BYTES


@dataclass(frozen=True, slots=True)
class Rejected:
    """An item that is not a valid event, with a reason a person can read.

    ``raw`` is the rejected input as it came (a whole message), or the item alone
    re-encoded as compact JSON (an item of a batch), cut short when it is very large;
    ``size`` is its length before any cut, so the dead letter can say how big it was.
    """

    index: int | None  # position in the batch; None when the message itself is unusable
    raw: bytes
    reason: str
    kind: str = "invalid"  # a bounded label for metrics: not_json, missing, enum, ...
    size: int = -1  # bytes before any cut; -1 means len(raw)

    def __post_init__(self) -> None:
        if self.size < 0:
            object.__setattr__(self, "size", len(self.raw))
        if len(self.raw) > MAX_REJECTED_BYTES:
            object.__setattr__(self, "raw", self.raw[:MAX_REJECTED_BYTES])


def _kind(exc: ValidationError) -> str:
    """The first error's pydantic type (a small, fixed vocabulary): a safe metric label."""
    errors = exc.errors()
    return str(errors[0]["type"]) if errors else "invalid"


def describe_validation_error(exc: ValidationError, limit: int = 3) -> str:
    """Field path + message for the first few errors, on one line."""
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "(event)"
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"(+{more} more)")
    return "; ".join(parts)


def _item_bytes(item: Any) -> bytes:
    """The item alone as compact JSON. Text that is not valid Unicode (a lone surrogate
    such as ``"\\ud800"`` is legal JSON) cannot become UTF-8, so such an item keeps its
    escapes (ASCII JSON, the same value)."""
    try:
        return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(item, separators=(",", ":")).encode()


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line for a person: its type and the first line of its text."""
    name = type(exc).__qualname__
    module = type(exc).__module__
    if module not in ("builtins", "__main__"):
        name = f"{module}.{name}"
    text = str(exc).strip().splitlines()
    return f"{name}: {text[0]}"[:limit] if text else name


def _json_failure(exc: Exception) -> str:
    """Why ``json.loads`` could not read a message, in words a producer can act on."""
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "nested too deeply (too many levels of arrays or objects inside each other)"
    if isinstance(exc, ValueError) and "integer string conversion" in str(exc):
        # Python refuses to parse integers of more than 4,300 digits (a CPU guard).
        return f"a number has too many digits ({str(exc).split(';')[0]})"
    return one_line(exc)


def _json_name(value: Any) -> str:
    """The JSON name of a decoded value's type (a message may hold any JSON)."""
    if value is None:
        return "null"
    names = {dict: "object", list: "array", str: "string", bool: "boolean"}
    return names.get(type(value), "number")


def _unusable(
    raw: bytes, reason: str, kind: str, size: int = -1
) -> tuple[list[TouchpointEvent], list[Rejected]]:
    return [], [Rejected(None, raw, reason, kind, size)]


def decode_message(raw: bytes | None) -> tuple[list[TouchpointEvent], list[Rejected]]:
    """Split one message into valid events and rejected items.

    A single-event message that fails keeps its original bytes; an item of a batch is
    re-encoded on its own (compact JSON), so the dead letter holds exactly that event.
    Either is cut at ``MAX_REJECTED_BYTES`` (a message over the size bounds at
    ``TOO_LARGE_KEPT_BYTES``), with the original size in ``Rejected.size``. Never raises.
    """
    if raw is None or raw == b"":
        return _unusable(raw or b"", "empty message: expected a JSON object or array", "empty")
    original = raw
    if raw.startswith(UTF8_BOM):
        # Some Windows tools write one before UTF-8 text. JSON forbids it, but it says
        # nothing about the content: read what follows (a dead letter keeps it as sent).
        raw = raw[len(UTF8_BOM) :]
    if len(original) > MAX_MESSAGE_BYTES:
        reason = f"message is {len(original)} bytes, over {MAX_MESSAGE_BYTES}"
        return _unusable(original[:TOO_LARGE_KEPT_BYTES], reason, "too_large", len(original))
    head = raw.lstrip()[:1]
    if head == b"[":
        events = _whole_batch(raw)
        if events is not None:
            return events, []
    elif head == b"{":
        try:
            return [TouchpointEvent.model_validate_json(raw)], []
        except ValidationError as exc:
            if _kind(exc) == "json_invalid":
                return _unusable(original, f"not JSON: {exc.errors()[0]['msg']}", "not_json")
            return _unusable(original, describe_validation_error(exc), _kind(exc))
        except Exception as exc:  # never expected from pydantic; rejected all the same
            return _unusable(original, f"could not check: {one_line(exc)}", "internal_error")
    return _read_items(original, raw)


def _read_items(original: bytes, raw: bytes) -> tuple[list[TouchpointEvent], list[Rejected]]:
    """A message read with Python's JSON parser, then each item of a batch validated on
    its own (``raw`` is ``original`` without a leading byte order mark)."""
    try:
        doc = json.loads(raw)
    except Exception as exc:  # RecursionError, huge integers, ...: unreadable all the same
        return _unusable(original, f"not JSON: {_json_failure(exc)}", "not_json")
    if not isinstance(doc, list):
        reason = f"expected a JSON object or array, got {_json_name(doc)}"
        return _unusable(original, reason, "not_object")
    if not doc:
        # Nothing to validate, yet not nothing: a producer sending empty batches is
        # likely broken (a filter that drops everything), so it leaves a trace.
        return _unusable(original, EMPTY_BATCH_REASON, "empty_batch")
    if len(doc) > MAX_BATCH_EVENTS:
        reason = f"batch has {len(doc)} events, over {MAX_BATCH_EVENTS}"
        return _unusable(original[:TOO_LARGE_KEPT_BYTES], reason, "too_large", len(original))
    events: list[TouchpointEvent] = []
    rejected: list[Rejected] = []
    for i, item in enumerate(doc):
        try:
            if not isinstance(item, dict):
                reason = f"expected a JSON object, got {type(item).__name__}"
                rejected.append(Rejected(i, _item_bytes(item), reason, "not_object"))
                continue
            try:
                events.append(TouchpointEvent.model_validate(item))
            except ValidationError as exc:
                reason = describe_validation_error(exc)
                rejected.append(Rejected(i, _item_bytes(item), reason, _kind(exc)))
        except Exception as exc:  # never expected; still only this item's problem
            reason = f"could not check this item: {one_line(exc)}"
            rejected.append(Rejected(i, _safe_item_bytes(item), reason, "internal_error"))
    return events, rejected


#: Stops at the first invalid item: the message is then read item by item anyway.
_BATCH = TypeAdapter(Annotated[list[TouchpointEvent], FailFast()])
#: The longest integer (in digits) pydantic's JSON parser reads; Python's own limit is
#: ``sys.get_int_max_str_digits()`` (4,300 unless the process changed it).
_PYDANTIC_INT_DIGITS = 4_300


def _whole_batch(raw: bytes) -> list[TouchpointEvent] | None:
    """The events of an array message when all of them are valid and within the batch
    bounds, validated by pydantic from the raw JSON in one call; else None (the message
    is then read item by item).

    The item-by-item path reads the JSON with Python's parser, then each object with the
    same model in Python mode. The two parsers agree on what they both accept (strict
    JSON; the last of duplicate keys wins; the same floats), and what only Python's reads
    makes this call fail: NaN and Infinity, lone surrogates (escaped or as bytes), numbers
    beyond pydantic's 4,300 digits. The other way round, pydantic's parser reads integers
    of up to 4,300 digits whatever the process's limit, so with a lower limit (which would
    make Python's parser reject the message) this path is not taken. A property test
    (tests/unit/test_batch_fast_path.py) holds the two paths to the same events over
    generated batches, valid and not, in every lax form.
    """
    limit = sys.get_int_max_str_digits()
    if 0 < limit < _PYDANTIC_INT_DIGITS:
        return None
    try:
        events = _BATCH.validate_json(raw)
    except Exception:  # ValidationError mostly: the item-by-item path says what and where
        return None
    return events if 0 < len(events) <= MAX_BATCH_EVENTS else None


def _safe_item_bytes(item: Any) -> bytes:
    try:
        return _item_bytes(item)
    except Exception:  # an item that cannot even be re-encoded: show what it was
        return repr(item)[:MAX_REJECTED_BYTES].encode("utf-8", errors="replace")


def encode_batch(events: list[TouchpointEvent]) -> bytes:
    """Encode events as one batch message (a JSON array), the format of every topic."""
    return b"[" + b",".join(e.model_dump_json(exclude_none=True).encode() for e in events) + b"]"
