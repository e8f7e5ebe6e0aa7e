"""When a stateful step's checkpoint is cut: once one table holds ``every_rows`` rows
(``sink_batch_size`` is rows per insert, so each table's insert may reach it), or once
``every_seconds`` have passed; never while nothing was recorded."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from cxpulse.streams.pipeline.checkpoint import Checkpointer


def checkpointer(written: list[tuple[str, int]], every_rows: int = 10) -> Checkpointer:
    async def write(table: str, rows: list[Any]) -> None:
        written.append((table, len(rows)))

    return Checkpointer(
        SimpleNamespace(data={}), write, every_rows=every_rows, every_seconds=3600.0
    )


def test_rows_of_several_tables_do_not_add_up_to_a_cut() -> None:
    cp = checkpointer([])
    start = cp.current.started
    cp.add_rows("touchpoint_events", [(i,) for i in range(4)])
    cp.add_rows("moments", [(i,) for i in range(4)])
    cp.add_rows("moment_factors", [(i,) for i in range(9)])
    assert not cp.due(start)  # 17 rows, yet no table holds 10
    cp.add_rows("moment_factors", [(9,)])
    assert cp.due(start)


def test_each_tables_rows_go_in_one_insert_at_the_cut() -> None:
    written: list[tuple[str, int]] = []
    cp = checkpointer(written)
    cp.add_rows("moments", [(1,), (2,)])
    cp.add_rows("moment_factors", [(i,) for i in range(10)])
    cp.add_rows("moments", [(3,)])
    asyncio.run(cp.flush())
    assert written == [("moments", 3), ("moment_factors", 10)]
    assert cp.current.empty and not cp.due()


def test_the_time_bound_cuts_a_small_checkpoint_and_an_empty_one_never() -> None:
    cp = checkpointer([])
    start = cp.current.started
    assert not cp.due(start + 7200)  # nothing recorded
    cp.add_rows("moments", [(1,)])
    assert not cp.due(start + 1)
    # a little past the bound: start + 3600 - start is 3599.9999999998 for some starts
    assert cp.due(start + 3600.001)
