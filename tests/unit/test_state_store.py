"""The customer table's store on disk (``CachedRocksStore``: rocksdict under a cache of
states held in their codec's first stage) as the experience step reads and writes it,
and the checkpoint's memory of what each key held before the cut (what a failed step
rolls back to).

A real RocksDB in a temporary directory, the real customer-state codec; no broker (the
store is made as Faust makes it, without starting the app)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.stores import rocksdb as faust_rocksdb

from cxpulse.schemas.scoring import CustomerState
from cxpulse.streams.pipeline.checkpoint import Checkpointer
from cxpulse.streams.state import customer as customer_codec
from cxpulse.streams.state.store import CachedRocksStore, table_store

SETTINGS = SimpleNamespace(state_store="rocksdb", state_cache_keys=4, state_store_memory_mb=16)


def make_store(
    tmp_path: Path, app_id: str = "cxpulse-store-test", name: str = "customer_state"
) -> CachedRocksStore:
    """A table's store, made from the store URL as the worker's table makes it."""
    app = faust.App(app_id, broker="kafka://127.0.0.1:1", datadir=str(tmp_path))
    table = app.Table(
        name,
        default=None,
        partitions=2,
        key_type=bytes,
        value_type=customer_codec.table_value_type(),
        **table_store(SETTINGS),
    )
    s = table.data
    assert isinstance(s, CachedRocksStore)
    return s


@pytest.fixture
def store(tmp_path: Path) -> CachedRocksStore:
    s = make_store(tmp_path)
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
    # held in its first stage (msgpack), not as the objects: a read decodes an equal state
    held = store.held(b"c-1")
    assert held == customer_codec.pack(s)
    read = store.get(b"c-1")  # dirty: the step's own latest state
    assert read == s and read is not s
    store.written(store.write({b"c-1": (1, held)}))
    assert not store.dirty and store.cache[b"c-1"] is held  # now in the cache
    assert store.get(b"c-1") == s
    store.cache.clear()
    assert store.get(b"c-1") == s  # decoded from RocksDB
    assert store.cache[b"c-1"] == held  # and held in its first stage again
    assert store[b"c-1"] == s


def test_a_record_of_an_older_format_on_disk_is_read_and_held_in_the_first_stage(
    store: CachedRocksStore,
) -> None:
    s = state("c-7", 48.25)
    batch = faust_rocksdb.rocksdict.WriteBatch(raw_mode=True)
    batch.put(store._encode_key(b"c-7"), s.to_bytes())  # the JSON of earlier workers
    store._dbs[0].write(batch)
    assert store.get(b"c-7") == s
    assert store.cache[b"c-7"] == customer_codec.pack(s)


def test_a_key_set_again_after_the_cut_stays_to_be_written(store: CachedRocksStore) -> None:
    store.put(b"c-1", 0, state("c-1", 40.0))
    cut = {b"c-1": (0, store.held(b"c-1"))}
    store.put(b"c-1", 0, state("c-1", 70.0))  # the step goes on while the cut is written
    store.written(store.write(cut))
    assert store.dirty[b"c-1"][1] == customer_codec.pack(state("c-1", 70.0))
    assert store.get(b"c-1").score == 70.0


def test_the_checkpoint_rolls_back_to_the_state_the_step_read(store: CachedRocksStore) -> None:
    table: Any = type("Table", (), {"data": store})()
    cp = Checkpointer(table, every_rows=10, every_seconds=60.0)
    old = state("c-1", 40.0)
    store.put(b"c-1", 0, old)
    held = store.held(b"c-1")
    # the step reads each key once and hands what it read to set (``was``)
    before = cp.get(b"c-1")
    assert before == old
    cp.set(b"c-1", 0, state("c-1", 70.0), was=before)
    newcomer = cp.get(b"c-2")
    assert newcomer is None
    cp.set(b"c-2", 1, state("c-2"), was=newcomer)
    # a second update of a key in the same checkpoint keeps the first one's memory
    cp.set(b"c-1", 0, state("c-1", 80.0), was=cp.get(b"c-1"))
    assert store.get(b"c-1").score == 80.0
    # the checkpoint holds the new states in their first stage, as the store does
    assert cp.current.packed and cp.current.states[b"c-1"] == (0, store.held(b"c-1"))
    cp.rollback()
    assert store.held(b"c-1") is held  # what the store held, put back as it was
    assert store.get(b"c-1") == old
    assert store.get(b"c-2") is None and b"c-2" not in store


def test_set_without_was_reads_what_the_key_held(store: CachedRocksStore) -> None:
    table: Any = type("Table", (), {"data": store})()
    cp = Checkpointer(table, every_rows=10, every_seconds=60.0)
    old = state("c-1", 40.0)
    store.put(b"c-1", 0, old)
    cp.set(b"c-1", 0, state("c-1", 70.0))
    cp.set(b"c-9", 0, state("c-9"))
    cp.rollback()
    assert store.get(b"c-1") == old and store.get(b"c-9") is None


def test_a_key_read_from_disk_rolls_back_to_its_record(store: CachedRocksStore) -> None:
    """A state no longer in the cache (it holds 4 here) is read from RocksDB; a rollback
    puts back what the disk held for it, in the first stage, not a decoded copy."""
    states = {f"c-{i}".encode(): state(f"c-{i}", 40.0 + i) for i in range(6)}
    for key, s in states.items():
        store.put(key, 0, s)
    store.written(store.write({key: (0, store.held(key)) for key in states}))
    assert b"c-0" not in store.cache and b"c-1" not in store.cache  # 4 are kept
    # what the disk holds, as held: the record back to its first stage, not decoded
    assert store.held(b"c-1") == customer_codec.pack(states[b"c-1"])
    assert b"c-1" not in store.cache
    table: Any = type("Table", (), {"data": store})()
    cp = Checkpointer(table, every_rows=10, every_seconds=60.0)
    before = cp.get(b"c-0")
    assert before == states[b"c-0"]
    cp.set(b"c-0", 0, state("c-0", 99.0), was=before)
    cp.rollback()
    assert store.held(b"c-0") == customer_codec.pack(states[b"c-0"])
    assert store.get(b"c-0") == states[b"c-0"]


def test_every_partition_of_every_table_shares_one_memory_budget(
    store: CachedRocksStore, tmp_path: Path
) -> None:
    """RocksDB's memory is per database and Faust opens one per partition: each had its
    own memtables and block cache, so a worker's memory grew with its partitions. Every
    partition's memtables now count against one write buffer manager and one cache, the
    worker's ``state_store_memory_mb``, whichever table they belong to."""
    budget = store.memory
    assert budget.total == SETTINGS.state_store_memory_mb << 20
    before = budget.buffers.get_usage()
    for partition in (0, 1):
        used = budget.buffers.get_usage()
        cut = {
            f"p{partition}-{i}".encode(): (partition, customer_codec.pack(state(f"c-{i}")))
            for i in range(500)
        }
        store.written(store.write(cut))
        assert budget.buffers.get_usage() > used  # this partition's memtable, counted
    assert budget.buffers.get_usage() > before
    # the memtables are charged to the same cache, which holds the rest of its memory
    assert budget.cache.get_usage() >= budget.buffers.get_usage()

    other = make_store(tmp_path, "cxpulse-store-test-2", "case_state")
    assert other.memory is budget
