"""Records in producer batches (cxpulse.streams.pipeline.produce), on the real broker with
a real aiokafka producer, the one Faust's producer wraps.

A checkpoint's changelog records (cxpulse.streams.state.changelog): every record lands on
its partition, in order, with its key and value, over several batches; the store's
persisted offset is each partition's last record; a partition the store no longer holds
gets none. Keyed records (alerts, case changes: ``submit_keyed``): each lands in the
partition the producer's own ``send`` gives its key, in order, tombstones included."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from cxpulse.streams.pipeline.produce import submit_keyed
from cxpulse.streams.state.changelog import send_records
from tests.conftest import make_unique_name

pytestmark = [pytest.mark.kafka]

#: Enough records of a few hundred bytes (a customer state's size) for many batches of
#: aiokafka's default 16 KiB.
PER_PARTITION = 300


@dataclass
class Store:
    """What ``send_records`` reads of a table's store: its open partitions, and where the
    persisted offsets go."""

    _dbs: dict[int, object]
    persisted: dict[int, int] = field(default_factory=dict)

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        self.persisted[tp.partition] = offset


async def _scenario(bootstrap: str) -> tuple[dict[int, list[tuple[bytes, bytes]]], Any, Store]:
    topic = make_unique_name("changelog")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        admin.close()
    records = {
        p: [(f"C-{p}-{i}".encode(), bytes([65 + p]) * (400 + i)) for i in range(PER_PARTITION)]
        for p in (0, 1, 2)
    }
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    store = Store(_dbs={0: object(), 1: object()})  # partition 2 revoked meanwhile
    table = SimpleNamespace(
        app=SimpleNamespace(producer=SimpleNamespace(_producer=producer)),
        changelog_topic=SimpleNamespace(get_topic_name=lambda: topic),
        data=store,
    )
    try:
        await send_records(table, records)
    finally:
        await producer.stop()
    got: dict[int, list[Any]] = {0: [], 1: [], 2: []}
    for m in await _read(bootstrap, topic, 3 * PER_PARTITION):
        got[m.partition].append(m)
    return records, got, store


async def _read(bootstrap: str, topic: str, expect: int) -> list[Any]:
    """The topic's records from the start, until ``expect`` of them (each partition's in
    order)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list[Any] = []
    try:
        for _ in range(100):
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(batch)
            if len(got) >= expect:
                break
    finally:
        await consumer.stop()
    return got


def test_records_land_in_order_and_the_persisted_offset_is_the_last(kafka_broker: Any) -> None:
    records, got, store = asyncio.run(_scenario(kafka_broker.bootstrap))

    for partition, sent in records.items():
        assert [(m.key, m.value) for m in got[partition]] == sent
    # sent in many producer batches, not one
    assert sum(len(v) for _, v in records[0]) > 10 * 16_384
    assert store.persisted == {p: got[p][-1].offset for p in (0, 1)}


async def _keyed(bootstrap: str) -> tuple[list[tuple[str, bytes | None]], dict[str, int], Any]:
    ours, theirs = make_unique_name("keyed"), make_unique_name("sent")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(ours, 4, 1), NewTopic(theirs, 4, 1)])
    finally:
        admin.close()
    # subjects repeat (a subject's records stay in order); one is deleted (a tombstone)
    records: list[tuple[str, bytes | None]] = [
        (f"customer-{i % 37}", f"alert {i}".encode()) for i in range(500)
    ]
    records.append(("customer-5", None))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    topic = SimpleNamespace(
        app=SimpleNamespace(producer=SimpleNamespace(_producer=producer)),
        get_topic_name=lambda: ours,
    )
    try:
        acknowledged = await submit_keyed(topic, records)
        await asyncio.gather(*acknowledged)
        # where the producer's own send (Faust's path) puts each key
        where = {}
        for key in {k for k, _ in records}:
            metadata = await (await producer.send(theirs, key=key.encode(), value=b"x"))
            where[key] = metadata.partition
    finally:
        await producer.stop()
    return records, where, await _read(bootstrap, ours, len(records))


def test_keyed_records_land_where_the_producer_would_put_them(kafka_broker: Any) -> None:
    records, where, got = asyncio.run(_keyed(kafka_broker.bootstrap))

    assert len(got) == len(records)
    assert {m.key.decode(): m.partition for m in got} == where
    assert len(set(where.values())) == 4  # the keys spread over every partition
    for key in where:  # each key's records in the order given
        mine = sorted((m for m in got if m.key.decode() == key), key=lambda m: m.offset)
        assert [m.value for m in mine] == [v for k, v in records if k == key]  # tombstone too
