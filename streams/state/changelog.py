"""A checkpoint's states to a table's changelog: producer batches, not one message each.

Faust sends a table's changelog one record at a time (``Collection.send_changelog``): a
future, a trip through its producer buffer, the producer's ``send``, the sensors, and on
delivery a callback that writes the record's offset to the partition's RocksDB. A
checkpoint of the experience step holds one record per customer it changed, thousands of
them, and that per-record path was the largest cost of the worker outside the scoring
core (docs/benchmarks.md, "Around the core").

``send_records`` hands the same records (the bytes the store wrote, keyed as the table
keys them) to the producer in whole batches (``cxpulse.streams.pipeline.produce``), one
run of batches per partition, and returns once the broker has acknowledged every one of
them; then it records each partition's last offset as the store's persisted offset, once,
as Faust's callback would after its last record. The topic, the partitions, the keys and
the values are those of Faust's own path, so recovery reads them the same way.

Where the app's producer is not running (Faust's ``test_context``, which never starts
it), the records go through ``send_changelog`` as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from faust.types import TP

from cxpulse.streams.pipeline.produce import Record, producer_of, send_batches


async def send_records(table: Any, records: Mapping[int, Sequence[Record]]) -> None:
    """Send ``records`` (partition → keys and values as the changelog holds them; a None
    value deletes its key) to ``table``'s changelog; returns once the broker has them
    all."""
    producer = producer_of(table.app)
    if producer is None:
        for partition, items in records.items():
            for key, value in items:
                table.send_changelog(
                    partition, key, value, key_serializer="raw", value_serializer="raw"
                )
        return
    topic = table.changelog_topic.get_topic_name()
    last = await send_batches(producer, topic, records)
    store = table.data
    open_partitions = getattr(store, "_dbs", None)
    for partition, offset in last.items():
        # Faust's own callback opens a partition's RocksDB to write this; a partition
        # revoked meanwhile is left to its new owner.
        if offset >= 0 and (open_partitions is None or partition in open_partitions):
            store.set_persisted_offset(TP(topic, partition), offset)
