"""What BI users rely on, on chDB and on the server (18.16 in CI): a view's documented
columns are the ones ClickHouse creates, and a replayed event never pushes its scored
moment out of the emotion map."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from schemas.events import TouchpointEvent
from schemas.rows import ViewSpec
from schemas.score_rows import MOMENTS, moment_rows
from schemas.tables import SPECS
from sinks.base import Backend
from streams.core import apply_event
from streams.model_check import load_model

pytestmark = pytest.mark.clickhouse

VIEWS = [s for s in SPECS if isinstance(s, ViewSpec)]


def test_every_view_documents_its_columns() -> None:
    assert VIEWS
    for view in VIEWS:
        names = [name for name, _ in view.columns]
        assert names, f"{view.name}: document its columns (ViewSpec.columns)"
        assert len(set(names)) == len(names), view.name
        assert all(doc.strip() for _, doc in view.columns), view.name


@pytest.fixture(params=["chdb", "server"])
def real_backend(request: pytest.FixtureRequest) -> Backend:
    backend: Backend = request.getfixturevalue(f"{request.param}_backend")
    backend.ensure_schema(SPECS)
    return backend


@pytest.mark.parametrize("view", VIEWS, ids=lambda v: v.name)
def test_documented_columns_are_the_created_ones(real_backend: Backend, view: ViewSpec) -> None:
    _, rows = real_backend.query(f"DESCRIBE TABLE {view.name}")
    created = [row[0] for row in rows]
    assert created == [name for name, _ in view.columns]


@pytest.mark.parametrize("late_first", [False, True], ids=["replay-after", "replay-before"])
def test_a_scored_moment_outlives_a_late_replay_of_it(backend: Backend, late_first: bool) -> None:
    """An event replayed after the customer's duplicate window comes back late (unscored,
    episode 'late'); whatever the insert order, FINAL keeps the scored row."""
    event = TouchpointEvent.model_validate(
        {
            "event_id": str(uuid.uuid4()),
            "occurred_at": "2026-11-20T09:30:00+00:00",
            "customer_id": "C-replay",
            "channel": "atm",
            "touchpoint": "atm.withdrawal",
            "journey_stage": "post_purchase",
            "outcome": "failure",
        }
    )
    _, scored = apply_event(None, event, load_model(), datetime(2026, 11, 21, tzinfo=UTC))
    assert scored is not None and not scored.late
    late = scored.model_copy(update={"late": True, "episode_id": "late", "score_after": 61.5})
    spec = dataclasses.replace(MOMENTS, name=f"moments_{uuid.uuid4().hex[:8]}")
    backend.ensure_schema([spec])
    first, second = (late, scored) if late_first else (scored, late)
    backend.insert(spec, [moment_rows(first)[0]])
    backend.insert(spec, [moment_rows(second)[0]])
    (row,) = backend.read_table(spec, final=True)
    assert row[spec.positions["late"]] == 0
    assert row[spec.positions["episode_id"]] == scored.episode_id
