"""The scoring process (cxpulse.streams.pipeline.score_process): a take's customers scored
in a child process give what the step's own per-customer work gives (states to the byte,
moments, alerts, score updates), a customer the core cannot score is reported alone, and
a take the child cannot score (it died) is handed back, nothing lost."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import pytest

from cxpulse.schemas.events import TouchpointEvent
from cxpulse.streams.core import apply_events, score_update
from cxpulse.streams.dev.sample_events import sample_events
from cxpulse.streams.model_check import load_model
from cxpulse.streams.pipeline.records import Event, encode_events, record_of
from cxpulse.streams.pipeline.score_process import (
    MOMENTS,
    NAME,
    UPDATES,
    ScoreProcess,
    TakeScores,
    score_customers,
)
from cxpulse.streams.rules.customer import customer_alerts
from cxpulse.streams.sentiment import has_text
from cxpulse.streams.state.customer import pack, unpack

MODEL = load_model()
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def takes() -> list[list[Event]]:
    """Two takes of the same customers (the second scored on the first's states): the
    sample's events in time order, split in two, and the first take's first events again
    in the second (duplicates)."""
    events = sorted(
        (record_of(TouchpointEvent.model_validate(e)) for e in sample_events(seed=5, now=NOW)),
        key=lambda e: e.occurred_at,
    )
    half = len(events) // 2
    return [events[:half], events[half:] + events[:10]]


def _sentiments(events: list[Event]) -> dict[Any, float | None]:
    """A sentiment for each text (any value: the core takes it as given)."""
    return {e.event_id: -0.5 if i % 2 else 0.4 for i, e in enumerate(events) if has_text(e)}


def _on_the_loop(
    events: list[Event], held: dict[str, bytes | None], sentiments: dict[Any, float | None]
) -> dict[str, Any]:
    """What the step's loop makes of a take (streams/agents/experience.py)."""
    by_customer: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        by_customer[e.customer_id].append(e)
    with_text = {e.customer_id for e in events if has_text(e)}
    out: dict[str, Any] = {}
    for customer_id, batch in by_customer.items():
        packed = held.get(customer_id)
        before = None if packed is None else unpack(packed)
        texts = sentiments if customer_id in with_text else None
        after, produced = apply_events(before, batch, MODEL, NOW, texts, None)
        fresh = [m for m in produced if m is not None]
        if not fresh:
            out[customer_id] = (len(produced), None, [], [], None)
            continue
        state, alerts = customer_alerts(before, after, batch, produced, MODEL, NOW)
        update = score_update(state, MODEL)
        out[customer_id] = (len(produced) - len(fresh), pack(state), alerts, fresh, update)
    return out


def _compare(scored: TakeScores, expected: dict[str, Any]) -> dict[str, bytes | None]:
    assert [o.customer_id for o in scored.customers] == list(expected)
    moments = MOMENTS.decode(scored.moments)
    updates = UPDATES.decode(scored.updates) if scored.updates else []
    assert moments == [m for e in expected.values() for m in e[3]]
    assert updates == [e[4] for e in expected.values() if e[4] is not None]
    assert scored.late == sum(m.late for m in moments)
    assert sum(scored.by_channel.values()) == len(moments)
    assert scored.factors == sum(len(m.readings) for m in moments) > 0  # moment_factors rows
    held: dict[str, bytes | None] = {}
    for o in scored.customers:
        duplicates, packed, alerts, _, _ = expected[o.customer_id]
        assert o.error is None
        assert (o.duplicates, o.packed) == (duplicates, packed), o.customer_id
        assert [a.model_dump() for a in o.alerts] == [a.model_dump() for a in alerts]
        if packed is not None:
            assert o.score == unpack(packed).score
        held[o.customer_id] = packed
    return held


def test_a_take_scored_as_the_steps_loop_scores_it(takes: list[list[Event]]) -> None:
    held: dict[str, bytes | None] = {}
    raised = 0
    for events in takes:
        sentiments = _sentiments(events)
        expected = _on_the_loop(events, held, sentiments)
        scored = score_customers(events, held, sentiments, {}, NOW, MODEL, with_updates=True)
        for customer_id, packed in _compare(scored, expected).items():
            if packed is not None:
                held[customer_id] = packed
        raised += sum(len(o.alerts) for o in scored.customers)
    assert raised, "the sample raises alerts: they must be compared too"
    assert any(has_text(e) for t in takes for e in t), "and has feedback texts"
    assert sum(o.duplicates for o in scored.customers) == 10  # the first take's, again


def test_a_customer_the_core_cannot_score_is_reported_alone(takes: list[list[Event]]) -> None:
    events = takes[0]
    broken = events[0].customer_id
    scored = score_customers(events, {broken: b"\xc1\x04not a state"}, {}, {}, NOW, MODEL)
    errors = {o.customer_id: o.error for o in scored.customers if o.error is not None}
    assert list(errors) == [broken]
    assert errors[broken]  # the reason, for the dead letter
    others = [o for o in scored.customers if o.customer_id != broken]
    assert others and all(o.packed is not None for o in others)
    moments = MOMENTS.decode(scored.moments)
    assert broken not in {m.customer_id for m in moments}
    assert len(moments) == sum(1 for e in events if e.customer_id != broken)


def test_the_child_scores_as_the_step_and_a_dead_one_hands_the_take_back(
    takes: list[list[Event]],
) -> None:
    events = takes[0]
    sentiments = _sentiments(events)
    expected = score_customers(events, {}, sentiments, {}, NOW, MODEL)
    process = ScoreProcess(MODEL, include_feedback_text=False)

    async def score() -> TakeScores | None:
        return await process.score(encode_events(events), {}, sentiments, {}, NOW)

    try:
        assert process.warm_up().result(timeout=120) == 1
        [pid] = process.pids()
        with open(f"/proc/{pid}/comm") as f:
            assert f.read().strip() == NAME
        first = asyncio.run(score())
        # as scored in process; and how long it took, from the hand-off to the result back
        assert first is not None and first._replace(seconds=0.0) == expected
        assert first.seconds > 0.0
        os.kill(pid, signal.SIGKILL)
        assert asyncio.run(score()) is None  # the step scores this take itself
        again = asyncio.run(score())  # in a new child
        assert again is not None and again._replace(seconds=0.0) == expected
        assert process.pids() and process.pids() != [pid]
    finally:
        process.close()


def test_sentiments_reach_only_the_customers_with_text(takes: list[list[Event]]) -> None:
    """Sentiments are looked up for the customers with feedback text in the take only (a
    lookup hashes a UUID): one given for the events of a customer without text is not
    used, as the step never gives one."""
    events = takes[0] + takes[1][:-10]
    with_text = {e.customer_id for e in events if has_text(e)}
    stray = {e.event_id: -1.0 for e in events if e.customer_id not in with_text}
    assert with_text and stray
    plain = score_customers(events, {}, {}, {}, NOW, MODEL)
    assert score_customers(events, {}, stray, {}, NOW, MODEL) == plain
