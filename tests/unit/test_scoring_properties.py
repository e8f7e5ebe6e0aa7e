"""Properties of the scoring core that must hold for ANY events (hypothesis), on the
shipped default model: the score stays in [0, 100]; the same event twice is the same as
once; the order of events within the lateness window does not change the score."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxpulse.schemas.events import TouchpointEvent
from cxpulse.schemas.scoring import CustomerState
from cxpulse.streams.core import apply_event, apply_events, score_update
from cxpulse.streams.model_check import load_model

MODEL = load_model()
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=400)

_DETAILS = {
    "web": ("web.checkout", {"kind": "web", "latency_ms": 0.0, "steps": 0}),
    "app": ("app.payment", {"kind": "app", "latency_ms": 0.0}),
    "call_center": ("call_center.card_hotline", {"kind": "call_center", "wait_seconds": 0.0}),
    "store": ("store.branch_visit", {"kind": "store", "queue_seconds": 0.0}),
    "atm": ("atm.withdrawal", {"kind": "atm", "response_ms": 0.0}),
}


@st.composite
def events(
    draw: Any,
    max_minutes: int = 60 * 24 * 30,
    tier: str | None = None,
    segment: str | None = None,
    journeys: tuple[str | None, ...] = (None, "J1", "J2"),
) -> TouchpointEvent:
    """Random valid events of customer c1; ``tier``/``segment`` fix them when given (a
    moment without them takes the customer's as known when processed, so the shuffle
    properties hold for customers whose events state them, as documented)."""
    channel = draw(st.sampled_from(list(_DETAILS)))
    touchpoint, details = _DETAILS[channel]
    details = dict(details)
    for k, v in details.items():
        if k != "kind":
            details[k] = (
                draw(st.floats(0, 20_000)) if isinstance(v, float) else draw(st.integers(0, 30))
            )
    if draw(st.booleans()):
        touchpoint = draw(st.sampled_from([touchpoint, f"{channel}.unknown_type"]))
    feedback = draw(
        st.none()
        | st.fixed_dictionaries(
            {},
            optional={
                "csat": st.integers(1, 5),
                "nps": st.integers(0, 10),
                "ces": st.integers(1, 7),
            },
        ).filter(bool)
    )
    return TouchpointEvent.model_validate(
        {
            "event_id": uuid.UUID(int=draw(st.integers(0, 2**128 - 1))),
            "occurred_at": T0 + timedelta(seconds=draw(st.integers(0, max_minutes * 60))),
            "customer_id": "c1",
            "channel": channel,
            "touchpoint": touchpoint,
            "journey_stage": "post_purchase",
            "journey_id": draw(st.sampled_from(journeys)),
            "outcome": draw(st.sampled_from(["success", "failure", "abandoned"])),
            "details": details,
            "feedback": feedback,
            "tier": tier if tier is not None else draw(st.sampled_from(["A", "B", "C", None])),
            "segment": segment or draw(st.sampled_from(["retail", "retail_banking", None])),
        }
    )


def _unique(evs: list[TouchpointEvent]) -> list[TouchpointEvent]:
    return list({e.event_id: e for e in evs}.values())


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.lists(events(), min_size=1, max_size=40), st.lists(st.floats(-1, 1), max_size=40))
def test_score_always_in_0_100(evs: list[TouchpointEvent], sent: list[float]) -> None:
    state: CustomerState | None = None
    for i, e in enumerate(evs):
        state, mo = apply_event(state, e, MODEL, NOW, sent[i] if i < len(sent) else None)
        assert state is not None
        assert 0 <= state.score <= 100
        up = score_update(state, MODEL)
        assert all(0 <= v <= 100 for v in up.factor_scores.values())
        assert all(0 <= v <= 100 for v in up.channel_scores.values())
        assert 0 <= state.confidence < 1
        if mo is not None:
            assert -10 <= mo.valence <= 10
            assert all(0 <= x <= 10 for x in mo.readings.values())


@FAST
@given(st.lists(events(), min_size=1, max_size=30), st.data())
def test_same_event_twice_is_once(evs: list[TouchpointEvent], data: Any) -> None:
    evs = _unique(evs)
    state, _ = apply_events(None, evs, MODEL, NOW)
    again = data.draw(st.sampled_from(evs))
    state2, mo = apply_event(state, again, MODEL, NOW)
    # None for a remembered id; an id older than the lateness window is forgotten and the
    # event comes back as a late Moment (ClickHouse dedups it by event_id), state untouched
    assert mo is None or mo.late
    assert state2 == state
    # and a replay of the whole batch changes nothing either
    state3, moments = apply_events(state, evs, MODEL, NOW)
    assert state3 == state and all(m is None or m.late for m in moments)


@FAST
@given(
    st.lists(events(max_minutes=25, tier="B", segment="retail"), min_size=2, max_size=20),
    st.randoms(),
)
def test_shuffling_one_episode_gives_the_same_score(evs: list[TouchpointEvent], rnd: Any) -> None:
    # every event within 25 minutes, one tier and segment: one episode per journey id (or none)
    evs = _unique(evs)
    shuffled = list(evs)
    rnd.shuffle(shuffled)
    a = _one_by_one(evs)
    b = _one_by_one(shuffled)
    _same_score(a, b)


@FAST
@given(
    st.lists(
        events(max_minutes=40 * 60, tier="A", segment="retail_banking"), min_size=2, max_size=15
    ),
    st.randoms(),
)
def test_shuffling_within_the_lateness_window_gives_the_same_score(
    evs: list[TouchpointEvent], rnd: Any
) -> None:
    # all events within 40 h < allowed lateness 48 h (and <= 16 episodes): order is free
    evs = _unique(evs)
    shuffled = list(evs)
    rnd.shuffle(shuffled)
    _same_score(_one_by_one(evs), _one_by_one(shuffled))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        events(max_minutes=3 * 24 * 60, tier="C", segment="retail", journeys=(None, "J1")),
        min_size=2,
        max_size=15,
    ),
    st.lists(st.floats(0, 0.999), min_size=15, max_size=15),
)
def test_any_order_without_late_events_gives_the_same_score(
    evs: list[TouchpointEvent], delays: list[float]
) -> None:
    """Three days of events (one journey among them), each arriving up to the allowed lateness
    after it happened: then no event is late (anything that arrived before it happened
    less than the lateness after it), and the order they arrive in changes nothing."""
    evs = _unique(evs)
    lateness = MODEL.episodes.allowed_lateness_hours * 3600
    arrival = sorted(
        range(len(evs)), key=lambda i: evs[i].occurred_at.timestamp() + delays[i] * lateness
    )
    state: CustomerState | None = None
    for i in arrival:
        state, moment = apply_event(state, evs[i], MODEL, NOW)
        assert moment is not None and not moment.late
    assert state is not None
    in_time_order = sorted(evs, key=lambda e: (e.occurred_at, e.event_id.hex))
    _same_score(state, _one_by_one(in_time_order))


def _one_by_one(evs: list[TouchpointEvent]) -> CustomerState:
    state: CustomerState | None = None
    for e in evs:
        state, _ = apply_event(state, e, MODEL, NOW)
    assert state is not None
    return state


def _same_score(a: CustomerState, b: CustomerState) -> None:
    assert a.score == pytest.approx(b.score, abs=0.011)
    ua, ub = score_update(a, MODEL), score_update(b, MODEL)
    assert ua.factor_scores == pytest.approx(ub.factor_scores, abs=0.011)
    assert ua.channel_scores == pytest.approx(ub.channel_scores, abs=0.011)
    assert a.episode_count == b.episode_count
    assert a.episodes == b.episodes
    assert a.version == b.version


WIDE = MODEL.model_copy(update={"score": MODEL.score.model_copy(update={"explanation_size": 20})})


@FAST
@given(st.lists(events(), min_size=1, max_size=40), st.lists(st.floats(-1, 1), max_size=40))
def test_the_explanation_adds_up(evs: list[TouchpointEvent], sent: list[float]) -> None:
    """Listed contributions and the rest sum to score - 50, nothing listed contributes 0,
    and each listed moment carries its actual contribution: with a list long enough for
    every peak and end (20 here; at most 2 per episode and 16 open ones, plus folded
    ones), the rest is only the rounding of the listed ones and of the score."""
    evs = _unique(evs)
    for model in (MODEL, WIDE):
        state: CustomerState | None = None
        for i, e in enumerate(evs):
            state, _ = apply_event(state, e, model, NOW, sent[i] if i < len(sent) else None)
            assert state is not None
            up = score_update(state, model)
            listed = [x.contribution for x in up.explanation]
            assert len(listed) <= model.score.explanation_size
            assert all(c != 0 for c in listed)
            assert listed == sorted(listed, key=abs, reverse=True)
            assert sum(listed) + up.explanation_rest == pytest.approx(up.score - 50, abs=1e-6)
            peaks_ends = {k.event_id for ep in state.episodes for k in (ep.peak_m, ep.end_m) if k}
            assert {x.event_id.hex for x in up.explanation} <= peaks_ends | {
                k.event_id for k in state.key_moments
            }
        assert state is not None
        if model is WIDE and state.episode_count <= 9:
            up = score_update(state, model)
            # 0.005 per listed contribution and per score, rounded to 2 decimals
            assert abs(up.explanation_rest) <= 0.006 * (len(up.explanation) + 1)
