"""The customer table's store on disk (``CachedRocksStore``: rocksdict under a cache of
decoded states) as the experience step reads and writes it, and the checkpoint's memory
of what each key held before the cut (what a failed step rolls back to).

A real RocksDB in a temporary directory, the real customer-state codec; no broker (the
store is made as Faust makes it, without starting the app)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest

from cxpulse.schemas.scoring import CustomerState
from cxpulse.streams.pipeline.checkpoint import Checkpointer
from cxpulse.streams.state import customer as customer_codec
from cxpulse.streams.state.store import CachedRocksStore, table_store


@pytest.fixture
def store(tmp_path: Path) -> CachedRocksStore:
    app = faust.App("cxpulse-store-test", broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
    table = app.Table(
        "customer_state",
        default=None,
        partitions=2,
        key_type=bytes,
        value_type=customer_codec.table_value_type(),
        **table_store(SimpleNamespace(state_store="rocksdb", state_cache_keys=4)),
    )
    s = table.data  # made from the store URL, as the worker's table makes it
    assert isinstance(s, CachedRocksStore)
    for partition in (0, 1):
        s._db_for_partition(partition)  # opened as an assignment opens them
    return s


def state(customer: str, score: float = 61.5) -> CustomerState:
    return CustomerState(customer_id=customer, version=3, score=score)


def test_a_key_the_store_does_not_hold_is_its_default_without_an_exception(
    store: CachedRocksStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_key_error(*_: Any) -> None:
        raise AssertionError("get must not go through __getitem__'s KeyError")

    monkeypatch.setattr(CachedRocksStore, "__getitem__", no_key_error)
    assert store.get(b"nobody") is None
    marker = object()
    assert store.get(b"nobody", marker) is marker
    monkeypatch.undo()
    with pytest.raises(KeyError):
        store[b"nobody"]
    assert b"nobody" not in store


def test_a_state_is_read_back_from_memory_then_from_disk(store: CachedRocksStore) -> None:
    s = state("c-1")
    store.put(b"c-1", 1, s)
    assert store.get(b"c-1") is s  # dirty: the step's own latest state
    store.written(store.write({b"c-1": (1, s)}))
    assert not store.dirty and store.get(b"c-1") is s  # now in the cache
    store.cache.clear()
    read = store.get(b"c-1")  # decoded from RocksDB
    assert read == s and read is not s
    assert store[b"c-1"] == s


def test_the_checkpoint_rolls_back_to_the_state_the_step_read(store: CachedRocksStore) -> None:
    table: Any = type("Table", (), {"data": store})()
    cp = Checkpointer(table, every_rows=10, every_seconds=60.0)
    old = state("c-1", 40.0)
    store.put(b"c-1", 0, old)
    # the step reads each key once and hands what it read to set (``was``)
    before = cp.get(b"c-1")
    assert before is old
    cp.set(b"c-1", 0, state("c-1", 70.0), was=before)
    newcomer = cp.get(b"c-2")
    assert newcomer is None
    cp.set(b"c-2", 1, state("c-2"), was=newcomer)
    # a second update of a key in the same checkpoint keeps the first one's memory
    cp.set(b"c-1", 0, state("c-1", 80.0), was=cp.get(b"c-1"))
    assert store.get(b"c-1").score == 80.0
    cp.rollback()
    assert store.get(b"c-1") is old
    assert store.get(b"c-2") is None and b"c-2" not in store


def test_set_without_was_reads_what_the_key_held(store: CachedRocksStore) -> None:
    table: Any = type("Table", (), {"data": store})()
    cp = Checkpointer(table, every_rows=10, every_seconds=60.0)
    old = state("c-1", 40.0)
    store.put(b"c-1", 0, old)
    cp.set(b"c-1", 0, state("c-1", 70.0))
    cp.set(b"c-9", 0, state("c-9"))
    cp.rollback()
    assert store.get(b"c-1") is old and store.get(b"c-9") is None
