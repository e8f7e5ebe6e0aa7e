"""Cases end to end on a real worker (tansu broker, chDB): alerts on cx.alerts open and
update cases, an overdue case escalates once (a case_overdue alert), people acknowledge
and resolve over HTTP and with the CLI, bad requests get one line, and a restarted
worker holds the same cases without escalating again.

Nothing is timed: waits have generous limits that only catch a hang.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from cxpulse.schemas.alerts import Alert, alert_id
from cxpulse.streams.dev.broker import EmbeddedBroker
from cxpulse.streams.dev.demo import WorkerProcess, scrape
from cxpulse.streams.query import run_query
from cxpulse.streams.settings import Settings
from cxpulse.streams.topics import alerts
from tests.integration.workers import worker_settings

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

PATIENCE = 120.0
TOKEN = "cases-test-token-0123456789"


def wait_for(what: str, check: Callable[[], Any], worker: WorkerProcess) -> Any:
    deadline = time.monotonic() + PATIENCE
    while True:
        value = check()
        if value:
            return value
        assert worker.alive(), f"worker died:\n{worker.log_tail(40)}"
        assert time.monotonic() < deadline, f"{what}: not within {PATIENCE}s\n{worker.log_tail(40)}"
        time.sleep(0.25)


def call(
    port: int, method: str, path: str, body: Any = None, token: str | None = TOKEN
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


def make_alert(customer: str, tier: str, severity: str, triggered: datetime, n: int = 1) -> Alert:
    return Alert(
        alert_id=alert_id("customer", customer, "low_score", f"e{customer}"),
        rule="low_score",
        severity=severity,  # type: ignore[arg-type]
        subject_kind="customer",
        customer_id=customer,
        tier=tier,
        score=20.0,
        channel="web",
        touchpoint="web.login",
        triggered_at=triggered,
        updated_at=triggered,
        emitted_at=datetime.now(UTC),
        open_until=triggered + timedelta(hours=6),
        event_ids=[uuid.uuid5(uuid.NAMESPACE_URL, f"{customer}/{i}") for i in range(n)],
        count=n,
        magnitude=15.0,
        explanation=f"score fell to 20 for {customer}",
        recommended_action="call back today",
    )


def send(settings: Settings, *items: Alert) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    for alert in items:
        producer.send(alerts(settings), key=alert.subject.encode(), value=alert.to_json_bytes())
    producer.flush()
    producer.close()


def cases_by_customer(port: int) -> dict[str, dict[str, Any]]:
    status, body = call(port, "GET", "/api/cases?limit=1000")
    return {c["customer_id"]: c for c in body.get("cases", [])} if status == 200 else {}


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, CXPULSE_API_TOKEN=TOKEN, CXPULSE_WEB_PORT=str(settings.web_port))
    return subprocess.run(
        [sys.executable, "-m", "cxpulse.streams.cli", "cases", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cases_open_escalate_once_are_acted_on_and_survive_a_restart(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = worker_settings(kafka_broker.url, tmp_path)
    env = {"CXPULSE_API_TOKEN": TOKEN, "CXPULSE_CASES_CHECK_SECONDS": "0.5"}
    port = settings.web_port
    now = datetime.now(UTC)
    late = make_alert("C-late", "A", "warning", now - timedelta(hours=5))  # due 4 h after
    fresh = make_alert("C-fresh", "B", "warning", now)
    send(settings, late, fresh)

    worker = WorkerProcess(settings, tmp_path / "worker.log", extra_env=env)
    worker.start()
    try:
        # -- no token, a wrong token: 401 naming what to send
        wait_for("the API", lambda: call(port, "GET", "/api/cases", token=None)[0] == 401, worker)
        status, body = call(port, "GET", "/api/cases", token="wrong-token-wrong-token")
        assert status == 401 and "CXPULSE_API_TOKEN" in body["error"]

        # -- both alerts open a case; the late one escalates (warning → critical), once
        cases = wait_for(
            "two cases, the late one escalated",
            lambda: (
                (c := cases_by_customer(port))
                and sorted(c) == ["C-fresh", "C-late"]
                and c["C-late"]["escalated"]
                and c
            ),
            worker,
        )
        late_case, fresh_case = cases["C-late"], cases["C-fresh"]
        assert late_case["severity"] == "critical" and late_case["owner"] == "private-banking"
        assert late_case["status"] == "open" and late_case["version"] == 2
        assert fresh_case["severity"] == "warning" and not fresh_case["escalated"]
        assert fresh_case["owner"] == "digital-care" and fresh_case["status"] == "open"
        assert fresh_case["due_at"] > fresh_case["opened_at"]
        status, body = call(port, "GET", "/api/cases")
        assert [c["customer_id"] for c in body["cases"]] == ["C-late", "C-fresh"]  # critical first
        overdue = ("cxpulse_alerts_total", (("rule", "case_overdue"), ("severity", "critical")))
        wait_for("the case_overdue alert counted", lambda: scrape(port).get(overdue) == 1, worker)

        # -- a repeat of the alert with more events updates the case, no new one
        send(settings, make_alert("C-fresh", "B", "warning", now, n=3))
        wait_for(
            "the update",
            lambda: len(cases_by_customer(port).get("C-fresh", {}).get("event_ids", [])) == 3,
            worker,
        )
        fid = fresh_case["case_id"]

        # -- bad input: one line each
        assert call(port, "POST", f"/api/cases/{uuid.uuid4()}/ack", {"by": "x"})[0] == 404
        assert call(port, "POST", "/api/cases/not-a-uuid/ack", {"by": "x"})[0] == 400
        assert call(port, "POST", f"/api/cases/{fid}/ack", {})[0] == 400
        status, body = call(port, "POST", f"/api/cases/{fid}/resolve", {"by": "x", "outcome": "?"})
        assert status == 400 and "recovered" in body["error"]

        # -- ack, then resolve over HTTP; the second resolve is refused
        status, body = call(port, "POST", f"/api/cases/{fid}/ack", {"by": "alice"})
        assert status == 200, body
        assert (
            body["case"]["status"] == "acknowledged" and body["case"]["acknowledged_by"] == "alice"
        )
        assert call(port, "POST", f"/api/cases/{fid}/ack", {"by": "alice"})[0] == 409
        status, body = call(
            port, "POST", f"/api/cases/{fid}/resolve", {"by": "bob", "outcome": "no_action"}
        )
        assert status == 200 and body["case"]["status"] == "resolved", body
        assert body["case"]["outcome"] == "no_action" and body["case"]["resolved_by"] == "bob"
        status, body = call(
            port, "POST", f"/api/cases/{fid}/resolve", {"by": "b", "outcome": "no_action"}
        )
        assert status == 409 and "resolved" in body["error"]
        status, body = call(port, "GET", f"/api/cases/{fid}")
        assert [h["change"] for h in body["history"]] == [
            "opened",
            "updated",
            "acknowledged",
            "resolved",
        ]

        # -- the CLI: the same, one line and exit 2 on a refusal
        lid = late_case["case_id"]
        listed = cli(settings, "list", "--status", "open", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [json.loads(line)["case_id"] for line in listed.stdout.splitlines()] == [lid]
        acked = cli(settings, "ack", lid, "--by", "carol")
        assert acked.returncode == 0 and "acknowledged" in acked.stdout, acked.stderr
        shown = cli(settings, "show", lid)
        assert shown.returncode == 0 and "escalated" in shown.stdout, shown.stderr
        bad = cli(settings, "resolve", fid, "--outcome", "recovered", "--by", "carol")
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert "already resolved" in bad.stderr and "Traceback" not in bad.stderr
        unknown = cli(settings, "show", str(uuid.uuid4()))
        assert unknown.returncode == 2 and "no case" in unknown.stderr

        before = cases_by_customer(port)
        wait_for(
            "the rows in ClickHouse",
            lambda: (
                scrape(port).get(("cxpulse_sink_rows_total", (("table", "case_history"),)), 0) >= 7
            ),
            worker,
        )
    finally:
        worker.stop()

    # -- a restart: the same cases, no second escalation
    worker = WorkerProcess(settings, tmp_path / "worker2.log", extra_env=env)
    worker.start()
    try:
        # The worker's view of the cases is rebuilt from cx.cases, partition by partition:
        # until it has read them all it answers 503 "loading", so its first list already
        # holds every case from before the restart.
        loading: list[str] = []

        def first_list() -> dict[str, Any] | None:
            status, body = call(port, "GET", "/api/cases?limit=1000")
            if status == 503:
                assert body["loading"] is True, body
                loading.append(body["error"])
            return body if status == 200 else None

        first = wait_for("the first list after the restart", first_list, worker)
        assert {"C-late", "C-fresh"} <= {c["customer_id"] for c in first["cases"]}, first
        assert all("ask again" in error for error in loading)
        send(settings, make_alert("C-after", "C", "info", datetime.now(UTC)))
        after = wait_for(
            "the cases after the restart",
            lambda: (
                (c := cases_by_customer(port)) and {"C-after", "C-late", "C-fresh"} <= set(c) and c
            ),
            worker,
        )
        # the timer has looked at C-late many times by now (every 0.5 s since the start)
        wait_for(
            "a few deadline checks",
            lambda: scrape(port).get(("cxpulse_cases_open", (("status", "open"),))) is not None,
            worker,
        )
        for customer in ("C-late", "C-fresh"):
            assert after[customer] == before[customer]
        assert scrape(port).get(
            ("cxpulse_alerts_total", (("rule", "case_overdue"), ("severity", "critical")))
        ) in (None, 0.0)
    finally:
        worker.stop()

    rows = run_query(
        settings,
        "SELECT change, count() FROM case_history FINAL GROUP BY change ORDER BY change",
    )[1]
    assert dict((r[0], r[1]) for r in rows) == {
        "acknowledged": 2,
        "escalated": 1,
        "opened": 3,
        "resolved": 1,
        "updated": 1,
    }
    rows = run_query(settings, "SELECT count(), sum(escalated) FROM cases FINAL")[1]
    assert list(rows[0]) == [3, 1]


def failures(customer: str, start: datetime) -> list[dict[str, Any]]:
    """Three failed web logins in three minutes: a repeated_failure alert for tier A."""
    return [
        {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{customer}/fail/{i}")),
            "occurred_at": (start + timedelta(minutes=i)).isoformat(),
            "customer_id": customer,
            "channel": "web",
            "touchpoint": "web.login",
            "touchpoint_instance": "/login",
            "journey_stage": "pre_purchase",
            "outcome": "failure",
            "tier": "A",
        }
        for i in range(3)
    ]


def test_a_recovered_case_enters_the_journey_and_lifts_the_score_and_streams_changes(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    from cxpulse.streams.publisher import Publisher

    settings = worker_settings(kafka_broker.url, tmp_path)
    port = settings.web_port
    start = datetime.now(UTC) - timedelta(minutes=20)
    with Publisher(settings) as publisher:
        publisher.publish_many(failures("C-helped", start) + failures("C-left", start))
    worker = WorkerProcess(
        settings, tmp_path / "worker.log", extra_env={"CXPULSE_API_TOKEN": TOKEN}
    )
    worker.start()
    try:
        cases = wait_for(
            "both customers' cases",
            lambda: (c := cases_by_customer(port)) and {"C-helped", "C-left"} <= c.keys() and c,
            worker,
        )
        helped = cases["C-helped"]

        def score(customer: str) -> float | None:
            try:
                rows = run_query(
                    settings,
                    f"SELECT score FROM customer_scores FINAL WHERE customer_id = '{customer}'",
                )[1]
            except (Exception, SystemExit):  # the worker's chDB not answering yet
                return None
            return float(rows[0][0]) if rows else None

        def both() -> tuple[float, float] | None:
            helped_score, left_score = score("C-helped"), score("C-left")
            if helped_score is None or left_score is None:
                return None
            return helped_score, left_score

        before = wait_for("the scores", both, worker)
        assert before[0] == before[1]

        # -- the change stream: opened with the token in the query, then the resolve
        stream = urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/cases/events?token={TOKEN}", timeout=60
        )
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.readline().startswith(b":")
        status, body = call(
            port,
            "POST",
            f"/api/cases/{helped['case_id']}/resolve",
            {"by": "dana", "outcome": "recovered", "note": "called, reset the password"},
        )
        assert status == 200 and body["case"]["outcome"] == "recovered", body
        lines: list[bytes] = []
        while len(lines) < 2:  # the first event's two lines; blank and comment lines skipped
            line = stream.readline().rstrip(b"\n")
            if line and not line.startswith(b":"):
                lines.append(line)
        stream.close()
        assert lines[0] == b"event: case"
        streamed = json.loads(lines[1].removeprefix(b"data: "))
        assert streamed["case_id"] == helped["case_id"] and streamed["status"] == "resolved"

        # -- the recovery moment is scored like any event: the helped customer ends higher
        wait_for(
            "the recovery moment scored",
            lambda: (
                run_query(
                    settings,
                    "SELECT count() FROM moments FINAL "
                    "WHERE touchpoint = 'call_center.service_recovery'",
                )[1][0][0]
                == 1
            ),
            worker,
        )
        after = wait_for(
            "the helped customer's new score",
            lambda: (s := score("C-helped")) is not None and s != before[0] and s,
            worker,
        )
        assert after > before[0] and score("C-left") == before[1], (after, before)
    finally:
        worker.stop()
    assert TOKEN not in worker.log_path.read_text()  # not even from ?token=


def test_a_worker_killed_mid_way_leaves_each_case_once_in_its_latest_version(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    settings = worker_settings(kafka_broker.url, tmp_path)
    env = {"CXPULSE_API_TOKEN": TOKEN}
    port = settings.web_port
    now = datetime.now(UTC)
    customers = [f"C-{i:04d}" for i in range(150)]
    # each customer: an alert, then its repeat with two more events (an update); the
    # first ten before the worker starts, the rest while it runs, killed right after
    send(settings, *(make_alert(c, "B", "warning", now) for c in customers[:10]))

    worker = WorkerProcess(settings, tmp_path / "worker.log", extra_env=env)
    worker.start()
    try:
        wait_for("the first cases", lambda: len(cases_by_customer(port)) >= 10, worker)
        send(settings, *(make_alert(c, "B", "warning", now) for c in customers[10:]))
        send(settings, *(make_alert(c, "B", "warning", now, n=3) for c in customers))
        changes = scrape(port)
        assert worker.proc is not None
        worker.proc.kill()  # no goodbye: no flush, no commit
        worker.proc.wait(timeout=30)
        done = sum(v for (n, _), v in changes.items() if n == "cxpulse_case_changes_total")
        print(f"killed after {done:.0f} of {2 * len(customers)} case changes")
    finally:
        worker.stop()

    worker = WorkerProcess(settings, tmp_path / "worker2.log", extra_env=env)
    worker.start()
    try:
        cases = wait_for(
            "every case updated",
            lambda: (
                (c := cases_by_customer(port))
                and len(c) == len(customers)
                and all(len(x["event_ids"]) == 3 for x in c.values())
                and c
            ),
            worker,
        )
        assert {x["version"] for x in cases.values()} == {2}
        assert {x["status"] for x in cases.values()} == {"open"}
        wait_for(
            "every change in ClickHouse",
            lambda: (
                run_query(settings, "SELECT count() FROM case_history FINAL")[1][0][0]
                == 2 * len(customers)
            ),
            worker,
        )
    finally:
        worker.stop()
    rows = run_query(
        settings, "SELECT count(), uniqExact(case_id), min(version), max(version) FROM cases FINAL"
    )[1]
    assert list(rows[0]) == [len(customers), len(customers), 2, 2]
    rows = run_query(
        settings,
        "SELECT change, count() FROM case_history FINAL GROUP BY change ORDER BY change",
    )[1]
    assert [tuple(r) for r in rows] == [("opened", len(customers)), ("updated", len(customers))]


def test_a_long_closed_case_leaves_the_workers_but_not_clickhouse(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    import yaml

    from cxpulse.streams.model_check import DEFAULT_MODEL_PATH

    model = yaml.safe_load(Path(DEFAULT_MODEL_PATH).read_text())
    model["cases"]["forget_after_days"] = 1 / 86400  # a second after it closed
    model_path = tmp_path / "model.yaml"
    model_path.write_text(yaml.safe_dump(model))
    settings = worker_settings(kafka_broker.url, tmp_path)
    env = {
        "CXPULSE_API_TOKEN": TOKEN,
        "CXPULSE_CASES_CHECK_SECONDS": "0.5",
        "CXPULSE_MODEL_PATH": str(model_path),
    }
    port = settings.web_port
    send(settings, make_alert("C-done", "C", "info", datetime.now(UTC)))
    send(settings, make_alert("C-open", "C", "info", datetime.now(UTC)))
    worker = WorkerProcess(settings, tmp_path / "worker.log", extra_env=env)
    worker.start()
    try:
        cases = wait_for("the cases", lambda: len(c := cases_by_customer(port)) == 2 and c, worker)
        done = cases["C-done"]["case_id"]
        status, body = call(
            port, "POST", f"/api/cases/{done}/resolve", {"by": "erin", "outcome": "unreachable"}
        )
        assert status == 200, body
        wait_for(
            "the resolved case forgotten", lambda: "C-done" not in cases_by_customer(port), worker
        )
        assert call(port, "GET", f"/api/cases/{done}")[0] == 404
        assert "C-open" in cases_by_customer(port)  # open cases stay, however old
    finally:
        worker.stop()
    # a restart reads the compacted cx.cases: the tombstone keeps it forgotten
    worker = WorkerProcess(settings, tmp_path / "worker2.log", extra_env=env)
    worker.start()
    try:
        wait_for("the open case", lambda: "C-open" in cases_by_customer(port), worker)
        assert "C-done" not in cases_by_customer(port)
    finally:
        worker.stop()
    rows = run_query(settings, "SELECT customer_id, status FROM cases FINAL ORDER BY customer_id")[
        1
    ]
    assert [tuple(r) for r in rows] == [("C-done", "resolved"), ("C-open", "open")]


def test_a_model_with_cases_switched_off_opens_none_and_says_so(
    kafka_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """``cases.enabled: false``: the alerts still reach the alerts table, no case is
    opened, and the API and the CLI say in one line that cases are off."""
    import yaml

    from cxpulse.streams.cases.api import SWITCHED_OFF
    from cxpulse.streams.model_check import DEFAULT_MODEL_PATH

    model = yaml.safe_load(Path(DEFAULT_MODEL_PATH).read_text())
    model["cases"]["enabled"] = False
    model_path = tmp_path / "model.yaml"
    model_path.write_text(yaml.safe_dump(model))
    settings = worker_settings(kafka_broker.url, tmp_path)
    env = {"CXPULSE_API_TOKEN": TOKEN, "CXPULSE_MODEL_PATH": str(model_path)}
    port = settings.web_port
    send(settings, make_alert("C-off", "A", "warning", datetime.now(UTC)))
    worker = WorkerProcess(settings, tmp_path / "worker.log", extra_env=env)
    worker.start()
    alert_rows = ("cxpulse_sink_rows_total", (("table", "alerts"),))
    try:
        wait_for("the alert's row", lambda: scrape(port).get(alert_rows) == 1, worker)
        assert call(port, "GET", "/api/cases", token=None)[0] == 401  # the token first
        for method, path, body in [
            ("GET", "/api/cases", None),
            ("GET", "/api/cases/C-0001", None),
            ("GET", "/api/cases/events", None),
            ("POST", "/api/cases/C-0001/ack", {"by": "erin"}),
        ]:
            assert call(port, method, path, body) == (404, {"error": SWITCHED_OFF}), path
        listed = cli(settings, "list")
        assert listed.returncode == 2
        assert listed.stderr.strip().splitlines() == [f"Error: {SWITCHED_OFF} (HTTP 404)"]
        metrics = scrape(port)
        assert not [k for k in metrics if k[0].startswith("cxpulse_case_changes")]
    finally:
        worker.stop()
    tables = "SELECT (SELECT count() FROM cases), (SELECT count() FROM alerts FINAL)"
    assert [tuple(r) for r in run_query(settings, tables)[1]] == [(0, 1)]
