"""Every scoring formula of cx-model.md against numbers worked by hand (in the comments).

The tests use a small model with round numbers (below) so each expected value can be
checked with pencil and paper; the default model is exercised by the property tests.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from cxpulse.schemas.events import CHANNELS, TouchpointEvent
from cxpulse.schemas.model import ExperienceModel, Scale, parse_model
from cxpulse.schemas.scoring import CustomerState
from cxpulse.streams.core import apply_event, apply_events, explanation, score_update
from cxpulse.streams.core.episodes import combine, remembered
from cxpulse.streams.core.readings import AnswerScale, effort_reading
from cxpulse.streams.core.score import weight
from cxpulse.streams.core.valence import assess
from cxpulse.streams.model_check import load_model
from cxpulse.streams.state.customer import encode

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=365)
HALF_LIFE = timedelta(days=14)


def model(**over: Any) -> ExperienceModel:
    """Importance: service 9, convenience 6, others small; expectations 9/8/7 for A/B/C."""
    data: dict[str, Any] = {
        "factors": {
            "importance": {
                "default": {
                    "product": 5,
                    "service": 9,
                    "relationship": 3,
                    "convenience": 6,
                    "brand": 2,
                    "price": 4,
                },
                "retail": {
                    "product": 9,
                    "service": 3,
                    "relationship": 3,
                    "convenience": 3,
                    "brand": 3,
                    "price": 3,
                },
            }
        },
        "expectations": {
            tier: dict.fromkeys(
                ("product", "service", "relationship", "convenience", "brand", "price"), level
            )
            for tier, level in (("A", 9), ("B", 8), ("C", 7), ("none", 8))
        },
        "touchpoints": {
            "call_center.hotline": {
                "channel": "call_center",
                "factors": ["service"],
                "effort": [{"metric": "wait_seconds", "expected": 60}],
            },
            "call_center.two_metrics": {
                "channel": "call_center",
                "factors": ["service"],
                "effort": [
                    {"metric": "wait_seconds", "expected": 60},
                    {"metric": "transfers", "expected": 1},
                ],
            },
            "atm.withdrawal": {
                "channel": "atm",
                "factors": ["convenience", "service"],
                "effort": [{"metric": "response_ms", "expected": 3000}],
            },
        },
        "channels": {ch: {"channel": ch, "factors": ["product"]} for ch in CHANNELS},
    }
    data.update(over)
    return parse_model(data)


M = model()


def ev(
    minutes: float = 0,
    *,
    touchpoint: str = "call_center.hotline",
    channel: str = "call_center",
    outcome: str = "success",
    tier: str | None = "B",
    customer: str = "c1",
    **kw: Any,
) -> TouchpointEvent:
    return TouchpointEvent.model_validate(
        {
            "event_id": kw.pop("event_id", uuid.uuid4()),
            "occurred_at": T0 + timedelta(minutes=minutes),
            "customer_id": customer,
            "channel": channel,
            "touchpoint": touchpoint,
            "journey_stage": "post_purchase",
            "outcome": outcome,
            "tier": tier,
            **kw,
        }
    )


def run(events: list[TouchpointEvent], m: ExperienceModel = M) -> CustomerState:
    state = None
    for e in events:
        state, _ = apply_event(state, e, m, NOW)
    assert state is not None
    return state


# --- readings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected", "k", "reading"),
    [
        (30, 60, 4, 10.0),  # under expectation
        (60, 60, 4, 10.0),  # v = e -> 10
        (120, 60, 4, 10 * (240 - 120) / (240 - 60)),  # v = 2e -> 6.667
        (150, 60, 4, 5.0),  # v = 2.5e -> 10 * (4 - 2.5) / 3 = 5
        (240, 60, 4, 0.0),  # v = 4e -> 0
        (1000, 60, 4, 0.0),  # beyond 4e stays 0
        (150, 60, 2, 0.0),  # k = 2: 2.5e is already past 2e
        (90, 60, 2, 5.0),  # k = 2: 1.5e is half way from e to 2e
    ],
)
def test_effort_curve(value: float, expected: float, k: float, reading: float) -> None:
    assert effort_reading(value, expected, k) == pytest.approx(reading)


@pytest.mark.parametrize(
    ("scale", "value", "reading"),
    [
        ((1, 5), 1, 0.0),  # CSAT (c - 1) x 2.5
        ((1, 5), 3, 5.0),
        ((1, 5), 4, 7.5),
        ((1, 5), 5, 10.0),
        ((0, 10), 7, 7.0),  # NPS as is
        ((7, 1), 1, 10.0),  # CES (7 - c) x 10/6: effortless
        ((7, 1), 4, 5.0),  # (7 - 4) x 10/6 = 5
        ((7, 1), 6, 10 / 6),
        ((7, 1), 7, 0.0),
        ((-1, 1), -1, 0.0),  # sentiment 5 + 5c
        ((-1, 1), 0, 5.0),
        ((-1, 1), 0.5, 7.5),
        ((-1, 1), -0.6, 2.0),
        ((-1, 1), 1, 10.0),
    ],
)
def test_delight_mappings(scale: tuple[float, float], value: float, reading: float) -> None:
    assert AnswerScale.of(Scale(zero=scale[0], ten=scale[1])).position(value) == pytest.approx(
        reading
    )


@pytest.mark.parametrize(
    ("kw", "reading"),
    [
        ({}, 8.0),  # need only: a success reads tier B's expectation 8 (gap 0)
        ({"outcome": "failure", "feedback": {"csat": 5}}, 0.0),  # need caps: failure reads 0
        # abandoned (3) with a fast answer (ease 8): mean 5.5, capped by the outcome's 3
        ({"outcome": "abandoned", "details": {"kind": "call_center", "wait_seconds": 5}}, 3.0),
        # need 8, ease 4 (wait 2.5e: half of 8), delight 8 (CSAT 4: as expected), 1:1:2 -> 28/4
        (
            {"details": {"kind": "call_center", "wait_seconds": 150}, "feedback": {"csat": 4}},
            7.0,
        ),
        # NPS is no delight reading; CES 4 sits at 5 of 10 on its scale, below the expected
        # CES 2 (8.333): 8 x 5 / 8.333 = 4.8. (8 + 2 x 4.8) / 3 = 5.8667
        ({"feedback": {"nps": 4, "ces": 4}}, 17.6 / 3),
        # CSAT 5 lifts a success above expectation: (8 + 2 x 10) / 3 = 9.333
        ({"feedback": {"csat": 5}}, 28 / 3),
    ],
)
def test_factor_reading_combination(kw: dict[str, Any], reading: float) -> None:
    _, mo = apply_event(None, ev(**kw), M, NOW)
    assert mo is not None
    assert mo.readings["service"] == pytest.approx(reading, abs=1e-3)


def test_effort_metrics_of_one_touchpoint_average() -> None:
    # wait 2.5e -> half, transfers 3 = 3e with e=1,k=4 -> (4-3)/3 = a third; ease is their
    # mean 5/12 of tier B's 8 = 3.3333; x = (8 + 3.3333) / 2 = 5.6667
    e = ev(
        touchpoint="call_center.two_metrics",
        details={"kind": "call_center", "wait_seconds": 150, "transfers": 3},
    )
    _, mo = apply_event(None, e, M, NOW)
    assert mo is not None and mo.readings["service"] == pytest.approx(5.6667, abs=1e-3)


def test_sentiment_is_a_delight_reading() -> None:
    # sentiment -1 -> 0; x = (8 + 2 x 0) / 3 = 2.667; tier B gap 2.667 - 8 = -5.333
    _, mo = apply_event(None, ev(feedback={"text": "awful"}), M, NOW, sentiment=-1.0)
    assert mo is not None
    assert mo.readings["service"] == pytest.approx(8 / 3, abs=1e-3)
    assert mo.gaps["service"] == pytest.approx(-16 / 3, abs=1e-3)
    assert mo.sentiment == -1.0


# --- gap, impact, valence --------------------------------------------------------------


def test_key_experience_importance_9_times_gap_minus_2() -> None:
    # success (8) after a wait of 2.5e (ease: half of 8 = 4): x = 12/2 = 6; tier B
    # expects 8: gap -2; service importance 9: impact 9 x -2 = -18; valence = -18 / 9 = -2
    _, mo = apply_event(None, ev(details={"kind": "call_center", "wait_seconds": 150}), M, NOW)
    assert mo is not None
    assert mo.readings == {"service": pytest.approx(6.0)}
    assert mo.gaps == {"service": pytest.approx(-2.0)}
    assert mo.impacts == {"service": pytest.approx(-18.0)}
    assert mo.valence == pytest.approx(-2.0)
    assert mo.key_factor == "service"


def test_valence_is_importance_weighted_mean_gap() -> None:
    # gaps service -2 (imp 9), convenience +4 (imp 6): (-18 + 24) / 15 = 0.4
    imp = {"service": 9.0, "convenience": 6.0}
    g, impacts, v, key = assess(
        {"service": 6, "convenience": 12}, {"service": 8, "convenience": 8}, imp
    )
    assert g == {"service": -2, "convenience": 4}
    assert impacts == {"service": -18.0, "convenience": 24.0}
    assert v == pytest.approx(0.4)
    # the small gap on the factor that matters is still second to a larger positive one here
    assert key == "convenience"
    # clamped to [-10, 10]
    assert assess({"service": -2.0}, {"service": 10.0}, imp)[2] == -10.0


def test_tier_a_expects_more_than_tier_c() -> None:
    # A routine ATM success (response 3000 ms = e) reads each tier's expectation: gap 0.
    atm = {"touchpoint": "atm.withdrawal", "channel": "atm"}
    for tier in ("A", "B", "C", None):
        routine = ev(tier=tier, details={"kind": "atm", "response_ms": 3000}, **atm)
        _, mo = apply_event(None, routine, M, NOW)
        assert mo is not None and mo.valence == 0.0
    # response 4500 ms (e 3000, k 4): ease (12000-4500)/9000 = 5/6 of the expectation.
    # Tier A (9): x = (9 + 7.5)/2 = 8.25, gap -0.75; tier C (7): (7 + 5.833)/2 = 6.4167,
    # gap -0.5833: the same mediocre moment is worse for the tier that expects more.
    kw = {**atm, "details": {"kind": "atm", "response_ms": 4500}}
    _, a = apply_event(None, ev(tier="A", **kw), M, NOW)
    _, c = apply_event(None, ev(tier="C", **kw), M, NOW)
    assert a is not None and c is not None
    assert a.valence == pytest.approx(-0.75, abs=1e-3)
    assert c.valence == pytest.approx(-0.5833, abs=1e-3)
    # the same failure: A -9, C -7
    _, a = apply_event(None, ev(tier="A", outcome="failure", **kw), M, NOW)
    _, c = apply_event(None, ev(tier="C", outcome="failure", **kw), M, NOW)
    assert a is not None and c is not None
    assert (a.valence, c.valence) == (pytest.approx(-9.0), pytest.approx(-7.0))


def test_segment_selects_importance_and_unknown_segment_uses_default() -> None:
    # ATM failure tier B: gaps -8 on convenience and service. retail weighs them 3 and 3,
    # default 6 and 9; valence is -8 either way, but the impacts differ: -24 vs -72.
    kw = {"touchpoint": "atm.withdrawal", "channel": "atm", "outcome": "failure"}
    _, r = apply_event(None, ev(segment="retail", **kw), M, NOW)
    _, u = apply_event(None, ev(segment="unknown_seg", **kw), M, NOW)
    assert r is not None and u is not None
    assert r.impacts["service"] == pytest.approx(-24.0)
    assert u.impacts["service"] == pytest.approx(-72.0)


# --- episodes and peak-end -------------------------------------------------------------


def test_peak_end_equal_means_different_endings() -> None:
    # service-only touchpoint, tier B expects 8: success 0, failure -8.
    # X: failure, success, success (5 min apart): mean -8/3, peak -8, end 0 -> r = -4
    #    score 50 + 5 x -4 = 30
    # Y: success, success, failure: mean -8/3, peak -8, end -8 -> r = -8 -> score 10
    x = run([ev(0, outcome="failure"), ev(5), ev(10)])
    y = run([ev(0), ev(5), ev(10, outcome="failure")])
    assert x.episode_count == y.episode_count == 1
    assert x.score == pytest.approx(30.0)
    assert y.score == pytest.approx(10.0)


def test_peak_end_memory_combination() -> None:
    # peak is the largest |v| (negative on a tie), end is the latest
    a, b = (2.0, 100, 2.0), (-2.0, 50, -2.0)
    assert combine(a, b) == (-2.0, 100, 2.0)
    assert combine(b, a) == (-2.0, 100, 2.0)
    assert remembered(combine(a, b)) == 0.0


def test_gap_rule_and_journeys() -> None:
    # 0 and 25 min: one episode; 70 min: 45 min later, a new one
    s = run([ev(0), ev(25), ev(70)])
    assert s.episode_count == 2
    # one journey over 3 hours is one episode; a journey-less event in between is its own
    s = run([ev(0, journey_id="J1"), ev(90, journey_id="J1"), ev(100), ev(180, journey_id="J1")])
    assert s.episode_count == 2


@pytest.mark.parametrize(
    ("pause_hours", "episodes"),
    [(23.5, 1), (24.0, 1), (24.5, 2)],  # journey_gap_hours 24: a longer pause, a new one
)
def test_a_journey_resumed_after_its_gap_is_a_new_episode(
    pause_hours: float, episodes: int
) -> None:
    s = run([ev(0, journey_id="J1"), ev(pause_hours * 60, journey_id="J1")])
    assert s.episode_count == episodes


def test_a_journey_episode_does_not_depend_on_arrival_order() -> None:
    """A: J1 failure at T; C: J1 success at T + 1 h; B: no journey at T + 49 h. With B
    before C, B's watermark (T + 49 h) used to close J1's episode (last moment at T) and C,
    still within the 48 h lateness, opened a second J1 episode: another score than in
    event-time order. Journey episodes now close only after lateness + journey gap."""
    a = ev(0, journey_id="J1", outcome="failure")
    c = ev(60, journey_id="J1")
    b = ev(49 * 60)
    in_order = run([a, c, b])
    shuffled = run([a, b, c])
    assert not any(m is not None and m.late for m in apply_events(None, [a, b, c], M, NOW)[1])
    assert in_order.episode_count == shuffled.episode_count == 2
    assert shuffled.score == pytest.approx(in_order.score, abs=0.011)
    assert shuffled.episodes == in_order.episodes


def test_out_of_order_event_bridging_two_sessions_merges_them() -> None:
    # 0 and 50 min are two sessions; the event at 25 min (late) joins both into one.
    # valences: failure -8 at 0, success 0 at 25, success 0 at 50: peak -8, end 0 -> -4
    events = [ev(0, outcome="failure"), ev(50), ev(25)]
    s = run(events)
    assert s.episode_count == 1
    assert s.score == pytest.approx(30.0)
    in_order = run([events[0], events[2], events[1]])
    assert in_order.score == s.score and in_order.episodes == s.episodes


def test_open_episode_already_counts() -> None:
    state, _ = apply_event(None, ev(0, outcome="failure"), M, NOW)
    assert state.score == pytest.approx(10.0)  # 50 + 5 x -8


# --- decay, score, sub-scores, confidence ----------------------------------------------


def test_weight_halves_over_one_half_life() -> None:
    hl = HALF_LIFE.total_seconds()
    assert weight(0, int(hl), hl) == pytest.approx(0.5)
    assert weight(0, int(2 * hl), hl) == pytest.approx(0.25)


def test_decay_over_exactly_one_half_life() -> None:
    # episode 1 at T0: ATM failure (-8 on convenience and service, r = -8)
    # episode 2 at T0 + 14 d: hotline success with CSAT 5 (service (8 + 20)/3 = 9.333:
    # +1.333, r = +1.333)
    # m = (0.5 x -8 + 1 x 1.333) / 1.5 = -1.778 -> score 50 - 8.889 = 41.11
    # (undecayed: 50 + 5 x -3.333 = 33.33)
    # service: same as overall -> 41.11; convenience: only episode 1 -> 10
    # channels: atm 10, call_center 56.67; confidence n = 1.5 -> 1.5 / 4.5 = 0.333
    s = run(
        [
            ev(0, touchpoint="atm.withdrawal", channel="atm", outcome="failure"),
            ev(14 * 24 * 60, feedback={"csat": 5}),
        ]
    )
    assert s.score == pytest.approx(41.11, abs=0.01)
    up = score_update(s, M)
    assert up.factor_scores == {
        "service": pytest.approx(41.11, abs=0.01),
        "convenience": pytest.approx(10.0),
    }
    assert up.channel_scores == {
        "atm": pytest.approx(10.0),
        "call_center": pytest.approx(56.67, abs=0.011),  # gap 1.333 (3 decimals): 56.665
    }
    assert s.confidence == pytest.approx(1 / 3, abs=1e-3)
    assert s.episode_count == 2
    assert s.folded.count == 1  # the first episode was closed and folded into sums


def test_confidence_grows_with_episodes() -> None:
    # n recent episodes (an hour apart, decay ~0.2 % each): confidence ~ n / (n + 3)
    values = [run([ev(60 * i) for i in range(n)]).confidence for n in (1, 3, 10)]
    assert values == [
        pytest.approx(0.25, abs=0.005),
        pytest.approx(0.5, abs=0.005),
        pytest.approx(10 / 13, abs=0.01),
    ]


def test_score_update_and_explanation() -> None:
    # Three episodes an hour apart, each moment its own episode's peak and end:
    # hotline failure at 0 (valence -8, impact 9 x -8 = -72), a slow success at 60 (-2,
    # impact -18), a success with CSAT 5 at 120 (+1.333, impact +12). Weights 2^(-h/336)
    # for h hours before the last: 0.99588, 0.99794, 1; W = 2.99382; contributions
    # 5 x v x w / W: -13.31, -3.33, +2.23; m = -8.6299 / 2.99382 = -2.8826, score 35.59.
    a = ev(0, outcome="failure")
    slow = {"kind": "call_center", "wait_seconds": 150}
    s = run([a, ev(60, details=slow), ev(120, feedback={"csat": 5})])
    up = score_update(s, M)
    assert up.customer_id == "c1" and up.version == 3 and up.episodes == 3
    assert up.as_of == T0 + timedelta(minutes=120)
    assert up.score == s.score == pytest.approx(35.59, abs=0.01)
    first = up.explanation[0]
    assert (first.event_id, first.factor, first.impact) == (a.event_id, "service", -72.0)
    assert [x.impact for x in up.explanation[1:]] == [-18.0, 12.0]
    assert [x.contribution for x in up.explanation] == [
        pytest.approx(-13.31, abs=0.01),
        pytest.approx(-3.33, abs=0.01),
        pytest.approx(2.23, abs=0.01),
    ]
    # everything is listed, so the rest is only rounding
    assert abs(up.explanation_rest) <= 0.02
    total = sum(x.contribution for x in up.explanation) + up.explanation_rest
    assert total == pytest.approx(up.score - 50, abs=1e-9)


def test_explanation_lists_only_the_peak_and_the_end() -> None:
    """Issue 12: in a failure -> abandoned -> success episode only the failure (the peak)
    and the success (the end) enter the remembered valence; the abandonment (impact
    9 x -5 = -45, valence -5) moved nothing and is not listed, however large its impact.
    One episode: r = (-8 + 0) / 2 = -4, score 30; the success is a gap of 0 and contributes
    nothing either, so the failure alone accounts for -20 (5 x -8 / 2)."""
    fail, gave_up, ok = ev(0, outcome="failure"), ev(5, outcome="abandoned"), ev(10)
    s = run([fail, gave_up, ok])
    up = score_update(s, M)
    assert up.score == pytest.approx(30.0)
    assert [(x.event_id, x.contribution) for x in up.explanation] == [(fail.event_id, -20.0)]
    assert up.explanation_rest == 0.0
    # with a delighted ending, the end is listed too: r = (-8 + 1.333) / 2
    happy = ev(10, feedback={"csat": 5}, event_id=ok.event_id)
    up = score_update(run([fail, gave_up, happy]), M)
    assert [x.event_id for x in up.explanation] == [fail.event_id, happy.event_id]
    assert [x.contribution for x in up.explanation] == [-20.0, pytest.approx(3.33, abs=0.01)]
    assert up.score == pytest.approx(50 - 20 + 3.33, abs=0.01)


def test_explanation_follows_the_episode_end_and_the_folded_episodes() -> None:
    """A moment that was the end stops contributing when a later one ends the episode;
    folded episodes keep their moments' contributions, decayed like the score."""
    small = model(score={"explanation_size": 2})
    fail = ev(0, outcome="failure")
    slow = ev(5, details={"kind": "call_center", "wait_seconds": 150})  # -2, the end
    s = run([fail, slow], small)
    listed = score_update(s, small).explanation
    assert [x.event_id for x in listed] == [fail.event_id, slow.event_id]
    ok = ev(10)  # the new end, valence 0: slow moved nothing any more
    up = score_update(run([fail, slow, ok], small), small)
    assert [x.event_id for x in up.explanation] == [fail.event_id]
    # four days later (the episode folded: lateness 48 h + gap) a failure of its own
    later = ev(4 * 24 * 60, outcome="failure")
    s = run([fail, slow, ok, later], small)
    assert s.folded.count == 1 and len(s.episodes) == 1
    up = score_update(s, small)
    # weights: 2^(-5750 min / 14 d) = 0.8206 for the folded episode (its end at 0:10),
    # 1 for the new one; W = 1.8206. fail: 5 x -4 x 0.8206 / W = -9.02; later: 5 x -8 / W
    # = -21.97
    assert [x.event_id for x in up.explanation] == [later.event_id, fail.event_id]
    assert [x.contribution for x in up.explanation] == [
        pytest.approx(-21.97, abs=0.01),
        pytest.approx(-9.02, abs=0.01),
    ]
    total = sum(x.contribution for x in up.explanation) + up.explanation_rest
    assert total == pytest.approx(up.score - 50, abs=1e-9)
    assert abs(up.explanation_rest) <= 0.02


def test_a_moment_whose_contribution_rounds_to_zero_is_left_in_the_rest() -> None:
    """Contributions are given in hundredths of a point: the peak of a mildly slow
    checkout under the default model (0.002 points of the score) is not listed as contributing
    0.0; it stays in the rest, and the listed ones and the rest still sum to
    ``score - 50`` (found by test_scoring_properties.test_the_explanation_adds_up)."""
    web = {"channel": "web", "touchpoint": "web.checkout", "tier": "A", "segment": "retail"}
    fast = {"kind": "web", "latency_ms": 0.0, "steps": 0}
    events = [
        (ev(0, details=fast, **web), None),
        (
            ev(
                41 / 60,
                channel="atm",
                touchpoint="atm.withdrawal",
                outcome="abandoned",
                journey_id="J2",
                segment="retail",
                details={"kind": "atm", "response_ms": 22.0},
            ),
            None,
        ),
        (ev(0, details=fast, **web), None),
        (
            ev(
                0,
                details={"kind": "web", "latency_ms": 1.0, "steps": 12},
                feedback={"csat": 3, "ces": 1},
                **web,
            ),
            0.125,
        ),
    ]
    state = None
    for e, sentiment in events:
        state, _ = apply_event(state, e, load_model(), NOW, sentiment)
    assert state is not None
    # the case this is about: a listed moment of less than half a hundredth of a point
    assert any(0 < abs(c) < 0.005 for _, c in explanation(state, M))
    up = score_update(state, M)
    assert [x.contribution for x in up.explanation] == [-10.0]
    assert all(x.contribution != 0 for x in up.explanation)
    assert sum(x.contribution for x in up.explanation) + up.explanation_rest == pytest.approx(
        up.score - 50, abs=1e-9
    )


# --- idempotency, lateness, clock skew, batches, size ------------------------------------


def test_same_event_twice_changes_nothing() -> None:
    e = ev(0)
    s1, m1 = apply_event(None, e, M, NOW)
    s2, m2 = apply_event(s1, e, M, NOW)
    assert m1 is not None and m2 is None
    assert s2 == s1 and s2.version == 1


def test_late_event_is_reported_but_does_not_change_the_state() -> None:
    s = run([ev(0), ev(3 * 24 * 60)])  # watermark 3 days after T0; lateness 48 h
    late_state, mo = apply_event(s, ev(60, outcome="failure"), M, NOW)
    assert mo is not None and mo.late and mo.episode_id == "late"
    assert mo.valence == pytest.approx(-8.0)
    assert late_state == s
    ok_state, mo = apply_event(s, ev(3 * 24 * 60 - 47 * 60, outcome="failure"), M, NOW)
    assert mo is not None and not mo.late and ok_state.version == s.version + 1


def test_evicted_ids_raise_the_floor_so_duplicates_stay_out() -> None:
    small = model(state={"seen_ids_max": 8})
    events = [ev(i) for i in range(12)]
    s = run(events, small)
    again, mo = apply_event(s, events[0], small, NOW)
    assert mo is not None and mo.late  # forgotten id, but at/before the floor
    assert again == s


def test_future_event_time_is_clamped_to_now_plus_skew() -> None:
    now = T0 + timedelta(hours=1)
    s, _ = apply_event(None, ev(24 * 60), M, now)
    assert s.watermark == int((now + timedelta(minutes=5)).timestamp())


def test_batch_equals_one_by_one() -> None:
    events = [ev(m, outcome=o) for m, o in ((0, "failure"), (20, "success"), (200, "abandoned"))]
    events.append(events[1])  # a duplicate inside the batch
    batch, moments = apply_events(None, events, M, NOW)
    single = run(events)
    assert batch.score == single.score and batch.version == single.version == 3
    assert moments[3] is None and all(m is not None for m in moments[:3])


def test_batch_rejects_mixed_customers() -> None:
    with pytest.raises(ValueError, match="mixes customers"):
        apply_events(None, [ev(0), ev(1, customer="c2")], M, NOW)


def test_unknown_touchpoint_falls_back_to_its_channel() -> None:
    _, mo = apply_event(None, ev(touchpoint="web.brand_new_page", channel="web"), M, NOW)
    assert mo is not None and mo.fallback and set(mo.readings) == {"product"}
    kw = {"touchpoint": "atm.withdrawal.cardless", "channel": "atm"}
    _, mo = apply_event(None, ev(**kw), M, NOW)
    assert mo is not None and not mo.fallback and set(mo.readings) == {"convenience", "service"}


def test_state_is_bounded_and_round_trips() -> None:
    events = [
        ev(
            37 * i,
            outcome=("success", "failure", "abandoned")[i % 3],
            intent="card_blocked",
            details={"kind": "call_center", "wait_seconds": 10 * i},
        )
        for i in range(200)
    ]
    s = run(events)
    assert len(s.episodes) <= M.episodes.max_open
    assert len(s.seen_ids()) <= M.state.seen_ids_max
    assert len(s.failures) <= M.state.failures_max
    assert len(s.contacts) <= M.state.contacts_max
    assert len(s.intents) <= M.state.intents_max
    assert len(s.key_moments) == M.score.explanation_size
    assert len(s.score_trail) <= 25
    # the worst case: 16 open episodes, each with its peak and end moments
    assert len(encode(s)) < 4_000
    raw = s.to_bytes()  # the JSON form earlier workers wrote: still read
    assert CustomerState.from_bytes(raw) == s


def test_scoring_values_stay_out_of_the_cycle_collector() -> None:
    # States, episodes, moments and score updates are declared gc=False (schemas/scoring.py):
    # a worker holds one state per customer, and the collector would walk them all. That is
    # only safe while none of them can reach itself: walk everything a state, its moments and
    # its score update refer to and find no way back to any of them.
    import gc

    events = [
        ev(0, outcome="failure", feedback={"csat": 1}),
        ev(10, outcome="abandoned"),
        ev(20, journey_id="j1", feedback={"ces": 6}),
        ev(60 * 30, feedback={"nps": 3}),
    ]
    state, moments = apply_events(None, events, M, NOW, [None, 0.5, -0.5, None])
    state, more = apply_events(state, [ev(60 * 24 * 5, outcome="failure")], M, NOW)
    update = score_update(state, M)
    roots: list[object] = [state, update, *moments, *more, *state.episodes, state.folded]
    assert not any(gc.is_tracked(r) for r in roots)

    def referents(obj: object) -> list[object]:  # the collector cannot list them: gc=False
        if isinstance(obj, msgspec.Struct):
            return [getattr(obj, f) for f in obj.__struct_fields__]
        if isinstance(obj, dict):
            return [*obj.keys(), *obj.values()]
        if isinstance(obj, (list, tuple, set)):
            return list(obj)
        return []

    # depth-first over everything reachable: no object is reached again while being walked
    walking: set[int] = set()
    done: set[int] = set()

    def walk(obj: object) -> None:
        assert id(obj) not in walking, f"a cycle through {obj!r}"
        if id(obj) in done:
            return
        walking.add(id(obj))
        for ref in referents(obj):
            walk(ref)
        walking.discard(id(obj))
        done.add(id(obj))

    for r in roots:
        walk(r)
    assert len(done) > 20  # the walk went through the values' contents
