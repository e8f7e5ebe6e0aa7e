"""Faust's consumer bookkeeping around a seek back and a cleared queue, and the fixes in
cxpulse.streams.kafka_consumer: deterministic, no broker (tests/integration/test_consumer_seek.py
has the seek itself on the real broker; ``make chaos`` the whole worker)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import Message
from intervaltree import IntervalTree
from mode.utils.queues import FlowControlQueue

from cxpulse.streams.kafka_consumer import Consumer, FlowControl, Seeks, forget

TPX = TP("events", 0)


def bookkeeping(committed: int | None) -> Any:
    """The attributes Faust's ``_add_gap``/``_new_offset``/``ack`` use, on a bare object."""
    c: Any = object.__new__(Consumer)
    c._gap = defaultdict(IntervalTree)
    c._acked = defaultdict(list)
    c._acked_index = defaultdict(set)
    c._committed_offset = defaultdict(lambda: None, {TPX: committed})
    c._read_offset = defaultdict(lambda: None)
    c._unacked_messages = set()
    c._n_acked = 0
    c._waiting_for_ack = None
    c.app = SimpleNamespace(topics=SimpleNamespace(acks_enabled_for=lambda topic: True))
    c.seeks = Seeks()
    c.fetched_end = {}
    c.log = SimpleNamespace(info=lambda *a, **k: None)
    return c


def message(offset: int) -> Message:
    return Message("events", 0, offset, 0.0, 0, [], b"", b"", None, tp=TPX)


def test_faust_counts_a_stale_record_s_gap_as_acknowledged() -> None:
    """Why a record fetched before a seek must not be delivered after it: sought back to
    the committed offset 10, the drain loop meets a stale record at 20 and calls the
    distance a gap (``_add_gap(tp, r_offset + 1, offset)``); once 10..12 are processed,
    Faust's commits (one per commit interval) reach 21, past 13..19 that were sought back
    for processing and not yet done."""

    async def scenario() -> int | None:
        c = bookkeeping(committed=10)
        await FaustConsumer._add_gap(c, TPX, 11, 20)
        for offset in (10, 11, 12):
            FaustConsumer.ack(c, message(offset))
        for _ in range(5):  # what Consumer.commit does, interval after interval
            new = FaustConsumer._new_offset(c, TPX)
            if new is None:
                break
            c._committed_offset[TPX] = new
        return c._committed_offset[TPX]

    assert asyncio.run(scenario()) == 21


def test_records_fetched_before_a_seek_of_their_partition_are_not_delivered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The drain loop handles record 20 of a batch; meanwhile the partition is sought
    back: the rest of that batch (21, 22) is not delivered (the position is before it,
    it is fetched again). Another partition's records of the same batch are."""
    other = TP("events", 1)
    c = bookkeeping(committed=None)

    async def fetched(self: Any, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        self.seeks.fetched()
        yield TPX, message(20)
        self.seeks.sought([TPX])  # perform_seek ran while record 20 was delivered
        yield TPX, message(21)
        yield other, SimpleNamespace(offset=5)
        yield TPX, message(22)

    monkeypatch.setattr(faust_aiokafka.Consumer, "getmany", fetched)

    async def drain() -> list[tuple[TP, int]]:
        return [(tp, m.offset) async for tp, m in Consumer.getmany(c, 1.0)]

    assert asyncio.run(drain()) == [(TPX, 20), (other, 5)]


def test_a_forgotten_message_is_never_recorded_as_done() -> None:
    """A message whose copy was cleared from an agent's queue: another agent's final
    acknowledgement must not make its offset committable."""
    c = bookkeeping(committed=10)
    m = message(10)
    c._unacked_messages.add(m)
    m.refcount = 1  # the cleared copy's reference, never released
    assert forget(m)
    assert not FaustConsumer.ack(c, m)
    assert FaustConsumer._new_offset(c, TPX) is None
    c._unacked_messages -= {x for x in c._unacked_messages if x.acked}  # wait_empty's clean
    assert not c._unacked_messages


def test_clearing_the_queues_forgets_their_messages() -> None:
    async def scenario() -> tuple[bool, bool, int]:
        flow = FlowControl()
        queue: FlowControlQueue = FlowControlQueue(
            maxsize=10, flow_control=flow, clear_on_resume=True
        )
        queued, taken = message(3), message(2)
        queue.put_nowait(SimpleNamespace(message=queued))
        flow.clear()
        return queued.acked, taken.acked, queue.qsize()

    assert asyncio.run(scenario()) == (True, False, 0)


def event(m: Message) -> Any:
    return SimpleNamespace(message=m)


def test_faust_s_resume_clears_a_record_fetched_after_the_seek() -> None:
    """Why a table recovery's end skipped input: the flow already runs, the stream
    partitions are sought, a record of the sought position is queued, and then
    ``FlowControlEvent.resume`` (mode's, Faust's flow control) empties the queue. The
    position is past that record: nothing fetches it again."""

    async def scenario() -> int:
        flow = FlowControl()  # keep=None: Faust's resume
        queue: FlowControlQueue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        flow.resume()  # the recovery resumed the flow
        queue.put_nowait(event(message(1)))  # fetched after the seek
        flow.resume()  # Recovery.on_recovery_completed, after perform_seek
        return queue.qsize()

    assert asyncio.run(scenario()) == 0


def test_resuming_a_running_flow_keeps_the_records_fetched_after_the_latest_seek(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Record 1 is delivered, its partition is sought back to 1, record 1 (fetched
    again) and 2 are delivered: resuming the running flow forgets the first copy of 1
    (its position was sought back, it is fetched again: it was) and keeps the two of the
    fetch after the seek; a changelog's record goes, as with Faust."""
    c = bookkeeping(committed=1)
    c.app.tables = SimpleNamespace(changelog_topics={"table-changelog"})
    changelog = TP("table-changelog", 0)
    before, again, after = message(1), message(1), message(2)
    restored = Message("table-changelog", 0, 7, 0.0, 0, [], b"", b"", None, tp=changelog)

    batches = [[(TPX, before), (changelog, restored)], [(TPX, again), (TPX, after)]]

    async def fetched(self: Any, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        self.seeks.fetched()
        for record in batches.pop(0):
            yield record

    monkeypatch.setattr(faust_aiokafka.Consumer, "getmany", fetched)

    async def scenario() -> tuple[list[Message], list[bool]]:
        flow = FlowControl(keep=lambda m: Consumer.fetched_after_seek(c, m))
        queue: FlowControlQueue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        flow.resume()
        async for _, m in Consumer.getmany(c, 1.0):
            queue.put_nowait(event(m))
        c.seeks.sought([TPX])  # perform_seek, between two fetches
        async for _, m in Consumer.getmany(c, 1.0):
            queue.put_nowait(event(m))
        flow.resume()  # Recovery.on_recovery_completed, after perform_seek
        kept = [queue.get_nowait().message for _ in range(queue.qsize())]
        return kept, [m.acked for m in (before, restored, again, after)]

    kept, acked = asyncio.run(scenario())
    assert kept == [again, after]
    assert acked == [True, True, False, False]  # forgotten: never recorded as done


def test_resuming_a_suspended_flow_clears_every_queue() -> None:
    """After a suspension (a rebalance) every queued event came before it: all go."""
    c = bookkeeping(committed=None)
    c.app.tables = SimpleNamespace(changelog_topics=set())
    m = message(5)
    c.seeks.deliver(TPX, m, {})

    async def scenario() -> tuple[int, bool]:
        flow = FlowControl(keep=lambda m: Consumer.fetched_after_seek(c, m))
        queue: FlowControlQueue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        flow.resume()
        queue.put_nowait(event(m))
        flow.suspend()
        flow.resume()
        return queue.qsize(), m.acked

    assert Consumer.fetched_after_seek(c, m)
    assert asyncio.run(scenario()) == (0, True)


def test_a_gap_over_acknowledged_offsets_commits_at_once() -> None:
    """Fix 8: after a seek back to 100, records 100..400 were delivered and acknowledged
    before Faust set the read offset back to 100 (fix 9); record 401 then recorded the
    gap 101..401 over them. Faust's list holds 101..401 twice and commits one offset a commit (300
    commits, ~14 min); on a set, the first commit reaches the end."""

    def commits(new_offset: Any) -> list[int | None]:
        c = bookkeeping(committed=100)
        c._acked[TPX] = list(range(100, 500))
        c._acked_index[TPX] = set(range(100, 500))
        c._gap[TPX].addi(101, 402)  # _add_gap(tp, 101, 401)
        made: list[int | None] = []
        while c._committed_offset[TPX] < 500 and len(made) < 1000:
            new = new_offset(c, TPX)
            made.append(new)
            if new is not None and new > c._committed_offset[TPX]:
                c._committed_offset[TPX] = new
        return made

    faust = commits(FaustConsumer._new_offset)
    assert len(faust) == 302 and faust[:3] == [102, 103, 104]
    assert commits(Consumer._new_offset) == [500]


def test_offsets_below_the_committed_one_do_not_hold_a_commit_back() -> None:
    """Fix 8: offsets acknowledged again below the committed one (a redelivered copy
    while a commit was under way) are done: the commit goes past them at once."""
    c = bookkeeping(committed=50)
    for offsets in ([20, 21], [30, 31]):
        c._acked[TPX].extend(offsets)
    c._acked[TPX].extend(range(50, 60))
    c._acked_index[TPX].update(c._acked[TPX])
    assert Consumer._new_offset(c, TPX) == 60
    assert not c._acked[TPX] and not c._acked_index[TPX]


def test_a_seek_sets_the_read_offset_and_perform_seek_leaves_it() -> None:
    """Fix 9: a partition's read offset is the sought offset from its seek on (so a
    record compacted away right after it is still a gap); records delivered from its new
    position before the last partition is sought move it forward, and perform_seek does
    not set it back to the committed offset (the next record would look like a gap over
    them). A partition sent where the reset policy starts it has none."""
    c = bookkeeping(committed=None)
    c._read_offset[TPX] = 300  # delivered before the seek
    other = TP(TPX.topic, TPX.partition + 1)

    async def seek_to_committed() -> dict[TP, int]:
        Consumer.sought(c, TPX, 100)  # on the consumer's thread, with the seek to 100
        assert c._read_offset[TPX] == 100
        c._read_offset[TPX] = 180  # 100..180 delivered from the new position meanwhile
        Consumer.sought(c, other, None)  # never committed: back to the reset position
        assert c._read_offset[other] is None
        return {TPX: 100}

    c.seek_to_committed = seek_to_committed
    asyncio.run(Consumer.perform_seek(c))
    assert c._read_offset[TPX] == 180
    assert c._committed_offset[TPX] == 100
    assert c.seeks.count[(TPX.topic, TPX.partition)] == 1
