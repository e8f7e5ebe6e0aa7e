"""NPS as loyalty in ClickHouse, on chDB and on the server: ``nps_trend`` counts every
answer by day, tier, segment, channel and touchpoint; ``relationship_nps`` counts each
customer once, by their last answer; both as % promoters − % detractors. The rows are
what the worker writes: events, the core's moments and its score updates."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cxpulse.schemas.events import TouchpointEvent
from cxpulse.schemas.rows import TOUCHPOINT_EVENTS, event_row
from cxpulse.schemas.score_rows import CUSTOMER_SCORES, MOMENTS, moment_rows, score_row
from cxpulse.schemas.tables import SPECS
from cxpulse.sinks.base import Backend
from cxpulse.streams.core import apply_events, score_update
from cxpulse.streams.model_check import load_model
from cxpulse.streams.pipeline.records import record_of

pytestmark = pytest.mark.clickhouse

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

# (customer, tier, minutes after T0, channel, touchpoint, NPS)
ANSWERS = [
    ("C-1", "A", 0, "app", "app.payment", 3),  # C-1 answers twice: the last (9) is theirs
    ("C-1", "A", 60, "call_center", "call_center.banking_support", 9),
    ("C-2", "A", 10, "app", "app.payment", 10),
    ("C-3", "A", 20, "app", "app.payment", 7),
    ("C-4", "B", 24 * 60, "app", "app.payment", 6),  # the next day
    ("C-5", "B", 24 * 60 + 5, "app", "app.payment", 9),
]


@pytest.fixture(params=["chdb", "server"])
def real_backend(request: pytest.FixtureRequest) -> Backend:
    backend: Backend = request.getfixturevalue(f"{request.param}_backend")
    backend.ensure_schema(SPECS)
    return backend


def event(customer: str, tier: str, minutes: int, channel: str, tp: str, nps: int) -> Any:
    return TouchpointEvent.model_validate(
        {
            "event_id": str(uuid.uuid4()),
            "occurred_at": T0 + timedelta(minutes=minutes),
            "customer_id": customer,
            "channel": channel,
            "touchpoint": tp,
            "journey_stage": "post_purchase",
            "outcome": "success",
            "tier": tier,
            "segment": "retail_banking",
            "feedback": {"nps": nps},
        }
    )


def test_nps_views_count_promoters_and_detractors(real_backend: Backend) -> None:
    model = load_model()
    events = [event(*a) for a in ANSWERS]
    now = T0 + timedelta(days=2)
    by_customer: dict[str, list[Any]] = {}
    for e in events:
        by_customer.setdefault(e.customer_id, []).append(e)
    moments, scores = [], []
    for evs in by_customer.values():
        state, produced = apply_events(None, [record_of(e) for e in evs], model, now)
        moments += [moment_rows(m)[0] for m in produced if m is not None]
        scores.append(score_row(score_update(state, model)))
    ingested = now
    real_backend.insert(
        TOUCHPOINT_EVENTS,
        [
            event_row(e, source_partition=0, source_offset=i, ingested_at=ingested)
            for i, e in enumerate(events)
        ],
    )
    real_backend.insert(MOMENTS, moments)
    real_backend.insert(CUSTOMER_SCORES, scores)

    _, rows = real_backend.query(
        "SELECT toString(day), tier, channel, answers, promoters, passives, detractors, nps "
        "FROM nps_trend ORDER BY day, tier, channel"
    )
    assert [tuple(r) for r in rows] == [
        # day 1, tier A, app: 3, 10, 7 -> one promoter, one passive, one detractor: 0
        ("2026-12-01", "A", "app", 3, 1, 1, 1, 0.0),
        ("2026-12-01", "A", "call_center", 1, 1, 0, 0, 100.0),
        # day 2, tier B: 6 and 9 -> 50 % - 50 %
        ("2026-12-02", "B", "app", 2, 1, 0, 1, 0.0),
    ]
    # over the whole of tier A's answers: 2 promoters of 4, 1 detractor: 25
    _, rows = real_backend.query(
        "SELECT round(100 * (sum(promoters) - sum(detractors)) / sum(answers), 1) "
        "FROM nps_trend WHERE tier = 'A'"
    )
    assert rows[0][0] == 25.0

    _, rows = real_backend.query(
        "SELECT tier, segment, customers, promoters, passives, detractors, nps "
        "FROM relationship_nps ORDER BY tier"
    )
    # tier A's customers by their last answers: 9, 10, 7 -> 2 promoters of 3: 66.7
    assert [tuple(r) for r in rows] == [
        ("A", "retail_banking", 3, 2, 1, 0, 66.7),
        ("B", "retail_banking", 2, 1, 0, 1, 0.0),
    ]
    _, rows = real_backend.query(
        "SELECT customer_id, nps FROM customer_scores FINAL ORDER BY customer_id"
    )
    assert [tuple(r) for r in rows] == [("C-1", 9), ("C-2", 10), ("C-3", 7), ("C-4", 6), ("C-5", 9)]
