"""Every SQL block of docs/bi-guide.md runs against real data, on chDB and on the server.

The data is real: the bundled broker, a real worker process, and a simulated run with
incidents, once per backend for the whole module, the same at any time of day (a fixed
local clock: ``working_day_start(whole_hour=True)``). The guide is the one source of truth
for the SQL: its numbered questions are extracted here, and each has a check of what its
answer must mean (never hard-coded numbers; the expectations come from the raw tables).
"""

from __future__ import annotations

import math
import re
import struct
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cxpulse.streams.dev.demo import WorkerProcess, drained, scrape
from cxpulse.streams.dev.simulate import simulate
from cxpulse.streams.dev.simulate.runner import working_day_start
from tests.integration.workers import worker_settings

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "bi-guide.md"

CHANNELS = {"web", "app", "call_center", "store", "atm"}
#: The ATM whose outage covers the last 90 minutes of the run.
OUTAGE_ATM = "ATM-0002"
HOURS = 6
INCIDENTS = (
    f"atm_outage:{OUTAGE_ATM}@+4h30m",
    "store_queues:store-001@+1h/2h",
    "web_login_spike@+2h/45m",
    "call_center_backlog@+3h/2h",
)


# --- the guide -------------------------------------------------------------------------


@dataclass
class Question:
    number: int
    title: str
    sql: list[str] = field(default_factory=list)


def guide_questions(text: str | None = None) -> list[Question]:
    """The guide's numbered questions (``### 3. Title``) with their ```sql blocks."""
    text = GUIDE.read_text() if text is None else text
    questions: list[Question] = []
    current: Question | None = None
    for block in re.finditer(r"^### (\d+)\. ([^\n]+)$|^```sql\n(.*?)^```", text, re.M | re.S):
        if block.group(1):
            current = Question(int(block.group(1)), block.group(2).strip())
            questions.append(current)
        elif current is not None:
            current.sql.append(block.group(3).strip())
    return questions


def all_sql_blocks() -> list[str]:
    return [
        m.group(1).strip()
        for m in re.finditer(r"^```sql\n(.*?)^```", GUIDE.read_text(), re.M | re.S)
    ]


# --- real data --------------------------------------------------------------------------


@dataclass
class Data:
    kind: str
    url: str
    sent: int
    start: datetime
    backend: Any

    def rows(self, sql: str) -> list[dict[str, Any]]:
        columns, rows = self.backend.query(sql)
        return [dict(zip(columns, r, strict=True)) for r in rows]

    def scalar(self, sql: str) -> Any:
        _, rows = self.backend.query(sql)
        return rows[0][0]


@pytest.fixture(scope="module", params=["chdb", "server"])
def data(
    request: pytest.FixtureRequest, kafka_broker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Data]:
    from cxpulse.sinks.clickhouse import open_backend

    tmp = tmp_path_factory.mktemp(f"bi-{request.param}")
    settings = worker_settings(kafka_broker.url, tmp, backend=request.param, partitions=4)
    url = settings.clickhouse_url
    worker = WorkerProcess(settings, tmp / "worker.log")
    worker.start()
    try:
        # 08:00 on a whole UTC hour: the same events, shifted by whole hours, at any time
        # of day. A start at the minute the test ran made other data at each run, so
        # whether q3 found tier A customers below 35 and falling depended on the clock.
        start = working_day_start(timedelta(hours=HOURS), whole_hour=True)
        summary = simulate(
            settings,
            customers=4000,
            duration=timedelta(hours=HOURS),
            seed=11,
            start=start,
            incidents=INCIDENTS,
            atms=3,
            stores=3,
            progress=False,
        )
        assert summary.sent == summary.events > 1000, summary
        expected = {"touchpoint_events": summary.sent, "moments": summary.sent}
        deadline = time.monotonic() + 90
        while True:
            assert worker.alive(), f"worker died:\n{worker.log_tail(40)}"
            metrics = scrape(settings.web_port)
            if metrics and drained(metrics, expected):
                break
            assert time.monotonic() < deadline, f"not drained in 90 s\n{worker.log_tail(40)}"
            time.sleep(0.25)
    finally:
        worker.stop()
    backend = open_backend(url)
    try:
        yield Data(request.param, url, summary.sent, start, backend)
    finally:
        if request.param == "server":
            from cxpulse.sinks.native import NativeBackend

            assert isinstance(backend, NativeBackend)
            backend._run(f"DROP DATABASE IF EXISTS `{backend.database}`")
        backend.close()


# --- what each answer must mean ---------------------------------------------------------


def close(a: Any, b: Any, tol: float = 0.051) -> bool:
    return abs(float(a) - float(b)) <= tol


def pairs(value: list[Any]) -> list[tuple[Any, ...]]:
    """Tuples as Python tuples (chDB's Arrow path returns them as {'1': .., '2': ..})."""
    return [tuple(v.values()) if isinstance(v, dict) else tuple(v) for v in value]


def q1_emotion_map(d: Data, sql: list[str]) -> None:
    rows = d.rows(sql[0])
    assert {r["channel"] for r in rows} == CHANNELS
    raw = {
        (r["journey_stage"], r["channel"]): r
        for r in d.rows(
            "SELECT journey_stage, channel, count() AS n, avg(valence) AS v, "
            "groupUniqArray(touchpoint) AS tps FROM moments FINAL WHERE late = 0 "
            "GROUP BY journey_stage, channel"
        )
    }
    assert {(r["journey_stage"], r["channel"]) for r in rows} == set(raw)
    stages = ["pre_purchase", "purchase", "post_purchase"]
    keys = [(stages.index(r["journey_stage"]), r["avg_valence"]) for r in rows]
    assert keys == sorted(keys)
    for r in rows:
        cell = raw[(r["journey_stage"], r["channel"])]
        # Float32 columns: 0.66 comes back as 0.6600000262 on servers without Float64 round
        assert -10 <= r["lowest_valence"] <= r["avg_valence"] + 1e-6 <= 10 + 1e-6, r
        assert r["total_moments"] == cell["n"] and close(r["avg_valence"], cell["v"], 0.006), r
        assert 0 <= r["share_negative"] <= 1 and r["worst_touchpoint"] in cell["tps"], r
    assert sum(r["total_moments"] for r in rows) == d.scalar(
        "SELECT count() FROM moments FINAL WHERE late = 0"
    )


def q2_key_experiences(d: Data, sql: list[str]) -> None:
    rows = d.rows(sql[0])
    raw = {
        (r["factor"], r["segment"], r["tier"]): r
        for r in d.rows(
            "SELECT factor, segment, tier, count() AS n, avg(impact) AS i, "
            "countIf(impact <= -15) AS neg, countIf(impact >= 15) AS pos "
            "FROM moment_factors FINAL GROUP BY factor, segment, tier"
        )
    }
    eligible = sorted(r["i"] for r in raw.values() if r["n"] >= 20)
    assert len(rows) == min(20, len(eligible)) > 0
    assert [r["mean_impact"] for r in rows] == sorted(r["mean_impact"] for r in rows)
    assert close(rows[0]["mean_impact"], eligible[0], 0.006)
    for r in rows:
        expected = raw[(r["factor"], r["segment"], r["tier"])]
        assert r["moments"] == expected["n"] >= 20, r
        assert (r["key_negative"], r["key_positive"]) == (expected["neg"], expected["pos"]), r
        assert close(r["key_negative_share"], r["key_negative"] / r["moments"], 0.0006), r


def q3_churn_risk(d: Data, sql: list[str]) -> None:
    import json

    rows = d.rows(sql[0])
    scores = {
        r["customer_id"]: r
        for r in d.rows("SELECT customer_id, tier, score FROM customer_scores FINAL")
    }
    moments = d.rows(
        "SELECT customer_id, occurred_at, score_after FROM moments FINAL WHERE late = 0"
    )
    newest = max(m["occurred_at"] for m in moments)
    peak: dict[str, float] = {}
    for m in moments:
        if m["occurred_at"] >= newest - timedelta(hours=24):
            peak[m["customer_id"]] = max(peak.get(m["customer_id"], -1.0), m["score_after"])
    expected = {
        c
        for c, s in scores.items()
        if s["tier"] == "A" and s["score"] < 35 and peak.get(c, -1.0) > s["score"]
    }
    assert expected, "the run should leave some tier A customers below 35 and falling"
    assert {r["customer_id"] for r in rows} == expected
    keys = [(r["current_score"], r["customer_id"]) for r in rows]
    assert keys == sorted(keys)
    for r in rows:
        assert scores[r["customer_id"]]["tier"] == "A" and r["current_score"] < 35, r
        assert r["fell_by"] >= 0 and r["high_24h"] >= r["current_score"], r
        explanation = json.loads(r["explanation"])
        assert r["worst_touchpoint"] == explanation[0]["touchpoint"], r


def q4_failing_atms(d: Data, sql: list[str]) -> None:
    rows = d.rows(sql[0])
    events = d.rows(
        "SELECT touchpoint_instance, occurred_at, outcome, channel FROM touchpoint_events FINAL"
    )
    since = max(e["occurred_at"] for e in events) - timedelta(hours=1)
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for e in events:
        if e["channel"] == "atm" and e["occurred_at"] >= since:
            counts[e["touchpoint_instance"]][0] += 1
            counts[e["touchpoint_instance"]][1] += e["outcome"] == "failure"
    expected = {atm: tuple(n) for atm, n in counts.items() if n[0] >= 5}
    assert {r["atm"]: (r["attempts"], r["failures"]) for r in rows} == expected
    assert rows[0]["atm"] == OUTAGE_ATM, rows  # the injected outage tops the list
    # The outage fails 85 % of withdrawals and half of balance checks, but the last hour
    # holds only some 15 attempts at that ATM, and the simulated day depends on the time
    # the test runs: 7 of 15 (0.467) was seen. Far above any healthy ATM is the point.
    assert rows[0]["failure_rate"] > 0.3 and rows[0]["error_codes"], rows[0]
    assert all(r["failure_rate"] < rows[0]["failure_rate"] for r in rows[1:]), rows
    for r in rows:
        assert close(r["failure_rate"], r["failures"] / r["attempts"], 0.0006), r


def q5_score_distribution(d: Data, sql: list[str]) -> None:
    rows = d.rows(sql[0])
    columns = ", ".join(f"countIf(score_{c} IS NOT NULL) AS {c}" for c in sorted(CHANNELS))
    raw = {
        r["tier"]: r
        for r in d.rows(
            f"SELECT tier, count() AS `all`, avg(score) AS mean, {columns} "
            "FROM customer_scores FINAL GROUP BY tier"
        )
    }
    got = {(r["tier"], r["channel"]): r for r in rows}
    assert {t for t, c in got if c == "all"} == set(raw)
    for (tier, channel), r in got.items():
        assert channel in CHANNELS | {"all"}, r
        assert r["total_customers"] == raw[tier][channel] > 0, r
        histogram = pairs(r["histogram"])
        assert sum(n for _, n in histogram) == r["total_customers"], r
        assert all(b % 10 == 0 and 0 <= b <= 100 for b, _ in histogram), r
        assert 0 <= r["avg_score"] <= 100 and 0 <= r["under_40_share"] <= 1, r
    for tier, r in raw.items():
        assert close(got[(tier, "all")]["avg_score"], r["mean"]), (tier, r)


def q6_trends(d: Data, sql: list[str]) -> None:
    customer = d.scalar(
        "SELECT customer_id FROM moments FINAL WHERE late = 0 GROUP BY customer_id "
        "ORDER BY count() DESC, customer_id LIMIT 1"
    )
    assert all("'C-000042'" in s for s in sql[:2]), "the example customer changed"
    history = d.rows(sql[0].replace("'C-000042'", f"'{customer}'"))
    current = d.rows(f"SELECT score FROM customer_scores FINAL WHERE customer_id = '{customer}'")
    versions = [r["version"] for r in history]
    assert versions == sorted(set(versions)) and history, history
    assert close(history[-1]["score"], current[0]["score"]), (history, current)
    path = d.rows(sql[1].replace("'C-000042'", f"'{customer}'"))
    n = d.scalar(f"SELECT count() FROM moments FINAL WHERE customer_id = '{customer}' AND late = 0")
    assert len(path) == n >= 2 and all(-10 <= r["valence"] <= 10 for r in path), path
    assert [r["occurred_at"] for r in path] == sorted(r["occurred_at"] for r in path)

    raw = d.rows("SELECT customer_id, version, as_of, tier, score FROM score_history FINAL")
    last: dict[tuple[Any, str], dict[str, Any]] = {}
    for r in raw:
        key = (r["as_of"].date(), r["customer_id"])
        if key not in last or r["version"] > last[key]["version"]:
            last[key] = r
    per_day: dict[tuple[Any, str], list[float]] = defaultdict(list)
    for (day, _), r in last.items():
        per_day[(day, r["tier"])].append(r["score"])
    rows = d.rows(sql[2])
    assert [(r["day"], r["tier"]) for r in rows] == sorted(per_day)
    for r in rows:
        scores = per_day[(r["day"], r["tier"])]
        assert r["customers"] == len(scores) and r["below_35"] == sum(s < 35 for s in scores)
        assert close(r["mean_score"], sum(scores) / len(scores)), r


def q7_alert_volume(d: Data, sql: list[str]) -> None:
    rows = d.rows(sql[0])
    total = d.rows("SELECT count() AS n, sum(count) AS hits FROM alerts FINAL")[0]
    assert total["n"] > 0
    assert sum(r["opened"] for r in rows) == total["n"]
    assert sum(r["all_hits"] for r in rows) == total["hits"]
    rules = {r["rule"] for r in d.rows("SELECT DISTINCT rule FROM alerts FINAL")}
    assert {r["rule"] for r in rows} == rules and "low_score" in rules
    assert [r["hour"] for r in rows] == sorted(r["hour"] for r in rows)
    assert all(r["hour"].minute == 0 and r["all_hits"] >= r["opened"] > 0 for r in rows)


def q8_open_alerts(d: Data, sql: list[str]) -> None:
    rows = d.rows(sql[0])
    window = d.rows(
        "SELECT toString(alert_id) AS id, open_until > now() + 10 AS surely, "
        "open_until > now() - 10 AS maybe FROM alerts FINAL "
        "WHERE severity = 'critical' AND tier = 'A'"
    )
    got = {str(r["alert_id"]) for r in rows}
    assert len(got) == len(rows) > 0
    assert (
        {w["id"] for w in window if w["surely"]} <= got <= {w["id"] for w in window if w["maybe"]}
    )
    assert [r["triggered_at"] for r in rows] == sorted(
        (r["triggered_at"] for r in rows), reverse=True
    )
    for r in rows:
        assert r["customer_id"] and r["explanation"] and r["recommended_action"], r
        assert r["open_until"] > r["triggered_at"] and r["hits"] >= 1, r


def _detractors(d: Data) -> list[dict[str, Any]]:
    sentiment = {
        r["id"]: r["sentiment"]
        for r in d.rows("SELECT toString(event_id) AS id, sentiment FROM moments FINAL")
    }
    events = d.rows(
        "SELECT toString(event_id) AS id, occurred_at, touchpoint, nps, csat, feedback_text, "
        "feedback_language FROM touchpoint_events FINAL"
    )
    out = []
    for e in events:
        s = sentiment.get(e["id"])
        if (
            (e["nps"] is not None and e["nps"] <= 6)
            or (e["csat"] is not None and e["csat"] <= 2)
            or (s is not None and s <= -0.5)
        ):
            out.append(e)
    return out


def q9_detractors(d: Data, sql: list[str]) -> None:
    detractors = _detractors(d)
    by_touchpoint: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in detractors:
        by_touchpoint[e["touchpoint"]].append(e)
    rows = d.rows(sql[0])
    assert {r["touchpoint"]: r["detractors"] for r in rows} == {
        t: len(es) for t, es in by_touchpoint.items()
    }
    for r in rows:
        texts = {e["feedback_text"] for e in by_touchpoint[r["touchpoint"]]} - {""}
        assert r["with_text"] == sum(
            e["feedback_text"] != "" for e in by_touchpoint[r["touchpoint"]]
        )
        assert set(r["what_they_said"]) <= texts and len(r["what_they_said"]) == min(
            3, r["with_text"]
        )
        assert set(r["languages"]) <= {
            e["feedback_language"] for e in by_touchpoint[r["touchpoint"]]
        }
    assert {lang for r in rows for lang in r["languages"]} >= {"en", "zh"}

    comments = d.rows(sql[1])
    with_text = [e for e in detractors if e["feedback_text"]]
    assert len(comments) == min(50, len(with_text)) > 0
    assert {c["feedback_text"] for c in comments} <= {e["feedback_text"] for e in with_text}
    assert [c["occurred_at"] for c in comments] == sorted(
        (c["occurred_at"] for c in comments), reverse=True
    )


def q10_effort(d: Data, sql: list[str]) -> None:
    events = d.rows(
        "SELECT journey_id, intent, channel, outcome, occurred_at FROM touchpoint_events FINAL "
        "WHERE journey_id != ''"
    )
    journeys: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in events:  # a journey can pursue several intents (search, then buy)
        journeys[(e["journey_id"], e["intent"])].append(e)
    per_intent: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    paths: dict[str, set[str]] = defaultdict(set)
    for es in journeys.values():
        stats = per_intent[es[0]["intent"]]
        channels = {e["channel"] for e in es}
        stats[0] += 1
        stats[1] += len(channels) > 1
        stats[2] += any(e["outcome"] == "success" for e in es)
        if len(channels) > 1:
            ordered = sorted(es, key=lambda e: (e["occurred_at"], e["channel"]))
            paths[es[0]["intent"]].add(" > ".join(e["channel"] for e in ordered))
    rows = d.rows(sql[0])
    assert {r["intent"]: [r["journeys"], r["multi_channel"]] for r in rows} == {
        i: s[:2] for i, s in per_intent.items()
    }
    assert any(r["multi_channel"] > 0 for r in rows)
    for r in rows:
        assert close(r["resolved_share"], per_intent[r["intent"]][2] / r["journeys"], 0.0006), r
        assert r["contacts_per_journey"] >= 1, r
        assert r["top_hopping_path"] in (paths[r["intent"]] or {""}), r

    hours = d.rows(sql[1])
    counts = d.rows(
        "SELECT countIf(channel = 'call_center') AS calls, countIf(channel = 'store') AS visits "
        "FROM touchpoint_events FINAL"
    )[0]
    assert sum(h["calls"] for h in hours) == counts["calls"] > 0
    assert sum(h["store_visits"] for h in hours) == counts["visits"] > 0
    # The injected call-center backlog (+3h for 2h) is where the longest waits are.
    worst = max((h for h in hours if h["calls"]), key=lambda h: h["call_wait_p90_min"])
    backlog = d.start + timedelta(hours=3)
    assert backlog - timedelta(hours=1) < worst["hour"] < backlog + timedelta(hours=2), worst


def q11_nps(d: Data, sql: list[str]) -> None:
    answers = d.rows(
        "SELECT event_id, occurred_at, channel, touchpoint, nps FROM touchpoint_events FINAL "
        "WHERE isNotNull(nps)"
    )
    tiers = {m["event_id"]: m["tier"] for m in d.rows("SELECT event_id, tier FROM moments FINAL")}
    assert answers, "the simulator asks the relationship question now and then"

    def nps(values: list[int]) -> float:
        return round(
            100 * (sum(v >= 9 for v in values) - sum(v <= 6 for v in values)) / len(values), 1
        )

    by_day_tier: dict[tuple[str, str], list[int]] = defaultdict(list)
    by_touchpoint: dict[tuple[str, str], list[int]] = defaultdict(list)
    for a in answers:
        by_day_tier[(str(a["occurred_at"])[:10], tiers[a["event_id"]])].append(a["nps"])
        by_touchpoint[(a["channel"], a["touchpoint"])].append(a["nps"])
    rows = d.rows(sql[0])
    assert {(str(r["day"])[:10], r["tier"]): (r["answered"], r["nps"]) for r in rows} == {
        k: (len(v), nps(v)) for k, v in by_day_tier.items()
    }
    rows = d.rows(sql[1])
    assert {(r["channel"], r["touchpoint"]): (r["answered"], r["nps"]) for r in rows} == {
        k: (len(v), nps(v)) for k, v in by_touchpoint.items()
    }
    keys = [(r["nps"], -r["answered"], r["channel"], r["touchpoint"]) for r in rows]
    assert keys == sorted(keys)
    last = d.rows("SELECT tier, segment, nps FROM customer_scores FINAL WHERE isNotNull(nps)")
    per: dict[tuple[str, str], list[int]] = defaultdict(list)
    for c in last:
        per[(c["tier"], c["segment"])].append(c["nps"])
    rows = d.rows(sql[2])
    assert {(r["tier"], r["segment"]): (r["customers"], r["nps"]) for r in rows} == {
        k: (len(v), nps(v)) for k, v in per.items()
    }


CHECKS = {
    1: q1_emotion_map,
    2: q2_key_experiences,
    3: q3_churn_risk,
    4: q4_failing_atms,
    5: q5_score_distribution,
    6: q6_trends,
    7: q7_alert_volume,
    8: q8_open_alerts,
    9: q9_detractors,
    10: q10_effort,
    11: q11_nps,
}


# --- the tests --------------------------------------------------------------------------


def test_the_guide_has_eleven_questions_each_with_sql_and_a_check() -> None:
    questions = guide_questions()
    assert [q.number for q in questions] == list(range(1, 12))
    assert all(q.sql for q in questions), [q.title for q in questions if not q.sql]
    assert set(CHECKS) == {q.number for q in questions}
    # No SQL in the guide escapes the checks: every block belongs to a question.
    assert sum(len(q.sql) for q in questions) == len(all_sql_blocks())


def _float32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def float32_noise(value: float) -> bool:
    """A Float32 read as a Float64 (31.81999969482422 for 31.82): a float32 whose shortest
    decimal form reads back as another float. A Float64 ratio (0.13978494623655913) is no
    float32; a float32 with a short exact form (0.015625) reads back as itself."""
    if not math.isfinite(value) or _float32(value) != value:
        return False
    shortest = next(
        float(f"{value:.{d}g}") for d in range(1, 10) if _float32(float(f"{value:.{d}g}")) == value
    )
    return shortest != value


def test_the_noise_check_tells_float32_noise_from_float64_values() -> None:
    assert float32_noise(_float32(60.91)) and float32_noise(_float32(-3.17))
    assert not float32_noise(60.91) and not float32_noise(0.015625) and not float32_noise(5.0)
    assert not float32_noise(0.13978494623655913)


def _floats(value: Any) -> Iterator[float]:
    if isinstance(value, float):
        yield value
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _floats(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _floats(v)


def test_no_view_shows_float32_noise(data: Data) -> None:
    """What BI reads from the views is rounded (60.91, not 60.90999984741211), on every
    view and column, on real data."""
    from cxpulse.schemas.rows import ViewSpec
    from cxpulse.schemas.tables import SPECS

    views = [spec for spec in SPECS if isinstance(spec, ViewSpec)]
    assert len(views) >= 5
    noisy: dict[str, set[str]] = defaultdict(set)
    read = []
    for view in views:
        rows = data.rows(f"SELECT * FROM {view.name}")
        if rows:  # a view of what this run does not make (case outcomes) stays empty
            read.append(view.name)
        for row in rows:
            for column, value in row.items():
                if any(float32_noise(v) for v in _floats(value)):
                    noisy[view.name].add(f"{column}={value}")
    assert {"emotion_map", "key_experiences", "score_distribution", "open_alerts"} <= set(read)
    assert not noisy, {view: sorted(found)[:3] for view, found in noisy.items()}


def test_no_answer_of_the_guide_shows_float32_noise(data: Data) -> None:
    """The guide's SQL rounds Float32 columns as Float64 (``round(toFloat64(x), 1)``):
    ClickHouse rounds a Float32 to a Float32, which reads back as 31.799999237060547."""
    noisy: dict[int, set[str]] = defaultdict(set)
    for question in guide_questions():
        for sql in question.sql:
            for row in data.rows(sql):
                for column, value in row.items():
                    if any(float32_noise(v) for v in _floats(value)):
                        noisy[question.number].add(f"{column}={value}")
    assert not noisy, {number: sorted(found)[:3] for number, found in noisy.items()}


@pytest.mark.parametrize("number", sorted(CHECKS))
def test_guide_question_answers_on_real_data(data: Data, number: int) -> None:
    question = next(q for q in guide_questions() if q.number == number)
    for sql in question.sql:
        data.rows(sql)  # every block runs as written
    CHECKS[number](data, question.sql)
