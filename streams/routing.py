"""The validate step as a plain function: raw messages in, per-partition batches and dead
letters out. The Faust agent only moves bytes; this is what it decides.

``route`` never raises because of one message: an exception while handling a message (a
bug, or input nobody foresaw) turns that message into a dead letter with the reason and
the rest of the batch goes on. Raising instead would leave the batch uncommitted, so the
same message would crash the agent again after every restart.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, NamedTuple

from cxpulse.schemas.envelope import Rejected, one_line
from cxpulse.streams.partitioning import partition_for
from cxpulse.streams.pipeline.decode import decode
from cxpulse.streams.pipeline.records import Event
from cxpulse.streams.rules.touchpoint_degraded import health_key


@dataclass(frozen=True, slots=True)
class Source:
    """Where a raw message came from, for the dead letter's lineage.

    ``timestamp_ms`` is the Kafka record's timestamp (epoch milliseconds). A replay of the
    same record carries the same one, while the dead letter produced for it gets a new
    record time; so the dead letter takes its ``received_at`` from this, and a replay
    yields the very same ``dead_letters`` row (same table partition, deduplicated).
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None = None

    @classmethod
    def of(cls, event: Any) -> Source:
        """The source of a Faust event (its ``message`` has topic, partition, offset and
        the record timestamp in epoch seconds)."""
        message = event.message
        stamp = message.timestamp
        return cls(
            message.topic,
            message.partition,
            message.offset,
            round(stamp * 1000) if stamp else None,
        )


class Decoded(NamedTuple):
    """One message as ``route(..., local=True)`` read it: every valid event and rejected
    item (the events' positions in their envelope follow from the two), and the events of
    the customers of the message's own partition, kept for the caller."""

    events: list[Event]
    rejected: list[Rejected]
    local: list[Event]


@dataclass(slots=True)
class Routed:
    """Validated events grouped by the partition of their customer and by the partition
    of their touchpoint instance (health state is keyed by instance), and the rejects;
    with ``local``, each message as read (``Decoded``), its local events in no group of
    customers."""

    by_partition: dict[int, list[Event]] = field(default_factory=lambda: defaultdict(list))
    by_health_partition: dict[int, list[Event]] = field(default_factory=lambda: defaultdict(list))
    rejected: list[tuple[Source, Rejected]] = field(default_factory=list)
    messages: list[Decoded] = field(default_factory=list)

    @property
    def valid_count(self) -> int:
        """Every valid event (each is in one group of instances)."""
        return sum(len(v) for v in self.by_health_partition.values())


log = logging.getLogger(__name__)


def route(
    messages: list[tuple[Source, bytes | None]], partitions: int, *, local: bool = False
) -> Routed:
    """Validate every message; one bad event never takes its batch-mates down, and one
    message that cannot be handled at all never takes the other messages down.

    ``local``: the events of customers of the message's own partition are not grouped
    with the others but kept with their message (``Routed.messages``): the experience
    step scores them where they are, as the input topic and the customer table are
    partitioned alike (same count, the customer's partition: ``partition_for``); only the
    others need the hop through the events topic."""
    routed = Routed()
    by_partition, by_health_partition = routed.by_partition, routed.by_health_partition
    for source, raw in messages:
        try:
            records, rejected = decode(raw)  # validated once: trusted from here
            # Every placement first, then the appends: a failure cannot route half a message.
            partition = [partition_for(r.customer_id, partitions) for r in records]
            health = [partition_for(health_key(r), partitions) for r in records]
        except Exception as exc:
            log.exception(
                "could not handle message %s/%d@%d; sent to the dead-letter topic",
                source.topic,
                source.partition,
                source.offset,
            )
            records, partition, health, rejected = [], [], [], [_failed(raw, exc)]
        kept: list[Event] = []
        here = source.partition if local else -1
        for record, p, h in zip(records, partition, health, strict=True):
            (kept if p == here else by_partition[p]).append(record)
            by_health_partition[h].append(record)
        if local:
            routed.messages.append(Decoded(records, rejected, kept))
        if rejected:
            routed.rejected.extend((source, r) for r in rejected)
    _in_event_time(by_partition)
    _in_event_time(by_health_partition)
    return routed


def _in_event_time(by_partition: dict[int, list[Event]]) -> None:
    """Sort each partition's events by ``occurred_at`` (stable: ties keep delivery order).

    One call routes many messages, taken from several source partitions in the order the
    consumer delivered them (round-robin over partitions). During a catch-up each source
    partition sits at its own point in event time, so their concatenation jumps back and
    forth by hours, and the chunks sent on would reach the health state (which ignores
    events beyond its allowed lateness, 30 min by default) far out of order: an outage in
    the backlog could go unseen. Sorted, the chunks are as ordered as the input allows.
    The lists are runs already in order, so the sort costs little more than a merge.
    """
    for events in by_partition.values():
        events.sort(key=_occurred_at)


_occurred_at = attrgetter("occurred_at")


def _failed(raw: bytes | None, exc: Exception) -> Rejected:
    """The dead letter of a message whose handling raised: the whole message, the error."""
    data = raw or b""
    return Rejected(None, data, f"could not process the message: {one_line(exc)}", "internal_error")


def dead_letter_headers(source: Source, rejected: Rejected) -> list[tuple[str, bytes]]:
    """The DLQ record's headers: the reason and the source, so the value is only the input.

    ``cxpulse.source.bytes`` is the rejected input's size before any cut (the value may be
    cut short), ``cxpulse.source.timestamp`` the source record's timestamp (epoch ms),
    when known.
    """
    headers = [
        ("cxpulse.reason", _text(rejected.reason)),
        ("cxpulse.reason_kind", _text(rejected.kind)),
        ("cxpulse.source.topic", source.topic.encode()),
        ("cxpulse.source.partition", str(source.partition).encode()),
        ("cxpulse.source.offset", str(source.offset).encode()),
        ("cxpulse.source.index", str(-1 if rejected.index is None else rejected.index).encode()),
        ("cxpulse.source.bytes", str(rejected.size).encode()),
    ]
    if source.timestamp_ms is not None:
        headers.append(("cxpulse.source.timestamp", str(source.timestamp_ms).encode()))
    return headers


def _text(value: str) -> bytes:
    """A header value: one line of UTF-8, whatever text an error message quoted."""
    return " ".join(value.splitlines()).encode("utf-8", errors="replace")
