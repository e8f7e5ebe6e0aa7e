"""Faust's Kafka consumer, with the four places fixed where it could skip input, the
one where a stop or a rebalance could hang, and two things the bundled broker needs.

faust-streaming 0.15.3 on aiokafka 0.1x loses records a worker fetched around a
rebalance (a restart while upstream publishes lost input in 5 of 60 runs). Three places:

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
3. **Records of a fetch made before the seek.** The drain loop goes on delivering the
   rest of a batch fetched before ``perform_seek`` ran (the seek happens while it waits
   on a record's delivery). Such a record is ahead of the sought-back read offset, and
   the drain loop takes the distance for a gap in the log (``Consumer._add_gap``, meant
   for compacted or transactional topics): every offset from the committed one up to
   that record is then counted as acknowledged by ``Consumer._new_offset``, and
   committed as soon as the first records after the committed offset are. Records the
   agents had not yet processed (sought back, queued) are committed past; when the
   queues are then cleared (a stop, a rebalance), they are never processed. As far as
   the evidence goes, this lost one ``events`` message for the ``experience`` agent
   while ``sink_events``, faster, had already written it. Here a record of a partition
   that was sought after its batch was fetched is not delivered: the seek put the
   position at or before it, so it is fetched again, in order.

And one place where a stop or a rebalance could hang:

4. **Cleared queues keep their messages waited for.** On a stop and on every
   rebalance Faust suspends the flow, clears the agents' queues
   (``FlowControlEvent.clear``) and then waits until every message a stream took is
   acknowledged (``Consumer.wait_empty``, with no time limit). A message on a topic that
   two agents read (``events``: ``experience`` and ``sink_events``) that one agent took
   while its copy still sat in the other's cleared queue can never be acknowledged: the
   reference count of the cleared copy is never released. The worker then waits forever
   (a SIGTERM ends in the orchestrator's SIGKILL). Here clearing a queue forgets its
   messages: marked done without being acknowledged, so no commit covers them (they
   are delivered again after the seek) and nothing waits for them.

And one more place that skipped input, at the end of every table recovery:

5. **Records of the sought position cleared from the agents' queues.** When a table
   recovery ends (``Recovery.on_recovery_completed``, also ``_resume_streams``), Faust
   resumes the stream partitions, seeks them to their committed offsets, and only then
   calls ``app.flow_control.resume()``, which empties every agent's queue
   (``FlowControlEvent.resume`` clears the queues it manages, meant for events of
   before a rebalance). But the flow has been running since the recovery began: the
   fetcher delivers records of the stream partitions as soon as they are resumed,
   before the seek (those are fetched again after it) and after it. A record fetched
   after the seek and queued before ``resume`` is cleared and, the position being
   past it, never fetched again: a worker started while input was published skipped
   that message (1 restart in 6 to 8 of ``test_customer_state_survives_a_restart``),
   and once a later record of its partition is done the commit passes it for good
   (``Consumer._new_offset`` lets one offset after the committed one be missing).
   Here resuming a flow that was not suspended clears only the
   events of records fetched before the latest seek of their partition (they are
   fetched again) and of changelogs, as Faust did; events of records fetched after
   it stay queued (logged: "Keeping <n> queued events fetched after their partition's
   seek"). Resuming a suspended flow still clears every queue: nothing was
   let into the queues since the suspension, whatever is there came before it.

And two for the bundled broker:

6. **End offsets.** tansu reports a partition's end offset as if
   its last record batch held one record (the batch's base offset + 1). Faust recovers a
   table by reading its changelog up to that end offset, so a changelog written in
   multi-record batches would be recovered only in part. Where the broker's end offsets
   are not exact (``App.end_offsets_exact`` False: the worker sets it on tansu), the end
   offsets recovery asks for are read off the records themselves (``true_end_offsets``),
   and producers batch as usual.
7. **Fetch wait.** Faust hard-codes a 1.5 s fetch wait; tansu holds a fetch on a quiet
   partition that long, and an event crosses two of a worker's consumers before its
   alert leaves. The worker's consumers take ``App.fetch_max_wait_ms`` instead.

And one place where a partition drained at one record a commit (kill -9 and restart
scenarios: ``alerts`` lag 640 to 338 in four minutes, one offset a commit a partition):

8. **Offsets acknowledged twice.** Faust keeps a partition's acknowledged offsets in a
   list and commits up to the end of its first run of consecutive offsets
   (``Consumer._new_offset``). A gap (``Consumer._add_gap``) is merged into that list
   without looking at what is there: with a range of offsets in it twice, the first run
   is two offsets long and each commit (every ~2.8 s) moves the committed offset by
   one. Here the offsets are taken as a set, and those below the committed offset
   (done) are dropped, before Faust picks the run to commit.
9. **A gap over records just delivered.** ``Consumer.perform_seek`` sets every read
   offset back to the committed offset once the last partition is sought. The seeks
   take a committed-offset request each and the fetcher goes on meanwhile, so a
   partition sought early had records delivered (and acknowledged) from its new
   position before that; the next record then looked like a gap over them (fix 8's
   twice-acknowledged offsets, and a gap that counts queued records as done). Here a
   partition's read offset is set to the sought offset in the same step as its seek,
   and ``perform_seek`` leaves the read offsets alone.

Installed by ``App`` below (``cxpulse.streams.app`` builds the worker with it); only Faust's
``kafka://`` transport is replaced. docs/operations.md has the write-up for Faust's and
aiokafka's maintainers, with a reproduction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import suppress
from typing import Any
from weakref import WeakKeyDictionary

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from cxpulse.streams.kafka_url import format_address

logger = logging.getLogger(__name__)


async def seek_to_committed_or_reset(
    consumer: AIOKafkaConsumer,
    partitions: Iterable[TopicPartition],
    *,
    is_changelog: Callable[[TopicPartition], bool],
    reset: str = "earliest",
    on_seek: Callable[[TopicPartition, int | None], None] | None = None,
) -> dict[TopicPartition, int | None]:
    """Seek each partition to its committed offset; a stream partition the group never
    committed goes back to where ``reset`` starts it. Returns the committed offsets
    (None where there is none), as aiokafka's ``seek_to_committed`` does.

    Changelog partitions keep aiokafka's behaviour: Faust positions them itself (table
    recovery) and never commits them.

    ``on_seek(tp, offset)`` is called for each stream partition in the same step as its
    position changes (no await in between), so that a fetch that ends on the consumer's
    event loop is either wholly before the seek or wholly after it; ``offset`` is the
    committed offset sought, None for a partition sent where ``reset`` starts it.
    """
    sought = on_seek or (lambda tp, offset: None)
    committed: dict[TopicPartition, int | None] = {}
    never: list[TopicPartition] = []
    for tp in partitions:
        offset = await consumer.committed(tp)
        committed[tp] = offset
        if is_changelog(tp):
            if offset is not None and offset > 0:
                consumer.seek(tp, offset)
        elif offset is not None and offset >= 0:
            sought(tp, offset)
            consumer.seek(tp, offset)
        else:
            never.append(tp)
    if never:
        for tp in never:
            sought(tp, None)
        # aiokafka invalidates the positions before its first await: still the same step.
        if reset == "latest":
            await consumer.seek_to_end(*never)
        else:
            await consumer.seek_to_beginning(*never)
    return committed


async def true_end_offsets(
    bootstrap: str | list[str],
    reported: Mapping[TopicPartition, int],
    *,
    rounds: int = 20,
    client_config: Mapping[str, Any] | None = None,
) -> dict[TopicPartition, int]:
    """The end offset of each partition, read off its last records: one past the highest
    offset found from ``reported - 1`` on (a fetch there returns the whole last batch).
    A partition with nothing at or after that point keeps the reported offset.
    ``client_config`` holds the security settings (aiokafka keywords), as the app's own
    consumer has them."""
    ends = dict(reported)
    pending = {tp for tp, end in ends.items() if end and end > 0}
    if not pending:
        return ends
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        **dict(client_config or {}),
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

    #: Seconds the aiokafka consumer may take to stop (a guard: with the brokers gone its
    #: group coordinator gives up at once, but a stop that outlasts an orchestrator's
    #: grace period ends in a SIGKILL). Past it the consumer is left as it is; what it did
    #: not commit is read again (at-least-once).
    stop_timeout: float = 4.0

    async def on_thread_stop(self) -> None:
        """Stop the aiokafka consumer, whatever its fetcher raises.

        With the brokers unreachable, aiokafka's ``Fetcher.close`` cancels its fetch task
        and awaits it, re-raising that task's CancelledError. Out of here it would end
        the thread before it tells the worker it is done, and the worker would wait for
        it for mode's 60 s shutdown timeout: a SIGTERM took 61 s."""
        try:
            await asyncio.wait_for(super().on_thread_stop(), self.stop_timeout)
        except TimeoutError:
            logger.warning(
                "the Kafka consumer did not stop within %.0fs (Kafka unreachable?); what "
                "it did not commit is read again",
                self.stop_timeout,
            )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this stop itself is cancelled
            logger.info("the Kafka consumer stopped (its fetcher's last request was cancelled)")

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
            on_seek=faust_consumer.sought,
        )
        return {tp: offset for tp, offset in result.items() if offset is not None}

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        ends = await super()._highwaters(partitions)
        if getattr(self.app, "end_offsets_exact", True) or self.consumer.in_transaction:
            return ends
        conf = self.app.conf
        bootstrap = [
            format_address((u.host or "localhost", u.port or 9092)) for u in conf.broker_consumer
        ]
        security = faust_aiokafka.credentials_to_aiokafka_auth(
            conf.broker_credentials, conf.ssl_context
        )
        return await true_end_offsets(bootstrap, ends, client_config=security)

    async def _fetch_records(self, *args: Any, **kwargs: Any) -> Any:
        records = await super()._fetch_records(*args, **kwargs)
        # On the thread that also seeks: no seek can come between the fetch and this.
        faust_consumer: Any = self.consumer
        faust_consumer.seeks.fetched()
        return records


class Seeks:
    """How many times each partition was sought back, to tell a record fetched before
    the latest seek of its partition (stale: fetched again from the sought position)
    from one fetched after it. Keys are (topic, partition): Faust's ``TP`` and aiokafka's
    ``TopicPartition`` are both such tuples."""

    def __init__(self) -> None:
        self.count: dict[tuple[str, int], int] = {}
        self.at_fetch: dict[tuple[str, int], int] = {}  # the counts when the last fetch ended
        # The count of its partition when each delivered message's batch was fetched.
        self.delivered: WeakKeyDictionary[Any, int] = WeakKeyDictionary()

    def sought(self, tps: Iterable[tuple[str, int]]) -> None:
        for tp in tps:
            key = (tp[0], tp[1])
            self.count[key] = self.count.get(key, 0) + 1

    def fetched(self) -> None:
        self.at_fetch = dict(self.count)

    def stale(self, tp: tuple[str, int], at_fetch: Mapping[tuple[str, int], int]) -> bool:
        """Whether ``tp`` was sought since ``at_fetch`` (a ``snapshot()`` taken when the
        record's batch had been fetched)."""
        key = (tp[0], tp[1])
        return self.count.get(key, 0) != at_fetch.get(key, 0)

    def deliver(
        self, tp: tuple[str, int], message: Any, at_fetch: Mapping[tuple[str, int], int]
    ) -> None:
        """Note that ``message`` of ``tp``, of a batch fetched at ``at_fetch``, is delivered."""
        # A record that is not a Faust message (no weak reference) is never kept queued.
        with suppress(TypeError):
            self.delivered[message] = at_fetch.get((tp[0], tp[1]), 0)

    def current(self, tp: tuple[str, int], message: Any) -> bool:
        """Whether ``message`` was delivered from a fetch made after the latest seek of
        ``tp``: the partition's position is past it, it is not fetched again."""
        at_fetch = self.delivered.get(message)
        return at_fetch is not None and at_fetch == self.count.get((tp[0], tp[1]), 0)


class Consumer(faust_aiokafka.Consumer):
    """Faust's aiokafka consumer that never drops a record it has not committed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.seeks = Seeks()
        #: One past the highest offset fetched of each partition: its end offset as far
        #: as the records tell (``cxpulse.streams.lag``: where the broker's end offsets are not
        # exact).
        self.fetched_end: dict[tuple[str, int], int] = {}
        super().__init__(*args, **kwargs)

    def sought(self, tp: TopicPartition, offset: int | None) -> None:
        """A stream partition was sought to ``offset`` (on the consumer's thread, in the
        same step as the seek, fix 9): its batches fetched before are stale (``Seeks``),
        and its read offset is the sought one (None for a reset), as Faust sets it only
        once every partition is sought: a record missing after it (compacted away) is
        still a gap, and records delivered from there on move it forward."""
        self.seeks.sought([tp])
        self._read_offset[TP(tp.topic, tp.partition)] = offset

    async def perform_seek(self) -> None:
        """Faust's, without setting the read offsets to the committed offsets once every
        partition is sought (fix 9): each partition's was set with its seek. The seeks
        take a committed-offset request each, and the fetcher goes on meanwhile: records
        of a partition sought early are fetched and delivered from its new position
        before the last one is sought, and a read offset set back after them made the
        next record look like a gap over them."""
        committed = await self.seek_to_committed()
        self._committed_offset.update(
            {TP(tp.topic, tp.partition): offset or None for tp, offset in committed.items()}
        )

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        read_offset = self._read_offset
        committed = self._committed_offset
        seeks = self.seeks
        at_fetch: dict[tuple[str, int], int] | None = None
        reported: set[TP] = set()
        fetched_end = self.fetched_end
        async for tp, message in super().getmany(timeout):
            if at_fetch is None:  # this batch's fetch is the last one that ended
                at_fetch = seeks.at_fetch
            if message.offset >= fetched_end.get(tp, 0):
                fetched_end[tp] = message.offset + 1
            if seeks.stale(tp, at_fetch):
                if tp not in reported:
                    reported.add(tp)
                    self.log.info(
                        "Not delivering %s[%s] from @%s: fetched before a seek back, "
                        "it is fetched again",
                        tp.topic,
                        tp.partition,
                        message.offset,
                    )
                continue
            if let_through(message.offset, read_offset[tp], committed.get(tp)):
                self.log.info(
                    "Redelivering %s[%s]@%s, behind the read offset %s after a seek back",
                    tp.topic,
                    tp.partition,
                    message.offset,
                    read_offset[tp],
                )
                read_offset[tp] = None
            seeks.deliver(tp, message, at_fetch)
            yield tp, message

    def _new_offset(self, tp: TP) -> int | None:
        """Faust's, on the acknowledged offsets as a set (fix 8): each at most once, none
        below the committed offset (those are done; each run of them cost a commit that
        committed nothing)."""
        acked = self._acked[tp]
        if acked:
            gap_for_tp = self._gap[tp]
            if gap_for_tp:  # Faust's merge of the gaps up to the highest acknowledged offset
                max_offset = max(acked)
                spans = sorted(gap_for_tp.overlap(0, max_offset), key=lambda x: x.begin)
                if spans:
                    merged = [o for span in spans for o in range(span.begin, span.end)]
                    acked.extend(merged)
                    gap_for_tp.chop(0, max(merged[-1], max_offset + 1))
            committed = self._committed_offset[tp]
            done = {o for o in acked if committed is None or o >= committed}
            if len(done) != len(acked):
                acked[:] = sorted(done)
                if committed is not None:
                    index = self._acked_index[tp]
                    index.difference_update([o for o in index if o < committed])
        return super()._new_offset(tp)

    def fetched_after_seek(self, message: Any) -> bool:
        """Whether an event of ``message`` must stay queued when a running flow is
        resumed: a stream partition's record fetched after the latest seek of its
        partition (clearing it would skip it, see fix 5)."""
        tp = message.tp
        return not self._is_changelog_tp(tp) and self.seeks.current(tp, message)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


def forget(message: Any) -> bool:
    """Take ``message`` out of the consumer's bookkeeping without acknowledging it: a
    final acknowledgement no longer records its offset as done (nothing commits past it)
    and ``Consumer.wait_empty`` stops waiting for it (it drops messages marked acked).
    Returns whether it was still pending."""
    with ack_lock:
        if message.acked:
            return False
        message.acked = True
        return True


class FlowControl(FlowControlEvent):
    """Faust's flow control, whose ``clear`` forgets the messages of the events it
    drops from the agents' queues instead of leaving them waited for, and whose
    ``resume`` of a running flow keeps the events ``keep(message)`` says must stay
    (fix 5: records fetched after the latest seek of their partition)."""

    def __init__(
        self, *args: Any, keep: Callable[[Any], bool] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.keep = keep

    def resume(self) -> None:
        keep = self.keep
        if self._suspend.is_set() or keep is None:
            super().resume()  # clears every queue
            return
        self._resume.set()
        kept_records: list[str] = []
        for queue in list(self._queues):
            items = getattr(queue, "_queue", None)
            if items is None:
                queue.clear()
                continue
            kept = []
            for item in list(items):
                message = getattr(item, "message", None)
                if message is not None and keep(message):
                    kept.append(item)
                    kept_records.append(f"{message.topic}[{message.partition}]@{message.offset}")
                elif message is not None:
                    forget(message)
            items.clear()
            items.extend(kept)
        if kept_records:
            logger.info(
                "Keeping %d queued events fetched after their partition's seek: %s",
                len(kept_records),
                ", ".join(kept_records[:10]),
            )

    def clear(self) -> None:
        for queue in list(self._queues):
            for item in list(getattr(queue, "_queue", ())):
                message = getattr(item, "message", None)
                if message is not None:
                    forget(message)
        super().clear()


class App(faust.App):
    """A Faust app whose ``kafka://`` consumer is the fixed one above."""

    #: False where the broker's end offsets count a batch as one record (tansu): table
    #: recovery then reads the true end offsets off the records.
    end_offsets_exact: bool = True
    #: The worker consumer's fetch wait (ms); None keeps Faust's 1,500.
    fetch_max_wait_ms: int | None = None

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        return FlowControl(loop=self.loop, keep=self._keep_queued)

    def _keep_queued(self, message: Any) -> bool:
        fetched_after_seek = getattr(self.consumer, "fetched_after_seek", None)
        return fetched_after_seek is not None and bool(fetched_after_seek(message))

    def _create_directories(self) -> None:
        """Faust makes its data directory with one ``mkdir``; the worker's is nested
        (``<data_dir>/faust/<app id>``: local table state belongs to one app id)."""
        self.conf.datadir.mkdir(parents=True, exist_ok=True)
        super()._create_directories()

    def _new_transport(self) -> Any:
        url = self.conf.broker_consumer[0]
        if url.scheme in ("kafka", "aiokafka"):
            return Transport(self.conf.broker_consumer, self)
        return super()._new_transport()
