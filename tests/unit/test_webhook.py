"""The webhook notifier against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from cxpulse.schemas.alerts import Alert, alert_id
from cxpulse.streams.agents.notify import warn_if_unsigned
from cxpulse.streams.settings import ConfigError, load_settings
from cxpulse.streams.webhook import (
    ALERT_ID_HEADER,
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookNotifier,
    WebhookVerificationError,
    delivery_id,
    sign,
    signed_headers,
    verify,
)

ROOT = Path(__file__).resolve().parents[2]
SECRET = SecretStr("s3cret-for-tests")
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def alert(n: int) -> Alert:
    return Alert(
        alert_id=alert_id("customer", f"C-{n}", "detractor", uuid.uuid4().hex),
        rule="detractor",
        severity="warning",
        subject_kind="customer",
        customer_id=f"C-{n}",
        tier="A",
        score=31.5,
        channel="store",
        touchpoint="store.branch_visit",
        triggered_at=T0,
        updated_at=T0,
        emitted_at=T0 + timedelta(seconds=2),
        open_until=T0 + timedelta(hours=6),
        event_ids=[uuid.uuid4()],
        magnitude=8.0,
        explanation="NPS 2 after a successful store.branch_visit at store-117",
        recommended_action="service recovery call within the hour: answer what they said",
    )


Received = list[tuple[dict[str, str], bytes]]


async def serve(
    statuses: list[int], scenario: Callable[[str, Received], Awaitable[None]], delay: float = 0
) -> Received:
    """Run ``scenario(url, received)`` against a server answering ``statuses`` in turn
    (the last one thereafter)."""
    received: Received = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=statuses[min(len(received), len(statuses)) - 1])

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        await scenario(str(server.make_url("/hook?token=abc")), received)
    finally:
        await server.close()
    return received


def notifier(url: str, **kw: Any) -> WebhookNotifier:
    return WebhookNotifier(url, SECRET, timeout=2, backoff_initial=0.01, backoff_max=0.05, **kw)


def test_signed_post_verifies() -> None:
    a = alert(1)
    sent: list[Alert] = []

    async def scenario(url: str, received: Received) -> None:
        n = notifier(url, on_sent=sent.append)
        await n.start()
        n.offer(a)
        await n.stop()
        assert (n.sent, n.failed, n.dropped, n.retries) == (1, 0, 0, 0)

    before = int(time.time())
    [(headers, body)] = asyncio.run(serve([200], scenario))
    assert body == a.to_json_bytes()
    assert Alert.from_json_bytes(body) == a
    assert headers[ALERT_ID_HEADER] == str(a.alert_id)
    assert headers["Content-Type"] == "application/json"
    assert headers[ID_HEADER] == delivery_id(a) == f"{a.alert_id.hex}-1"
    stamp = int(headers[TIMESTAMP_HEADER])
    assert before <= stamp <= int(time.time())
    assert headers[SIGNATURE_HEADER] == sign(delivery_id(a), stamp, body, SECRET)
    assert headers[SIGNATURE_HEADER].startswith("v1,")
    verify(body, headers, SECRET)  # the receiver's check passes
    assert sent == [a]


def delivery(now: float, secret: SecretStr | str = SECRET) -> tuple[bytes, dict[str, str]]:
    body = alert(1).to_json_bytes()
    return body, signed_headers("a1b2-1", body, secret, now=now)


def test_verify_rejects_a_tampered_body_an_old_or_future_timestamp_and_another_secret() -> None:
    now = 1_750_000_000.0
    body, headers = delivery(now)
    verify(body, headers, SECRET, now=now + 299)
    verify(body, {k.title(): v for k, v in headers.items()}, SECRET, now=now)  # any case
    with pytest.raises(WebhookVerificationError, match="body was altered"):
        verify(body.replace(b"C-1", b"C-2"), headers, SECRET, now=now)
    with pytest.raises(WebhookVerificationError, match="301s old, beyond the 300s tolerance"):
        verify(body, headers, SECRET, now=now + 301)
    with pytest.raises(WebhookVerificationError, match="in the future"):
        verify(body, headers, SECRET, now=now - 301)
    with pytest.raises(WebhookVerificationError, match="secret differs"):
        verify(body, headers, SecretStr("another"), now=now)
    # the id and timestamp are signed too: a replay under a fresh timestamp fails
    with pytest.raises(WebhookVerificationError, match="no valid v1 signature"):
        verify(body, headers | {TIMESTAMP_HEADER: str(int(now) + 60)}, SECRET, now=now + 60)
    with pytest.raises(WebhookVerificationError, match="no valid v1 signature"):
        verify(body, headers | {ID_HEADER: "other-1"}, SECRET, now=now)
    with pytest.raises(WebhookVerificationError, match="missing header webhook-signature"):
        verify(body, {k: v for k, v in headers.items() if k != SIGNATURE_HEADER}, SECRET)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify(body, headers, SECRET, now=now + 11, tolerance=10)


def test_verify_accepts_one_of_several_signatures_and_whsec_secrets() -> None:
    now = 1_750_000_000.0
    key = base64.b64encode(b"k" * 24).decode()
    body, headers = delivery(now, f"whsec_{key}")
    verify(body, headers, f"whsec_{key}", now=now)
    verify(body, headers, SecretStr(f"whsec_{key}"), now=now)
    verify(body, headers, b"k" * 24, now=now)  # the decoded key is the HMAC key
    rotating = headers | {SIGNATURE_HEADER: f"v1,bm90IGl0 {headers[SIGNATURE_HEADER]}"}
    verify(body, rotating, b"k" * 24, now=now)


def test_the_documented_receiver_example_verifies() -> None:
    """The 10-line example in docs/alerts.md, run as written."""
    doc = (ROOT / "docs" / "alerts.md").read_text()
    code = doc.split("<!-- receiver example -->", 1)[1].split("```python", 1)[1].split("```")[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/alerts.md", "exec"), namespace)
    body, headers = delivery(time.time(), "a-long-random-secret")
    assert namespace["verify"](body, headers, "a-long-random-secret")
    assert not namespace["verify"](body + b" ", headers, "a-long-random-secret")
    old = delivery(time.time() - 600, "a-long-random-secret")
    assert not namespace["verify"](*old, "a-long-random-secret")


def test_no_secret_no_signature_and_a_warning_at_start(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(url: str, received: Received) -> None:
        n = WebhookNotifier(url, None)
        await n.start()
        n.offer(alert(1))
        await n.stop()

    [(headers, _)] = asyncio.run(serve([204], scenario))
    assert SIGNATURE_HEADER not in headers
    assert ID_HEADER in headers and TIMESTAMP_HEADER in headers
    unsigned = load_settings(webhook_url="https://hooks.example.com/cx")
    with caplog.at_level(logging.WARNING, logger="cxpulse.streams.agents.notify"):
        assert warn_if_unsigned(unsigned)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "without CXPULSE_WEBHOOK_SECRET" in record.getMessage()
    caplog.clear()
    signed = load_settings(webhook_url="https://hooks.example.com/cx", webhook_secret="x" * 32)
    assert not warn_if_unsigned(signed) and not caplog.records
    assert not warn_if_unsigned(load_settings())  # no webhook, nothing to warn about


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/cx?token=abc",
        "http://10.0.0.7/cx",
        "http://127.0.0.1.example.com/cx",
        "ftp://hooks.example.com/cx",
        "https:///no-host",
    ],
)
def test_plain_http_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(webhook_url=url, webhook_allow_http_loopback=True)
    message = str(info.value)
    assert message.startswith("configuration error: CXPULSE_WEBHOOK_URL=")
    assert "\n" not in message and "https://" in message
    assert "abc" not in message  # a token in the URL is not printed


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/cx", "http://[::1]:8080/cx", "http://localhost/cx"]
)
def test_loopback_http_only_with_the_setting(url: str) -> None:
    with pytest.raises(ConfigError, match="CXPULSE_WEBHOOK_ALLOW_HTTP_LOOPBACK=true"):
        load_settings(webhook_url=url)
    assert load_settings(webhook_url=url, webhook_allow_http_loopback=True).webhook_url == url
    assert load_settings(webhook_url="https://hooks.example.com/cx").webhook_url


def test_the_secret_stays_secret_in_errors() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(webhook_secret="whsec_not base64!")
    assert "whsec_not" not in str(info.value) and "='***'" in str(info.value)
    assert isinstance(load_settings(webhook_secret="s" * 32).webhook_secret, SecretStr)


def test_retries_after_a_500_then_succeeds() -> None:
    async def scenario(url: str, received: Received) -> None:
        n = notifier(url)
        await n.start()
        n.offer(alert(1))
        await n.stop()
        assert (n.sent, n.failed, n.retries) == (1, 0, 1)

    received = asyncio.run(serve([500, 200], scenario))
    assert len(received) == 2 and received[0][1] == received[1][1]  # the same body again


def test_gives_up_after_max_retries_and_refusals_are_not_retried() -> None:
    failures: list[str] = []

    async def always_down(url: str, received: Received) -> None:
        n = notifier(url, max_retries=2, on_failed=lambda a, why: failures.append(why))
        await n.start()
        n.offer(alert(1))
        await n.stop()
        assert (n.sent, n.failed, n.retries) == (0, 1, 2)

    assert len(asyncio.run(serve([503], always_down))) == 3
    assert failures == ["HTTP 503 after 3 attempts"]

    async def refused(url: str, received: Received) -> None:
        n = notifier(url)
        await n.start()
        n.offer(alert(1))
        await n.stop()
        assert (n.sent, n.failed, n.retries) == (0, 1, 0)

    assert len(asyncio.run(serve([400], refused))) == 1


def test_unreachable_receiver_is_counted_not_raised() -> None:
    async def scenario() -> WebhookNotifier:
        n = notifier("http://127.0.0.1:9/hook", max_retries=1)  # port 9: nothing listens
        await n.start()
        n.offer(alert(1))
        await n.stop()
        return n

    n = asyncio.run(scenario())
    assert (n.sent, n.failed, n.retries) == (0, 1, 1)


def test_full_queue_drops_the_oldest_and_offer_never_blocks() -> None:
    alerts = [alert(i) for i in range(3)]
    dropped: list[Alert] = []

    async def scenario(url: str, received: Received) -> None:
        n = notifier(url, max_queue=2, on_dropped=dropped.append)
        start = time.monotonic()
        for a in alerts:  # not started yet: nothing drains the queue
            n.offer(a)
        assert time.monotonic() - start < 0.05
        assert (n.dropped, n.pending) == (1, 2)
        await n.start()
        await n.stop()
        assert n.sent == 2

    received = asyncio.run(serve([200], scenario))
    assert dropped == [alerts[0]]
    assert [Alert.from_json_bytes(body) for _, body in received] == alerts[1:]


def test_a_slow_receiver_does_not_slow_offer() -> None:
    async def scenario(url: str, received: Received) -> None:
        n = notifier(url, max_queue=5)
        await n.start()
        start = time.monotonic()
        for i in range(50):
            n.offer(alert(i))
        assert time.monotonic() - start < 0.1
        assert n.dropped >= 45 - 1
        await n.stop(drain_timeout=0.1)  # gives up waiting; stops cleanly anyway

    asyncio.run(serve([200], scenario, delay=0.2))


def test_bad_queue_size() -> None:
    with pytest.raises(ValueError, match="max_queue"):
        WebhookNotifier("http://127.0.0.1/x", max_queue=0)
