"""When a stateful step's checkpoint is cut: once one table holds ``every_rows`` rows
(``sink_batch_size`` is rows per insert, so each table's insert may reach it), or once
``every_seconds`` have passed; never while nothing was recorded."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from cxpulse.streams.pipeline import checkpoint
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
    assert cp.due(start + 3600)


class DiskStore(dict):  # type: ignore[type-arg]
    """A store that writes at the commit, as the RocksDB one does: records the thread each
    state was encoded on and what reached its disk."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded_on: set[str] = set()
        self.on_disk: dict[bytes, bytes] = {}

    def _encode_value(self, state: Any) -> bytes:
        self.encoded_on.add(threading.current_thread().name)
        return f"state:{state}".encode()

    def _encode_key(self, key: bytes) -> bytes:
        return key

    def put(self, key: bytes, partition: int, state: Any) -> None:
        self[key] = state

    def write(self, states: dict[bytes, tuple[int, Any, bytes]]) -> dict[bytes, Any]:
        self.on_disk.update({k: raw for k, (_, _, raw) in states.items()})
        return states

    def written(self, states: dict[bytes, Any]) -> None:
        pass


def test_states_are_encoded_once_on_the_event_loop_and_those_bytes_go_everywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The customer codec's compression releases the GIL for each state: encoded on a
    thread, each state waited for the busy event loop to give the GIL back (up to 5 ms).
    So the states are encoded on the loop's thread, the disk write alone goes to a
    thread, and the changelog gets the very bytes the disk got."""
    sent: dict[int, list[tuple[bytes, bytes]]] = {}

    async def send_records(table: Any, records: dict[int, list[tuple[bytes, bytes]]]) -> None:
        sent.update(records)

    monkeypatch.setattr(checkpoint, "send_records", send_records)
    store = DiskStore()
    cp = Checkpointer(SimpleNamespace(data=store), None, every_rows=10, every_seconds=3600.0)
    for n in range(50):
        cp.set(f"c{n}".encode(), n % 4, n)

    async def commit() -> str:
        await cp.flush()
        return threading.current_thread().name

    loop_thread = asyncio.run(commit())
    assert store.encoded_on == {loop_thread}
    assert len(store.on_disk) == 50 and store.on_disk[b"c7"] == b"state:7"
    assert sum(len(r) for r in sent.values()) == 50
    assert dict(sent[3])[b"c7"] == store.on_disk[b"c7"]
