"""Every worker's view of every case: the latest version of each case and its recent
changes, read from the compacted ``cx.cases`` topic (all partitions, from the start, no
consumer group), so any worker answers ``/api/cases`` and streams ``/api/cases/events``
whoever owns the case. The cases agent also hands its own changes over at once.

Readers wait on it: an ack or resolve answers when the case's new version arrives, and
each Server-Sent Events client has a bounded queue (a client too slow to read loses the
oldest changes, never holds back the feed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from cxpulse.schemas.cases import Case, CaseChange
from cxpulse.schemas.vocabulary import SEVERITIES

log = logging.getLogger(__name__)

#: Changes of one case kept for ``GET /api/cases/{id}`` (the full history is the
#: ClickHouse table case_history).
HISTORY_MAX = 100
#: Changes an SSE client may have unread before the oldest are dropped.
SUBSCRIBER_QUEUE = 1000


def order_key(case: Case) -> tuple[int, float, str]:
    """Critical first, then the earliest due."""
    return (-SEVERITIES.index(case.severity), case.due_at.timestamp(), str(case.case_id))


class CaseFeed:
    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}
        self.history: dict[str, deque[CaseChange]] = {}
        # None in a queue ends that subscriber's stream (the worker is stopping).
        self._subscribers: set[asyncio.Queue[Case | None]] = set()
        self.closed = False
        self._changed = asyncio.Condition()
        #: Set once the feed has read cx.cases up to the end offsets it found at start;
        #: until then a list would miss cases, so the API answers 503 (``loading``).
        self.loaded = asyncio.Event()
        #: (partitions read to their start-up end, partitions of cx.cases), for that answer.
        self.progress: tuple[int, int] = (0, 0)

    def get(self, case_id: str) -> Case | None:
        return self.cases.get(case_id.lower())

    def apply(self, change: CaseChange) -> bool:
        """Take a change in; False when it is not newer than what the feed holds."""
        case = change.case
        key = str(case.case_id)
        held = self.cases.get(key)
        if held is not None and held.version >= case.version:
            return False
        self.cases[key] = case
        self.history.setdefault(key, deque(maxlen=HISTORY_MAX)).append(change)
        for queue in self._subscribers if not self.closed else ():
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(case)
        self._notify()
        return True

    def forget(self, case_id: str) -> None:
        """A tombstone on cx.cases: the case closed long ago and left the workers."""
        self.cases.pop(case_id.lower(), None)
        self.history.pop(case_id.lower(), None)

    def close(self) -> None:
        """End every subscriber's stream: the worker is stopping, and an open Server-Sent
        Events response would hold its web server's stop up (aiohttp waits up to 60 s)."""
        self.closed = True
        for queue in self._subscribers:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(None)

    def _notify(self) -> None:
        async def wake() -> None:
            async with self._changed:
                self._changed.notify_all()

        with contextlib.suppress(RuntimeError):  # no running loop: nobody waits
            asyncio.get_running_loop().create_task(wake())

    def list(
        self, status: str | None = None, owner: str | None = None, limit: int = 100
    ) -> list[Case]:
        cases = [
            c
            for c in self.cases.values()
            if (status is None or c.status == status) and (owner is None or c.owner == owner)
        ]
        return sorted(cases, key=order_key)[:limit]

    async def wait_for(
        self,
        case_id: str,
        above: int,
        timeout: float,
        status: str | None = None,
    ) -> Case | None:
        """The case once its version is above ``above`` (and, given ``status``, it has
        that status: an alert's update arriving first is not the answer); None after
        ``timeout`` s."""

        def newer() -> bool:
            held = self.get(case_id)
            return (
                held is not None
                and held.version > above
                and (status is None or held.status == status)
            )

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(newer)
        except TimeoutError:
            return None
        return self.get(case_id)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Case | None]]:
        """A queue of the cases changed from now on; ``None`` ends it (``close``)."""
        queue: asyncio.Queue[Case | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        if self.closed:
            queue.put_nowait(None)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)


async def follow(
    feed: CaseFeed, topic: str, make_consumer: Callable[[], Any], retry_seconds: float = 2.0
) -> None:
    """Read ``topic`` from the start into ``feed``, forever; reconnects after errors.
    ``make_consumer`` builds an unstarted aiokafka consumer without a group."""
    from aiokafka.structs import TopicPartition

    positions: dict[int, int] = {}
    while True:
        consumer = None
        try:
            consumer = make_consumer()
            await consumer.start()
            partitions = consumer.partitions_for_topic(topic)
            while not partitions:
                await asyncio.sleep(retry_seconds)
                await consumer.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic)
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            for tp in tps:
                if tp.partition in positions:
                    consumer.seek(tp, positions[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            ends = await consumer.end_offsets(tps)
            pending = {tp.partition: end for tp, end in ends.items() if end > 0}
            feed.progress = (len(tps) - len(pending), len(tps))
            if not pending:
                feed.loaded.set()
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=1000)
                for tp, records in batches.items():
                    for record in records:
                        positions[tp.partition] = record.offset + 1
                        if record.value is None:
                            if record.key:
                                feed.forget(record.key.decode(errors="replace"))
                            continue
                        try:
                            feed.apply(CaseChange.from_json_bytes(record.value))
                        except ValueError as exc:
                            log.warning("skipping an unreadable case change: %s", exc)
                for tp in tps:
                    end = pending.get(tp.partition)
                    if end is not None and positions.get(tp.partition, 0) >= end:
                        del pending[tp.partition]
                feed.progress = (len(tps) - len(pending), len(tps))
                if not pending:
                    feed.loaded.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("reading %s failed, again in %.0fs: %s", topic, retry_seconds, exc)
            await asyncio.sleep(retry_seconds)
        finally:
            if consumer is not None:
                with contextlib.suppress(Exception):
                    await consumer.stop()
