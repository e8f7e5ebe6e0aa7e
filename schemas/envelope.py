"""Decoding the wire format: one message carries one event (a JSON object) or a batch
(a JSON array of objects).

Faust costs far more per Kafka message than pydantic costs per event, so batches are the
normal case. Each item of a batch is validated on its own: one bad event never takes its
batch-mates down with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from schemas.events import TouchpointEvent

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
MAX_BATCH_EVENTS = 10_000


@dataclass(frozen=True, slots=True)
class Rejected:
    """An item that is not a valid event, kept untouched with a reason a person can read."""

    index: int | None  # position in the batch; None when the message itself is unusable
    raw: bytes
    reason: str
    kind: str = "invalid"  # a bounded label for metrics: not_json, missing, enum, ...


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
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()


def _unusable(raw: bytes, reason: str, kind: str) -> tuple[list[TouchpointEvent], list[Rejected]]:
    return [], [Rejected(None, raw, reason, kind)]


def decode_message(raw: bytes | None) -> tuple[list[TouchpointEvent], list[Rejected]]:
    """Split one message into valid events and rejected items.

    A single-event message that fails keeps its original bytes; an item of a batch is
    re-encoded on its own (compact JSON), so the dead letter holds exactly that event.
    """
    if raw is None or raw == b"":
        return _unusable(raw or b"", "empty message: expected a JSON object or array", "empty")
    if len(raw) > MAX_MESSAGE_BYTES:
        reason = f"message is {len(raw)} bytes, over {MAX_MESSAGE_BYTES}"
        return _unusable(raw[:1024], reason, "too_large")
    if raw.lstrip()[:1] == b"{":
        try:
            return [TouchpointEvent.model_validate_json(raw)], []
        except ValidationError as exc:
            if _kind(exc) == "json_invalid":
                return _unusable(raw, f"not JSON: {exc.errors()[0]['msg']}", "not_json")
            return _unusable(raw, describe_validation_error(exc), _kind(exc))
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _unusable(raw, f"not JSON: {exc}", "not_json")
    if not isinstance(doc, list):
        reason = f"expected a JSON object or array, got {type(doc).__name__}"
        return _unusable(raw, reason, "not_object")
    if len(doc) > MAX_BATCH_EVENTS:
        reason = f"batch has {len(doc)} events, over {MAX_BATCH_EVENTS}"
        return _unusable(raw[:1024], reason, "too_large")
    events: list[TouchpointEvent] = []
    rejected: list[Rejected] = []
    for i, item in enumerate(doc):
        if not isinstance(item, dict):
            rejected.append(
                Rejected(
                    i,
                    _item_bytes(item),
                    f"expected a JSON object, got {type(item).__name__}",
                    "not_object",
                )
            )
            continue
        try:
            events.append(TouchpointEvent.model_validate(item))
        except ValidationError as exc:
            rejected.append(
                Rejected(i, _item_bytes(item), describe_validation_error(exc), _kind(exc))
            )
    return events, rejected


def encode_batch(events: list[TouchpointEvent]) -> bytes:
    """Encode events as one batch message (a JSON array), the format of every topic."""
    return b"[" + b",".join(e.model_dump_json(exclude_none=True).encode() for e in events) + b"]"
