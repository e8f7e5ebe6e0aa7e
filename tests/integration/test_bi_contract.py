"""What BI users rely on, on chDB and on the server (18.16 in CI): a view's documented
columns are the ones ClickHouse creates, and a replayed event never pushes its scored
moment out of the emotion map."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Annotated

import msgspec
import pytest
from pydantic import create_model

from cxpulse.schemas.events import TouchpointEvent
from cxpulse.schemas.rows import TOUCHPOINT_EVENTS, TableSpec, ViewSpec, _Row
from cxpulse.schemas.score_rows import MOMENTS, moment_rows
from cxpulse.schemas.tables import SPECS
from cxpulse.sinks.base import Backend
from cxpulse.sinks.errors import SinkConfigError
from cxpulse.streams.core import apply_event
from cxpulse.streams.model_check import load_model

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
    late = msgspec.structs.replace(scored, late=True, episode_id="late", score_after=61.5)
    spec = dataclasses.replace(MOMENTS, name=f"moments_{uuid.uuid4().hex[:8]}")
    backend.ensure_schema([spec])
    first, second = (late, scored) if late_first else (scored, late)
    backend.insert(spec, [moment_rows(first)[0]])
    backend.insert(spec, [moment_rows(second)[0]])
    (row,) = backend.read_table(spec, final=True)
    assert row[spec.positions["late"]] == 0
    assert row[spec.positions["episode_id"]] == scored.episode_id


def _older(spec: TableSpec, drop_last: int, name: str) -> TableSpec:
    """``spec`` as an earlier version created it: without its last columns."""
    fields = list(spec.model.model_fields.items())[:-drop_last]
    model = create_model(  # type: ignore[call-overload]
        f"Older{spec.model.__name__}",
        __base__=_Row,
        **{n: (Annotated[(f.annotation, *f.metadata)], ...) for n, f in fields},
    )
    return dataclasses.replace(spec, name=name, model=model, version=None)


def test_a_table_from_an_older_version_gets_the_new_columns(real_backend: Backend) -> None:
    """The moments table as it was before ``scored`` (its version column) and ``topics``
    were added: the worker adds the columns at start, and the old rows read their
    defaults."""
    name = f"moments_{uuid.uuid4().hex[:8]}"
    old = _older(MOMENTS, 2, name)
    real_backend.ensure_schema([old])
    event = TouchpointEvent.model_validate(
        {
            "event_id": str(uuid.uuid4()),
            "occurred_at": "2026-11-20T09:30:00+00:00",
            "customer_id": "C-upgrade",
            "channel": "web",
            "touchpoint": "web.login",
            "journey_stage": "post_purchase",
            "outcome": "success",
        }
    )
    _, moment = apply_event(None, event, load_model(), datetime(2026, 11, 21, tzinfo=UTC))
    assert moment is not None
    row = moment_rows(moment)[0]
    real_backend.insert(old, [row[:-2]])

    new = dataclasses.replace(MOMENTS, name=name)
    real_backend.ensure_schema([new])
    real_backend.ensure_schema([new])  # a second start changes nothing
    _, described = real_backend.query(f"DESCRIBE TABLE {name}")
    assert [r[0] for r in described] == list(MOMENTS.column_names)
    real_backend.insert(new, [row])  # the new worker's rows fit
    _, rows = real_backend.query(f"SELECT scored, topics FROM {name} ORDER BY scored")
    assert [tuple(r) for r in rows] == [(0, []), (1, [])]  # the old row reads the defaults


def test_a_stale_view_is_replaced_and_a_foreign_table_refused(real_backend: Backend) -> None:
    suffix = uuid.uuid4().hex[:8]
    view = ViewSpec(
        name=f"v_{suffix}",
        select="SELECT 1 AS a",
        doc="test view",
        columns=(("a", "one"),),
    )
    real_backend.ensure_schema([view])
    newer = dataclasses.replace(
        view, select="SELECT 1 AS a, 2 AS b", columns=(("a", "one"), ("b", "two"))
    )
    real_backend.ensure_schema([newer])
    _, rows = real_backend.query(f"SELECT a, b FROM v_{suffix}")
    assert [tuple(r) for r in rows] == [(1, 2)]

    foreign = _older(MOMENTS, 1, f"m_{suffix}")
    real_backend.ensure_schema([dataclasses.replace(TOUCHPOINT_EVENTS, name=f"m_{suffix}")])
    with pytest.raises(SinkConfigError, match=rf"table \S+\.m_{suffix} has columns .* rename it"):
        real_backend.ensure_schema([foreign])


def test_views_round_float32_columns(real_backend: Backend) -> None:
    """Float32 columns read as Float64 carry noise (-3.17 as -3.1700000762939453): the
    views BI reads show them to 4 decimals (all a Float32 below 1000 holds)."""
    event = TouchpointEvent.model_validate(
        {
            "event_id": str(uuid.uuid4()),
            "occurred_at": "2026-11-20T09:30:00+00:00",
            "customer_id": "C-float32",
            "channel": "web",
            "touchpoint": "web.login",
            "journey_stage": "post_purchase",
            "outcome": "success",
        }
    )
    _, moment = apply_event(None, event, load_model(), datetime(2026, 11, 21, tzinfo=UTC))
    assert moment is not None
    row = list(moment_rows(moment)[0])
    touchpoint = f"t.float32_{uuid.uuid4().hex[:8]}"
    row[MOMENTS.positions["touchpoint"]] = touchpoint
    row[MOMENTS.positions["valence"]] = -3.17
    real_backend.insert(MOMENTS, [tuple(row)])
    _, raw = real_backend.query(
        f"SELECT toFloat64(valence) FROM moments FINAL WHERE touchpoint = '{touchpoint}'"
    )
    assert raw[0][0] != -3.17  # the noise the views take away
    _, rows = real_backend.query(
        f"SELECT mean_valence, worst_valence FROM emotion_map WHERE touchpoint = '{touchpoint}'"
    )
    assert [tuple(r) for r in rows] == [(-3.17, -3.17)]  # to 4 decimals


def test_a_second_start_leaves_the_views_alone_and_a_changed_one_is_replaced(
    real_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """ClickHouse stores a view's query reformatted; a start with the same specs must not
    take that for a change (it would drop and create every view on every start), and a
    view whose query changed but not its columns is replaced."""
    with caplog.at_level("WARNING", logger="cxpulse.sinks.ddl"):
        real_backend.ensure_schema(SPECS)
    assert not [r.getMessage() for r in caplog.records if "upgrading the schema" in r.getMessage()]

    name = f"v_{uuid.uuid4().hex[:8]}"
    view = ViewSpec(name=name, select="SELECT 1 AS a", doc="test view", columns=(("a", "one"),))
    real_backend.ensure_schema([view])
    real_backend.ensure_schema([dataclasses.replace(view, select="SELECT 2 AS a")])
    _, rows = real_backend.query(f"SELECT a FROM {name}")
    assert [tuple(r) for r in rows] == [(2,)]
