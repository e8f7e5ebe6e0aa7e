"""Records to a topic through the producer itself, not one Faust message each.

Faust sends a message through a path of its own for each one (``Topic.send``): a
``FutureMessage``, the key and value serialised through the topic's codecs, the producer's
buffer, aiokafka's ``send``, the sensors before and after, and on delivery callbacks that
resolve the message's futures. For a table's changelog that path was the largest cost of
the worker outside the scoring core (docs/benchmarks.md, "Around the core"); for an
alert it is most of what the alert costs the worker: an alert is sent on ``cx.alerts``,
and the case it opens or updates on ``cx.cases`` and to the cases table's changelog
(docs/benchmarks.md, session 39).

Here the records of a step (already bytes) bypass that path. ``send_batches`` appends them
to aiokafka batches, one run of batches per partition, each queued closed, so it leaves
without waiting for the producer's linger, and returns once the broker has every record:
a checkpoint's changelog.
``submit_keyed`` (alerts, case changes: a few records a take) hands each record to the
aiokafka producer's own ``send``, which puts it in the partition Faust's ``Topic.send``
would have (the producer's partitioner: murmur2 of the key), so readers keyed by subject
see the same partitions and order as before. The topics, keys and values are those of
Faust's own path.

Where the app's producer is not running (Faust's ``test_context``, which never starts
it), the records go through ``Topic.send`` as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

#: (key, value) as the topic holds them; a None value is a tombstone
Record = tuple[bytes | None, bytes | None]
#: a queued batch: its delivery future, and how many records it holds
Queued = tuple[asyncio.Future[Any], int]


def producer_of(app: Any) -> Any | None:
    """The app's running aiokafka producer, or None (not started: ``test_context``)."""
    return getattr(app.producer, "_producer", None)


async def send_batches(
    producer: Any, topic: str, records: Mapping[int, Sequence[Record]]
) -> dict[int, int]:
    """Send ``records`` (partition → its records, in order) in as few batches as the
    producer's batch size allows, the partitions side by side (a partition's next batch
    waits until its last one has left); returns, once the broker has them all, each
    partition's offset of its last record (-1 when the broker gave none)."""
    parts = [(p, items) for p, items in records.items() if items]
    last = await asyncio.gather(*(_send_partition(producer, topic, p, i) for p, i in parts))
    return {p: offset for (p, _), offset in zip(parts, last, strict=True)}


async def _send_partition(
    producer: Any, topic: str, partition: int, items: Sequence[Record]
) -> int:
    queued: list[Queued] = []
    batch = producer.create_batch()
    for key, value in items:
        if batch.append(key=key, value=value, timestamp=None) is None:  # full
            queued.append(await _queue(producer, batch, topic, partition))
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)  # a new batch takes any
    queued.append(await _queue(producer, batch, topic, partition))
    offset = -1
    for future, count in queued:
        metadata = await future  # None only with acks=0, which no worker sets
        if metadata is not None:
            offset = max(offset, metadata.offset + count - 1)
    return offset


async def submit_keyed(topic: Any, records: Sequence[tuple[str, bytes | None]]) -> list[Any]:
    """Queue ``records`` (key text, value) on the Faust ``topic``; returns what to await
    for the broker's acknowledgement of all of them.

    Through the aiokafka producer's own ``send``, not closed batches: it appends each
    record to its partition's open batch (the partition its key gives, by the producer's
    partitioner: where Faust's ``Topic.send`` put it) and waits only when that batch is
    full, so a step is not held up by a batch of its last take still on its way; the
    records leave with the producer's linger, as Faust's did."""
    if not records:
        return []
    producer = producer_of(topic.app)
    if producer is None:
        return [await topic.send(key=key.encode(), value=value) for key, value in records]
    name = topic.get_topic_name()
    return [await producer.send(name, value=value, key=key.encode()) for key, value in records]


async def _queue(producer: Any, batch: Any, topic: str, partition: int) -> Queued:
    """Queue a batch (closed: it leaves without waiting for the producer's linger)."""
    batch.close()
    future = await producer.send_batch(batch, topic, partition=partition)
    return future, batch.record_count()
