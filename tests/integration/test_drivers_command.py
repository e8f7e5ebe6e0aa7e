"""``cxpulse drivers`` through a real worker and ClickHouse learns what the in-process run
learns.

A small population (2,500 customers over three days) with CSAT answers generated from
known importances (``cxpulse.streams.dev.simulate.answers``) goes through the bundled
broker and a real worker process into chDB, and into a ClickHouse server when
CXPULSE_TEST_CLICKHOUSE_URL names one. ``cxpulse drivers --json`` (with chDB asked while
the worker runs, so through its read-only /query endpoint) must give the same customers
per segment as the same events give in process, and importances within 0.1 of theirs
(the stored readings and gaps are Float32); the factor_drivers view counts the same
customers; then ``--write-model`` writes a model that ``cxpulse model check`` passes.
How close the in-process estimate comes to the truth is tests/unit/test_drivers.py's
question, on a larger population; here the truth's order of service over product (9 vs
3) and of convenience over relationship (9 vs 2) is checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from cxpulse.streams.analysis.drivers import learn
from cxpulse.streams.dev.demo import WorkerProcess, drained, scrape
from cxpulse.streams.dev.simulate import generate
from cxpulse.streams.dev.simulate.answers import answers_from_importance, drivers_rows
from cxpulse.streams.model_check import load_model
from cxpulse.streams.publisher import Publisher
from cxpulse.streams.settings import Settings
from tests.integration.workers import worker_settings

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]


TRUE = {
    "retail_banking": {
        "product": 3,
        "service": 9,
        "relationship": 5,
        "convenience": 6,
        "brand": 5,
        "price": 5,
    },
    "retail": {
        "product": 8,
        "service": 3,
        "relationship": 2,
        "convenience": 9,
        "brand": 5,
        "price": 7,
    },
}


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3, hours=1)
    raw = list(generate(2_500, seed=5, duration=timedelta(days=3), start=start))
    return answers_from_importance(raw, TRUE, seed=5)


@pytest.fixture(scope="module", params=["chdb", "server"])
def running(
    request: pytest.FixtureRequest,
    kafka_broker: Any,
    tmp_path_factory: pytest.TempPathFactory,
    events: list[dict[str, Any]],
) -> Iterator[Settings]:
    tmp = tmp_path_factory.mktemp(f"drivers-{request.param}")
    settings = worker_settings(kafka_broker.url, tmp, backend=request.param, partitions=4)
    url = settings.clickhouse_url
    worker = WorkerProcess(settings, tmp / "worker.log")
    worker.start()
    try:
        with Publisher(settings) as publisher:
            summary = publisher.publish_many(events)
        assert summary.rejected == 0, summary
        expected = {"touchpoint_events": len(events), "moments": len(events)}
        deadline = time.monotonic() + 120
        while True:
            assert worker.alive(), f"worker died:\n{worker.log_tail(40)}"
            metrics = scrape(settings.web_port)
            if metrics and drained(metrics, expected):
                break
            assert time.monotonic() < deadline, f"not drained in 120 s\n{worker.log_tail(40)}"
            time.sleep(0.25)
        yield settings
    finally:
        worker.stop()
        if request.param == "server":
            from cxpulse.sinks.clickhouse import open_backend
            from cxpulse.sinks.native import NativeBackend

            backend = open_backend(url)
            assert isinstance(backend, NativeBackend)
            backend._run(f"DROP DATABASE IF EXISTS `{backend.database}`")
            backend.close()


def cxpulse(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "CXPULSE_CLICKHOUSE_URL": settings.clickhouse_url,
        "CXPULSE_WEB_PORT": str(settings.web_port),
        "CXPULSE_KAFKA_URL": settings.kafka_url,
    }
    return subprocess.run(
        [sys.executable, "-m", "cxpulse.streams.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def test_drivers_json_matches_the_in_process_estimate(
    running: Settings, events: list[dict[str, Any]], tmp_path: Path
) -> None:
    suggested = tmp_path / "suggested.yaml"
    run = cxpulse(running, "drivers", "--json", "--write-model", str(suggested))
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["answer"] == "csat"
    got = {s["segment"]: s for s in doc["segments"]}

    want = {s.segment: s for s in learn(*drivers_rows(events), load_model())}
    assert set(got) == set(want) == {"retail_banking", "retail"}
    for name, seg in want.items():
        assert got[name]["customers"] == seg.customers > 200
        assert got[name]["r2"] == pytest.approx(seg.r2, abs=0.01)
        learnt = {f["factor"]: f for f in got[name]["factors"]}
        for f in seg.factors:
            assert f.learnt is not None
            assert learnt[f.factor]["learnt"] == pytest.approx(f.learnt, abs=0.1), f
            assert learnt[f.factor]["customers"] == f.customers
            low, high = learnt[f.factor]["ci95"]
            assert low <= learnt[f.factor]["learnt"] <= high
    bank = {f["factor"]: f["learnt"] for f in got["retail_banking"]["factors"]}
    retail = {f["factor"]: f["learnt"] for f in got["retail"]["factors"]}
    assert bank["service"] > bank["product"] and retail["convenience"] > retail["relationship"]

    # the factor_drivers view counts the same answering customers per segment and factor,
    # and their gaps go with their CSAT where the truth weighs the factor most
    view = cxpulse(running, "query", "SELECT * FROM factor_drivers", "--format", "json")
    assert view.returncode == 0, view.stderr
    cells = {(r["segment"], r["factor"]): r for r in map(json.loads, view.stdout.splitlines())}
    for name, seg in want.items():
        for f in seg.factors:
            cell = cells[name, f.factor]
            assert cell["answering"] == f.customers and cell["moments"] >= f.moments, cell
            assert cell["customers"] >= cell["answering"] and -10 <= cell["mean_gap"] <= 10
    assert cells["retail_banking", "service"]["csat_correlation"] > 0.2
    assert cells["retail", "convenience"]["csat_correlation"] > 0.2

    check = cxpulse(running, "model", "check", str(suggested))
    assert check.returncode == 0 and check.stdout.startswith("model ok:"), check.stderr
    text = suggested.read_text()
    assert "# retail_banking: learnt from" in text and "95% CI" in text


def test_drivers_prints_tables_and_the_matrix(running: Settings, tmp_path: Path) -> None:
    svg = tmp_path / "matrix.svg"
    run = cxpulse(running, "drivers", "--resamples", "50", "--svg", str(svg))
    assert run.returncode == 0, run.stderr
    picture = ElementTree.parse(svg).getroot()
    assert len(list(picture.iter("{http://www.w3.org/2000/svg}circle"))) == 12
    out = run.stdout
    assert "retail_banking:" in out and "customers answered CSAT" in out
    assert "importance × performance, retail:" in out
    for column in ("configured", "learnt", "95% CI", "suggested", "mean gap", "quadrant"):
        assert column in out, column


def test_too_few_answers_say_not_enough_data(running: Settings) -> None:
    run = cxpulse(running, "drivers", "--min-customers", "100000", "--no-matrix")
    assert run.returncode == 0, run.stderr
    assert "not enough data:" in run.stdout and "fewer than 100000" in run.stdout


def test_an_unwritable_path_is_one_line(running: Settings, tmp_path: Path) -> None:
    run = cxpulse(
        running, "drivers", "--resamples", "20", "--write-model", str(tmp_path / "no" / "m.yaml")
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert (
        run.stderr.startswith("cxpulse: cannot write ") and "choose a writable path" in run.stderr
    )
