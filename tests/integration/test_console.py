"""The live operations console (/console) in a real headless browser, against a real
worker (the session's tansu broker, chDB in a temporary directory).

Nothing here is timed: every wait is for a condition (the page shows the case, the
table says so), with a generous limit for a stuck test.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cxpulse.streams import topics
from cxpulse.streams.admin import ensure_topics
from cxpulse.streams.app import TABLE_NAMES
from cxpulse.streams.dev.broker import EmbeddedBroker
from cxpulse.streams.dev.demo import WorkerProcess, free_port, scrape
from cxpulse.streams.settings import Settings, load_settings
from tests.integration.conftest import page_dump

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]

PATIENCE = 120.0  # a limit for a stuck test, not a measurement
TOKEN = "console-test-token-" + uuid.uuid4().hex


@dataclass
class Console:
    settings: Settings
    worker: WorkerProcess

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"

    def wait(
        self, what: str, check: Callable[[], object], driver: Any = None, running: bool = True
    ) -> None:
        """Wait for ``check``; the worker must keep running meanwhile unless ``running``
        is False (it was stopped on purpose)."""
        deadline = time.monotonic() + PATIENCE
        while not check():
            if running:
                assert self.worker.alive(), f"worker died:\n{self.worker.log_tail(40)}"
            if time.monotonic() > deadline:
                extra = page_dump(driver) if driver is not None else ""
                pytest.fail(f"{what}: not within {PATIENCE}s\n{self.worker.log_tail(40)}\n{extra}")
            time.sleep(0.25)


def http(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


@pytest.fixture
def console(kafka_broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Console]:
    """A worker with an API token, its web server on a free port, ready."""
    name = f"t{uuid.uuid4().hex[:10]}"
    settings = load_settings(
        kafka_url=kafka_broker.url,
        clickhouse_url=f"chdb://{tmp_path / 'chdb'}",
        app_id=f"cxpulse-{name}",
        topic_prefix=name,
        partitions=2,
        web_port=free_port(),
        data_dir=tmp_path / "var",
        sink_flush_seconds=0.3,
    )
    ensure_topics(settings, topics.all_topics(settings, TABLE_NAMES))
    worker = WorkerProcess(
        settings, tmp_path / "worker.log", extra_env={"CXPULSE_API_TOKEN": TOKEN}
    )
    worker.start([sys.executable, "-m", "cxpulse.streams.cli", "worker"])
    c = Console(settings, worker)
    try:
        c.wait(
            "worker ready",
            lambda: scrape(settings.web_port).get(("cxpulse_worker_ready_seconds", ()), 0) > 0,
        )
        yield c
    finally:
        worker.stop()
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert TOKEN not in log, "the API token reached the worker's log"


def test_console_is_behind_the_token(console: Console) -> None:
    status, headers, body = http(f"{console.base}/console")
    assert status == 401
    assert headers["Content-Type"].startswith("text/html")
    assert 'name="token"' in body and 'type="password"' in body  # a sign-in form
    assert "CXPULSE_API_TOKEN" in body

    status, _, body = http(f"{console.base}/console?token=not-the-token-at-all")
    assert status == 401 and "refused" in body and "not-the-token-at-all" not in body

    for url, headers in (
        (f"{console.base}/console?token={TOKEN}", {}),
        (f"{console.base}/console", {"Authorization": f"Bearer {TOKEN}"}),
    ):
        status, got, body = http(url, headers)
        assert status == 200, body
        assert "<title>cxpulse console</title>" in body and TOKEN not in body
        assert "frame-ancestors 'none'" in got["Content-Security-Policy"]
        assert got["Cache-Control"] == "no-store"

    status, _, body = http(f"{console.base}/api/cases/events")
    assert status == 401 and "CXPULSE_API_TOKEN" in json.loads(body)["error"]


def a_case(case_id: str, version: int, status: str, due_in: timedelta) -> dict[str, Any]:
    """A case change as the contract shapes it (schemas/cases.py)."""
    now = datetime.now(UTC)
    return {
        "case_id": case_id,
        "kind": "customer",
        "customer_id": "C-console-1",
        "instance": None,
        "tier": "A",
        "score": 31.5,
        "severity": "critical",
        "status": status,
        "owner": "branch-ops",
        "rule": "repeated_failure",
        "alert_ids": [str(uuid.uuid4())],
        "event_ids": [],
        "explanation": "3 failed atm.withdrawal at ATM-0999 within 30 min",
        "recommended_action": "Call the customer today; send a technician to ATM-0999",
        "topics": [],
        "opened_at": now.isoformat(),
        "updated_at": now.isoformat(),
        "due_at": (now + due_in).isoformat(),
        "escalated": False,
        "acknowledged_by": None,
        "acknowledged_at": None,
        "resolved_by": None,
        "resolved_at": None,
        "outcome": None,
        "note": None,
        "version": version,
    }


def publish_case_change(settings: Settings, case: dict[str, Any]) -> None:
    """A case change on the case topic, as the worker owning the case publishes it."""
    from kafka import KafkaProducer

    from cxpulse.streams.kafka_config import kafka_python_config

    producer = KafkaProducer(**kafka_python_config(settings))
    try:
        producer.send(
            topics.cases(settings),
            key=case["case_id"].encode(),
            value=json.dumps(
                {
                    "change": "opened" if case["status"] == "open" else case["status"],
                    "at": case["updated_at"],
                    "by": "cxpulse",
                    "case": case,
                }
            ).encode(),
        ).get(timeout=30)
    finally:
        producer.close()


def test_a_case_change_reaches_the_open_page_live(console: Console, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{console.base}/console?token={TOKEN}")
    status = lambda: browser.find_element(By.ID, "connection").text  # noqa: E731
    console.wait("the page's stream open", lambda: status() == "live", browser)
    # the token left the address bar for this tab's sessionStorage
    assert "token" not in browser.current_url
    kept = browser.execute_script("return sessionStorage.getItem('cxpulse.console.token')")
    assert kept == TOKEN

    case_id = "case-" + uuid.uuid4().hex[:12]
    publish_case_change(console.settings, a_case(case_id, 1, "open", timedelta(minutes=-5)))
    selector = f'li[data-case-id="{case_id}"]'
    cards = lambda: browser.find_elements(By.CSS_SELECTOR, selector)  # noqa: E731
    console.wait("the case on the page", cards, browser)
    card = cards()[0]
    assert "overdue" in card.get_attribute("class").split()  # its deadline has passed
    assert "ATM-0999 within 30 min" in card.text
    assert "Call the customer today" in card.text
    assert card.find_element(By.CSS_SELECTOR, "button.ack").text == "Acknowledge"

    publish_case_change(console.settings, a_case(case_id, 2, "resolved", timedelta(hours=1)))
    console.wait("the resolved case gone from the page", lambda: not cards(), browser)

    # a worker stopping ends the page's stream instead of waiting for it (aiohttp would
    # wait up to 60 s for an open response): the stop is clean, and the page says so
    started = time.monotonic()
    assert console.worker.stop(timeout=PATIENCE) == 0, console.worker.log_tail(40)
    print(f"worker stopped in {time.monotonic() - started:.1f}s with the console open")
    console.wait("the page noticing", lambda: status() != "live", browser, running=False)


def test_the_token_typed_into_the_sign_in_form_survives_a_reload(
    console: Console, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{console.base}/console")
    field = browser.find_element(By.CSS_SELECTOR, "input#token[type=password]")
    label = browser.find_element(By.CSS_SELECTOR, "label[for=token]")
    assert "API token" in label.text
    field.send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    status = lambda: browser.find_element(By.ID, "connection").text  # noqa: E731
    console.wait("the console open", lambda: status() == "live", browser)
    assert "token" not in browser.current_url

    browser.refresh()  # the address has no token now: the tab's sessionStorage has it
    console.wait("the console open again", lambda: status() == "live", browser)
    assert browser.execute_script("return document.title") == "cxpulse console"
