"""Benchmarks of the pure scoring core (pytest-benchmark), in events per second.

Run: ``pytest tests/benchmarks/bench_core.py --benchmark-only -p no:cacheprovider``.
Each benchmark records ``events_per_s`` in extra_info; the state size is recorded too,
because every table update writes the state to the changelog topic.
"""

from __future__ import annotations

import itertools
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cxpulse.schemas.events import TouchpointEvent
from cxpulse.schemas.scoring import CustomerState
from cxpulse.streams.core import apply_event, apply_events, score_update
from cxpulse.streams.model_check import load_model
from cxpulse.streams.rules.customer import customer_alerts

MODEL = load_model()
T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=400)

_KINDS = [
    ("web", "web.checkout", {"kind": "web", "latency_ms": 1800.0, "steps": 6}),
    ("app", "app.payment", {"kind": "app", "latency_ms": 900.0}),
    ("call_center", "call_center.card_hotline", {"kind": "call_center", "wait_seconds": 140.0}),
    ("store", "store.branch_visit", {"kind": "store", "queue_seconds": 420.0}),
    ("atm", "atm.withdrawal", {"kind": "atm", "response_ms": 3500.0}),
]


def make_events(
    n: int, start: datetime, spacing_min: float, seed: int = 7, wrap: int = 0
) -> list[TouchpointEvent]:
    """A realistic mix: all channels, 80 % success, a survey on every 5th event.

    ``wrap`` > 0 restarts the times every ``wrap`` events: a pool of candidate NEXT events
    of one customer, each applied to the same base state.
    """
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        channel, touchpoint, details = rnd.choice(_KINDS)
        out.append(
            TouchpointEvent.model_validate(
                {
                    "event_id": uuid.UUID(int=rnd.getrandbits(128)),
                    "occurred_at": start
                    + timedelta(minutes=spacing_min * (i % wrap if wrap else i)),
                    "customer_id": "cust-000123",
                    "channel": channel,
                    "touchpoint": touchpoint,
                    "journey_stage": "post_purchase",
                    "intent": "card_blocked" if channel == "call_center" else None,
                    "outcome": rnd.choices(["success", "failure", "abandoned"], [8, 1, 1])[0],
                    "details": details,
                    "feedback": {"csat": rnd.randint(1, 5)} if i % 5 == 0 else None,
                    "tier": "A",
                    "segment": "retail_banking",
                }
            )
        )
    return out


def warm_state(n: int = 50, spacing_min: float = 97) -> CustomerState:
    state, _ = apply_events(None, make_events(n, T0, spacing_min), MODEL, NOW)
    return state


def test_apply_event(benchmark: Any) -> None:
    base = warm_state()
    start = datetime.fromtimestamp(base.watermark, UTC) + timedelta(minutes=1)
    pool = itertools.cycle(make_events(2000, start, 3, seed=11, wrap=200))

    def one() -> None:
        apply_event(base, next(pool), MODEL, NOW)

    benchmark(one)
    from cxpulse.streams.state.customer import encode

    benchmark.extra_info["state_bytes"] = len(encode(base))
    benchmark.extra_info["events_per_s"] = round(1 / benchmark.stats.stats.mean)


def test_baseline_pydantic_validate_json(benchmark: Any) -> None:
    """The baseline for the per-event core figures: pydantic validating one event from its
    JSON (what the validate agent pays per event), same events as ``test_apply_event``."""
    start = T0 + timedelta(days=1)
    raw = [e.model_dump_json(exclude_none=True).encode() for e in make_events(2000, start, 3)]
    pool = itertools.cycle(raw)
    benchmark(lambda: TouchpointEvent.model_validate_json(next(pool)))
    benchmark.extra_info["events_per_s"] = round(1 / benchmark.stats.stats.mean)


@pytest.mark.parametrize("batch", [10, 100])
def test_apply_events_batch(benchmark: Any, batch: int) -> None:
    base = warm_state()
    start = datetime.fromtimestamp(base.watermark, UTC) + timedelta(minutes=1)
    batches = itertools.cycle([make_events(batch, start, 3, seed=s) for s in range(20)])

    def run() -> None:
        apply_events(base, next(batches), MODEL, NOW)

    benchmark(run)
    benchmark.extra_info["events_per_s"] = round(batch / benchmark.stats.stats.mean)


@pytest.mark.parametrize(("label", "spacing_min"), [("50 over ~3 days", 97), ("50 in 4 h", 5)])
def test_state_bytes_after_50_events(benchmark: Any, label: str, spacing_min: float) -> None:
    from cxpulse.streams.state.customer import decode, encode

    state = warm_state(50, spacing_min)
    raw = benchmark(encode, state)  # the changelog record
    benchmark.extra_info["state_bytes"] = len(raw)
    benchmark.extra_info["json_bytes"] = len(state.to_bytes())
    benchmark.extra_info["open_episodes"] = len(state.episodes)
    assert decode(raw) == state


def simulated_messages(events: int = 3000, customers: int = 400) -> list[list[list[Any]]]:
    """Simulated traffic as the experience agent sees it: messages of 500 events, each
    grouped by customer (deterministic: fixed seed and start)."""
    from cxpulse.streams.dev.simulate import generate

    start = datetime(2025, 3, 3, tzinfo=UTC)
    evs = [
        TouchpointEvent.model_validate(e)
        for e in generate(customers, 7, events=events, start=start)
    ]
    messages = []
    for i in range(0, len(evs), 500):
        groups: dict[str, list[TouchpointEvent]] = {}
        for e in evs[i : i + 500]:
            groups.setdefault(e.customer_id, []).append(e)
        messages.append(list(groups.values()))
    return messages


def test_experience_per_customer_work(benchmark: Any) -> None:
    """The experience agent's per-customer work on simulated traffic, without Faust:
    ``apply_events``, the alert rules, the changelog record (``cxpulse.streams.state.customer``),
    ``score_update`` and the moment and score rows (``cxpulse.streams.pipeline.rows``),
    from empty states every round."""
    from cxpulse.schemas.score_rows import score_row
    from cxpulse.streams.pipeline.rows import moment_rows_of
    from cxpulse.streams.state.customer import encode as encode_state

    messages = simulated_messages()
    n = sum(len(batch) for message in messages for batch in message)
    now = datetime(2025, 3, 11, tzinfo=UTC)

    def replay() -> None:
        states: dict[str, CustomerState] = {}
        for message in messages:
            moments: list[Any] = []
            updates: list[Any] = []
            for batch in message:
                cid = batch[0].customer_id
                before = states.get(cid)
                after, produced = apply_events(before, batch, MODEL, now)
                state, _ = customer_alerts(before, after, batch, produced, MODEL, now)
                encode_state(state)
                states[cid] = state
                moments.extend(m for m in produced if m is not None)
                updates.append(score_update(state, MODEL))
            moment_rows_of(moments)
            [score_row(u) for u in updates]

    benchmark.pedantic(replay, rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["events_per_s"] = round(n / benchmark.stats.stats.median)


def test_sentiment_english_uncached(benchmark: Any) -> None:
    from cxpulse.streams.sentiment import DefaultSentimentAnalyzer

    a = DefaultSentimentAnalyzer(cache_size=1)
    texts = itertools.cycle([f"waited {i} minutes, terrible service" for i in range(100)])
    benchmark(lambda: a.score(next(texts), "en"))
    benchmark.extra_info["texts_per_s"] = round(1 / benchmark.stats.stats.mean)


def test_sentiment_chinese_uncached(benchmark: Any) -> None:
    from cxpulse.streams.sentiment import DefaultSentimentAnalyzer

    a = DefaultSentimentAnalyzer(cache_size=1)
    a.score("预热", "zh")  # the lazy import is not what we measure
    texts = itertools.cycle([f"等了{i}分钟，服务太差了" for i in range(100)])  # noqa: RUF001
    benchmark(lambda: a.score(next(texts), "zh"))
    benchmark.extra_info["texts_per_s"] = round(1 / benchmark.stats.stats.mean)


def test_sentiment_cached(benchmark: Any) -> None:
    from cxpulse.streams.sentiment import DefaultSentimentAnalyzer

    a = DefaultSentimentAnalyzer()
    a.score("服务很好", "zh")
    benchmark(lambda: a.score("服务很好", "zh"))
    benchmark.extra_info["texts_per_s"] = round(1 / benchmark.stats.stats.mean)
