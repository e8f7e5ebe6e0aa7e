"""The ``alerts`` table and its views: DDL for both dialects, rows, and a round trip on
chDB and on the ClickHouse server (Debian's 18.16 in CI).

The server part follows the rule of the sink contract tests: skipped when
``CXPULSE_TEST_CLICKHOUSE_URL`` is unset, a one-line failure when ``CI`` is set. It uses its
own database (the configured one with ``_alerts`` appended), dropped first.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from cxpulse.schemas.alert_rows import ALERT_SPECS, ALERTS, AlertRow, alert_row
from cxpulse.schemas.alerts import Alert
from cxpulse.schemas.events import TouchpointEvent
from cxpulse.sinks.base import Backend, final_rows
from cxpulse.sinks.ddl import LEGACY, MODERN, create_table_sql, schema_statements
from cxpulse.streams.core import apply_events
from cxpulse.streams.model_check import load_model
from cxpulse.streams.rules.customer import customer_alerts
from cxpulse.streams.rules.touchpoint_degraded import apply_health

M = load_model(None)
# Recent event times, so the alerts are still open (open_until > now()) for the view.
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
EMIT = T0 + timedelta(minutes=59, seconds=1, microseconds=234567)


def ev(minutes: float, outcome: str = "failure", **kw: Any) -> TouchpointEvent:
    raw: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        "customer_id": "C-7",
        "channel": "atm",
        "touchpoint": "atm.withdrawal",
        "touchpoint_instance": "ATM-0042",
        "journey_stage": "post_purchase",
        "outcome": outcome,
        "tier": "A",
    }
    raw.update(kw)
    return TouchpointEvent.model_validate(raw)


def real_alerts() -> list[Alert]:
    """Every version emitted by a customer journey and an ATM incident, in order. The
    customer's withdrawal an hour earlier went fine: the failures are a second episode, so
    low_score has the evidence it waits for."""
    out: list[Alert] = []
    state = None
    journey = [ev(-60, "success"), ev(0), ev(4), ev(9)]
    for e in [*journey, ev(12, feedback={"nps": 1, "text": "它吞了我的卡"})]:
        after, moments = apply_events(state, [e], M, EMIT)
        state, alerts = customer_alerts(state, after, [e], moments, M, EMIT)
        out += alerts
    incident = [
        ev(i * 0.5, "failure" if i % 2 else "success", customer_id=f"X{i}") for i in range(40)
    ]
    _, alerts, _ = apply_health(None, incident, M, EMIT)
    return out + alerts


def as_stored(backend: Backend, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """What a backend returns: latest version per alert_id, key order, Float32 and (on
    18.16) whole-second times."""
    caps = getattr(backend, "capabilities", None)
    out = []
    for row in final_rows(ALERTS, rows):
        values = list(row)
        for name in ("score", "magnitude"):
            i = ALERTS.positions[name]
            values[i] = None if values[i] is None else pytest.approx(values[i], rel=1e-6)
        if caps is not None and not caps.datetime64:
            values = [v.replace(microsecond=0) if isinstance(v, datetime) else v for v in values]
        out.append(tuple(values))
    return out


def test_rows_match_the_declared_model() -> None:
    alerts = real_alerts()
    assert {a.rule for a in alerts} == {
        "low_score",
        "repeated_failure",
        "detractor",
        "touchpoint_degraded",
    }
    for a in alerts:
        row = alert_row(a)
        AlertRow.model_validate(dict(zip(ALERTS.column_names, row, strict=True)))
        assert ALERTS.key_of(row) == (a.alert_id,) and ALERTS.version_of(row) == a.count
    instance = next(a for a in alerts if a.rule == "touchpoint_degraded")
    row = dict(zip(ALERTS.column_names, alert_row(instance), strict=True))
    assert row["customer_id"] == "" and row["tier"] == "" and row["score"] is None
    assert row["emitted_at"] == EMIT.replace(microsecond=234000)


def test_ddl_for_current_and_18_16() -> None:
    modern = create_table_sql(ALERTS, MODERN, "cx")
    legacy = create_table_sql(ALERTS, LEGACY, "cx")
    assert "ENGINE = ReplacingMergeTree(`count`)" in modern and "ORDER BY (`alert_id`)" in modern
    assert "`event_ids` Array(String)" in legacy
    assert "`triggered_at` DateTime64(3, 'UTC')" in modern
    assert "`triggered_at` DateTime('UTC')" in legacy
    assert "LowCardinality" in modern and "LowCardinality" not in legacy
    statements = schema_statements(ALERT_SPECS, LEGACY, "cx")
    assert statements[-2].startswith("CREATE VIEW IF NOT EXISTS `cx`.`open_alerts` AS SELECT")
    assert "FROM `cx`.alerts FINAL" in statements[-1]


# -- on real ClickHouse -----------------------------------------------------------------


@pytest.fixture(scope="module")
def chdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    from cxpulse.sinks.embedded import ChdbBackend

    directory: Path = tmp_path_factory.mktemp("chdb-alerts")
    backend = ChdbBackend(f"chdb://{directory}?database=cxpulse_alerts")
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture(scope="module")
def server() -> Iterator[Backend]:
    from cxpulse.sinks.clickhouse import open_backend
    from cxpulse.sinks.native import NativeBackend
    from tests.integration.conftest import clickhouse_server_url

    parts = urlsplit(clickhouse_server_url())
    url = urlunsplit(parts._replace(path=f"{parts.path.rstrip('/') or '/cxpulse'}_alerts"))
    backend = open_backend(url)
    assert isinstance(backend, NativeBackend)
    backend._run(f"DROP DATABASE IF EXISTS `{backend.database}`")
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture(params=["chdb", "server"])
def backend(request: pytest.FixtureRequest) -> Backend:
    value: Backend = request.getfixturevalue(request.param)
    return value


@pytest.mark.clickhouse
def test_round_trip_keeps_the_latest_version_and_the_views_read_it(backend: Backend) -> None:
    backend.ensure_schema(ALERT_SPECS)
    backend.ensure_schema(ALERT_SPECS)  # idempotent
    alerts = real_alerts()
    rows = [alert_row(a) for a in alerts]
    backend.insert(ALERTS, rows)
    backend.insert(ALERTS, rows[:3])  # a replay: the same versions again
    got = backend.read_table(ALERTS)
    assert got == as_stored(backend, rows)
    latest = {a.alert_id: a for a in alerts}
    assert len(got) == len(latest)
    event_ids = ALERTS.positions["event_ids"]
    assert {r[0]: list(r[event_ids]) for r in got} == {
        k: [str(e) for e in a.event_ids] for k, a in latest.items()
    }

    names, open_rows = backend.query(
        "SELECT alert_id, rule, severity, count FROM open_alerts ORDER BY rule"
    )
    assert names == ["alert_id", "rule", "severity", "count"]
    assert sorted((str(r[0]), r[1], r[2], r[3]) for r in open_rows) == sorted(
        (str(a.alert_id), a.rule, a.severity, a.count) for a in latest.values()
    )

    names, volume = backend.query(
        "SELECT rule, severity, channel, alerts, hits, customers, instances FROM alert_volume"
    )
    assert names == ["rule", "severity", "channel", "alerts", "hits", "customers", "instances"]
    by_rule = {r[0]: r[3:] for r in volume}
    failures = next(a for a in latest.values() if a.rule == "repeated_failure")
    assert by_rule["repeated_failure"] == (1, failures.count, 1, 0)
    assert by_rule["touchpoint_degraded"][0] == 1 and by_rule["touchpoint_degraded"][3] == 1
