"""The live operations console (/console) in a real headless browser, against a real
worker (the session's tansu broker, chDB in a temporary directory).

- /console and /api/cases/events are behind CXPULSE_API_TOKEN (a sign-in form otherwise),
  and the token never reaches the worker's log (checked after every test).
- Events that fire a customer alert open a case; it appears on the open page without a
  reload, is acknowledged and resolved (outcome and note) from the page, leaves it, and
  the ClickHouse ``cases`` row says so.
- A case change on cx.cases reaches the page live; an overdue case stands out; the worker
  stops at once with the page open (the stream ends), and the page notices.
- A token typed into the sign-in form survives a reload of the tab (sessionStorage).

Nothing here is timed: every wait is for a condition (the page shows the case, the
table says so), with a generous limit for a stuck test.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cxpulse.schemas.cases import Case, CaseChange
from cxpulse.streams import topics
from cxpulse.streams.dev.broker import EmbeddedBroker
from cxpulse.streams.dev.demo import WorkerProcess, scrape
from cxpulse.streams.settings import Settings
from tests.integration.conftest import page_dump
from tests.integration.workers import worker_settings

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


def text_of(driver: Any, element_id: str) -> str:
    """The text of the element with that id, or "" while the page has none (a page
    being replaced by the next one)."""
    from selenium.common.exceptions import WebDriverException

    try:
        return str(driver.find_element("id", element_id).text)
    except WebDriverException:
        return ""


@pytest.fixture
def console(kafka_broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Console]:
    """A worker with an API token, its web server on a free port, ready."""
    settings = worker_settings(kafka_broker.url, tmp_path)
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
    assert status == 401 and "wrong API token" in body and "not-the-token-at-all" not in body

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


def a_case(case_id: str, version: int, status: str, due_in: timedelta) -> Case:
    now = datetime.now(UTC)
    return Case(
        case_id=uuid.UUID(case_id),
        kind="customer",
        customer_id="C-console-1",
        tier="A",
        score=31.5,
        severity="critical",
        status=status,  # type: ignore[arg-type]
        owner="branch-ops",
        rule="repeated_failure",
        alert_ids=[uuid.uuid4()],
        explanation="3 failed atm.withdrawal at ATM-0999 within 30 min",
        recommended_action="Call the customer today; send a technician to ATM-0999",
        opened_at=now,
        updated_at=now,
        due_at=now + due_in,
        version=version,
    )


def publish_case_change(settings: Settings, case: Case) -> None:
    """A change on cx.cases, in the shape the worker owning a case publishes it."""
    from kafka import KafkaProducer

    from cxpulse.streams.kafka_config import kafka_python_config

    change = CaseChange(
        change="opened" if case.status == "open" else case.status,  # type: ignore[arg-type]
        at=case.updated_at,
        case=case,
    )
    producer = KafkaProducer(**kafka_python_config(settings))
    try:
        producer.send(
            topics.cases(settings), key=str(case.case_id).encode(), value=change.to_json_bytes()
        ).get(timeout=30)
    finally:
        producer.close()


def test_a_case_change_reaches_the_open_page_live(console: Console, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{console.base}/console?token={TOKEN}")
    status = lambda: text_of(browser, "connection")  # noqa: E731
    console.wait("the page's stream open", lambda: status() == "live", browser)
    # the token left the address bar for this tab's sessionStorage
    assert "token" not in browser.current_url
    kept = browser.execute_script("return sessionStorage.getItem('cxpulse.console.token')")
    assert kept == TOKEN

    case_id = str(uuid.uuid4())
    publish_case_change(console.settings, a_case(case_id, 1, "open", timedelta(minutes=-5)))
    selector = f'li[data-case-id="{case_id}"]'
    cards = lambda: browser.find_elements(By.CSS_SELECTOR, selector)  # noqa: E731
    console.wait("the case on the page", cards, browser)
    # one look at the card (a read in one script: the page may redraw it meanwhile)
    classes, text, ack = browser.execute_script(
        "const li = document.querySelector(arguments[0]);"
        "const ack = li.querySelector('button.ack');"
        "return [li.className, li.innerText, ack && ack.textContent];",
        selector,
    )
    assert "overdue" in classes.split()  # its deadline has passed
    assert text_of(browser, "summary").startswith("1 open case (1 overdue)")
    assert "ATM-0999 within 30 min" in text
    assert "Call the customer today" in text
    assert ack == "Acknowledge"  # a button, named by what it does
    # every field has a label, every control is a button with a name
    unlabelled = browser.execute_script(
        "return [...document.querySelectorAll('input, select')]"
        ".filter(e => !e.labels || !e.labels.length || !e.labels[0].textContent.trim())"
        ".map(e => e.id || e.outerHTML);"
    )
    assert unlabelled == []
    buttons = browser.execute_script(
        "return [...document.querySelectorAll('button')].map(b => b.textContent.trim());"
    )
    assert "" not in buttons and {"Acknowledge", "Resolve", "Use token"} <= set(buttons)

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
    status = lambda: text_of(browser, "connection")  # noqa: E731
    console.wait("the console open", lambda: status() == "live", browser)
    assert "token" not in browser.current_url

    browser.refresh()  # the address has no token now: the tab's sessionStorage has it
    console.wait("the console open again", lambda: status() == "live", browser)
    assert browser.execute_script("return document.title") == "cxpulse console"


def failing_atm_journey(customer: str, instance: str, n: int) -> list[dict[str, Any]]:
    """``n`` failed withdrawals two minutes apart, for a tier-A customer: the
    repeated_failure rule fires at the third (tests/integration/test_pipeline.py)."""
    start = datetime.now(UTC) - timedelta(minutes=30)
    return [
        {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{customer}/{i}")),
            "occurred_at": (start + timedelta(minutes=2 * i)).isoformat(),
            "customer_id": customer,
            "channel": "atm",
            "touchpoint": "atm.withdrawal",
            "touchpoint_instance": instance,
            "journey_stage": "post_purchase",
            "outcome": "failure",
            "details": {"kind": "atm", "error_code": "E-CASH-JAM"},
            "tier": "A",
            "segment": "retail_banking",
        }
        for i in range(n)
    ]


def clickhouse(console: Console, sql: str) -> list[dict[str, Any]]:
    """Rows of a query, asked the way a user asks: cxpulse query (the running worker
    answers it for its chDB directory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_")}
    env |= {
        "CXPULSE_KAFKA_URL": console.settings.kafka_url,
        "CXPULSE_CLICKHOUSE_URL": console.settings.clickhouse_url,
        "CXPULSE_WEB_PORT": str(console.settings.web_port),
        "CXPULSE_TOPIC_PREFIX": console.settings.topic_prefix,
    }
    run = subprocess.run(
        [sys.executable, "-m", "cxpulse.streams.cli", "query", "--format", "json", sql],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines() if line.strip()]


def test_an_alert_opens_a_case_the_console_acknowledges_and_resolves(
    console: Console, browser: Any
) -> None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from cxpulse.streams.publisher import Publisher

    browser.get(f"{console.base}/console?token={TOKEN}")
    status = lambda: text_of(browser, "connection")  # noqa: E731
    console.wait("the page's stream open", lambda: status() == "live", browser)
    console.wait(
        "the empty list loaded",
        lambda: text_of(browser, "summary").startswith("0 open cases"),
        browser,
    )
    browser.find_element(By.ID, "by").send_keys("Ana Ops")

    customer = "C-console-" + uuid.uuid4().hex[:6]
    with Publisher(console.settings) as publisher:
        publisher.publish_many(failing_atm_journey(customer, "ATM-0777", 4))
        publisher.flush()

    # the alert's case appears without a reload
    cards = lambda: browser.find_elements(  # noqa: E731
        By.XPATH, f'//li[@data-case-id][.//h2[contains(., "{customer}")]]'
    )
    console.wait("the case on the page", cards, browser)
    case_id = cards()[0].get_attribute("data-case-id")
    selector = f'li[data-case-id="{case_id}"]'

    def on_card(action: Callable[[Any], Any]) -> Any:
        """``action`` on the case's card as the page shows it now: a change of the case
        (a later alert, the ack's own change) replaces its card, so a card found a
        moment ago may be gone; look again then."""
        for _ in range(20):
            try:
                return action(browser.find_element(By.CSS_SELECTOR, selector))
            except (StaleElementReferenceException, NoSuchElementException):
                continue
        return action(browser.find_element(By.CSS_SELECTOR, selector))

    def card_status() -> str | None:
        try:
            found = browser.find_elements(By.CSS_SELECTOR, selector)
            return found[0].get_attribute("data-status") if found else None
        except StaleElementReferenceException:
            return "(being replaced)"

    assert card_status() == "open"
    text = on_card(lambda card: card.text)
    assert "ATM-0777" in text  # the explanation
    assert "Recommended:" in text

    on_card(lambda card: card.find_element(By.CSS_SELECTOR, "button.ack").click())
    console.wait("acknowledged on the page", lambda: card_status() == "acknowledged", browser)
    assert not on_card(lambda card: card.find_elements(By.CSS_SELECTOR, "button.ack"))

    def resolve(card: Any) -> None:
        Select(card.find_element(By.CSS_SELECTOR, "select.outcome")).select_by_value("compensated")
        note = card.find_element(By.CSS_SELECTOR, "input.note")
        note.clear()
        note.send_keys("refunded the fee")
        card.find_element(By.CSS_SELECTOR, "button.resolve").click()

    on_card(resolve)
    console.wait("the resolved case gone from the page", lambda: card_status() is None, browser)

    def row() -> dict[str, Any] | None:
        rows = clickhouse(
            console,
            "SELECT toString(case_id) AS case_id, status, outcome, note, acknowledged_by, "
            f"resolved_by FROM cases FINAL WHERE toString(case_id) = '{case_id}'",
        )
        return rows[0] if rows else None

    console.wait(
        "the cases table saying resolved", lambda: (row() or {}).get("status") == "resolved"
    )
    assert row() == {
        "case_id": case_id,
        "status": "resolved",
        "outcome": "compensated",
        "note": "refunded the fee",
        "acknowledged_by": "Ana Ops",
        "resolved_by": "Ana Ops",
    }
