"""The consumer fix for input skipped around a restart (cxpulse.streams.kafka_consumer), on the
real broker with a real aiokafka consumer group: deterministic, no worker, no timing.

What a rebalance does to a worker, reproduced step by step: the consumer fetches records
(its position moves past them), Faust throws them away (the flow is stopped), and then
asks for a seek "to the committed offsets". aiokafka's own seek leaves a never-committed
partition, and one committed at 0, where the fetch left it; the fixed seek brings every
stream partition back to the first record not known to be done.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import OffsetAndMetadata, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from cxpulse.streams.kafka_consumer import let_through, seek_to_committed_or_reset, true_end_offsets
from tests.conftest import make_unique_name

pytestmark = [pytest.mark.kafka]

PER_PARTITION = 10


async def _fill(bootstrap: str, topic: str, partitions: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for p in range(partitions):
            for i in range(PER_PARTITION):
                await producer.send_and_wait(topic, f"{p}-{i}".encode(), partition=p)
    finally:
        await producer.stop()


async def _consume_all(consumer: AIOKafkaConsumer, expect: int) -> int:
    got = 0
    for _ in range(100):
        batches = await consumer.getmany(timeout_ms=500)
        got += sum(len(records) for records in batches.values())
        if got >= expect:
            break
    return got


async def _scenario(bootstrap: str, fixed: bool) -> dict[int, int]:
    """Positions of three partitions after fetching everything and seeking back:
    partition 0 never committed, 1 committed at 0, 2 committed at 4."""
    topic = make_unique_name("seek")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        admin.close()
    await _fill(bootstrap, topic, 3)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=make_unique_name("group"),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(tps)
        assert await _consume_all(consumer, 3 * PER_PARTITION) == 3 * PER_PARTITION
        await consumer.commit({tps[1]: OffsetAndMetadata(0, ""), tps[2]: OffsetAndMetadata(4, "")})
        assert [await consumer.position(tp) for tp in tps] == [PER_PARTITION] * 3
        if fixed:
            sought: list[tuple[TopicPartition, int | None]] = []
            committed = await seek_to_committed_or_reset(
                consumer,
                tps,
                is_changelog=lambda tp: False,
                on_seek=lambda tp, offset: sought.append((tp, offset)),
            )
            assert committed == {tps[0]: None, tps[1]: 0, tps[2]: 4}
            # each stream partition's seek is announced, with where it goes (None: reset)
            assert sorted(sought) == [(tps[0], None), (tps[1], 0), (tps[2], 4)]
        else:
            await consumer.seek_to_committed(*tps)
        return {tp.partition: await consumer.position(tp) for tp in tps}
    finally:
        await consumer.stop()


def test_aiokafka_alone_leaves_uncommitted_partitions_past_their_records(kafka_broker: Any) -> None:
    """The defect, as it is in the pinned libraries: if this starts failing, aiokafka
    fixed it, and cxpulse.streams.kafka_consumer's seek can go."""
    positions = asyncio.run(_scenario(kafka_broker.bootstrap, fixed=False))
    assert positions == {0: PER_PARTITION, 1: PER_PARTITION, 2: 4}


def test_the_fixed_seek_brings_every_stream_partition_back(kafka_broker: Any) -> None:
    positions = asyncio.run(_scenario(kafka_broker.bootstrap, fixed=True))
    assert positions == {0: 0, 1: 0, 2: 4}


def test_records_behind_the_read_offset_but_not_committed_are_delivered() -> None:
    # The drain loop's read offset ran ahead (a record of the pre-seek position set it
    # to 90 after the seek back to 0): records 0..89 must come through.
    assert let_through(0, read_offset=90, committed=None)
    assert let_through(50, read_offset=90, committed=40)
    # Known to be done: dropped as before.
    assert not let_through(39, read_offset=90, committed=40)
    # In order: the drain loop delivers these itself.
    assert not let_through(91, read_offset=90, committed=None)
    assert not let_through(0, read_offset=None, committed=None)


async def _batched_topic(bootstrap: str) -> tuple[str, int]:
    """A partition written in multi-record batches: 10 records, then 5 (lingered)."""
    topic = make_unique_name("ends")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=100)
    await producer.start()
    try:
        for n in (10, 5):
            sent = [await producer.send(topic, b"x", partition=0) for _ in range(n)]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return topic, 15


async def _ends(bootstrap: str) -> tuple[int, int, int]:
    topic, records = await _batched_topic(bootstrap)
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        reported = (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()
    true = (await true_end_offsets(bootstrap, {tp: reported}))[tp]
    return records, reported, true


def test_true_end_offsets_are_read_off_the_records(kafka_broker: Any) -> None:
    """tansu's end offset counts the last batch as one record; table recovery reads up to
    the end offset, so the worker reads the true one off the records there."""
    records, reported, true = asyncio.run(_ends(kafka_broker.bootstrap))
    assert true == records
    assert reported <= records  # tansu: 11 (the last batch's base + 1); exact brokers: 15


def test_the_worker_consumer_waits_as_long_as_the_setting_says() -> None:
    """Faust hard-codes a 1.5 s fetch wait; the worker's consumer takes the setting."""
    from cxpulse.streams.app import create_app
    from cxpulse.streams.settings import load_settings

    app = create_app(load_settings(kafka_url="kafka://127.0.0.1:1", consumer_fetch_max_wait_ms=80))

    async def made() -> int:
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        return int(consumer._fetch_max_wait_ms)

    assert asyncio.run(made()) == 80
