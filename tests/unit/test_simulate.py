"""The simulator: reproducible, valid, realistic traffic, incidents that do what they say,
and customers who react to them as real ones do.

Runs are small (a few thousand events, well under a second each) and shared through
module-scoped fixtures where several tests look at the same traffic; one larger day
(``incident_day``, ~34,000 events) is shared by the tests of customers' reactions, some
of which are rare by nature.
"""

from __future__ import annotations

import io
import json
import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, time, timedelta, timezone
from itertools import islice, pairwise
from typing import Any

import pytest
from click.testing import CliRunner

from cxpulse.schemas.events import CHANNELS, TouchpointEvent
from cxpulse.streams.dev.simulate import (
    IncidentError,
    Simulation,
    add_simulate_command,
    generate,
    make_population,
    parse_duration,
    parse_incident,
    parse_start,
    print_summary,
    simulate,
)
from cxpulse.streams.dev.simulate.engine import EVENTS_PER_JOURNEY
from cxpulse.streams.dev.simulate.incidents import Incident, format_duration
from cxpulse.streams.dev.simulate.journeys import INTENTS
from cxpulse.streams.dev.simulate.texts import PHRASES

START = datetime(2026, 11, 16, 0, 0, tzinfo=UTC)  # a Monday, midnight


def run(**kwargs: Any) -> list[dict[str, Any]]:
    kwargs.setdefault("start", START)
    return list(generate(**kwargs))


def at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])


@pytest.fixture(scope="module")
def two_days() -> tuple[Simulation, list[dict[str, Any]]]:
    """Two simulated days of 3,000 customers, no incidents."""
    sim = Simulation(3_000, 11, duration=timedelta(days=2), start=START)
    return sim, list(sim)


# -- reproducibility ------------------------------------------------------------------------


def test_same_seed_same_events_ids_included() -> None:
    a = run(customers=500, seed=42, events=3_000, incidents=["atm_outage:ATM-0001@+1h/2h"])
    b = run(customers=500, seed=42, events=3_000, incidents=["atm_outage:ATM-0001@+1h/2h"])
    assert a == b
    assert len({e["event_id"] for e in a}) == len(a)


def test_a_whole_hour_working_day_start_makes_the_same_events_at_any_time() -> None:
    """What the BI tests rely on: run at any minute of any hour, the same events (ids,
    customers, outcomes, texts), only shifted by whole hours."""
    from cxpulse.streams.dev.simulate.runner import working_day_start

    six = timedelta(hours=6)
    baseline: list[dict[str, Any]] | None = None
    for minutes in range(0, 24 * 60, 97):  # every hour of the day, at many minutes
        now = datetime(2026, 12, 4, tzinfo=UTC) + timedelta(minutes=minutes, seconds=31)
        start = working_day_start(six, whole_hour=True, now=now)
        assert (start.hour, start.minute, start.second) == (8, 0, 0), start
        assert start.astimezone(UTC).minute == 0 and start <= now - six
        assert now - start <= six + timedelta(hours=1, minutes=1)
        events = run(customers=300, seed=11, duration=six, start=start)
        assert events
        shifted = [{**e, "occurred_at": (at(e) - start).total_seconds()} for e in events]
        if baseline is None:
            baseline = shifted
        assert shifted == baseline


def test_different_seed_different_events() -> None:
    a = run(customers=500, seed=1, events=500)
    b = run(customers=500, seed=2, events=500)
    assert {e["event_id"] for e in a}.isdisjoint(e["event_id"] for e in b)
    assert [e["customer_id"] for e in a] != [e["customer_id"] for e in b]


def test_population_does_not_depend_on_the_traffic() -> None:
    """The same seed gives the same customers whatever is asked of the run."""
    assert make_population(300, 5).customers == make_population(300, 5).customers
    assert make_population(300, 5).customers != make_population(300, 6).customers


# -- validity and realism -------------------------------------------------------------------


def test_every_event_validates(two_days: tuple[Simulation, list[dict[str, Any]]]) -> None:
    _, events = two_days
    incidents = run(
        customers=2_000,
        seed=3,
        duration=timedelta(hours=30),
        atms=3,
        stores=2,
        incidents=[
            "atm_outage:ATM-0002@+8h/4h",
            "web_login_spike@09:00/2h",
            "call_center_backlog@10:00/3h",
            "store_queues:store-001@+10h/3h",
        ],
    )
    for event in events + incidents:
        TouchpointEvent.model_validate(event)
        # JSON round trip too: what --dry-run writes is what a consumer reads.
        TouchpointEvent.model_validate_json(json.dumps(event, ensure_ascii=False))


def test_all_channels_touchpoints_and_languages(
    two_days: tuple[Simulation, list[dict[str, Any]]],
) -> None:
    sim, events = two_days
    assert set(sim.by_channel) == set(CHANNELS)
    assert {e["channel"] for e in events} == set(CHANNELS)
    assert {e["journey_stage"] for e in events} == {"pre_purchase", "purchase", "post_purchase"}
    assert set(sim.by_outcome) == {"success", "failure", "abandoned"}
    texts = [e["feedback"] for e in events if "text" in e.get("feedback", {})]
    assert {f["language"] for f in texts} == {"en", "zh"}
    assert any("\u4e00" <= ch <= "\u9fff" for f in texts for ch in f["text"])
    surveys = Counter(
        k for e in events for k in e.get("feedback", {}) if k in ("nps", "csat", "ces")
    )
    assert set(surveys) == {"nps", "csat", "ces"}


def test_touchpoints_are_the_default_models(
    two_days: tuple[Simulation, list[dict[str, Any]]],
) -> None:
    """Every moment is scored by its own touchpoint configuration, never a fallback."""
    import yaml

    from cxpulse.streams.model_check import DEFAULT_MODEL_PATH

    model = yaml.safe_load(DEFAULT_MODEL_PATH.read_text())
    _, events = two_days
    assert {e["touchpoint"] for e in events} <= set(model["touchpoints"])
    assert {e["segment"] for e in events} <= set(model["factors"]["importance"])


def test_instances_and_details_are_realistic(
    two_days: tuple[Simulation, list[dict[str, Any]]],
) -> None:
    sim, events = two_days
    by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_channel[e["channel"]].append(e)
    atms = {e["touchpoint_instance"] for e in by_channel["atm"]}
    assert atms == {f"ATM-{n:04d}" for n in range(1, sim.population.atms + 1)}
    assert all(
        i.startswith("store-") for i in {e["touchpoint_instance"] for e in by_channel["store"]}
    )
    assert {e["touchpoint_instance"] for e in by_channel["web"]} >= {"/login", "/checkout"}
    assert {e["details"]["queue"] for e in by_channel["call_center"]} >= {"cards-en", "banking-zh"}
    failed_atm = [e["details"] for e in by_channel["atm"] if e["outcome"] == "failure"]
    assert failed_atm and all(d["error_code"].startswith("E-") for d in failed_atm)
    withdrawals = [e for e in by_channel["atm"] if e["touchpoint"] == "atm.withdrawal"]
    assert all(e["details"]["cash_dispensed"] == (e["outcome"] == "success") for e in withdrawals)
    # A failed page is a fault (5xx), or a refusal (4xx) of a customer's unresolved problem,
    # which only the intents that have such cases (a blocked card, a held transfer) meet.
    web_fail = [e for e in by_channel["web"] if e["outcome"] == "failure"]
    assert web_fail and {e["details"]["http_status"] for e in web_fail} <= {
        500,
        502,
        503,
        504,
        403,
        409,
        422,
    }
    refused = [e for e in web_fail if e["details"]["http_status"] < 500]
    assert refused and {e["intent"] for e in refused} <= {i.name for i in INTENTS if i.case}
    ok_latency = [
        e["details"]["latency_ms"] for e in by_channel["web"] if e["outcome"] == "success"
    ]
    assert 200 < statistics.median(ok_latency) < 1500  # well under the model's expectations
    # Base failure rates are modest: a healthy system's background.
    assert 0.005 < sim.by_outcome["failure"] / sim.count < 0.06


def test_events_in_time_order_within_the_run(
    two_days: tuple[Simulation, list[dict[str, Any]]],
) -> None:
    _, events = two_days
    times = [at(e) for e in events]
    assert times == sorted(times)
    assert times[0] >= START and times[-1] < START + timedelta(days=2)


def test_ids_and_population_mix() -> None:
    pop = make_population(20_000, 1)
    assert pop.customers[0].id == "C-000001" and pop.customers[-1].id == "C-020000"
    tiers = Counter(c.tier for c in pop.customers)
    assert tiers["A"] / 20_000 == pytest.approx(0.10, abs=0.015)
    assert tiers["B"] / 20_000 == pytest.approx(0.30, abs=0.02)
    assert tiers["C"] / 20_000 == pytest.approx(0.60, abs=0.02)
    segments = Counter(c.segment for c in pop.customers)
    assert segments["retail_banking"] / 20_000 == pytest.approx(0.6, abs=0.02)
    assert pop.atms == 12 and pop.stores == 10  # one per 1,000 banking / 2,000 customers


def test_tier_a_customers_are_more_active(
    two_days: tuple[Simulation, list[dict[str, Any]]],
) -> None:
    sim, events = two_days
    per_tier = Counter(e["tier"] for e in events)
    size = Counter(c.tier for c in sim.population.customers)
    assert per_tier["A"] / size["A"] > per_tier["C"] / size["C"]


def test_daily_rhythm_night_is_quiet(two_days: tuple[Simulation, list[dict[str, Any]]]) -> None:
    _, events = two_days
    hours = Counter(at(e).hour for e in events)
    night = sum(hours[h] for h in range(1, 5))
    day = sum(hours[h] for h in range(10, 14))
    assert night * 5 < day


def test_daily_rhythm_follows_the_starts_time_zone() -> None:
    shanghai = timezone(timedelta(hours=8))
    events = run(
        customers=2_000, seed=2, duration=timedelta(days=1), start=START.astimezone(shanghai)
    )
    local = Counter(at(e).astimezone(shanghai).hour for e in events)
    assert sum(local[h] for h in range(1, 5)) * 5 < sum(local[h] for h in range(10, 14))


def test_stores_are_visited_during_opening_hours_only(
    two_days: tuple[Simulation, list[dict[str, Any]]],
) -> None:
    _, events = two_days
    store_hours = {at(e).hour for e in events if e["channel"] == "store"}
    assert store_hours and store_hours <= set(range(9, 18))


def test_journeys_cross_channels_under_one_journey_id(
    two_days: tuple[Simulation, list[dict[str, Any]]],
) -> None:
    sim, events = two_days
    journeys: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        journeys[e["journey_id"]].append(e)
    assert all(len({e["customer_id"] for e in j}) == 1 for j in journeys.values())
    hopping = [j for j in journeys.values() if len({e["channel"] for e in j}) >= 3]
    assert hopping
    # After a failure a customer retries or escalates: some journeys go on after one.
    after_failure = [j for j in journeys.values() if j[0]["outcome"] == "failure" and len(j) > 1]
    assert after_failure
    # Research leads to purchase leads to tracking, under the same journey.
    stages = [tuple(dict.fromkeys(e["journey_stage"] for e in j)) for j in journeys.values()]
    assert ("pre_purchase", "purchase", "post_purchase") in stages
    assert sim.count / sim.journeys == pytest.approx(EVENTS_PER_JOURNEY, rel=0.15)


def test_feedback_matches_the_outcome(two_days: tuple[Simulation, list[dict[str, Any]]]) -> None:
    _, events = two_days
    praise = {p for (_, mood, _), ps in PHRASES.items() if mood == "praise" for p in ps}
    complaint = {p for (_, mood, _), ps in PHRASES.items() if mood == "complaint" for p in ps}
    for e in events:
        fb = e.get("feedback")
        if not fb:
            continue
        if e["outcome"] == "failure":
            assert fb.get("text", next(iter(complaint))) in complaint
            assert fb.get("csat", 1) <= 2 and fb.get("nps", 0) <= 4 and fb.get("ces", 7) >= 5
        if "text" in fb:
            assert fb["text"] in praise | complaint


def test_feedback_phrases_have_the_sentiment_they_claim() -> None:
    """Praise reads positive and complaints negative to the project's own analyser, so the
    simulated feedback moves scores and fires the detractor rule as real feedback does."""
    from cxpulse.streams.sentiment import DefaultSentimentAnalyzer

    analyzer = DefaultSentimentAnalyzer()
    for (language, mood, topic), phrases in PHRASES.items():
        for phrase in phrases:
            score = analyzer.score(phrase, language)
            assert score is not None
            assert (score > 0.3) if mood == "praise" else (score < -0.3), (
                language,
                mood,
                topic,
                phrase,
                score,
            )


# -- incidents ------------------------------------------------------------------------------


def failure_rate(events: list[dict[str, Any]]) -> float:
    return sum(e["outcome"] == "failure" for e in events) / max(1, len(events))


def split_window(
    events: list[dict[str, Any]], begin: datetime, end: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    inside = [e for e in events if begin <= at(e) < end]
    outside = [e for e in events if not begin <= at(e) < end]
    return inside, outside


def test_atm_outage_fails_its_atm_during_its_window_only() -> None:
    events = run(
        customers=3_000,
        seed=4,
        duration=timedelta(days=1),
        atms=3,
        incidents=["atm_outage:ATM-0002@08:00/6h"],
    )
    begin, end = START + timedelta(hours=8), START + timedelta(hours=14)
    target = [e for e in events if e.get("touchpoint_instance") == "ATM-0002"]
    inside, outside = split_window(target, begin, end)
    assert len(inside) > 30
    assert failure_rate(inside) > 0.6
    assert failure_rate(outside) < 0.1
    others = [e for e in events if e["channel"] == "atm" and e["touchpoint_instance"] != "ATM-0002"]
    assert failure_rate(split_window(others, begin, end)[0]) < 0.1
    # Ground truth travels with the events it touched, and only with those.
    tagged = {e["event_id"] for e in events if "incident" in e["attributes"]}
    assert tagged == {e["event_id"] for e in inside}
    codes = Counter(e["details"]["error_code"] for e in inside if e["outcome"] == "failure")
    assert set(codes) <= {"E-CASH-JAM", "E-DISPENSER-FAULT", "E-HOST-TIMEOUT"}
    # Customers walk to another machine: the other ATMs are busier during the outage.
    retries = [e for e in others if begin <= at(e) < end + timedelta(minutes=30)]
    assert any(e["journey_id"] in {x["journey_id"] for x in inside} for e in retries)


def test_web_login_spike() -> None:
    events = run(
        customers=3_000, seed=5, duration=timedelta(days=1), incidents=["web_login_spike@10:00/3h"]
    )
    begin, end = START + timedelta(hours=10), START + timedelta(hours=13)
    logins = [e for e in events if e["touchpoint"] == "web.login"]
    inside, outside = split_window(logins, begin, end)
    assert failure_rate(inside) > 0.3 > 0.1 > failure_rate(outside)
    slow_in = statistics.median(e["details"]["latency_ms"] for e in inside)
    slow_out = statistics.median(e["details"]["latency_ms"] for e in outside)
    assert slow_in > 3 * slow_out
    app = [e for e in events if e["touchpoint"] == "app.login"]
    assert failure_rate(split_window(app, begin, end)[0]) < 0.1  # the app still works


def test_call_center_backlog_long_waits_and_hang_ups() -> None:
    events = run(
        customers=8_000,  # banking-en gets ~10 calls an hour from them: enough for shares
        seed=6,
        duration=timedelta(days=1),
        incidents=["call_center_backlog:banking-en@+9h/4h"],
    )
    begin, end = START + timedelta(hours=9), START + timedelta(hours=13)
    calls = [e for e in events if e["channel"] == "call_center"]
    queue = [e for e in calls if e["touchpoint_instance"] == "banking-en"]
    inside, outside = split_window(queue, begin, end)

    def abandoned(es: list[dict[str, Any]]) -> float:
        return sum(e["outcome"] == "abandoned" for e in es) / max(1, len(es))

    assert abandoned(inside) > 0.25 > 0.1 > abandoned(outside)
    wait_in = statistics.median(e["details"]["wait_seconds"] for e in inside)
    wait_out = statistics.median(e["details"]["wait_seconds"] for e in outside)
    assert wait_in > 4 * wait_out
    other = [e for e in calls if e["touchpoint_instance"] != "banking-en"]
    assert abandoned(split_window(other, begin, end)[0]) < 0.15


def test_store_queues() -> None:
    events = run(
        customers=3_000,
        seed=7,
        duration=timedelta(days=2),
        stores=3,
        incidents=["store_queues:store-002@+33h/4h"],
    )
    begin, end = START + timedelta(hours=33), START + timedelta(hours=37)
    store = [e for e in events if e.get("touchpoint_instance") == "store-002"]
    inside, outside = split_window(store, begin, end)
    assert len(inside) > 20
    q_in = statistics.median(e["details"]["queue_seconds"] for e in inside)
    q_out = statistics.median(e["details"]["queue_seconds"] for e in outside)
    assert q_in > 3 * q_out
    walked = sum(e["outcome"] == "abandoned" for e in inside) / len(inside)
    assert walked > 0.15


def test_incidents_compose_and_are_counted() -> None:
    sim = Simulation(
        2_000,
        8,
        duration=timedelta(hours=20),
        start=START,
        atms=2,
        incidents=[
            "atm_outage:ATM-0001@+9h/2h",
            "atm_outage:ATM-0001@+10h/2h",
            "web_login_spike@+30h",
        ],
    )
    events = list(sim)
    both = [e for e in events if "," in e["attributes"].get("incident", "")]
    assert both and all(
        START + timedelta(hours=10) <= at(e) < START + timedelta(hours=11) for e in both
    )
    assert sim.incident_hits["web_login_spike@+1d6h"] == 0  # after the end of the run
    assert sim.incident_hits["atm_outage:ATM-0001@+9h/2h"] > 0


# -- how customers react ---------------------------------------------------------------------

OUTAGE_ATM = "ATM-0002"


@pytest.fixture(scope="module")
def incident_day() -> list[dict[str, Any]]:
    """A working day (08:00-18:00) of 40,000 customers, 8 ATMs and 8 stores, with an ATM
    outage, a day-long web login spike and a call-center backlog: where customers'
    reactions show. Some of them are rare (one login failure in a hundred ends up
    web → app → phone), hence the size."""
    return run(
        customers=40_000,
        seed=5,
        duration=timedelta(hours=10),
        start=START + timedelta(hours=8),
        atms=8,
        stores=8,
        incidents=[
            f"atm_outage:{OUTAGE_ATM}@+1h/3h",
            "web_login_spike@+1h/8h",
            "call_center_backlog@+5h/2h",
        ],
    )


def journeys_of(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        out[e["journey_id"]].append(e)
    return out


def channels_in_order(journey: list[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(e["channel"] for e in journey))


def test_atm_outage_customers_retry_at_the_same_machine_then_another(
    incident_day: list[dict[str, Any]],
) -> None:
    """A failed withdrawal is tried again within minutes: the card back in the same
    machine first ("it was a glitch"), then a walk to another one nearby."""
    journeys = journeys_of(incident_day)
    failed = [
        e
        for e in incident_day
        if e["touchpoint_instance"] == OUTAGE_ATM
        and e["touchpoint"] == "atm.withdrawal"
        and e["outcome"] == "failure"
        and "incident" in e["attributes"]
    ]
    assert len(failed) > 60
    same, elsewhere = [], []
    for e in failed:
        later = [x for x in journeys[e["journey_id"]] if x["channel"] == "atm" and at(x) > at(e)]
        if later:
            gap = at(later[0]) - at(e)
            (same if later[0]["touchpoint_instance"] == OUTAGE_ATM else elsewhere).append(gap)
    assert len(same) >= 20 and len(elsewhere) >= 20
    assert all(gap <= timedelta(minutes=3) for gap in same)  # re-inserting the card
    assert all(timedelta(minutes=3) < gap <= timedelta(minutes=20) for gap in elsewhere)
    # ...and many of them then get their cash.
    got_cash = {
        x["journey_id"]
        for e in failed
        for x in journeys[e["journey_id"]]
        if x["touchpoint"] == "atm.withdrawal" and x["outcome"] == "success" and at(x) > at(e)
    }
    assert len(got_cash) >= 20
    # Some are stuck: three failed withdrawals within half an hour.
    stuck = 0
    for journey in {e["journey_id"] for e in failed}:
        times = [
            at(x)
            for x in journeys[journey]
            if x["touchpoint"] == "atm.withdrawal" and x["outcome"] == "failure"
        ]
        stuck += len(times) >= 3 and times[2] - times[0] <= timedelta(minutes=30)
    assert stuck >= 4


def test_no_retry_at_a_machine_that_says_it_has_no_cash(
    incident_day: list[dict[str, Any]], two_days: tuple[Simulation, list[dict[str, Any]]]
) -> None:
    events = incident_day + two_days[1]
    journeys = journeys_of(events)
    empty = [
        e
        for e in events
        if e["channel"] == "atm" and e["details"].get("error_code") == "E-OUT-OF-CASH"
    ]
    followed = 0
    for e in empty:
        later = [x for x in journeys[e["journey_id"]] if x["channel"] == "atm" and at(x) > at(e)]
        if later:
            followed += 1
            assert later[0]["touchpoint_instance"] != e["touchpoint_instance"]
    assert followed >= 3


def test_login_spike_customers_switch_to_the_app_then_call(
    incident_day: list[dict[str, Any]],
) -> None:
    """Customers whose web login keeps failing retry it, then switch to the app; those
    the app does not help either call, all about the same need."""
    journeys = journeys_of(incident_day)
    hit = {
        e["journey_id"]
        for e in incident_day
        if e["touchpoint"] == "web.login"
        and e["outcome"] == "failure"
        and "web_login_spike" in e["attributes"].get("incident", "")
    }
    assert len(hit) > 500
    # They try again at once: most retries of a login come within two minutes.
    retried, gaps = 0, []
    for j in hit:
        times = [at(e) for e in journeys[j] if e["touchpoint"] == "web.login"]
        gaps += [b - a for a, b in pairwise(times)]
        failed = [
            at(e)
            for e in journeys[j]
            if e["touchpoint"] == "web.login" and e["outcome"] == "failure"
        ]
        retried += any(b - a <= timedelta(minutes=2) for a, b in pairwise(failed))
    assert retried >= 80
    assert all(gap <= timedelta(minutes=5) for gap in gaps)
    assert sum(gap <= timedelta(minutes=2) for gap in gaps) > 0.8 * len(gaps)
    # Moving on, they reach for the app before the phone.
    moved = Counter(
        channels_in_order(journeys[j])[1]
        for j in hit
        if channels_in_order(journeys[j])[:1] == ("web",)
        and len(channels_in_order(journeys[j])) > 1
    )
    assert moved["app"] > 2 * moved["call_center"] > 0
    # And some go web → app → call center for one intent, none of the first two working.
    hopped = []
    for j in hit:
        journey = journeys[j]
        if channels_in_order(journey)[:3] != ("web", "app", "call_center"):
            continue
        before_call = [e for e in journey if e["channel"] != "call_center"]
        first_call = next(e for e in journey if e["channel"] == "call_center")
        assert all(e["outcome"] != "success" for e in before_call if at(e) < at(first_call))
        assert len({e["intent"] for e in journey}) == 1
        hopped.append(j)
    assert len(hopped) >= 5


def test_callers_who_hang_up_in_a_backlog_call_back(incident_day: list[dict[str, Any]]) -> None:
    """A caller who gave up holding was not helped at all: many call again later, about
    the same thing, and a backlog so brings back part of its own traffic."""
    journeys = journeys_of(incident_day)
    hung_up = [
        e
        for e in incident_day
        if e["channel"] == "call_center"
        and e["outcome"] == "abandoned"
        and "call_center_backlog" in e["attributes"].get("incident", "")
    ]
    assert len(hung_up) > 50
    gaps = []
    for e in hung_up:
        later = [
            x for x in journeys[e["journey_id"]] if x["channel"] == "call_center" and at(x) > at(e)
        ]
        if later:
            assert later[0]["intent"] == e["intent"]
            gaps.append(at(later[0]) - at(e))
    assert len(gaps) > len(hung_up) / 5
    assert all(timedelta(minutes=10) <= gap for gap in gaps)
    assert statistics.median(gaps) < timedelta(hours=3)


def test_an_unresolved_problem_follows_the_customer_across_channels(
    incident_day: list[dict[str, Any]],
) -> None:
    """Where no incident is involved, some customers meet the same refusal on channel
    after channel (a blocked card, a held transfer): one intent on three channels within
    72 h, none of them successful. Only intents that have such cases do, and many end
    resolved by an agent or at a branch."""
    case_intents = {i.name for i in INTENTS if i.case}
    hopping, resolved = [], 0
    for journey in journeys_of(incident_day).values():
        if any("incident" in e["attributes"] for e in journey):
            continue
        tries: list[dict[str, Any]] = []
        for e in journey:
            if e["outcome"] == "success":
                resolved += len({x["channel"] for x in tries}) >= 2 and e["channel"] in (
                    "call_center",
                    "store",
                )
                break
            tries.append(e)
        if len({e["channel"] for e in tries}) >= 3:
            assert at(tries[-1]) - at(tries[0]) <= timedelta(hours=72)
            hopping.append(tries)
    assert len(hopping) >= 5
    assert {e["intent"] for tries in hopping for e in tries} <= case_intents
    assert resolved >= 5
    refusals = [
        e
        for tries in hopping
        for e in tries
        if e["channel"] in ("web", "app") and e["outcome"] == "failure"
    ]
    assert refusals and any(e["details"]["http_status"] in (403, 409, 422) for e in refusals)


def test_customers_switch_to_the_app_only_if_they_use_it(
    incident_day: list[dict[str, Any]],
) -> None:
    """After the web fails, a customer who hardly uses the app goes to the phone more often
    than one who does."""
    from cxpulse.streams.dev.simulate.engine import HABIT

    weights = {c.id: c.weight("app") for c in make_population(40_000, 5).customers}
    to_app: dict[bool, Counter[str]] = {True: Counter(), False: Counter()}
    for journey in journeys_of(incident_day).values():
        order = channels_in_order(journey)
        if order[0] == "web" and len(order) > 1 and journey[0]["outcome"] != "success":
            to_app[weights[journey[0]["customer_id"]] >= HABIT][order[1]] += 1
    users, others = to_app[True], to_app[False]
    assert users["app"] / sum(users.values()) > others["app"] / sum(others.values())


def test_incident_on_an_instance_the_run_does_not_have_is_one_line() -> None:
    with pytest.raises(IncidentError) as err:
        Simulation(1_000, 0, events=10, incidents=["atm_outage:ATM-0042"])
    message = str(err.value)
    assert "ATM-0001..ATM-0001" in message and "\n" not in message
    with pytest.raises(IncidentError, match="no call queue 'vip-en'"):
        Simulation(1_000, 0, events=10, incidents=["call_center_backlog:vip-en"])


# -- incident specs -------------------------------------------------------------------------


M = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("atm_outage:ATM-0042@+10m/30m", Incident("atm_outage", "ATM-0042", 10 * M, None, 30 * M)),
        ("web_login_spike", Incident("web_login_spike")),
        ("call_center_backlog@+1h30m", Incident("call_center_backlog", None, 90 * M)),
        (
            "call_center_backlog:cards-zh/2h",
            Incident("call_center_backlog", "cards-zh", 0 * M, None, 2 * 60 * M),
        ),
        (
            "store_queues:store-017@14:00/45m",
            Incident("store_queues", "store-017", 0 * M, time(14), 45 * M),
        ),
        (" web_login_spike@+0/1d ", Incident("web_login_spike", duration=timedelta(days=1))),
    ],
)
def test_incident_specs_parse(spec: str, expected: Incident) -> None:
    parsed = parse_incident(spec)
    assert parsed == expected
    assert parse_incident(parsed.spec) == parsed  # the canonical form parses back


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("", "expected KIND[:TARGET][@START][/DURATION]"),
        ("ATM_OUTAGE:ATM-0042", "expected KIND"),
        ("atm_outrage:ATM-0042", "unknown incident kind 'atm_outrage'"),
        ("atm_outage", "atm_outage needs an ATM as target"),
        ("atm_outage:ATM-42", "target must look like ATM-0042"),
        ("store_queues:17", "target must look like store-017"),
        ("web_login_spike:/login", "web_login_spike takes no target"),
        ("atm_outage:ATM-0042@10m", "bad start '10m'"),
        ("atm_outage:ATM-0042@25:00", "bad start '25:00'"),
        ("atm_outage:ATM-0042@+10m/30", "bad duration '30'"),
        ("atm_outage:ATM-0042@+10m/0s", "duration must be more than zero"),
    ],
)
def test_bad_incident_specs_are_one_line(spec: str, says: str) -> None:
    with pytest.raises(IncidentError) as err:
        parse_incident(spec)
    message = str(err.value)
    assert says in message
    assert "\n" not in message
    assert err.value.code == 2


def test_incident_time_of_day_is_the_next_such_time() -> None:
    incident = parse_incident("web_login_spike@06:30/1h")
    begin, end = incident.window(datetime(2026, 11, 16, 8, 0, tzinfo=UTC))
    assert begin == datetime(2026, 11, 17, 6, 30, tzinfo=UTC)
    assert end == begin + timedelta(hours=1)


def test_durations() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration("45s") == timedelta(seconds=45)
    assert format_duration(timedelta(hours=26, seconds=5)) == "1d2h5s"
    for bad in ("", "10", "1x", "h", "-5m"):
        with pytest.raises(ValueError, match="bad duration"):
            parse_duration(bad)


def test_parse_start() -> None:
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert parse_start("now", now) == now
    assert parse_start("-1d", now) == now - timedelta(days=1)
    assert parse_start("2026-11-16T08:00", now) == datetime(2026, 11, 16, 8, tzinfo=UTC)
    eight = parse_start("2026-11-16T08:00+08:00", now)
    assert eight.utcoffset() == timedelta(hours=8)
    with pytest.raises(SystemExit, match="bad start 'yesterday'"):
        parse_start("yesterday", now)


# -- the runner without Kafka ---------------------------------------------------------------


def test_dry_run_writes_json_lines_and_a_summary() -> None:
    out = io.StringIO()
    summary = simulate(
        customers=400,
        events=1_500,
        seed=9,
        start=START,
        output=out,
        incidents=["web_login_spike@+0/2h"],
        progress=False,
    )
    lines = out.getvalue().splitlines()
    assert len(lines) == summary.events == summary.sent == 1_500
    docs = [json.loads(line) for line in lines]
    assert docs == run(customers=400, events=1_500, seed=9, incidents=["web_login_spike@+0/2h"])
    assert sum(summary.by_channel.values()) == 1_500
    assert sum(summary.by_outcome.values()) == 1_500
    assert summary.start == START and summary.clock == at(docs[-1])
    text = io.StringIO()
    print_summary(summary, file=text)
    report = text.getvalue()
    assert "simulated 1,500 events" in report and "web_login_spike@+0s/2h" not in report
    assert "web_login_spike/2h" in report
    assert "--seed 9 --start 2026-11-16T00:00:00+00:00" in report


def test_duration_bounds_the_run_and_default_start_ends_near_now() -> None:
    out = io.StringIO()
    summary = simulate(customers=300, duration=timedelta(hours=6), output=out, progress=False)
    now = datetime.now(UTC)
    assert now - timedelta(hours=6, minutes=3) <= summary.start <= now - timedelta(hours=6)
    assert summary.clock < summary.start + timedelta(hours=6)


def test_rate_limits_the_pace_not_the_events() -> None:
    out = io.StringIO()
    summary = simulate(
        customers=200, events=300, seed=1, start=START, rate=1_500, output=out, progress=False
    )
    assert summary.seconds >= 0.18
    assert summary.events_per_second <= 1_650
    assert out.getvalue().splitlines() == [
        json.dumps(e, ensure_ascii=False, separators=(",", ":"))
        for e in run(customers=200, events=300, seed=1)
    ]


def test_progress_bar_does_not_change_the_output() -> None:
    out = io.StringIO()
    simulate(customers=200, events=2_500, seed=1, start=START, output=out, progress=True)
    assert len(out.getvalue().splitlines()) == 2_500


def test_generate_is_endless_without_bounds() -> None:
    assert len(list(islice(generate(100, 1, start=START), 5_000))) == 5_000


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Simulation(10, 0, start=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="customers must be at least 1"):
        make_population(0, 0)
    sim = Simulation(10, 0, events=1)
    list(sim)
    with pytest.raises(RuntimeError, match="iterated once"):
        list(sim)


# -- the command ----------------------------------------------------------------------------


@pytest.fixture
def cli() -> Any:
    import click

    @click.group()
    def group() -> None:
        pass

    add_simulate_command(group)
    return group


def test_command_dry_run(cli: Any) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "simulate",
            "--customers", "300",
            "--events", "50",
            "--seed", "3",
            "--start", "2026-11-16T09:00",
            "--incident", "web_login_spike@+0/1h",
            "--dry-run",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 50
    assert "simulated 50 events" in result.stderr


def test_command_bad_incident_is_one_line(cli: Any) -> None:
    result = CliRunner().invoke(cli, ["simulate", "--dry-run", "--incident", "atm_outage:42"])
    assert result.exit_code == 2
    error = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error) == 1 and "target must look like ATM-0042" in error[0]


def test_ctrl_c_stops_the_run_and_keeps_what_was_made(monkeypatch: pytest.MonkeyPatch) -> None:
    from cxpulse.streams.dev.simulate import runner

    def interrupting(stream: Any, sim: Any, events: Any, duration: Any) -> Any:
        for i, event in enumerate(stream):
            if i == 100:
                raise KeyboardInterrupt
            yield event

    monkeypatch.setattr(runner, "_with_progress", interrupting)
    out = io.StringIO()
    summary = simulate(customers=100, events=1_000, start=START, output=out, progress=True)
    assert summary.interrupted and summary.sent == 100
    assert len(out.getvalue().splitlines()) == 100
    report = io.StringIO()
    print_summary(summary, file=report)
    assert ", interrupted" in report.getvalue()


# -- the in-process alert check (a development tool) -----------------------------------------


def test_alert_check_counts_each_alert_once() -> None:
    """``cxpulse.streams.dev.simulate.check`` runs events through the worker's pure rules: four
    failed withdrawals in 15 minutes are one repeated_failure case (the fourth repeats it),
    and a customer who withdraws without trouble raises nothing."""
    from cxpulse.streams.dev.simulate.check import alert_counts

    def withdrawal(n: int, customer: str, minute: int, outcome: str) -> dict[str, Any]:
        details: dict[str, Any] = {"kind": "atm", "response_ms": 2_000.0}
        details["cash_dispensed"] = outcome == "success"
        if outcome == "failure":
            details["error_code"] = "E-CASH-JAM"
        return {
            "event_id": f"00000000-0000-4000-8000-{n:012d}",
            "schema_version": 1,
            "occurred_at": (START + timedelta(hours=10, minutes=minute)).isoformat(),
            "customer_id": customer,
            "channel": "atm",
            "touchpoint": "atm.withdrawal",
            "touchpoint_instance": "ATM-0001",
            "journey_stage": "post_purchase",
            "journey_id": f"J-{customer}",
            "intent": "cash_withdrawal",
            "outcome": outcome,
            "details": details,
            "tier": "B",
            "segment": "retail_banking",
        }

    events = [withdrawal(i, "C-000001", 5 * i, "failure") for i in range(4)]
    events += [withdrawal(10 + i, "C-000002", 7 * i, "success") for i in range(3)]
    events.sort(key=lambda e: e["occurred_at"])
    check = alert_counts(events, batch=2)
    assert check.events == 7
    assert check.alerts["repeated_failure"] == 1
    assert check.hits["repeated_failure"] == 2
    assert check.subjects["repeated_failure"] == {"C-000001"}
    assert all("C-000002" not in s for s in check.subjects.values())
