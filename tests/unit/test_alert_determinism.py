"""The same events give the same alerts, whatever the batching, the interleaving of
customers and instances, restarts and replays (docs/alerts.md, "What is guaranteed").

What Kafka guarantees, and so what is varied here. The experience agent receives each
customer's events in the order of the one source partition they were published to (the
publisher keys them by customer), and the validate step sorts each batch by event time; so
each customer's events arrive in event-time order, but where the batches are cut, and how
different customers' (and so an instance's) events are interleaved, changes from run to
run. The runs below feed simulated traffic (with failing logins, so touchpoint_degraded
fires too) through ``apply_events`` + ``customer_alerts`` and ``apply_health`` as the
agents do, in random batchings and interleavings, with a restart that rolls the states
back and re-processes, and with a full replay; each must end with the same alerts as
one-event-at-a-time processing: the same ``alert_id``s, rules, final counts (the highest
count emitted, which is what ClickHouse keeps), severities and trigger times.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cxpulse.schemas.alerts import Alert
from cxpulse.schemas.events import TouchpointEvent
from cxpulse.schemas.model import ExperienceModel
from cxpulse.streams.core import apply_events
from cxpulse.streams.dev.simulate.engine import Simulation
from cxpulse.streams.model_check import load_model
from cxpulse.streams.pipeline.records import Event, record_of
from cxpulse.streams.rules.customer import customer_alerts
from cxpulse.streams.rules.touchpoint_degraded import apply_health, health_key

Outcome = frozenset[tuple[str, str, int, str | None, datetime]]


@pytest.fixture(scope="module")
def model() -> ExperienceModel:
    return load_model()


@pytest.fixture(scope="module")
def traffic() -> list[Event]:
    """Most of a day of 3,000 customers with two hours of failing logins, in event-time
    order (as published)."""
    sim = Simulation(
        3000, seed=3, events=3000, incidents=["web_login_spike@+9h/2h"], atms=2, stores=2
    )
    return [record_of(TouchpointEvent.model_validate(e)) for e in sim]


class Worker:
    """The experience and touchpoint-health agents' per-batch work, on in-memory tables.
    ``emitted`` keeps, per alert id, the version with the highest count (ClickHouse's
    ``ReplacingMergeTree(count)``)."""

    def __init__(self, model: ExperienceModel, now: datetime) -> None:
        self.model = model
        self.now = now
        self.customers: dict[str, Any] = {}
        self.instances: dict[str, Any] = {}
        self.emitted: dict[str, Alert] = {}

    def batch(self, events: Sequence[Event]) -> None:
        by_customer: dict[str, list[Event]] = defaultdict(list)
        by_instance: dict[str, list[Event]] = defaultdict(list)
        for e in events:
            by_customer[e.customer_id].append(e)
            by_instance[health_key(e)].append(e)
        for cid, group in by_customer.items():
            before = self.customers.get(cid)
            after, produced = apply_events(before, group, self.model, self.now)
            if not any(m is not None for m in produced):
                continue
            state, alerts = customer_alerts(before, after, group, produced, self.model, self.now)
            self.customers[cid] = state
            self.keep(alerts)
        for key, group in by_instance.items():
            health, alerts, _ = apply_health(self.instances.get(key), group, self.model, self.now)
            self.instances[key] = health
            self.keep(alerts)

    def keep(self, alerts: Sequence[Alert]) -> None:
        for a in alerts:
            known = self.emitted.get(a.alert_id.hex)
            if known is None or a.count >= known.count:
                self.emitted[a.alert_id.hex] = a

    def snapshot(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return dict(self.customers), dict(self.instances)

    def restore(self, snap: tuple[dict[str, Any], dict[str, Any]]) -> None:
        self.customers, self.instances = dict(snap[0]), dict(snap[1])

    def outcome(self) -> Outcome:
        """Per alert id: rule, final count, severity and trigger time. An instance's
        severity is left out: it is the highest seen while the alert is open, and a
        short window seen half-filled (its failures before its successes) can look worse
        than it ends (docs/alerts.md, "What is not")."""
        return frozenset(
            (
                hexid,
                a.rule,
                a.count,
                a.severity if a.subject_kind == "customer" else None,
                a.triggered_at,
            )
            for hexid, a in self.emitted.items()
        )


def _now(events: Sequence[Event]) -> datetime:
    return max(e.occurred_at for e in events) + timedelta(seconds=1)


def interleave(events: Sequence[Event], rng: random.Random, spread: float) -> list[Event]:
    """Another arrival order Kafka allows: each customer's events keep their order, the
    customers' sequences are merged differently (an event may move up to ``spread``
    positions relative to other customers' events)."""
    slots = sorted(range(len(events)), key=lambda i: i + rng.uniform(0, spread))
    queues: dict[str, list[Event]] = defaultdict(list)
    for e in events:
        queues[e.customer_id].append(e)
    taken: dict[str, int] = defaultdict(int)
    out = []
    for i in slots:
        cid = events[i].customer_id
        out.append(queues[cid][taken[cid]])
        taken[cid] += 1
    return out


def cut(events: Sequence[Event], rng: random.Random, largest: int) -> list[list[Event]]:
    """Random batch boundaries; each batch sorted by event time (the validate step)."""
    batches, i = [], 0
    while i < len(events):
        n = rng.randint(1, largest)
        batches.append(sorted(events[i : i + n], key=lambda e: e.occurred_at))
        i += n
    return batches


@pytest.fixture(scope="module")
def one_by_one(traffic: list[Event], model: ExperienceModel) -> Outcome:
    worker = Worker(model, _now(traffic))
    for e in traffic:
        worker.batch([e])
    return worker.outcome()


def test_the_traffic_raises_every_kind_of_alert(one_by_one: Outcome) -> None:
    rules = {rule for _, rule, *_ in one_by_one}
    assert {"low_score", "sharp_drop", "repeat_contact", "touchpoint_degraded"} <= rules
    assert any(count > 1 for _, _, count, *_ in one_by_one)


def test_one_batch_gives_what_one_by_one_gives(
    traffic: list[Event], model: ExperienceModel, one_by_one: Outcome
) -> None:
    worker = Worker(model, _now(traffic))
    worker.batch(traffic)
    assert worker.outcome() == one_by_one


@settings(
    max_examples=10,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # shrinking 3,000 events: minutes
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    # up to ~20 minutes of event time apart (an event every ~23 s): within the lateness
    spread=st.sampled_from([0.0, 5.0, 20.0, 50.0]),
    largest=st.sampled_from([1, 7, 60, 400]),
)
def test_any_batching_and_interleaving_gives_the_same_alerts(
    traffic: list[Event],
    model: ExperienceModel,
    one_by_one: Outcome,
    seed: int,
    spread: float,
    largest: int,
) -> None:
    rng = random.Random(seed)
    arrival = interleave(traffic, rng, spread)
    worker = Worker(model, _now(traffic))
    batches = cut(arrival, rng, largest)
    restart_at = rng.randrange(len(batches))
    for i, b in enumerate(batches):
        if i == restart_at:
            snap = worker.snapshot()
        worker.batch(b)
    assert worker.outcome() == one_by_one

    # a restart: the states written since ``restart_at`` are lost, the events come again
    worker.restore(snap)
    again = [e for batch in batches[restart_at:] for e in batch]
    for b in cut(again, rng, largest):
        worker.batch(b)
    assert worker.outcome() == one_by_one

    # a replay of everything, batched otherwise: nothing new, no count raised
    for b in cut(interleave(traffic, rng, spread), rng, largest):
        worker.batch(b)
    assert worker.outcome() == one_by_one


CROWD_CHANNELS = [
    ("web", "web.login", {"kind": "web", "latency_ms": 850.0, "http_status": 200}),
    ("app", "app.transfer", {"kind": "app", "latency_ms": 400.0, "os": "ios"}),
    ("call_center", "call.card_hotline", {"kind": "call_center", "wait_seconds": 300.0}),
    ("store", "store.counter", {"kind": "store", "queue_seconds": 600.0}),
    ("atm", "atm.withdrawal", {"kind": "atm", "error_code": "E-CASH-JAM"}),
]


@pytest.fixture(scope="module")
def crowded() -> list[Event]:
    """Three customers busier than the rules' memory caps (``state.*_max``, 8 each): an
    event every 30 s for 12 hours, three in four failures, every fifth a call, eleven
    intents; in event-time order."""
    start = datetime(2026, 3, 2, tzinfo=UTC)
    docs = []
    for i in range(3 * 12 * 120):
        step = i // 3
        channel, touchpoint, details = CROWD_CHANNELS[step % len(CROWD_CHANNELS)]
        docs.append(
            {
                "event_id": f"00000000-0000-4000-8000-{i:012d}",
                "occurred_at": (start + timedelta(seconds=30 * step)).isoformat(),
                "customer_id": f"C-{i % 3}",
                "channel": channel,
                "touchpoint": touchpoint,
                "touchpoint_instance": f"{touchpoint}-{i % 7}",
                "journey_stage": "post_purchase",
                "outcome": "success" if step % 4 == 0 else "failure",
                "intent": f"intent_{step % 11}",
                "details": details,
                "tier": "ABC"[i % 3],
            }
        )
    return [record_of(TouchpointEvent.model_validate(d)) for d in docs]


def test_a_customer_busier_than_the_memory_caps_alerts_the_same_however_batched(
    crowded: list[Event], model: ExperienceModel
) -> None:
    """A counting rule counts what one-by-one processing would have kept: in a batch, the
    memory is capped before each moment as the state written after the one before would
    have been. Judged on everything the batch holds instead, a batch found other opening
    events once a window held more than a cap, so a restart (large batches) opened the
    same case under another id (a duplicate alert in the chaos suite's kill -9 runs)."""
    s = model.state
    per_customer = [e for e in crowded if e.customer_id == "C-0"]
    assert len(per_customer) > 8 * s.failures_max  # the caps bind, many times over
    alone = Worker(model, _now(crowded))
    for e in crowded:
        alone.batch([e])
    expected = alone.outcome()
    rules = {rule for _, rule, *_ in expected}
    assert {"repeated_failure", "repeat_contact", "channel_hopping"} <= rules

    rng = random.Random(11)
    for largest in (2, 9, 60, len(crowded)):
        worker = Worker(model, _now(crowded))
        batches = cut(crowded, rng, largest)
        restart_at = len(batches) // 2
        for i, b in enumerate(batches):
            if i == restart_at:
                snap = worker.snapshot()
            worker.batch(b)
        assert worker.outcome() == expected, largest
        worker.restore(snap)
        again = [e for batch in batches[restart_at:] for e in batch]
        for b in cut(again, rng, 4 * largest):
            worker.batch(b)
        assert worker.outcome() == expected, largest
