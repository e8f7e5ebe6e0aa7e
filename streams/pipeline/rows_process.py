"""A take's rows made into the sink's batches in a child process: off the event loop.

The worker's main thread is its limit (docs/benchmarks.md), and on the embedded
ClickHouse a sixth of it went into the rows of every take: their columns built from the
records (``cxpulse.schemas``' column builders) and typed into Arrow tables for chDB. The
child does that work instead, from what the step already holds in a compact form:

- ``events``: the cx.events messages' bytes as they came (their records, decoded again
  there), with each message's partition and offset: nothing to encode;
- ``moments``: the step's Moment structs in msgpack (msgspec, in C: about a fifth of the
  building and typing it saves);
- ``scores``: the customers' new states as the checkpoint packed them for the changelog
  (``Checkpointer.set``: nothing more to encode), from which the child works out each
  score update (``cxpulse.streams.core.score_update``: the sub-scores and the explanation
  over every open episode, a pure function of the state and the model) and its row. The
  step needs none of the update itself (its score is the state's).

The child gives each part back as Arrow IPC bytes, which the step reads without a copy
and its checkpoint inserts as before (``Checkpointer.add_pending``: the commit waits for
them, rows first as always). The same builders make the same tables, compared in the
tests. Only a sink whose batches are Arrow tables made from columns (chDB:
``SinkWriter.arrow_capabilities``) takes this path; the others take the rows as the step
builds them (``TakeRows``).

Nothing is lost when the child fails: a part it could not make (the child died, a value
no column can hold) is made on the event loop from the same payload, through the
writer's own ``prepare_columns`` (which keeps unpreparable rows as rows, so that the
insert sets the refused ones aside), and counted in
``cxpulse_rows_process_fallbacks_total``; a dead child is replaced at the next part.
``CXPULSE_ROWS_PROCESS=false`` builds every part on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
import pyarrow as pa

from cxpulse.schemas.model import ExperienceModel
from cxpulse.schemas.rows import Columns, TableSpec
from cxpulse.schemas.scoring import Moment
from cxpulse.schemas.tables import SPECS
from cxpulse.sinks.ddl import Capabilities
from cxpulse.sinks.embedded import arrow_table, ipc_stream
from cxpulse.streams import metrics
from cxpulse.streams.child_process import ChildProcess
from cxpulse.streams.core import apply_events, score_update
from cxpulse.streams.pipeline.records import Event, decode_events, encode_events
from cxpulse.streams.pipeline.rows import Part, TakeRows, event_parts, moment_parts, score_parts
from cxpulse.streams.state.customer import pack, unpack

if TYPE_CHECKING:  # the child imports this module: not the checkpoint's (the changelog's)
    from cxpulse.streams.pipeline.checkpoint import Checkpointer, Prepared

log = logging.getLogger(__name__)

_TABLES: dict[str, TableSpec] = {s.name: s for s in SPECS if isinstance(s, TableSpec)}
_ENCODE = msgspec.msgpack.Encoder().encode
_MOMENTS = msgspec.msgpack.Decoder(list[Moment])

#: The child's name (``ps -o comm``, ``top``).
NAME = "cxpulse-rows"
#: How much the child lowers its priority (``nice``) where it cannot run as an idle task
#: (``SCHED_IDLE``: Linux only). Its parts are awaited at the commits only, while the
#: worker's main thread is on every event's path: at the same priority the kernel shared
#: a core between them, and the main thread waited in the run queue for a fifth of a
#: backlog's window (docs/benchmarks.md, session 40); at nice +10 still a fifth of the
#: 5,000 events/s run's, and the worker fell behind (session 46).
NICE = 10


def columns_of(kind: str, payload: Any, model: ExperienceModel) -> list[Part]:
    """The columns of a part's payload (what ``TakeRows``' builders make of the records it
    stands for): in the child, and on the event loop when the child could not."""
    if kind == "events":
        ingested_at, messages = payload
        decoded = [
            (decode_events(value)[0], partition, offset) for value, partition, offset in messages
        ]
        return event_parts(ingested_at, decoded)
    if kind == "moments":
        return moment_parts(_MOMENTS.decode(payload))
    if kind == "scores":
        return score_parts([score_update(unpack(packed), model) for packed in payload])
    raise ValueError(f"no rows of kind {kind!r}")


def _tables(tables: str | tuple[str, ...]) -> tuple[str, ...]:
    return (tables,) if isinstance(tables, str) else tables


# -- the child -------------------------------------------------------------------------

_CAPABILITIES: Capabilities | None = None
_MODEL: ExperienceModel | None = None


def _init_child(capabilities: Capabilities, model: ExperienceModel, priority: str) -> None:
    global _CAPABILITIES, _MODEL
    _CAPABILITIES, _MODEL = capabilities, model
    _below_the_worker(priority)


def _below_the_worker(priority: str) -> None:
    """Run the child below the worker's main thread. ``idle``: on the CPU the worker and
    the rest of the machine leave, every one of its threads an idle task (``SCHED_IDLE``,
    which a process may choose for itself without privileges: the kernel gives it a
    core that little else wants, at a weight of 3 against a normal task's 1,024).
    Starved, it only makes the commit wait for its parts, and a step whose commit waits
    long enough waits too (``checkpoint.HOLD``), which frees the core: backpressure,
    nothing lost; but a backlog's last commit then waits for most of its parts. ``low``
    (and where there is no such policy): ``NICE`` lower."""
    idle = getattr(os, "SCHED_IDLE", None)
    if priority == "idle" and idle is not None:
        try:
            for task in os.listdir("/proc/self/task"):  # threads started later inherit it
                try:
                    os.sched_setscheduler(int(task), idle, os.sched_param(0))
                except ProcessLookupError:  # a thread that has just ended
                    continue
            return
        except OSError:  # not allowed here (a sandbox, say): the nice level instead
            pass
    os.nice(NICE)


def _build_in_child(kind: str, payload: Any) -> list[tuple[tuple[str, ...], bytes]]:
    """A part's Arrow tables, as IPC streams (what crosses back to the worker)."""
    assert _CAPABILITIES is not None and _MODEL is not None, "the rows process was not set up"
    out = []
    for tables, columns in columns_of(kind, payload, _MODEL):
        names = _tables(tables)
        table = arrow_table(_TABLES[names[0]], columns, _CAPABILITIES)
        out.append((names, ipc_stream(table).to_pybytes()))
    return out


def _warm_up_in_child() -> int:
    """Make a part of each kind from one sample event, so what the first parts would load
    is loaded as the child starts, before the worker is Ready, not in its first take:
    pyarrow imports pandas (~0.3 s) at its first time-zone-aware column."""
    assert _MODEL is not None, "the rows process was not set up"
    for kind, payload in _samples(_MODEL):
        _build_in_child(kind, payload)
    return len(_TABLES)


def _samples(model: ExperienceModel) -> list[tuple[str, Any]]:
    """A payload of each kind, made from one event as the step makes them."""
    at = datetime(2026, 1, 1, tzinfo=UTC)
    event = Event(uuid.UUID(int=1), at, "warm-up", "web", "web.login", "purchase", "success")
    state, moments = apply_events(None, [event], model, at, {})
    return [
        ("events", (at, [(encode_events([event]), 0, 0)])),
        ("moments", _ENCODE([m for m in moments if m is not None])),
        ("scores", [pack(state)]),
    ]


# -- the worker's side -----------------------------------------------------------------


class RowsProcess(ChildProcess):
    """The child that makes a worker's rows into Arrow tables, and what the step calls."""

    def __init__(
        self,
        capabilities: Capabilities,
        model: ExperienceModel,
        prepare: Callable[[str, Columns], Any],
        priority: str = "idle",
    ) -> None:
        """``capabilities``: the ClickHouse the tables are typed for; ``model``: the
        experience model the score updates are worked out by; ``prepare``: the writer's
        ``prepare_columns``, for a part made on the event loop; ``priority``: the
        worker's ``rows_process_priority`` (``_below_the_worker``)."""
        super().__init__(NAME, "rows process", _init_child, capabilities, model, priority)
        self._model = model
        self._prepare = prepare

    def warm_up(self) -> Future[int]:
        """Start the child now (its imports take a while), not at the first take."""
        return self._pool.submit(_warm_up_in_child)

    def part(self, kind: str, payload: Any) -> Callable[[], Awaitable[Prepared]]:
        """Start making a part now; what the checkpoint awaits at its commit."""
        pool = self._pool
        try:
            future: Future[Any] | None = pool.submit(_build_in_child, kind, payload)
        except (BrokenProcessPool, RuntimeError) as exc:  # died earlier, or shut down
            self.replace(pool, exc)
            future = None

        async def prepared() -> Prepared:
            if future is not None:
                try:
                    blobs = await asyncio.wrap_future(future)
                    return [(names, pa.ipc.open_stream(blob).read_all()) for names, blob in blobs]
                except BrokenProcessPool as exc:  # every part in it fails so: replaced once
                    self.replace(pool, exc)
                except Exception as exc:
                    log.warning("the rows process could not make a part of %s: %s", kind, exc)
            metrics.ROWS_PROCESS_FALLBACKS.inc()
            return [
                (names, self._prepare(names[0], columns))
                for names, columns in (
                    (_tables(t), c) for t, c in columns_of(kind, payload, self._model)
                )
            ]

        return prepared


class ProcessRows(TakeRows):
    """``TakeRows`` whose parts the rows process makes: every ``PART_ROWS`` records, and at
    ``close``, the payload of the records added goes to the child and the checkpoint is
    told how many rows of each table are coming (``Checkpointer.add_pending``)."""

    __slots__ = ("_add_pending", "_counts", "_kind", "_payload", "_process")

    def __init__(
        self,
        checkpoints: Checkpointer,
        process: RowsProcess,
        kind: str,
        payload: Callable[[list[Any]], Any],
        counts: Callable[[list[Any]], dict[str, int]],
        *,
        size: Callable[[Any], int] | None = None,
    ) -> None:
        super().__init__(checkpoints, _no_build, size=size)
        self._add_pending = checkpoints.add_pending
        self._process = process
        self._kind = kind
        self._payload = payload
        self._counts = counts

    def _record(self, items: list[Any]) -> None:
        self._add_pending(self._counts(items), self._process.part(self._kind, self._payload(items)))

    def add_encoded(
        self, raw: bytes, decode: Callable[[bytes], list[Any]], counts: dict[str, int]
    ) -> None:
        """``raw`` is what ``payload`` makes of the records it encodes (the scoring
        process's moments, say): a part of its own, never decoded on the event loop."""
        self._add_pending(counts, self._process.part(self._kind, raw))


def _no_build(items: list[Any]) -> list[Part]:
    raise AssertionError("the rows process builds these rows")


def event_rows(
    checkpoints: Checkpointer, process: RowsProcess, ingested_at: datetime
) -> ProcessRows:
    """A take's touchpoint_events rows: items are (message bytes, partition, offset,
    events in it)."""
    return ProcessRows(
        checkpoints,
        process,
        "events",
        lambda items: (ingested_at, [(v, p, o) for v, p, o, _ in items]),
        lambda items: {"touchpoint_events": sum(map(_events_in, items))},
        size=_events_in,
    )


def _events_in(item: tuple[bytes, int, int, int]) -> int:
    return item[3]


def moment_rows(checkpoints: Checkpointer, process: RowsProcess) -> ProcessRows:
    """A take's moments and moment_factors rows: items are Moments."""
    return ProcessRows(checkpoints, process, "moments", _ENCODE, _moment_counts)


def score_rows(checkpoints: Checkpointer, process: RowsProcess) -> ProcessRows:
    """A take's customer_scores and score_history rows: items are the new states as the
    checkpoint packed them (``Checkpointer.set``), one score update each."""
    return ProcessRows(checkpoints, process, "scores", list, _score_counts)


def _moment_counts(moments: Sequence[Moment]) -> dict[str, int]:
    return {"moments": len(moments), "moment_factors": sum(len(m.readings) for m in moments)}


def _score_counts(states: Sequence[bytes]) -> dict[str, int]:
    return {"customer_scores": len(states), "score_history": len(states)}
