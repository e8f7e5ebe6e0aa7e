"""Alerts to an HTTP endpoint (a ticketing system, a chat channel, a paging service).

The stream must never wait for a webhook: a slow or dead receiver cannot be allowed to
hold back scoring. ``offer`` therefore only puts the alert in a bounded queue and returns;
a background task posts from the queue. When the queue is full the OLDEST alert is
dropped (and counted): during an outage the newest alerts, and the newest version of a
repeating one, are what a person still needs.

Each POST carries the alert as JSON (exactly ``Alert.to_json_bytes()``), ``X-Cxpulse-Alert-Id``
(so a receiver deduplicates repeats and retries), and, when a secret is configured,
``X-Cxpulse-Signature: sha256=<hex HMAC-SHA256 of the body>`` so the receiver can check the
alert came from cxpulse and was not altered. Transient failures (connection errors,
timeouts, 5xx, 408, 429) are retried with exponential backoff (tenacity); other 4xx are
the receiver refusing the alert and are not retried.

Counting is left to the caller: ``sent``, ``failed``, ``dropped`` and ``retries`` are plain
attributes, and ``on_sent``/``on_failed``/``on_dropped`` callables are called as they change,
so the worker maps them to Prometheus without this module importing the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
from pydantic import SecretStr
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from schemas.alerts import Alert

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Cxpulse-Signature"
ALERT_ID_HEADER = "X-Cxpulse-Alert-Id"
_RETRY_STATUSES = frozenset({408, 429})


def sign(body: bytes, secret: SecretStr) -> str:
    """The signature header value of a body: ``sha256=<hex HMAC-SHA256>``."""
    digest = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(body: bytes, header: str | None, secret: SecretStr) -> bool:
    """What a receiver does (in any language): recompute and compare in constant time."""
    return header is not None and hmac.compare_digest(sign(body, secret), header)


class _Transient(Exception):
    """A delivery failure worth retrying."""


class WebhookNotifier:
    """Posts alerts to ``url`` from a bounded queue, in the background, with retries."""

    def __init__(
        self,
        url: str,
        secret: SecretStr | None = None,
        *,
        timeout: float = 5.0,
        max_queue: int = 1000,
        max_retries: int = 5,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        on_sent: Callable[[Alert], None] | None = None,
        on_failed: Callable[[Alert, str], None] | None = None,
        on_dropped: Callable[[Alert], None] | None = None,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue is {max_queue}: give at least 1")
        self.url = url
        parts = urlsplit(url)
        # For logs: never the path or query, which often carry a token.
        self._where = f"{parts.scheme}://{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_retries = max_retries
        self._backoff = (backoff_initial, backoff_max)
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(maxsize=max_queue)
        self._on_sent, self._on_failed, self._on_dropped = on_sent, on_failed, on_dropped
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        #: Alerts delivered (a 2xx answer).
        self.sent = 0
        #: Alerts given up on (refused, or still failing after every retry).
        self.failed = 0
        #: Alerts dropped unsent because the queue was full (the oldest go first).
        self.dropped = 0
        #: Delivery attempts that were retried.
        self.retries = 0

    @property
    def pending(self) -> int:
        """Alerts waiting in the queue (not counting one being posted)."""
        return self._queue.qsize()

    def offer(self, alert: Alert) -> None:
        """Queue an alert for delivery; never blocks, never raises for a full queue."""
        while True:
            try:
                self._queue.put_nowait(alert)
                return
            except asyncio.QueueFull:
                oldest = self._queue.get_nowait()
                self._queue.task_done()
                self.dropped += 1
                if self._on_dropped is not None:
                    self._on_dropped(oldest)

    async def start(self) -> None:
        """Open the HTTP session and start posting in the background."""
        if self._task is not None:
            return
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        self._task = asyncio.create_task(self._run(), name="cxpulse-webhook")

    async def stop(self, drain_timeout: float = 5.0) -> None:
        """Deliver what is queued (for up to ``drain_timeout`` s), then stop and close."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_timeout)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            alert = await self._queue.get()
            try:
                await self._deliver(alert)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one alert kill the sender
                self._give_up(alert, f"{type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()

    async def _deliver(self, alert: Alert) -> None:
        body = alert.to_json_bytes()
        headers = {"Content-Type": "application/json", ALERT_ID_HEADER: str(alert.alert_id)}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(body, self._secret)
        initial, cap = self._backoff

        def count_retry(_: RetryCallState) -> None:
            self.retries += 1

        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._max_retries + 1),
                wait=wait_exponential(multiplier=initial, max=cap),
                retry=retry_if_exception_type(_Transient),
                before_sleep=count_retry,
                reraise=True,
            ):
                with attempt:
                    status = await self._post(body, headers)
                    if 200 <= status < 300:
                        break
                    if status >= 500 or status in _RETRY_STATUSES:
                        raise _Transient(f"HTTP {status}")
                    self._give_up(alert, f"HTTP {status} (refused, not retried)")
                    return
        except _Transient as exc:
            self._give_up(alert, f"{exc} after {self._max_retries + 1} attempts")
            return
        self.sent += 1
        if self._on_sent is not None:
            self._on_sent(alert)

    async def _post(self, body: bytes, headers: dict[str, str]) -> int:
        assert self._session is not None
        try:
            async with self._session.post(self.url, data=body, headers=headers) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from None

    def _give_up(self, alert: Alert, reason: str) -> None:
        self.failed += 1
        log.warning(
            "webhook: alert %s not delivered to %s: %s", alert.alert_id, self._where, reason
        )
        if self._on_failed is not None:
            self._on_failed(alert, reason)
