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


def decode_message(raw: bytes | None) -> tuple[list[TouchpointEvent], list[Rejected]]:
    """Split one message into valid events and rejected items.

    A single-event message that fails keeps its original bytes; an item of a batch is
    re-encoded on its own (compact JSON), so the dead letter holds exactly that event.
    """
    if raw is None or raw == b"":
        return [], [Rejected(None, raw or b"", "empty message: expected a JSON object or array")]
    if len(raw) > MAX_MESSAGE_BYTES:
        return [], [
            Rejected(None, raw[:1024], f"message is {len(raw)} bytes, over {MAX_MESSAGE_BYTES}")
        ]
    stripped = raw.lstrip()
    if stripped[:1] == b"{":
        try:
            return [TouchpointEvent.model_validate_json(raw)], []
        except ValidationError as exc:
            return [], [Rejected(None, raw, describe_validation_error(exc))]
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return [], [Rejected(None, raw, f"not JSON: {exc}")]
    if not isinstance(doc, list):
        return [], [
            Rejected(None, raw, f"expected a JSON object or array, got {type(doc).__name__}")
        ]
    if len(doc) > MAX_BATCH_EVENTS:
        return [], [
            Rejected(None, raw[:1024], f"batch has {len(doc)} events, over {MAX_BATCH_EVENTS}")
        ]
    events: list[TouchpointEvent] = []
    rejected: list[Rejected] = []
    for i, item in enumerate(doc):
        if not isinstance(item, dict):
            rejected.append(
                Rejected(i, _item_bytes(item), f"expected a JSON object, got {type(item).__name__}")
            )
            continue
        try:
            events.append(TouchpointEvent.model_validate(item))
        except ValidationError as exc:
            rejected.append(Rejected(i, _item_bytes(item), describe_validation_error(exc)))
    return events, rejected


def encode_batch(events: list[TouchpointEvent]) -> bytes:
    """Encode events as one batch message (a JSON array), the format of every topic."""
    return b"[" + b",".join(e.model_dump_json(exclude_none=True).encode() for e in events) + b"]"
