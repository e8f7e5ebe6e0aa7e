"""When a stateful step's checkpoint is cut: once one table holds ``every_rows`` rows
(``sink_batch_size`` is rows per insert, so each table's insert may reach it), or once
``every_seconds`` have passed; never while nothing was recorded; while the commit before
is under way, not before the checkpoint holds ``HOLD`` times that."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from cxpulse.streams.pipeline.checkpoint import Checkpointer
from cxpulse.streams.pipeline.rows import PART_ROWS, TakeRows


def checkpointer(written: list[tuple[str, int]], every_rows: int = 10) -> Checkpointer:
    async def write(table: str, rows: list[Any]) -> None:
        written.append((table, len(rows)))

    return Checkpointer(
        SimpleNamespace(data={}), write, every_rows=every_rows, every_seconds=3600.0
    )


def test_rows_of_several_tables_do_not_add_up_to_a_cut() -> None:
    cp = checkpointer([])
    start = cp.current.started
    cp.add_columns("touchpoint_events", [list(range(4))])
    cp.add_columns("moments", [list(range(4))])
    cp.add_columns("moment_factors", [list(range(9))])
    assert not cp.due(start)  # 17 rows, yet no table holds 10
    cp.add_columns("moment_factors", [[9]])
    assert cp.due(start)


def test_each_tables_rows_go_in_one_insert_at_the_cut() -> None:
    written: list[tuple[str, int]] = []
    cp = checkpointer(written)
    cp.add_columns("moments", [[1, 2]])
    cp.add_columns("moment_factors", [list(range(10))])
    cp.add_columns("moments", [[3]])
    asyncio.run(cp.flush())
    assert written == [("moments", 3), ("moment_factors", 10)]
    assert cp.current.empty and not cp.due()


def test_the_time_bound_cuts_a_small_checkpoint_and_an_empty_one_never() -> None:
    cp = checkpointer([])
    start = cp.current.started
    assert not cp.due(start + 7200)  # nothing recorded
    cp.add_columns("moments", [[1]])
    assert not cp.due(start + 1)
    # a little past the bound: start + 3600 - start is 3599.9999999998 for some starts
    assert cp.due(start + 3600.001)


def test_a_takes_rows_go_in_parts_as_they_are_made_and_in_order_at_the_cut() -> None:
    written: list[tuple[str, list[Any]]] = []

    async def write(table: str, rows: list[Any]) -> None:
        written.append((table, list(rows)))

    cp = Checkpointer(SimpleNamespace(data={}), write, every_rows=10**9, every_seconds=3600.0)

    def columns(items: list[int]) -> list[list[int]]:
        return [list(items)]  # a table of one column: the record itself

    moments = TakeRows(cp, lambda items: [("moments", columns(items))])
    scores = TakeRows(cp, lambda items: [(("customer_scores", "score_history"), columns(items))])
    made = list(range(2 * PART_ROWS + 5))
    for i in range(0, len(made), 3):  # three records a customer, say
        moments.add(made[i : i + 3])
        scores.add([made[i]])
    # the parts recorded so far: every PART_ROWS records made, the rest still with the take
    parts = cp.current.rows["moments"]
    assert [len(p) for p in parts] == [PART_ROWS + 1, PART_ROWS + 1]  # 683 adds of 3
    assert len(moments.items) == moments.count == len(made) - 2 * (PART_ROWS + 1)
    assert cp.current.counts["moments"] == 2 * (PART_ROWS + 1)
    moments.close()
    scores.close()
    moments.close()  # nothing new: no empty part
    assert len(cp.current.rows["moments"]) == 3 and not moments.items
    assert cp.current.rows["customer_scores"] is not cp.current.rows["score_history"]
    assert cp.current.rows["customer_scores"] == cp.current.rows["score_history"]
    asyncio.run(cp.flush())
    # one insert a table, every row once, in the order made
    assert written == [
        ("moments", [(i,) for i in made]),
        ("customer_scores", [(i,) for i in made[::3]]),
        ("score_history", [(i,) for i in made[::3]]),
    ]


def test_a_part_counts_the_records_its_items_hold() -> None:
    """``TakeRows(size=...)``: items that hold several records each (a message's events)
    make a part once they hold ``PART_ROWS`` records, not ``PART_ROWS`` items."""
    cp = Checkpointer(SimpleNamespace(data={}), _no_write, every_rows=10**9, every_seconds=3600.0)
    built: list[int] = []

    def build(messages: list[list[int]]) -> list[tuple[str, list[list[int]]]]:
        records = [r for m in messages for r in m]
        built.append(len(records))
        return [("touchpoint_events", [records])]

    rows = TakeRows(cp, build, size=len)
    message = list(range(500))
    for _ in range(5):
        rows.add([message])
    assert built == [2500] and rows.count == 0  # the fifth message passed PART_ROWS
    rows.add([message[:7]])
    assert rows.count == 7
    rows.close()
    assert built == [2500, 7] and cp.current.counts["touchpoint_events"] == 2507


async def _no_write(table: str, rows: Any) -> None:
    raise AssertionError("nothing is written before the cut")


def test_rows_made_elsewhere_count_at_once_and_go_in_at_the_commit() -> None:
    """``add_pending`` (the rows process's parts): their rows count towards the cut when
    they are recorded; the commit awaits each part, then inserts every table's rows."""
    written: list[tuple[str, int]] = []
    cp = checkpointer(written)
    start = cp.current.started
    awaited: list[str] = []

    def part(name: str, *groups: tuple[tuple[str, ...], list[Any]]) -> Any:
        async def prepared() -> list[tuple[tuple[str, ...], list[Any]]]:
            awaited.append(name)
            return list(groups)

        return prepared

    cp.add_pending({"moments": 4, "moment_factors": 9}, part("a", (("moments",), [0] * 4)))
    assert not cp.due(start) and not cp.current.empty and awaited == []
    cp.add_pending(
        {"customer_scores": 10, "score_history": 10},
        part("b", (("customer_scores", "score_history"), [0] * 10)),
    )
    assert cp.due(start)
    asyncio.run(cp.flush())
    assert awaited == ["a", "b"]
    assert written == [("moments", 4), ("customer_scores", 10), ("score_history", 10)]


def test_a_table_goes_in_once_its_last_part_is_made_while_the_later_parts_are_made() -> None:
    """The commit inserts a table as soon as the last part naming it is made, before it
    awaits the parts after it (the rows process makes them meanwhile); a table with parts
    in several of them goes in once, all of its parts together; rows of a table no part
    named go in too; and every row is in before any state or offset."""
    log: list[str] = []

    async def write(table: str, rows: list[Any]) -> None:
        log.append(f"insert {table} {len(rows)}")

    cp = Checkpointer(SimpleNamespace(data={}), write, every_rows=10**6, every_seconds=3600.0)

    async def ack(event: Any) -> None:
        log.append(f"ack {event}")

    cp.ack = ack

    def part(name: str, *groups: tuple[tuple[str, ...], list[Any]]) -> Any:
        async def prepared() -> list[tuple[tuple[str, ...], list[Any]]]:
            log.append(f"made {name}")
            return list(groups)

        return prepared

    cp.add_columns("touchpoint_events", [list(range(3))])  # made on the event loop
    cp.add_pending({"moments": 2}, part("m1", (("moments",), [0, 1])))
    cp.add_pending({"customer_scores": 1}, part("s1", (("customer_scores",), [0])))
    cp.add_pending({"moments": 4}, part("m2", (("moments",), [2, 3, 4, 5]), (("extra",), [9])))
    cp.done("e1")
    asyncio.run(cp.flush())
    assert log == [
        "insert touchpoint_events 3",
        "made m1",
        "made s1",
        "insert customer_scores 1",  # before the moments' last part is awaited
        "made m2",
        "insert moments 6",  # both parts, one insert
        "insert extra 1",
        "ack e1",
    ]


def test_a_part_that_fails_fails_its_commit_before_any_state_or_offset() -> None:
    written: list[tuple[str, int]] = []
    cp = checkpointer(written)
    acked: list[Any] = []

    async def ack(event: Any) -> None:
        acked.append(event)

    cp.ack = ack

    async def broken() -> list[tuple[tuple[str, ...], list[Any]]]:
        raise RuntimeError("no rows")

    cp.add_pending({"moments": 1}, broken)
    cp.done("event")

    async def go() -> None:
        await cp.cut()
        try:
            await cp.wait()
        except RuntimeError as exc:
            assert "no rows" in str(exc)
        else:
            raise AssertionError("the commit went on")

    asyncio.run(go())
    assert written == [] and acked == []


def held_back(written: list[tuple[str, int]], release: asyncio.Event) -> Checkpointer:
    """A checkpointer whose inserts wait for ``release``."""

    async def slow_write(table: str, rows: list[Any]) -> None:
        await release.wait()
        written.append((table, len(rows)))

    return Checkpointer(SimpleNamespace(data={}), slow_write, every_rows=10, every_seconds=3600.0)


def test_a_due_checkpoint_goes_on_while_the_commit_before_is_under_way_up_to_hold_rows() -> None:
    """The step does not wait at a due cut for a commit still under way: it records into
    the checkpoint up to ``HOLD`` × ``every_rows`` rows a table, then waits; the grown
    checkpoint is cut at the first call after that commit is done, in order."""
    from cxpulse.streams.pipeline.checkpoint import HOLD

    written: list[tuple[str, int]] = []
    release = asyncio.Event()
    cp = held_back(written, release)

    async def go() -> None:
        cp.add_columns("moments", [list(range(10))])
        await cp.maybe_cut()  # cut: its commit waits for the insert
        assert cp.current.empty and written == []
        cp.add_columns("moments", [list(range(10))])
        assert cp.due()
        await asyncio.wait_for(cp.maybe_cut(), 1)  # due, not full: no wait
        assert not cp.current.empty
        cp.add_columns("moments", [list(range(10 * HOLD - 10))])
        assert cp.full()
        waiting = asyncio.ensure_future(cp.maybe_cut())  # full: waits for the commit
        await asyncio.sleep(0.05)
        assert not waiting.done()
        release.set()
        await waiting
        await cp.flush()

    asyncio.run(go())
    assert written == [("moments", 10), ("moments", 10 * HOLD)]


def test_a_deferred_checkpoint_is_cut_once_the_commit_before_is_done() -> None:
    written: list[tuple[str, int]] = []
    release = asyncio.Event()
    cp = held_back(written, release)

    async def go() -> None:
        cp.add_columns("moments", [list(range(10))])
        await cp.maybe_cut()
        cp.add_columns("moments", [list(range(12))])
        await cp.maybe_cut()  # deferred
        assert cp.current.largest == 12
        release.set()
        await cp.wait()  # the commit before is done
        await cp.maybe_cut()  # now cut
        assert cp.current.empty
        await cp.wait()

    asyncio.run(go())
    assert written == [("moments", 10), ("moments", 12)]


def test_messages_sent_are_acknowledged_by_the_broker_before_the_events() -> None:
    """``sent`` (a take's alerts, queued in producer batches): the commit waits for the
    broker to have them after the rows and before acknowledging the events; a send that
    fails leaves the events unacknowledged (they come again, and so do their alerts)."""
    written: list[tuple[str, int]] = []
    order: list[str] = []

    async def go(fails: bool) -> None:
        cp = checkpointer(written)

        async def ack(event: Any) -> None:
            order.append(f"ack {event}")

        cp.ack = ack
        delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        cp.add_columns("alerts", [[1, 2]])
        cp.sent([delivery])
        cp.done("e1")

        async def broker() -> None:
            await asyncio.sleep(0.01)
            order.append("broker has them")
            if fails:
                delivery.set_exception(RuntimeError("broker down"))
            else:
                delivery.set_result(None)

        acknowledging = asyncio.ensure_future(broker())
        await cp.cut()
        try:
            await cp.wait()
        except RuntimeError as exc:
            order.append(str(exc))
        await acknowledging

    asyncio.run(go(fails=False))
    assert written == [("alerts", 2)] and order == ["broker has them", "ack e1"]
    order.clear()
    asyncio.run(go(fails=True))
    assert order == ["broker has them", "broker down"]


def test_a_checkpoint_that_only_sent_is_not_empty() -> None:
    cp = checkpointer([])
    assert cp.current.empty
    cp.sent([object()])
    assert not cp.current.empty
