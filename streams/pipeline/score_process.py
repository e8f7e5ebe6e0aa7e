"""A take's customers scored in a child process: the core off the worker's main thread.

The worker's main thread is its limit (docs/benchmarks.md), and most of what it did per
event was the core: each customer's state opened, the events applied, the rules judged,
the new state packed. The scoring process does that instead, from what the step already
holds in a compact form, and the step keeps what only it can do (Kafka, the table, the
checkpoint, the alerts' sending):

- in: the take's events as msgpack records (``encode_events``, ~1 µs an event), each
  customer's state as the store holds it (``Checkpointer.held``: its packed first stage,
  not decoded), the sentiments and topics of the take's feedback texts, ``now``;
- in the child: the step's own per-customer work, ``score_customers`` (the pure core,
  ``apply_events`` and ``customer_alerts``, and ``pack``), customer after customer in the
  order they first come in the take;
- out: per customer its events seen twice, the new state packed (what the checkpoint
  records and the rows process reads the score update off: ``Checkpointer.set_packed``),
  its alerts and score, or the reason the core raised (the step sets its events aside);
  the take's fresh moments in msgpack, and, when the rows are built on the event loop (a
  ClickHouse server), the score updates.

One take at a time: the step awaits a take's outcome before it takes the next, so a
customer's state is never scored from an older one. Faust stays the engine (partitions,
the changelogged table, rebalancing); the child is the worker's, as the sentiment and
rows processes are (``cxpulse.streams.child_process``), at the worker's priority: it is
on every event's path.

Nothing is lost when the child fails: a take it could not score (the child died) is
scored on the event loop, as with ``CXPULSE_SCORE_PROCESS=false``, and counted in
``cxpulse_score_process_fallbacks_total``; a dead child is replaced at the next take. A
state store that holds decoded states (``memory://``: tests) is scored on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from typing import NamedTuple
from uuid import UUID

import msgspec

from cxpulse.schemas.alerts import Alert
from cxpulse.schemas.model import ExperienceModel
from cxpulse.schemas.scoring import CustomerState, Moment, ScoreUpdate
from cxpulse.streams.child_process import ChildProcess, reason
from cxpulse.streams.core import apply_events, score_update
from cxpulse.streams.pipeline.records import Event, decode_events
from cxpulse.streams.rules.customer import customer_alerts
from cxpulse.streams.sentiment import has_text
from cxpulse.streams.state.customer import pack, unpack

log = logging.getLogger(__name__)

#: The child's name (``ps -o comm``, ``top``).
NAME = "cxpulse-score"
_ENCODE = msgspec.msgpack.Encoder().encode
#: The take's fresh moments as the child sends them.
MOMENTS = msgspec.msgpack.Decoder(list[Moment])
#: The take's score updates as the child sends them (asked for: ``with_updates``).
UPDATES = msgspec.msgpack.Decoder(list[ScoreUpdate])


class Outcome(NamedTuple):
    """One customer of a take, scored: its events seen twice, its new state packed (None:
    none of its events was new), its alerts and new score; ``error``: why the core raised
    (then nothing else is set)."""

    customer_id: str
    duplicates: int
    packed: bytes | None
    alerts: list[Alert]
    score: float
    error: str | None = None


class TakeScores(NamedTuple):
    """A take scored: each customer's outcome, in the order they first come in the take;
    the fresh moments (msgpack, customer after customer), how many were late, and by
    channel; the score updates (msgpack; empty unless asked for); the moment_factors rows
    the moments make; ``seconds``: from the take handed to the child to its result back
    in the worker (set by ``ScoreProcess``)."""

    customers: list[Outcome]
    moments: bytes
    late: int
    by_channel: dict[str, int]
    updates: bytes = b""
    factors: int = 0
    seconds: float = 0.0


def score_one(
    before: CustomerState | None,
    batch: list[Event],
    model: ExperienceModel,
    now: datetime,
    sentiments: dict[UUID, float | None] | None,
    topics: dict[UUID, tuple[str, ...]] | None,
    *,
    include_feedback_text: bool,
    with_update: bool,
) -> tuple[int, tuple[CustomerState, list[Moment], ScoreUpdate | None, list[Alert]] | None]:
    """One customer's events of a take applied: its events seen twice, and (None when none
    was new) the new state, the fresh moments, the score update (``with_update``) and the
    alerts. Where the step scores a customer, here or on its event loop. ``sentiments``
    and ``topics`` are the take's: only a customer with feedback text looks them up (a
    lookup hashes a UUID, in Python)."""
    if not any(map(has_text, batch)):
        sentiments = topics = None
    after, produced = apply_events(before, batch, model, now, sentiments, topics)
    fresh = [m for m in produced if m is not None]
    duplicates = len(produced) - len(fresh)
    if not fresh:
        return duplicates, None
    # The rules' memory (cooldowns, hysteresis) lives in the state they return.
    state, alerts = customer_alerts(
        before,
        after,
        batch,
        produced,
        model,
        now,
        include_feedback_text=include_feedback_text,
    )
    update = score_update(state, model) if with_update else None
    return duplicates, (state, fresh, update, alerts)


def score_customers(
    events: list[Event],
    held: dict[str, bytes | None],
    sentiments: dict[UUID, float | None],
    topics: dict[UUID, tuple[str, ...]],
    now: datetime,
    model: ExperienceModel,
    *,
    include_feedback_text: bool = False,
    with_updates: bool = False,
) -> TakeScores:
    """Score every customer of ``events``: what the step does per customer on its event
    loop (``score_one``)."""
    by_customer: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_customer[event.customer_id].append(event)
    outcomes: list[Outcome] = []
    moments: list[Moment] = []
    updates: list[ScoreUpdate] = []
    by_channel: Counter[str] = Counter()
    factors = 0
    late = 0
    for customer_id, batch in by_customer.items():
        try:
            packed = held.get(customer_id)
            before = None if packed is None else unpack(packed)
            duplicates, scored = score_one(
                before,
                batch,
                model,
                now,
                sentiments,
                topics,
                include_feedback_text=include_feedback_text,
                with_update=with_updates,
            )
            if scored is None:
                outcomes.append(Outcome(customer_id, duplicates, None, [], 0.0))
                continue
            state, fresh, update, alerts = scored
            new = pack(state)
        except Exception as exc:  # this customer's events are set aside; the others go on
            outcomes.append(Outcome(customer_id, 0, None, [], 0.0, reason(exc)))
            continue
        outcomes.append(Outcome(customer_id, duplicates, new, alerts, state.score))
        moments += fresh
        if update is not None:
            updates.append(update)
        for moment in fresh:
            by_channel[moment.channel] += 1
            late += moment.late
            factors += len(moment.readings)
    return TakeScores(
        outcomes,
        _ENCODE(moments),
        late,
        dict(by_channel),
        _ENCODE(updates) if updates else b"",
        factors,
    )


class ScoringFailed(Exception):
    """What the step sets a customer's events aside with when the core raised in the
    child (its reason: the exception's type and message there)."""


# -- the child -------------------------------------------------------------------------

_MODEL: ExperienceModel | None = None
_INCLUDE_FEEDBACK_TEXT = False


def _init_child(model: ExperienceModel, include_feedback_text: bool) -> None:
    global _MODEL, _INCLUDE_FEEDBACK_TEXT
    _MODEL, _INCLUDE_FEEDBACK_TEXT = model, include_feedback_text


def _score_in_child(
    records: bytes,
    held: dict[str, bytes | None],
    sentiments: dict[UUID, float | None],
    topics: dict[UUID, tuple[str, ...]],
    now: datetime,
    with_updates: bool,
) -> TakeScores:
    assert _MODEL is not None, "the scoring process was not set up"
    events, _ = decode_events(records)
    return score_customers(
        events,
        held,
        sentiments,
        topics,
        now,
        _MODEL,
        include_feedback_text=_INCLUDE_FEEDBACK_TEXT,
        with_updates=with_updates,
    )


def _warm_up_in_child() -> int:
    """Score a sample event, so what the first take would load is loaded before Ready."""
    assert _MODEL is not None, "the scoring process was not set up"
    at = datetime(2026, 1, 1, tzinfo=UTC)
    event = Event(UUID(int=1), at, "warm-up", "web", "web.login", "purchase", "success")
    score_customers([event], {}, {}, {}, at, _MODEL, with_updates=True)
    return 1


# -- the worker's side -----------------------------------------------------------------


class ScoreProcess(ChildProcess):
    """The child that scores a worker's takes, and what the step calls."""

    def __init__(self, model: ExperienceModel, include_feedback_text: bool) -> None:
        super().__init__(NAME, "scoring process", _init_child, model, include_feedback_text)

    def warm_up(self) -> Future[int]:
        """Start the child now (its imports take a while), not at the first take."""
        return self._pool.submit(_warm_up_in_child)

    def score(
        self,
        records: bytes,
        held: dict[str, bytes | None],
        sentiments: dict[UUID, float | None],
        topics: dict[UUID, tuple[str, ...]],
        now: datetime,
        *,
        with_updates: bool = False,
    ) -> Awaitable[TakeScores | None]:
        """Hand the take to the child now (the event loop goes on with its own share of
        the take meanwhile); awaited, the take scored, or None when it could not be (the
        child died, or could not be started): the step scores it on the event loop, and
        the next take goes to a new child."""
        pool = self._pool
        started = time.perf_counter()
        try:
            future = pool.submit(
                _score_in_child, records, held, sentiments, topics, now, with_updates
            )
        except Exception as exc:
            return self._failed(pool, exc)
        # stamped as the result arrives, by the pool's thread: the event loop may be busy
        # with its own share of the take then
        done: list[float] = []
        future.add_done_callback(lambda _: done.append(time.perf_counter()))
        return self._scored(pool, future, started, done)

    async def _scored(
        self,
        pool: ProcessPoolExecutor,
        future: Future[TakeScores],
        started: float,
        done: list[float],
    ) -> TakeScores | None:
        try:
            scored = await asyncio.wrap_future(future)
        except Exception as exc:
            await self._failed(pool, exc)
            return None
        return scored._replace(seconds=(done[0] if done else time.perf_counter()) - started)

    async def _failed(self, pool: ProcessPoolExecutor, exc: Exception) -> None:
        if isinstance(exc, BrokenProcessPool | RuntimeError):  # died, or shut down
            self.replace(pool, exc)
        else:  # a value that did not cross: the event loop scores it
            log.warning("the scoring process could not score a take: %s", reason(exc))
