"""Table state larger than memory: Faust's RocksDB store (rocksdict) under a cache of
decoded values.

Faust's ``rocksdb://`` store keeps one RocksDB per partition in the worker's data
directory and records, per partition, the changelog offset its disk already holds, so a
restart recovers from local disk plus the changelog's tail instead of the whole topic.
As it is, it would cost the experience step dearly: every read decodes the key's bytes
and every assignment encodes and writes them, while the step reads and assigns every
customer of every batch. So this store keeps

- the states assigned since they were last persisted (``dirty``: key → partition and
  state), which are the step's own latest states and are never evicted, and
- a bounded LRU of decoded states read or persisted (``cache_keys`` entries), so a
  customer who comes back soon is not decoded again;

and writes to RocksDB only when the checkpoint asks (``write``, on a thread), with the states of the
checkpoint's cut, right before they go to the changelog: rows durable, then the states on
local disk and in the changelog, then the offsets (``cxpulse.streams.pipeline.checkpoint``).

Both hold a state in its codec's first stage when the codec has one (the customer state:
its msgpack, ``cxpulse.streams.state.table_codec.forms``), not as the decoded objects, and
a read decodes it. Decoding is cheaper than what the objects cost: a late-day state is
~170 objects (~9 KiB), read back cold from all over the heap when its customer comes
back, and scanned by the garbage collector meanwhile; in its first stage it is one bytes
object of ~2.5 KB (at most ~6 KB), decoded in C into objects fresh in the CPU's caches
(measured in process on the event → alert run's events after 200,000 of them: 10–12 %
less time an event, of which half the collector's; docs/benchmarks.md). Reads of a state
therefore give an equal state, not the very object that was put.
RocksDB never holds a state whose rows are not durable; when it holds one the changelog
does not have yet (a crash between the two), the events behind it are redelivered and
found done, and their rows are already in ClickHouse.

What RocksDB itself holds in memory (memtables, the block cache) is one budget for the
worker, shared by every partition's database (``MemoryBudget``), not Faust's per
partition, which grew with the partitions a worker was assigned.

Recovery (``apply_changelog_batch``) and rebalancing write RocksDB directly and drop the
cached decodes of what they touch. Reads outside an event's context find the key's
partition through Faust's key index or by probing the open partitions' bloom filters.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import rocksdict
from faust.stores import STORES
from faust.stores import rocksdb as faust_rocksdb
from faust.streams import current_event

from cxpulse.streams.state.table_codec import encode_values, forms

#: States kept besides the unpersisted ones: in their codec's first stage (the customer
#: state's msgpack, ~2.5 KB late in the benchmark's day), else decoded (~9 KiB as
#: Python objects).
DEFAULT_CACHE_KEYS = 50_000

#: RocksDB's memtables, per partition: 8 MiB each, at most 2 (one filling, one being
#: flushed). Faust's defaults (3 of 64 MiB per partition) are for far larger stores: a
#: worker taking 300,000 state writes of ~500 bytes held them all in memtables, +155 MiB,
#: where these hold +39 MiB (4 partitions, measured with rocksdict alone). A memtable is
#: written to disk when full: a restart recovers from those files plus the changelog's
#: tail. What all the partitions hold together is bounded by ``MemoryBudget``.
ROCKSDB_OPTIONS = {
    "write_buffer_size": 8 << 20,
    "max_write_buffer_number": 2,
}


class MemoryBudget:
    """What RocksDB may hold in memory for a whole worker (``state_store_memory_mb``):
    one block cache and one write buffer manager, shared by the database of every
    partition of every table the process opens.

    Why: RocksDB's memory is per database, and Faust opens one per partition, so a
    worker's memory grew with the partitions it was assigned: 32 MiB each (memtables and
    a block cache of its own), ~350 MiB for 16 partitions after 800,000 state writes
    (rocksdict alone; ~50 MiB with this budget of 32 MiB, docs/benchmarks.md). Here the
    memtables count against the cache (RocksDB's ``WriteBufferManager`` with a cache):
    together they stay within ``total`` bytes, the memtables within half of it (past
    that, the largest is flushed to disk early)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.cache = rocksdict.Cache(total)
        self.buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            total // 2, False, self.cache
        )

    _kept: ClassVar[dict[int, MemoryBudget]] = {}

    @classmethod
    def of(cls, total: int) -> MemoryBudget:
        """The process's budget of ``total`` bytes (one per size: every store of a
        worker is made from the same settings, so they share it)."""
        budget = cls._kept.get(total)
        if budget is None:
            budget = cls._kept[total] = cls(total)
        return budget

    def options(self, base: Any, bloom_filter_bits: int) -> Any:
        """A database's options: ``base`` (Faust's, from ``ROCKSDB_OPTIONS``) with this
        budget's cache and write buffer manager."""
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(bloom_filter_bits, True)
        table.set_block_cache(self.cache)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        base.set_block_based_table_factory(table)
        base.set_write_buffer_manager(self.buffers)
        return base


#: ``state_store_memory_mb``'s default, for a store made without settings (tests).
DEFAULT_MEMORY_MB = 64

SCHEME = "cxrocks"

_MISSING = object()


class CachedRocksStore(faust_rocksdb.Store):
    """``rocksdb://`` with rocksdict, a cache of held values, and writes at checkpoints.

    ``dirty`` and ``cache`` hold each value as the store holds it: its codec's first stage
    when the codec has two (``forms``), else the decoded value."""

    def __init__(self, *args: Any, options: Mapping[str, Any] | None = None, **kw: Any) -> None:
        opts = dict(options or {})
        self.cache_keys = int(opts.pop("cache_keys", DEFAULT_CACHE_KEYS))
        self.memory = MemoryBudget.of(int(opts.pop("memory_mb", DEFAULT_MEMORY_MB)) << 20)
        super().__init__(*args, options=opts, driver="rocksdict", **kw)
        self.dirty: dict[Any, tuple[int, Any]] = {}
        self.cache: OrderedDict[Any, Any] = OrderedDict()
        self._forms = forms(self)
        #: Every partition's RocksDB this process opened, kept open until the store
        #: stops: Faust forgets a revoked partition's handle without closing it, and
        #: reopening the directory while the old handle lives (a write still under way
        #: on the checkpoint's thread) fails on RocksDB's lock.
        self._handles: dict[int, Any] = {}

    def _open_for_partition(self, partition: int) -> Any:
        db = self._handles.get(partition)
        if db is None:
            db = self._handles[partition] = self._open(self.partition_path(partition))
        return db

    def _open(self, path: Path) -> Any:
        """A partition's database, as Faust opens it but within the worker's
        ``MemoryBudget``."""
        rocks = self.rocksdb_options
        options = self.memory.options(rocks.as_options(), rocks.bloom_filter_size)
        db = rocksdict.Rdict(
            str(path), options=options, access_type=rocksdict.AccessType.read_write()
        )
        db.set_read_options(rocksdict.ReadOptions())
        return db

    async def stop(self) -> None:
        await super().stop()
        handles, self._handles = self._handles, {}
        for db in handles.values():
            db.close()

    @property
    def basename(self) -> Path:
        """Files are named after the table (``<tabledir>/<table>-<partition>.db``), not
        after the store URL's path, which is empty."""
        return Path(self.table_name)

    # -- reads ---------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def get(self, key: Any, default: Any = None) -> Any:
        """The key's state, else ``default``: what the steps call for every key of a
        take, so a key the store does not hold (every new customer) costs the lookups
        and no exception (``Mapping.get`` goes through ``__getitem__``'s KeyError)."""
        held = self._find(key, remember=True)
        return default if held is None else self._value(held)

    def get_held(self, key: Any) -> Any:
        """What ``get`` reads for the key, not decoded (None: nothing)."""
        return self._find(key, remember=True)

    def held(self, key: Any) -> Any:
        """What the store holds for ``key`` (see the class), None when it holds nothing:
        what ``restore`` puts back, without decoding it or caching it."""
        return self._find(key, remember=False)

    def _find(self, key: Any, *, remember: bool) -> Any:
        """The key's held value (None: none): its unwritten state, else the cache's, else
        the disk's; ``remember``: as a read, which refreshes the cache."""
        entry = self.dirty.get(key)
        if entry is not None:
            return entry[1]
        held = self.cache.get(key, _MISSING)
        if held is not _MISSING:
            if remember:
                self.cache.move_to_end(key)
            return held
        raw = self._lookup(self._encode_key(key))
        if raw is None:
            return None
        held = self._held(raw)
        if remember:
            self._remember(key, held)
        return held

    def _held(self, raw: bytes) -> Any:
        """The held form of a record read from disk (a record of an older format, which
        has no first stage of its own, is decoded and packed)."""
        f = self._forms
        if f is None:
            return self._decode_value(raw)
        first = f.unseal(raw)
        return f.pack(self._decode_value(raw)) if first is None else first

    def _value(self, held: Any) -> Any:
        f = self._forms
        return held if f is None else f.unpack(held)

    def __contains__(self, key: object) -> bool:
        if key in self.dirty or key in self.cache:
            return True
        return self._lookup(self._encode_key(key)) is not None

    def _lookup(self, raw_key: bytes) -> bytes | None:
        """The key's bytes in whichever open partition holds it (not only the current
        event's: the checkpoint reads a whole batch's keys)."""
        found = self._get_bucket_for_key(raw_key)
        return None if found is None else found[1]

    def _remember(self, key: Any, held: Any) -> None:
        self.cache[key] = held
        self.cache.move_to_end(key)
        while len(self.cache) > self.cache_keys:
            self.cache.popitem(last=False)

    def __iter__(self) -> Iterator[Any]:
        seen = set(self.dirty)
        yield from self.dirty
        for key in super().__iter__():
            if key not in seen:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    # -- writes --------------------------------------------------------------------------

    def put(self, key: Any, partition: int, value: Any, packed: Any = None) -> None:
        """The key's new state, kept in memory until ``write`` puts it on disk; ``packed``:
        its codec's first stage, when the caller made it (else the store packs it)."""
        f = self._forms
        if f is not None:
            value = f.pack(value) if packed is None else packed
        self.restore(key, partition, value)

    def restore(self, key: Any, partition: int, held: Any) -> None:
        """Put back what ``held`` gave for the key (a checkpoint's rollback)."""
        self.cache.pop(key, None)
        self.dirty[key] = (partition, held)

    def __setitem__(self, key: Any, value: Any) -> None:
        event = current_event()
        if event is None:
            raise RuntimeError(
                f"{self.table_name}: a state set outside an event needs its partition: "
                "use put(key, partition, value)"
            )
        self.put(key, event.message.partition, value)

    def __delitem__(self, key: Any) -> None:
        self.dirty.pop(key, None)
        self.cache.pop(key, None)
        self._del(self._encode_key(key))

    def write(self, states: Mapping[Any, tuple[int, Any]]) -> dict[Any, tuple[int, Any, bytes]]:
        """Encode these states (key → partition and the state as ``put`` held it, a
        checkpoint's cut) and write them to RocksDB, one write batch per partition;
        returns what was written, each with its encoded value: the changelog record is
        the same bytes, so the checkpoint sends those instead of encoding every state a
        second time. The states are encoded together (``encode_values``: the customer
        states' compression is one call, which releases the GIL once, not once a state
        while the event loop is busy), from their first stage. A partition this worker
        no longer holds is left alone (its new owner recovers from the changelog). Touches
        nothing but RocksDB, so the checkpoint runs it on a thread while the step goes on."""
        batches: dict[int, Any] = {}
        done: dict[Any, tuple[int, Any, bytes]] = {}
        open_dbs = dict(self._dbs)
        held = [(key, entry) for key, entry in states.items() if entry[0] in open_dbs]
        values = [value for _, (_, value) in held]
        # all sealed in one call: see cxpulse.streams.state.customer.seal_many
        encoded = encode_values(self, values, values if self._forms is not None else None)
        for (key, (partition, value)), raw in zip(held, encoded, strict=True):
            if raw is None:  # only a deletion encodes to nothing; a cut holds states
                raise ValueError(f"no state to write for key {key!r}")
            done[key] = (partition, value, raw)
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = faust_rocksdb.rocksdict.WriteBatch(raw_mode=True)
            batch.put(self._encode_key(key), raw)
        for partition, batch in batches.items():
            open_dbs[partition].write(batch)
        return done

    def written(self, states: Mapping[Any, tuple[int, Any, bytes]]) -> None:
        """After ``write``: these states are on disk. A key assigned again since the cut
        stays dirty with its newer state; the others move to the cache."""
        for key, (partition, value, _) in states.items():
            self._key_index[self._encode_key(key)] = partition
            entry = self.dirty.get(key)
            if entry is not None and entry[1] is value:
                del self.dirty[key]
                self._remember(key, value)

    # -- recovery and rebalancing ----------------------------------------------------------

    def apply_changelog_batch(
        self,
        batch: Iterable[Any],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
    ) -> None:
        events = list(batch)
        super().apply_changelog_batch(events, to_key, to_value)
        for event in events:
            key = to_key(event.key)
            self.dirty.pop(key, None)
            self.cache.pop(key, None)

    def revoke_partitions(self, table: Any, tps: Any) -> None:
        super().revoke_partitions(table, tps)
        gone = {tp.partition for tp in tps if tp.topic in table.changelog_topic.topics}
        if gone:
            for key in [k for k, (p, _) in self.dirty.items() if p in gone]:
                del self.dirty[key]
            self.cache.clear()


def table_store(settings: Any) -> dict[str, Any]:
    """The ``store`` and ``options`` of a table the settings put on disk (none: the app's
    ``memory://``)."""
    if settings.state_store != "rocksdb":
        return {}
    STORES.aliases[SCHEME] = f"{CachedRocksStore.__module__}:{CachedRocksStore.__qualname__}"
    options = {
        **ROCKSDB_OPTIONS,
        "cache_keys": settings.state_cache_keys,
        "memory_mb": settings.state_store_memory_mb,
    }
    return {"store": f"{SCHEME}://local", "options": options}
