"""Customer alert rules on scripted journeys, through the real scoring core.

Every journey goes through ``apply_events`` and then ``customer_alerts``, batch by batch,
exactly as the experience agent calls them, with the shipped default model. Each rule gets
a journey that fires it and one just short of each of its thresholds that does not.

Arithmetic behind the score journeys (default model, tier B, app.payment): a success
reads 10 against an expectation of 8 (valence +2), a failure reads 0 (valence −8); hourly
moments are separate episodes, so the score is 50 + 5 × the mean of the episodes'
valences, the later a little heavier (half-life 14 days). Six successes give 60; then
each failure: 52.8, 47.4, 43.2, 39.9, 37.1, 34.9, 32.9.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from schemas.alerts import Alert, alert_id
from schemas.events import TouchpointEvent
from schemas.model import ExperienceModel, parse_model
from schemas.scoring import CustomerState
from streams.core import apply_events
from streams.core.alerts import customer_alerts, densest, duration, raise_severity
from streams.model_check import DEFAULT_MODEL_PATH, load_model

M = load_model(None)
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=60)  # only clamps future-stamped events
EMIT = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
OUTCOMES = {"S": "success", "F": "failure", "A": "abandoned"}


def model_with(**alerts: dict[str, Any]) -> ExperienceModel:
    data = yaml.safe_load(DEFAULT_MODEL_PATH.read_text())
    for rule, values in alerts.items():
        data["alerts"][rule].update(values)
    return parse_model(data)


def ev(minutes: float, outcome: str = "failure", **kw: Any) -> TouchpointEvent:
    raw: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "customer_id": "C-1",
        "channel": "atm",
        "touchpoint": "atm.withdrawal",
        "touchpoint_instance": "ATM-0042",
        "journey_stage": "post_purchase",
        "outcome": outcome,
        "tier": "B",
    }
    raw.update(kw)
    return TouchpointEvent.model_validate(raw)


def call(minutes: float, intent: str | None = None, outcome: str = "success") -> TouchpointEvent:
    return ev(
        minutes,
        outcome,
        channel="call_center",
        touchpoint="call_center.banking_support",
        touchpoint_instance=None,
        intent=intent,
    )


def hourly(letters: str, start_hour: float = 0, **kw: Any) -> list[TouchpointEvent]:
    """One app payment an hour: S success, F failure, A abandoned."""
    kw = {"channel": "app", "touchpoint": "app.payment", "touchpoint_instance": None} | kw
    return [ev((start_hour + i) * 60, OUTCOMES[c], **kw) for i, c in enumerate(letters)]


class Journey:
    """A customer's state and every alert emitted, fed batch by batch like the stream."""

    def __init__(self, model: ExperienceModel = M) -> None:
        self.model = model
        self.state: CustomerState | None = None
        self.emitted: list[Alert] = []
        self.scores: list[float] = []

    def send(self, *events: TouchpointEvent, sentiments: Any = None) -> list[Alert]:
        after, moments = apply_events(self.state, events, self.model, NOW, sentiments)
        self.state, alerts = customer_alerts(self.state, after, events, moments, self.model, EMIT)
        self.scores += [m.score_after for m in moments if m is not None]
        self.emitted += alerts
        return alerts

    def one_by_one(self, events: list[TouchpointEvent]) -> Journey:
        for e in events:
            self.send(e)
        return self

    def fired(self, rule: str) -> list[Alert]:
        return [a for a in self.emitted if a.rule == rule]


# -- low_score --------------------------------------------------------------------------


def test_low_score_fires_when_the_score_crosses_below_35() -> None:
    events = hourly("SSSSSS" + "FFFFFF")
    j = Journey().one_by_one(events)
    assert j.scores[-2] > 35 > j.scores[-1]  # 37.1 then 34.9
    [alert] = j.fired("low_score")
    assert alert.severity == "warning" and alert.tier == "B"
    assert alert.score == pytest.approx(j.scores[-1], abs=0.01)
    assert alert.magnitude == pytest.approx(35 - j.scores[-1], abs=0.01)
    assert alert.explanation == (
        f"score fell to {j.scores[-1]:.1f} (below 35) after a failed app.payment"
    )
    assert alert.recommended_action.startswith("call back today: ")
    assert alert.triggered_at == T0 + timedelta(hours=11)
    assert alert.event_ids[0] == events[-1].event_id  # then the moments that hurt most


def test_low_score_just_above_the_line_does_not_fire() -> None:
    events = hourly("SSSSSS" + "FFFFFF")
    lowest = min(Journey().one_by_one(events).scores)  # 34.85
    just_below = model_with(low_score={"below": lowest - 0.01})
    assert Journey(just_below).one_by_one(events).fired("low_score") == []
    assert Journey().one_by_one(events[:-1]).fired("low_score") == []  # 37.1


def test_low_score_hysteresis_rearms_only_above_45() -> None:
    j = Journey().one_by_one(hourly("SSSSSS" + "FFFFFF"))
    assert len(j.fired("low_score")) == 1
    # Up to 36.7 (above 35, not above 45) and back down to 33.5: no new alert.
    j.one_by_one(hourly("SSFF", start_hour=13))
    assert max(j.scores[-4:]) < 45 and j.scores[-1] < 35
    assert len(j.fired("low_score")) == 1
    # Recover above 45 (re-arms), then fall below 35 again: a new alert, new id (the
    # cooldown of 6 h is long past).
    j.one_by_one(hourly("S" * 30, start_hour=17))
    assert j.scores[-1] > 45
    j.one_by_one(hourly("F" * 40, start_hour=47))
    first, second = j.fired("low_score")
    assert second.alert_id != first.alert_id and second.count == 1
    assert min(j.scores[-40:]) < 35


# -- sharp_drop -------------------------------------------------------------------------


def test_sharp_drop_fires_on_15_points_within_24h() -> None:
    j = Journey().one_by_one(hourly("SSSSSS" + "FFF"))  # 60 → 43.3
    [alert] = j.fired("sharp_drop")
    assert alert.magnitude == pytest.approx(60 - j.scores[-1], abs=0.01)
    assert alert.explanation.startswith("score fell 17 points within ")
    assert "(from 60 to 43), latest a failed app.payment" in alert.explanation
    assert alert.severity == "warning"


def test_sharp_drop_below_threshold_or_spread_over_days_does_not_fire() -> None:
    j = Journey().one_by_one(hourly("SSSSSS" + "FF"))  # 60 → 47.5: 12.5 points
    assert j.fired("sharp_drop") == []
    # The same fall as above spread 13 h apart: never 15 points within 24 h.
    slow = Journey().one_by_one(hourly("SSSSSS"))
    for k in range(1, 4):
        slow.send(hourly("F", start_hour=5 + 13 * k)[0])
    assert slow.scores[5] - slow.scores[-1] >= 15
    assert slow.fired("sharp_drop") == []


def test_sharp_drop_threshold_is_configurable() -> None:
    j = Journey(model_with(sharp_drop={"drop": 17})).one_by_one(hourly("SSSSSS" + "FFF"))
    assert 60 - j.scores[-1] < 17
    assert j.fired("sharp_drop") == []


# -- repeated_failure -------------------------------------------------------------------


def test_three_failures_of_one_touchpoint_in_30_min_fire() -> None:
    j = Journey().one_by_one([ev(0), ev(10), ev(25)])
    [alert] = j.fired("repeated_failure")
    assert alert.explanation == "3 failed atm.withdrawal in 25 min, the latest at ATM-0042"
    assert alert.recommended_action == (
        "call back today: help the customer finish atm.withdrawal another way and report "
        "the fault at ATM-0042"
    )
    assert alert.magnitude == 3 and alert.count == 1
    assert alert.instance == "ATM-0042" and alert.channel == "atm"
    assert len(alert.event_ids) == 3


@pytest.mark.parametrize(
    "events",
    [
        pytest.param([0, 10, 31], id="third-after-31-min"),
        pytest.param([0, 29], id="two-only"),
    ],
)
def test_repeated_failure_below_thresholds_does_not_fire(events: list[float]) -> None:
    j = Journey().one_by_one([ev(m) for m in events])
    assert j.fired("repeated_failure") == []


def test_failures_of_different_touchpoints_or_abandonments_do_not_count() -> None:
    j = Journey().one_by_one(
        [ev(0), ev(5, touchpoint="atm.deposit"), ev(10, "abandoned"), ev(15, "success")]
    )
    assert j.fired("repeated_failure") == []


def test_tier_a_raises_severity_one_level() -> None:
    b = Journey().one_by_one([ev(0), ev(10), ev(20)])
    a = Journey().one_by_one([ev(0, tier="A"), ev(10, tier="A"), ev(20, tier="A")])
    assert b.fired("repeated_failure")[0].severity == "warning"
    [alert] = a.fired("repeated_failure")
    assert alert.severity == "critical"
    assert alert.recommended_action.startswith("service recovery call within the hour: ")


def test_large_magnitude_raises_severity_and_repeats_keep_the_id() -> None:
    j = Journey().one_by_one([ev(m) for m in (0, 5, 10, 15, 20)])
    versions = j.fired("repeated_failure")
    assert [a.count for a in versions] == [1, 2, 3]
    assert len({a.alert_id for a in versions}) == 1
    assert [a.severity for a in versions] == ["warning", "warning", "critical"]  # 5 failures
    assert versions[-1].updated_at == T0 + timedelta(minutes=20)
    assert versions[-1].triggered_at == T0 + timedelta(minutes=10)


# -- repeat_contact ---------------------------------------------------------------------


def test_three_calls_in_7_days_fire() -> None:
    j = Journey().one_by_one([call(0), call(2 * 1440), call(6 * 1440)])
    [alert] = j.fired("repeat_contact")
    assert alert.explanation == "3 call-center contacts in 6 days"
    assert alert.severity == "info" and alert.channel == "call_center"


def test_two_calls_about_the_same_intent_fire() -> None:
    j = Journey().one_by_one([call(0, "card_blocked"), call(26 * 60, "card_blocked")])
    [alert] = j.fired("repeat_contact")
    assert alert.explanation == "2 call-center contacts about card_blocked in 26 h"
    assert "(card_blocked) one owner" in alert.recommended_action


@pytest.mark.parametrize(
    "calls",
    [
        pytest.param([call(0), call(3 * 1440), call(7 * 1440 + 60)], id="3-over-7-days"),
        pytest.param([call(0, "card_blocked"), call(60, "loan")], id="2-different-intents"),
        pytest.param([call(0, "card_blocked"), call(60)], id="2-one-without-intent"),
    ],
)
def test_repeat_contact_below_thresholds_does_not_fire(calls: list[TouchpointEvent]) -> None:
    assert Journey().one_by_one(calls).fired("repeat_contact") == []


# -- channel_hopping --------------------------------------------------------------------


def hop(minutes: float, channel: str, outcome: str = "failure") -> TouchpointEvent:
    return ev(
        minutes,
        outcome,
        channel=channel,
        touchpoint=f"{channel}.card_control",
        touchpoint_instance=None,
        intent="card_blocked",
    )


def test_one_intent_on_three_channels_without_success_fires() -> None:
    j = Journey().one_by_one(
        [hop(0, "app"), hop(20 * 60, "web", "abandoned"), hop(70 * 60, "store")]
    )
    [alert] = j.fired("channel_hopping")
    assert alert.explanation == (
        "tried card_blocked on 3 channels (app, web, store) in 3 days without success"
    )
    assert alert.severity == "warning" and alert.magnitude == 3


@pytest.mark.parametrize(
    "events",
    [
        pytest.param(
            [hop(0, "app"), hop(60, "web"), hop(120, "store", "success")], id="then-success"
        ),
        pytest.param([hop(0, "app"), hop(60, "web"), hop(73 * 60, "store")], id="over-72h"),
        pytest.param([hop(0, "app"), hop(60, "web"), hop(120, "web")], id="two-channels"),
    ],
)
def test_channel_hopping_below_thresholds_does_not_fire(events: list[TouchpointEvent]) -> None:
    assert Journey().one_by_one(events).fired("channel_hopping") == []


# -- detractor --------------------------------------------------------------------------


def said(minutes: float, **feedback: Any) -> TouchpointEvent:
    return ev(
        minutes,
        "success",
        channel="store",
        touchpoint="store.branch_visit",
        touchpoint_instance="store-117",
        feedback=feedback,
    )


@pytest.mark.parametrize(
    ("feedback", "fires", "explanation"),
    [
        ({"nps": 6}, True, "NPS 6 after a successful store.branch_visit at store-117"),
        ({"nps": 7}, False, None),
        ({"csat": 2}, True, "CSAT 2 after a successful store.branch_visit at store-117"),
        ({"csat": 3}, False, None),
    ],
)
def test_detractor_survey_lines(
    feedback: dict[str, int], fires: bool, explanation: str | None
) -> None:
    j = Journey().one_by_one([said(0, **feedback)])
    alerts = j.fired("detractor")
    assert bool(alerts) is fires
    if fires:
        assert alerts[0].explanation == explanation


@pytest.mark.parametrize(("sentiment", "fires"), [(-0.5, True), (-0.49, False)])
def test_detractor_sentiment_line(sentiment: float, fires: bool) -> None:
    j = Journey()
    j.send(said(0, text="the queue was\nendless"), sentiments=[sentiment])
    alerts = j.fired("detractor")
    assert bool(alerts) is fires
    if fires:
        assert alerts[0].explanation.startswith('said "the queue was endless" after ')


def test_detractor_magnitude_escalates() -> None:
    [alert] = Journey().one_by_one([said(0, nps=1)]).fired("detractor")
    assert alert.magnitude == 9 and alert.severity == "warning"  # info, raised by magnitude


# -- cooldown, replay, order ----------------------------------------------------------


def test_repeat_within_cooldown_updates_count_and_after_it_opens_a_new_alert() -> None:
    j = Journey()
    first = j.send(said(0, nps=5))[0]
    again = j.send(said(120, nps=4))[0]
    assert again.alert_id == first.alert_id and again.count == 2
    assert again.updated_at > first.updated_at and again.triggered_at == first.triggered_at
    later = j.send(said(7 * 60, nps=5))[0]
    assert later.alert_id != first.alert_id and later.count == 1
    assert later.open_until == later.triggered_at + timedelta(hours=6)


def test_alert_ids_are_deterministic() -> None:
    events = [ev(0), ev(10), ev(25)]
    one = Journey().one_by_one(events).fired("repeated_failure")[0]
    assert one.alert_id == alert_id("customer", "C-1", "repeated_failure", events[2].event_id.hex)


def test_replaying_the_same_events_emits_nothing_new() -> None:
    events = [ev(0), ev(10), ev(25), said(30, nps=2)]
    j = Journey().one_by_one(events)
    assert {a.rule for a in j.emitted} >= {"repeated_failure", "detractor"}
    before = j.state
    assert j.send(*events) == []  # duplicates: no Moment, no alert
    assert j.state is before


def test_reprocessing_from_an_uncommitted_state_rebuilds_the_same_alerts() -> None:
    """A restart re-delivers events whose state was not committed: same ids and counts,
    whether they come back one by one or as one batch."""
    events = [ev(0), ev(10), ev(25), ev(28), said(30, nps=2)]
    one = Journey().one_by_one(events)
    batch = Journey()
    batch.send(*events)

    def final(j: Journey) -> dict[uuid.UUID, tuple[object, ...]]:
        return {a.alert_id: (a.rule, a.count, a.severity, a.event_ids) for a in j.emitted}

    assert final(batch) == final(one)
    assert {"low_score", "repeated_failure", "detractor"} == {r for r, *_ in final(one).values()}


def test_out_of_order_events_within_lateness_fire_with_the_same_id() -> None:
    events = [ev(0), ev(10), ev(20)]
    in_order = Journey().one_by_one(events).fired("repeated_failure")
    shuffled = Journey().one_by_one([events[2], events[0], events[1]]).fired("repeated_failure")
    assert len(shuffled) == 1 and shuffled[0].count == 1
    assert shuffled[0].alert_id == in_order[0].alert_id
    # A call arriving 30 h late still completes a same-intent pair.
    j = Journey().one_by_one([call(30 * 60, "card_blocked"), ev(31 * 60, "success")])
    j.send(call(0, "card_blocked"))
    assert len(j.fired("repeat_contact")) == 1


def test_late_moments_never_alert() -> None:
    j = Journey().one_by_one([ev(49 * 60, "success")])
    j.send(said(0, nps=0))  # 49 h before the newest event: beyond the 48 h lateness
    assert j.fired("detractor") == []


def test_memory_stays_small_and_round_trips() -> None:
    j = Journey()
    for day in range(20):
        j.one_by_one([ev(day * 1440 + m) for m in (0, 5, 10)] + [said(day * 1440 + 20, nps=1)])
    assert len(j.fired("repeated_failure")) == 20
    state = j.state
    assert state is not None
    assert len(state.alert_memory) <= 8
    assert CustomerState.from_bytes(state.to_bytes()) == state


def test_disabled_rule_is_silent() -> None:
    j = Journey(model_with(repeated_failure={"enabled": False}))
    assert j.one_by_one([ev(0), ev(10), ev(20)]).fired("repeated_failure") == []


# -- helpers ---------------------------------------------------------------------------


def test_severity_and_durations() -> None:
    assert raise_severity("info", tier_a=False, large=False) == "info"
    assert raise_severity("info", tier_a=True, large=True) == "critical"
    assert raise_severity("warning", tier_a=True, large=True) == "critical"
    assert [duration(s) for s in (30, 720, 5 * 3600, 4 * 86400)] == [
        "under a minute",
        "12 min",
        "5 h",
        "4 days",
    ]
    assert densest([], 0, 60) == []


def test_mismatched_inputs_are_refused() -> None:
    events = [ev(0)]
    after, moments = apply_events(None, events, M, NOW)
    with pytest.raises(ValueError, match="one per event"):
        customer_alerts(None, after, events, [*moments, None], M, EMIT)
    with pytest.raises(ValueError, match="timezone-aware"):
        customer_alerts(None, after, events, moments, M, EMIT.replace(tzinfo=None))
