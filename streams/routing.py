"""The validate step as a plain function: raw messages in, per-partition batches and dead
letters out. The Faust agent only moves bytes; this is what it decides.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from schemas.envelope import Rejected, decode_message
from schemas.events import TouchpointEvent
from streams.core.health import health_key
from streams.partitioning import partition_for


@dataclass(frozen=True, slots=True)
class Source:
    """Where a raw message came from, for the dead letter's lineage."""

    topic: str
    partition: int
    offset: int


@dataclass(slots=True)
class Routed:
    """Validated events grouped by the partition of their customer and by the partition
    of their touchpoint instance (health state is keyed by instance), and the rejects."""

    by_partition: dict[int, list[TouchpointEvent]] = field(
        default_factory=lambda: defaultdict(list)
    )
    by_health_partition: dict[int, list[TouchpointEvent]] = field(
        default_factory=lambda: defaultdict(list)
    )
    rejected: list[tuple[Source, Rejected]] = field(default_factory=list)

    @property
    def valid_count(self) -> int:
        return sum(len(v) for v in self.by_partition.values())


def route(messages: list[tuple[Source, bytes | None]], partitions: int) -> Routed:
    """Validate every message; one bad event never takes its batch-mates down."""
    routed = Routed()
    for source, raw in messages:
        events, rejected = decode_message(raw)
        for event in events:
            routed.by_partition[partition_for(event.customer_id, partitions)].append(event)
            routed.by_health_partition[partition_for(health_key(event), partitions)].append(event)
        routed.rejected.extend((source, r) for r in rejected)
    return routed


def dead_letter_headers(source: Source, rejected: Rejected) -> list[tuple[str, bytes]]:
    """The DLQ record's headers: the reason and the source, so the value stays untouched."""
    return [
        ("cxpulse.reason", rejected.reason.encode()),
        ("cxpulse.reason_kind", rejected.kind.encode()),
        ("cxpulse.source.topic", source.topic.encode()),
        ("cxpulse.source.partition", str(source.partition).encode()),
        ("cxpulse.source.offset", str(source.offset).encode()),
        ("cxpulse.source.index", str(-1 if rejected.index is None else rejected.index).encode()),
    ]
