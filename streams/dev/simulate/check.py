"""Which alerts a simulated run raises, in process: no broker, no worker, no ClickHouse.

Why: whether the simulator's customers behave realistically enough for every rule to
have something to find is a question about the generated data and the rules together,
and asking it through the real pipeline takes a broker, a worker and a minute. This runs
the same pure functions the worker runs (``cxpulse.streams.core.apply_events`` then
``cxpulse.streams.rules.customer.customer_alerts`` per customer,
``cxpulse.streams.rules.touchpoint_degraded.apply_health`` per touchpoint instance) on the same
kind of batches: the events in event-time order, cut into the Publisher's 500-event
messages, each grouped by customer (or by instance), as the experience and
touchpoint-health agents group a message. Feedback text is scored by
the project's own sentiment analyser. An alert is counted once per ``alert_id`` (what
``alerts FINAL`` holds), however many times it was re-emitted with a higher count.

Run it with the demo's parameters (``streams/dev/demo.py``)::

    python -m cxpulse.streams.dev.simulate.check  # start = 8 h before now, as the demo
    python -m cxpulse.streams.dev.simulate.check --start 2026-11-16T09:00 --start 2026-11-16T18:00

It is a development tool: it reports counts, it asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cxpulse.schemas.alerts import RULES
from cxpulse.streams.dev.simulate.engine import Simulation

BATCH = 500  # events per Publisher message, the worker's unit of work
DEMO_CUSTOMERS, DEMO_SEED, DEMO_HOURS = 20_000, 7, 8
DEMO_FLEET = {"atms": 4, "stores": 4}


@dataclass
class AlertCheck:
    """Alerts by rule (distinct alert ids), and which subjects raised them."""

    events: int = 0
    alerts: Counter[str] = field(default_factory=Counter)
    hits: Counter[str] = field(default_factory=Counter)  # sum of the alerts' final counts
    subjects: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    examples: dict[str, str] = field(default_factory=dict)  # rule → one explanation
    found: list[Any] = field(default_factory=list)  # every alert (Alert), its latest version


def alert_counts(events: Iterable[dict[str, Any]], batch: int = BATCH) -> AlertCheck:
    """Run ``events`` (simulator dicts, in event-time order) through the customer rules and
    touchpoint health as the worker would, and count the alerts by rule."""
    from cxpulse.schemas.events import TouchpointEvent
    from cxpulse.streams.core import apply_events
    from cxpulse.streams.model_check import load_model
    from cxpulse.streams.pipeline.records import Event, record_of
    from cxpulse.streams.rules.customer import customer_alerts
    from cxpulse.streams.rules.touchpoint_degraded import apply_health, health_key
    from cxpulse.streams.sentiment import DefaultSentimentAnalyzer, sentiments_for

    model = load_model()
    analyzer = DefaultSentimentAnalyzer()
    customers: dict[str, Any] = {}
    instances: dict[str, Any] = {}
    latest: dict[str, Any] = {}  # alert id → its latest version
    result = AlertCheck()
    chunk: list[Event] = []

    def run(evs: list[Event]) -> None:
        now = max(e.occurred_at for e in evs) + timedelta(seconds=1)
        sentiments = sentiments_for(evs, analyzer)
        by_customer: dict[str, list[Event]] = defaultdict(list)
        by_instance: dict[str, list[Event]] = defaultdict(list)
        for e in evs:
            by_customer[e.customer_id].append(e)
            by_instance[health_key(e)].append(e)
        for cid, group in by_customer.items():
            before = customers.get(cid)
            after, produced = apply_events(before, group, model, now, sentiments)
            if not any(m is not None for m in produced):
                continue
            state, alerts = customer_alerts(before, after, group, produced, model, now)
            customers[cid] = state
            for a in alerts:
                latest[a.alert_id.hex] = a
        for key, group in by_instance.items():
            health, alerts, _ = apply_health(instances.get(key), group, model, now)
            instances[key] = health
            for a in alerts:
                latest[a.alert_id.hex] = a

    for raw in events:
        chunk.append(record_of(TouchpointEvent.model_validate(raw)))
        result.events += 1
        if len(chunk) >= batch:
            run(chunk)
            chunk = []
    if chunk:
        run(chunk)
    result.found = list(latest.values())
    for a in latest.values():
        result.alerts[a.rule] += 1
        result.hits[a.rule] += a.count
        result.subjects[a.rule].add(a.subject)
        result.examples.setdefault(a.rule, a.explanation)
    return result


def demo_simulation(start: datetime) -> Simulation:
    """The demo's run (``cxpulse.streams.dev.demo.run_demo``): 20,000 customers, seed 7, 8
    hours, its four incidents, 4 ATMs and 4 stores, from ``start``."""
    from cxpulse.streams.dev.demo import DEMO_INCIDENTS

    return Simulation(
        DEMO_CUSTOMERS,
        DEMO_SEED,
        duration=timedelta(hours=DEMO_HOURS),
        start=start,
        incidents=DEMO_INCIDENTS,
        **DEMO_FLEET,
    )


def report(start: datetime, check: AlertCheck, seconds: float) -> str:
    when = start.isoformat(timespec="minutes")
    lines = [f"start {when}: {check.events:,} events ({seconds:.1f}s)"]
    for rule in RULES:
        n = check.alerts[rule]
        who = ""
        if rule == "touchpoint_degraded" and n:
            who = " " + ", ".join(sorted(check.subjects[rule]))
        example = check.examples.get(rule, "")
        lines.append(f"  {rule:<20}{n:>5}{who}   {example[:90]}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--start",
        action="append",
        help="simulated start (ISO, UTC if no zone; repeatable) [default: 8 h before now]",
    )
    args = parser.parse_args(argv)
    from cxpulse.streams.dev.simulate.runner import parse_start

    if args.start:
        starts = [parse_start(s) for s in args.start]
    else:  # what the demo gets: simulate() without a start ends the run at about now
        starts = [
            datetime.now(UTC).replace(second=0, microsecond=0)
            - timedelta(minutes=DEMO_HOURS * 60 + 1)
        ]
    for start in starts:
        began = time.perf_counter()
        check = alert_counts(demo_simulation(start))
        print(report(start, check, time.perf_counter() - began), flush=True)


if __name__ == "__main__":
    main()
