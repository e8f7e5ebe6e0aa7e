"""Faust's Kafka consumer, with the two places fixed where it could skip input.

faust-streaming 0.15.3 on aiokafka 0.1x loses records a worker fetched around a
rebalance (a restart while upstream publishes lost input in 5 of 60 runs). Two places:

1. **The seek that never seeks.** Whenever Faust throws fetched records away (the flow
   was stopped for a rebalance, the generation changed, a partition was not active),
   it relies on ``Consumer.perform_seek`` to move the partitions back to their
   committed offsets. That calls aiokafka's ``AIOKafkaConsumer.seek_to_committed``,
   which seeks only when the committed offset is ``> 0``: a partition the group never
   committed (and one committed at 0) keeps its advanced fetch position, and the
   records in between are gone. Here a stream partition is sought to its committed
   offset whenever there is one (0 included), and a never-committed one back to where
   the consumer's offset-reset policy starts it (earliest by default), which is where
   its first fetch began.
2. **Records dropped as "already read".** The drain loop (``Consumer._drain_messages``)
   drops a record whose offset is below the partition's read offset. ``perform_seek``
   resets the read offset after its seek, but a record of the pre-seek position that
   the drain loop was delivering at that moment sets it forward again, and then every
   record of the sought-back position is dropped until that offset, and committed past
   when later records are acknowledged. Here such a record is let through whenever it
   is at or after the committed offset: a record that was already delivered comes
   again (downstream is idempotent: event ids, deterministic keys), a record that was
   not is never lost.

3. **End offsets on the bundled broker.** tansu reports a partition's end offset as if
   its last record batch held one record (the batch's base offset + 1). Faust recovers a
   table by reading its changelog up to that end offset, so a changelog written in
   multi-record batches would be recovered only in part. Where the broker's end offsets
   are not exact (``App.end_offsets_exact`` False: the worker sets it on tansu), the end
   offsets recovery asks for are read off the records themselves (``true_end_offsets``),
   and producers batch as usual.

Installed by ``App`` below (``streams.app`` builds the worker with it); only Faust's
``kafka://`` transport is replaced. docs/operations.md has the write-up for Faust's and
aiokafka's maintainers, with a reproduction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP


async def seek_to_committed_or_reset(
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition],
    *,
    is_changelog: Callable[[TopicPartition], bool],
    reset: str = "earliest",
) -> dict[TopicPartition, int | None]:
    """Seek each partition to its committed offset; a stream partition the group never
    committed goes back to where ``reset`` starts it. Returns the committed offsets
    (None where there is none), as aiokafka's ``seek_to_committed`` does.

    Changelog partitions keep aiokafka's behaviour: Faust positions them itself (table
    recovery) and never commits them.
    """
    committed: dict[TopicPartition, int | None] = {}
    never: list[TopicPartition] = []
    for tp in partitions:
        offset = await consumer.committed(tp)
        committed[tp] = offset
        if is_changelog(tp):
            if offset is not None and offset > 0:
                consumer.seek(tp, offset)
        elif offset is not None and offset >= 0:
            consumer.seek(tp, offset)
        else:
            never.append(tp)
    if never:
        if reset == "latest":
            await consumer.seek_to_end(*never)
        else:
            await consumer.seek_to_beginning(*never)
    return committed


async def true_end_offsets(
    bootstrap: str, reported: Mapping[TopicPartition, int], *, rounds: int = 20
) -> dict[TopicPartition, int]:
    """The end offset of each partition, read off its last records: one past the highest
    offset found from ``reported - 1`` on (a fetch there returns the whole last batch).
    A partition with nothing at or after that point keeps the reported offset."""
    ends = dict(reported)
    pending = {tp for tp, end in ends.items() if end and end > 0}
    if not pending:
        return ends
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
        client_id="cxpulse-end-offsets",
    )
    await consumer.start()
    try:
        consumer.assign(sorted(pending, key=lambda tp: (tp.topic, tp.partition)))
        for tp in pending:
            consumer.seek(tp, ends[tp] - 1)
        for _ in range(rounds):
            batches = await consumer.getmany(*pending, timeout_ms=200)
            if not any(batches.values()):
                break
            for tp, records in batches.items():
                if records:
                    ends[tp] = max(ends[tp], records[-1].offset + 1)
    finally:
        await consumer.stop()
    return ends


def let_through(offset: int, read_offset: int | None, committed: int | None) -> bool:
    """Whether a record the drain loop would drop as already read must be delivered: it
    is below the read offset but not below the committed one (not known to be done)."""
    if read_offset is None or offset >= read_offset:
        return False  # the drain loop delivers it anyway
    return committed is None or offset >= committed


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """aiokafka's consumer thread, with a seek that seeks every stream partition, and a
    fetch wait the app sets (Faust hard-codes 1.5 s, and the bundled broker holds a
    fetch that long when a partition has nothing new: an event crosses two of a
    worker's consumers before its alert leaves, so that wait was most of the latency)."""

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait = getattr(self.app, "fetch_max_wait_ms", None)
        if wait is not None:
            consumer._fetch_max_wait_ms = int(wait)  # read when the consumer starts
        return consumer

    async def seek_to_committed(self) -> Mapping[TP, int]:
        return await self.call_thread(self._seek_every_partition)

    async def _seek_every_partition(self) -> Mapping[TP, int]:
        consumer = self._ensure_consumer()
        faust_consumer: Any = self.consumer
        result = await seek_to_committed_or_reset(
            consumer,
            consumer.assignment(),
            is_changelog=faust_consumer._is_changelog_tp,
            reset=str(self.app.conf.consumer_auto_offset_reset),
        )
        return {tp: offset for tp, offset in result.items() if offset is not None}

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        ends = await super()._highwaters(partitions)
        if getattr(self.app, "end_offsets_exact", True) or self.consumer.in_transaction:
            return ends
        url = self.app.conf.broker_consumer[0]
        return await true_end_offsets(f"{url.host}:{url.port or 9092}", ends)


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer that never drops a record it has not committed."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        read_offset = self._read_offset
        committed = self._committed_offset
        async for tp, message in super().getmany(timeout):
            if let_through(message.offset, read_offset[tp], committed.get(tp)):
                self.log.info(
                    "Redelivering %s[%s]@%s, behind the read offset %s after a seek back",
                    tp.topic,
                    tp.partition,
                    message.offset,
                    read_offset[tp],
                )
                read_offset[tp] = None
            yield tp, message


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


class App(faust.App):
    """A Faust app whose ``kafka://`` consumer is the fixed one above."""

    #: False where the broker's end offsets count a batch as one record (tansu): table
    #: recovery then reads the true end offsets off the records.
    end_offsets_exact: bool = True
    #: The worker consumer's fetch wait (ms); None keeps Faust's 1,500.
    fetch_max_wait_ms: int | None = None

    def _new_transport(self) -> Any:
        url = self.conf.broker_consumer[0]
        if url.scheme in ("kafka", "aiokafka"):
            return Transport(self.conf.broker_consumer, self)
        return super()._new_transport()
