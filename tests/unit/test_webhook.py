"""The webhook notifier against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from schemas.alerts import Alert, alert_id
from streams.webhook import ALERT_ID_HEADER, SIGNATURE_HEADER, WebhookNotifier, sign, verify

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

    [(headers, body)] = asyncio.run(serve([200], scenario))
    assert body == a.to_json_bytes()
    assert Alert.from_json_bytes(body) == a
    assert headers[ALERT_ID_HEADER] == str(a.alert_id)
    assert headers["Content-Type"] == "application/json"
    assert headers[SIGNATURE_HEADER] == sign(body, SECRET)
    assert verify(body, headers[SIGNATURE_HEADER], SECRET)
    assert not verify(body + b" ", headers[SIGNATURE_HEADER], SECRET)
    assert not verify(body, headers[SIGNATURE_HEADER], SecretStr("another"))
    assert sent == [a]


def test_no_secret_no_signature() -> None:
    async def scenario(url: str, received: Received) -> None:
        n = WebhookNotifier(url, None)
        await n.start()
        n.offer(alert(1))
        await n.stop()

    [(headers, _)] = asyncio.run(serve([204], scenario))
    assert SIGNATURE_HEADER not in headers


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
