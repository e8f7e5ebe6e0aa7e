"""What the agents of one worker share: the app, its topics, the sink writer, the model.

Built once by ``cxpulse.streams.app.create_app``; each agent module registers itself against it,
so every topic object and the single sink thread are created in exactly one place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import faust

from cxpulse.schemas.model import ExperienceModel
from cxpulse.sinks.writer import SinkWriter
from cxpulse.streams.settings import Settings

#: Events per message on internal topics: big enough to amortise Faust's per-message
#: cost, small enough to stay far below Kafka's default 1 MB message limit.
ENVELOPE_EVENTS = 500


@dataclass
class Runtime:
    app: faust.App
    settings: Settings
    writer: SinkWriter
    model: ExperienceModel
    raw: faust.TopicT
    events: faust.TopicT
    dlq: faust.TopicT
    moments: faust.TopicT
    scores: faust.TopicT
    health: faust.TopicT
    alerts: faust.TopicT
    cases: faust.TopicT | None = None
    case_commands: faust.TopicT | None = None
    #: Every case, as this worker sees it (``cxpulse.streams.cases.feed``), for the API.
    case_feed: Any = None


#: Header of every batch message on an internal topic: how many items it holds, so the
#: sink agents batch by rows (what ClickHouse cares about) without decoding anything twice.
COUNT_HEADER = "cxpulse.count"


def count_headers(n: int) -> list[tuple[str, bytes]]:
    return [(COUNT_HEADER, str(n).encode())]


def items_in(event: Any, default: int = 1) -> int:
    """The item count a batch message carries in its header; ``default`` when it has none
    (raw input, another producer's message, one from a worker before the header
    existed)."""
    raw: Any = event.headers or {}
    pairs = raw.items() if hasattr(raw, "items") else raw
    for key, value in pairs:
        if key == COUNT_HEADER:
            try:
                return max(1, int(value))
            except (TypeError, ValueError):
                return 1
    return default


def chunks(items: list[Any], size: int = ENVELOPE_EVENTS) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
