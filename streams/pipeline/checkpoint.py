"""The checkpoint of a stateful step: rows durable, then state, then offsets.

A step such as experience changes a key's state and computes rows from the same events.
If the state reached the changelog before the rows were in ClickHouse, a crash between
the two would lose the rows for good: after a restart the state says the events are
done, and they are skipped as duplicates. So, as Quix Streams' checkpoint does (sinks
flushed, then changelogs produced, then offsets committed), what a run of batches
produced becomes durable in one order:

1. the rows are inserted (``write`` returns once they are durable, retrying as long as
   it takes: that is the backpressure), each table as soon as the last of its parts is
   made (``_insert_rows``);
2. the states as they were at the cut are sent to the table's changelog, in producer
   batches (``cxpulse.streams.state.changelog``), and acknowledged by the broker (with a
   codec of two stages, each state was packed when it was set and the cut's states are
   sealed together here: ``cxpulse.streams.state.table_codec``);
3. the messages the step sent meanwhile (its alerts, ``sent``: queued when it made
   them) are acknowledged by the broker;
4. the events are acknowledged, so Faust commits their offsets.

Between checkpoints the new states live in the table's store only (``table.data``), so
the step reads its own latest state; one changelog record per changed key per
checkpoint, not one per update. A crash anywhere redelivers the unacknowledged events:
the recovered state does not know them, so they are recomputed, and the tables'
deterministic keys make the re-inserted rows replace themselves. When the step fails or
is cancelled, ``rollback`` puts back the states of every checkpoint not yet committed,
so the redelivered events are not mistaken for duplicates by this worker either.

A step records its rows of a table in parts (``add_columns``: the rows as columns, built
straight from its records by ``cxpulse.schemas``' column builders, no row tuples on the
way), each of which the sink writer prepares right then into what its backend inserts
(chDB: an Arrow table), so the rows of a checkpoint wait as columns, not as hundreds of
thousands of tuples the garbage collector scans and the commit's thread converts cold; at
the commit a table's parts are merged into one insert (Arrow tables: concatenated, no
copy). A take's rows go in parts of about ``PART_ROWS`` records as they are made
(``cxpulse.streams.pipeline.rows.TakeRows``), not all at the end of the take: a take of
32,000 events makes ~100,000 rows, which are cold in the CPU's caches by then and, while
they wait, scanned by the garbage collector's young collections; made into columns 2,048
at a time, the event rows' conversion cost a sixth of that in the benchmark's measure
(docs/benchmarks.md, session 30).

A checkpoint is cut once one of its tables holds ``every_rows`` rows (the worker's
``sink_batch_size``: rows per insert, so each table's insert is up to that size, not the
sum over the tables) or after ``every_seconds``; its commit runs in the background while
the step goes on with the next one (at most one commit at a time). A checkpoint due
while the commit before is still under way goes on recording, up to ``HOLD`` times
``every_rows`` rows a table, and is cut at the first take after that commit is done
(``maybe_cut``): the step waits for a commit only when that much waits for it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cxpulse.schemas.rows import Columns
from cxpulse.sinks.writer import merge
from cxpulse.streams import metrics
from cxpulse.streams.state.changelog import send_records
from cxpulse.streams.state.table_codec import Forms, encode_values, forms

_MISSING = object()
#: While the commit before is under way, a due checkpoint goes on recording up to this
#: many times ``every_rows`` rows a table before the step waits (``Checkpointer.maybe_cut``).
HOLD = 2
_UNREAD = object()
#: A part made elsewhere, as the commit awaits it: each group of tables and their batch
#: as the sink inserts it.
Prepared = list[tuple[tuple[str, ...], Any]]


@dataclass
class Checkpoint:
    """What a run of batches produced and must make durable."""

    started: float = field(default_factory=time.monotonic)
    #: per table, its parts: each ``add_columns`` call's rows, as the writer prepared them
    rows: dict[str, list[Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    #: parts being made elsewhere (``add_pending``): the tables each has rows of, and
    #: what the commit awaits for them
    pending: list[tuple[tuple[str, ...], Callable[[], Awaitable[Prepared]]]] = field(
        default_factory=list
    )
    #: key → partition and new state; with a codec of two stages the state's first
    #: stage, made as it was set (``pack``: ``cxpulse.streams.state.table_codec``)
    states: dict[bytes, tuple[int, Any]] = field(default_factory=dict)
    #: whether ``states`` hold first stages (a codec of two stages)
    packed: bool = False
    #: key → what the store held for it before the checkpoint's first update of it
    before: dict[bytes, Any] = field(default_factory=dict)
    #: messages the step sent (its alerts): what to await for the broker to have them
    sent: list[Any] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)
    committed: bool = False

    @property
    def empty(self) -> bool:
        return not (self.events or self.states or self.rows or self.pending or self.sent)

    @property
    def largest(self) -> int:
        """Rows of the table that holds the most."""
        return max(self.counts.values(), default=0)


class Checkpointer:
    """Cuts and commits the checkpoints of one step's table."""

    def __init__(
        self,
        table: Any,
        write: Callable[[str, Any], Awaitable[None]] | None = None,
        *,
        every_rows: int,
        every_seconds: float,
        prepare: Callable[[str, Columns], Any] | None = None,
        record_sizes: Callable[[list[int]], None] | None = None,
    ) -> None:
        """``write`` inserts rows, durable when it returns; None for a step that records
        no rows (touchpoint health: states only). ``prepare`` turns the columns of an
        ``add_columns`` call into the form ``write`` inserts fastest, right away (the sink
        writer's ``prepare_columns``); without it the rows wait as row tuples. At the commit a
        table's parts are merged into one batch (``cxpulse.sinks.writer.merge``).
        ``record_sizes`` is given the size of every changelog record a commit sends (the
        state as stored: a metric needs no encoding of its own)."""
        self.table = table
        self._write = write
        self._prepare = prepare
        self._record_sizes = record_sizes
        #: How an event is acknowledged: its stream's ``ack``, set when the step starts
        #: (``cxpulse.streams.pipeline.takes.run_takes``).
        self.ack: Callable[[Any], Awaitable[Any]] | None = None
        self.every_rows = every_rows
        self.every_seconds = every_seconds
        self.current = Checkpoint()
        self._committing: tuple[Checkpoint, asyncio.Task[None]] | None = None

    # -- what the step records ----------------------------------------------------------

    def get(self, key: bytes) -> Any:
        """The key's latest state (this step's own, committed or not), None if it has none."""
        return self.table.data.get(key)

    def set(self, key: bytes, partition: int, state: Any, *, was: Any = _UNREAD) -> Any:
        """The key's new state: in the store now, in the changelog at the commit. With a
        codec of two stages the state is packed now, while its objects are fresh in the
        CPU's caches (at the commit they are cold, and the commit's thread would pack
        them holding the GIL), and sealed with the rest of the cut at the commit; the
        store on disk holds it in that form too (``cxpulse.streams.state.store``).

        ``was``: the key's state as the step just read it with ``get`` (None: none), which
        this update replaces; the checkpoint keeps what the store held for it to roll back
        to (the store on disk: its first stage, not the decoded state), and a key the step
        found in none of them is not looked up a second time (a miss in every partition's
        RocksDB).

        Returns the state's first stage when the codec has two (what the step may hand
        on: the rows process reads score updates off it), else None."""
        cp = self.current
        if key not in cp.before:
            cp.before[key] = self._before(key, was)
        f = self._forms
        if f is None:
            self._assign(key, partition, state)
            cp.states[key] = (partition, state)
            return None
        packed = f.pack(state)
        self._assign(key, partition, state, packed)
        cp.states[key] = (partition, packed)
        cp.packed = True
        return packed

    @property
    def holds_packed(self) -> bool:
        """Whether the store holds the states' first stage (a store on disk whose codec
        has two: ``held`` and ``set_packed`` work on it), not decoded states."""
        return self._forms is not None and hasattr(self.table.data, "get_held")

    def held(self, key: bytes) -> Any:
        """What the store holds for the key, its first stage, not decoded (None: nothing):
        what ``get`` reads (``holds_packed`` stores only)."""
        return self.table.data.get_held(key)

    def set_packed(self, key: bytes, partition: int, packed: bytes, *, was: Any) -> None:
        """``set`` of a state given as its first stage (packed elsewhere); ``was``: what the
        store held for the key when it was read (``held``; None: nothing)."""
        cp = self.current
        if key not in cp.before:
            cp.before[key] = _MISSING if was is None else was
        self._assign(key, partition, None, packed)
        cp.states[key] = (partition, packed)
        cp.packed = True

    @cached_property
    def _forms(self) -> Forms | None:
        """The table codec's stages, if it has two (looked up at the first ``set``: Faust
        makes a table's store when it is first used)."""
        return forms(self.table.data)

    def _before(self, key: bytes, was: Any) -> Any:
        """What the store holds for ``key`` now (``_MISSING``: nothing)."""
        if was is None:
            return _MISSING
        store = self.table.data
        held = getattr(store, "held", None)
        if held is not None:  # a store on disk: what it holds, not a decoded copy
            found = held(key)
            return _MISSING if found is None else found
        if was is _UNREAD:
            return store.get(key, _MISSING)
        return was

    def _assign(self, key: bytes, partition: int, state: Any, packed: Any = None) -> None:
        store = self.table.data
        put = getattr(store, "put", None)
        if put is not None:  # a store on disk: it writes at the commit
            put(key, partition, state, packed)
        else:
            store[key] = state

    def add_columns(self, table: str | tuple[str, ...], columns: Columns) -> None:
        """Record rows of ``table`` in the current checkpoint, given as their columns (one
        sequence of values per column of the table, in its order, as the steps build them
        straight from their records: ``TakeRows``): one part, prepared now (see
        ``prepare`` in ``__init__``). Several tables of the same columns (customer_scores
        and score_history) take the same rows as one part, prepared once."""
        tables = (table,) if isinstance(table, str) else table
        if self._write is None:
            raise ValueError(f"this step's checkpoint records no rows (given rows of {tables})")
        n = len(columns[0]) if columns else 0
        if n:
            cp = self.current
            if self._prepare is None:
                part: Any = list(zip(*columns, strict=True))
            else:
                part = self._prepare(tables[0], columns)
            for name in tables:
                cp.rows.setdefault(name, []).append(part)
                cp.counts[name] = cp.counts.get(name, 0) + n

    def add_pending(
        self, counts: dict[str, int], prepared: Callable[[], Awaitable[Prepared]]
    ) -> None:
        """Record rows being made elsewhere (the rows process:
        ``cxpulse.streams.pipeline.rows_process``): ``counts`` their rows by table, known
        now (the cut reads them, and the commit inserts each of these tables once the
        last part naming it is made), and ``prepared`` what the commit awaits: each
        group of tables and its part, as ``add_columns`` records it."""
        if self._write is None:
            raise ValueError(f"this step's checkpoint records no rows (given rows of {counts})")
        cp = self.current
        cp.pending.append((tuple(counts), prepared))
        for name, n in counts.items():
            cp.counts[name] = cp.counts.get(name, 0) + n

    def done(self, event: Any) -> None:
        """``event`` is handled: acknowledge it when this checkpoint is committed."""
        self.current.events.append(event)

    def sent(self, acknowledged: list[Any]) -> None:
        """Messages the step sent (what to await for the broker to have them): awaited
        before the checkpoint's events are acknowledged, so a crash before the broker
        has them redelivers the events that made them (their keys are deterministic: a
        repeat replaces itself downstream)."""
        self.current.sent += acknowledged

    # -- cutting and committing ---------------------------------------------------------

    def due(self, now: float | None = None) -> bool:
        cp = self.current
        if cp.empty:
            return False
        if cp.largest >= self.every_rows:
            return True
        return (time.monotonic() if now is None else now) - cp.started >= self.every_seconds

    async def maybe_cut(self) -> None:
        """Cut the checkpoint when it is due; while the commit before is still under way,
        go on recording into it instead, up to ``HOLD`` times its rows (then wait).

        One commit at a time keeps the order (rows, states, offsets) across checkpoints,
        and a commit can take longer than the flush interval (ClickHouse's inserts on a
        busy machine: a second at 5,000 events/s on two cores). Waiting for it at every
        cut left the step idle a tenth of the time while its input queued
        (docs/benchmarks.md, session 37); carried on, the checkpoint grows and is cut at
        the first take after the commit is done. ``HOLD`` bounds what waits for a
        commit: at most ``HOLD`` × ``every_rows`` rows a table (an insert of up to that
        size), after which the step waits, which is the backpressure of a sink slower
        than the input."""
        if not self.due():
            return
        committing = self._committing
        if committing is not None and not committing[1].done() and not self.full():
            return
        await self.cut()

    def full(self) -> bool:
        """Whether the current checkpoint holds the most rows that may wait for the commit
        before (``HOLD`` × ``every_rows`` in one table)."""
        return self.current.largest >= HOLD * self.every_rows

    async def cut(self) -> None:
        """Wait for the previous commit, then start committing the current checkpoint."""
        waited = time.monotonic()
        await self.wait()
        cut_at = time.monotonic()
        metrics.CHECKPOINT_WAIT_SECONDS.labels(self.name).inc(cut_at - waited)
        cp, self.current = self.current, Checkpoint()
        if not cp.empty:
            self._committing = (cp, asyncio.ensure_future(self._timed_commit(cp, cut_at)))

    @cached_property
    def name(self) -> str:
        """The table's name (the metrics' label)."""
        return str(getattr(self.table, "name", "?"))

    async def _timed_commit(self, cp: Checkpoint, cut_at: float) -> None:
        await self._commit(cp)
        metrics.CHECKPOINT_SECONDS.labels(self.name).observe(time.monotonic() - cut_at)

    async def wait(self) -> None:
        """Until the commit under way (if any) is done; raises what it raised."""
        if self._committing is not None:
            _, task = self._committing
            await asyncio.shield(task)
            self._committing = None

    async def flush(self) -> None:
        """Commit everything recorded so far, and wait for it."""
        await self.cut()
        await self.wait()

    async def _insert_rows(self, cp: Checkpoint) -> None:
        """Insert every table's rows, each table once the last of its parts is made: its
        insert runs while the rows process makes the parts after it (they were handed to
        it as the take went), so the commit takes about the longer of the two rather than
        their sum. A part's tables are the ones its counts named (``add_pending``); rows
        of a table it did not name are inserted as they come, none left out."""
        write = self._write
        waiting = Counter(name for tables, _ in cp.pending for name in tables)
        inserted: dict[str, int] = {}  # parts of each table inserted so far

        async def insert_ready() -> None:
            for name, parts in list(cp.rows.items()):
                if waiting[name] or len(parts) == inserted.get(name, 0):
                    continue
                assert write is not None  # rows are recorded only with a write
                await write(name, merge(parts[inserted.get(name, 0) :]))
                inserted[name] = len(parts)

        await insert_ready()  # the parts made on the event loop
        for tables, prepared in cp.pending:
            for names, part in await prepared():
                for name in names:
                    cp.rows.setdefault(name, []).append(part)
            waiting.subtract(tables)
            await insert_ready()

    async def _commit(self, cp: Checkpoint) -> None:
        await self._insert_rows(cp)
        store = self.table.data
        encoded: dict[bytes, tuple[int, Any, bytes]] = {}
        if cp.states and hasattr(store, "write"):
            # local disk, then the changelog: see cxpulse.streams.state.store; the bytes
            # written to disk are the changelog record, encoded once
            encoded = await asyncio.to_thread(store.write, cp.states)
            store.written(encoded)
        # what was not written to disk (a memory store; a partition no longer held) is
        # encoded here, sealed in one call (cxpulse.streams.state.customer.seal_many)
        unwritten = [key for key in cp.states if key not in encoded]
        held = [cp.states[k][1] for k in unwritten]
        values = dict(
            zip(unwritten, encode_values(store, held, held if cp.packed else None), strict=True)
        )
        records: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, (partition, _) in cp.states.items():
            written = encoded.get(key)
            value = values[key] if written is None else written[2]
            if value is None:  # only a deletion encodes to nothing; a cut holds states
                raise ValueError(f"no state to send for key {key!r}")
            records.setdefault(partition, []).append((store._encode_key(key), value))
        if self._record_sizes is not None:
            self._record_sizes([len(value) for sent in records.values() for _, value in sent])
        # in producer batches, acknowledged by the broker before the events are
        if records:
            await send_records(self.table, records)
        if cp.sent:
            await asyncio.gather(*cp.sent)
        if cp.events:
            ack = self.ack
            if ack is None:
                raise RuntimeError("events to acknowledge, and no stream's ack: see run_takes")
            for event in cp.events:
                await ack(event)
        cp.committed = True

    def rollback(self) -> None:
        """Put back the states of every checkpoint not committed, newest first, and stop
        the commit under way: their events are not acknowledged and come again."""
        pending = [self.current]
        if self._committing is not None:
            cp, task = self._committing
            if not task.done():
                task.cancel()
            pending.append(cp)
            self._committing = None
        store = self.table.data
        for cp in pending:
            if cp.committed:
                continue
            for key, before in cp.before.items():
                if before is _MISSING:
                    store.pop(key, None)
                elif hasattr(store, "restore"):
                    store.restore(key, cp.states[key][0], before)
                else:
                    store[key] = before
        self.current = Checkpoint()
