"""A checkpoint's states to a table's changelog: producer batches, not one message each.

Faust sends a table's changelog one record at a time (``Collection.send_changelog``): a
future, a trip through its producer buffer, the producer's ``send``, the sensors, and on
delivery a callback that writes the record's offset to the partition's RocksDB. A
checkpoint of the experience step holds one record per customer it changed, thousands of
them, and that per-record path was the largest cost of the worker outside the scoring
core (docs/benchmarks.md, "Around the core").

``send_records`` hands the same records (the bytes the store wrote, keyed as the table
keys them) to the producer in whole batches, one run of batches per partition, and
returns once the broker has acknowledged every one of them; then it records each
partition's last offset as the store's persisted offset, once, as Faust's callback would
after its last record. The topic, the partitions, the keys and the values are those of
Faust's own path, so recovery reads them the same way.

Where the app's producer is not running (Faust's ``test_context``, which never starts
it), the records go through ``send_changelog`` as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from faust.types import TP

Record = tuple[bytes, bytes]  # (key, value), both as the changelog holds them


async def send_records(table: Any, records: Mapping[int, Sequence[Record]]) -> None:
    """Send ``records`` (partition → encoded keys and values) to ``table``'s changelog;
    returns once the broker has them all."""
    producer = getattr(table.app.producer, "_producer", None)  # the aiokafka producer
    if producer is None:
        for partition, items in records.items():
            for key, value in items:
                table.send_changelog(
                    partition, key, value, key_serializer="raw", value_serializer="raw"
                )
        return
    topic = table.changelog_topic.get_topic_name()
    sent = await asyncio.gather(
        *(_send_partition(producer, topic, p, items) for p, items in records.items() if items)
    )
    store = table.data
    open_partitions = getattr(store, "_dbs", None)
    for partition, last in sent:
        # Faust's own callback opens a partition's RocksDB to write this; a partition
        # revoked meanwhile is left to its new owner.
        if last >= 0 and (open_partitions is None or partition in open_partitions):
            store.set_persisted_offset(TP(topic, partition), last)


async def _send_partition(
    producer: Any, topic: str, partition: int, items: Sequence[Record]
) -> tuple[int, int]:
    """The records of one partition in as few batches as the producer's batch size
    allows; returns (partition, offset of the last record)."""
    delivered: list[tuple[asyncio.Future[Any], int]] = []
    batch = producer.create_batch()
    for key, value in items:
        if batch.append(key=key, value=value, timestamp=None) is None:  # full
            delivered.append(await _submit(producer, batch, topic, partition))
            batch = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)  # a new batch takes any
    delivered.append(await _submit(producer, batch, topic, partition))
    last = -1
    for future, count in delivered:
        metadata = await future  # None only with acks=0, which no worker sets
        if metadata is not None:
            last = max(last, metadata.offset + count - 1)
    return partition, last


async def _submit(
    producer: Any, batch: Any, topic: str, partition: int
) -> tuple[asyncio.Future[Any], int]:
    """Queue a batch (closed: it leaves without waiting for the producer's linger);
    returns its delivery future and how many records it holds."""
    batch.close()
    future = await producer.send_batch(batch, topic, partition=partition)
    return future, batch.record_count()
