"""Alerts to an HTTP endpoint (a ticketing system, a chat channel, a paging service).

The stream must never wait for a webhook: a slow or dead receiver cannot be allowed to
hold back scoring. ``offer`` therefore only puts the alert in a bounded queue and returns;
a background task posts from the queue. When the queue is full the OLDEST alert is
dropped (and counted): during an outage the newest alerts, and the newest version of a
repeating one, are what a person still needs.

Each POST carries the alert as JSON (exactly ``Alert.to_json_bytes()``),
``X-Cxpulse-Alert-Id`` (so a receiver keeps the latest version of an alert), and the
Standard Webhooks (Svix) headers: ``webhook-id`` (the delivery id: the alert id and its
version, the same on every retry of one version, so a receiver deduplicates retries),
``webhook-timestamp`` (Unix seconds of this attempt) and, when a secret is configured,
``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``. A signature
thus covers when and which delivery it was, and ``verify`` (what a receiver runs) refuses
one older or newer than its tolerance: a captured request cannot be replayed later. A
secret written ``whsec_<base64>`` (the Standard Webhooks form) is used as the decoded
bytes, any other as its UTF-8 bytes, so the receivers' standardwebhooks/svix libraries
verify cxpulse's deliveries too. Each attempt is signed afresh. Transient failures
(connection errors, timeouts, 5xx, 408, 429) are retried with exponential backoff
(tenacity); other 4xx are the receiver refusing the alert and are not retried.

Counting is left to the caller: ``sent``, ``failed``, ``dropped`` and ``retries`` are plain
attributes, and ``on_sent``/``on_failed``/``on_dropped`` callables are called as they change,
so the worker maps them to Prometheus without this module importing the metrics.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
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

from cxpulse.schemas.alerts import Alert

log = logging.getLogger(__name__)

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
ALERT_ID_HEADER = "X-Cxpulse-Alert-Id"
#: How far a signature's timestamp may be from the receiver's clock (either way).
DEFAULT_TOLERANCE_SECONDS = 300
_RETRY_STATUSES = frozenset({408, 429})
_SECRET_PREFIX = "whsec_"


class WebhookVerificationError(ValueError):
    """A delivery the receiver must refuse; the message says why, on one line."""


def secret_key(secret: SecretStr | str | bytes) -> bytes:
    """The HMAC key of a secret: ``whsec_<base64>`` decoded, any other string as UTF-8."""
    if isinstance(secret, bytes):
        return secret
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if value.startswith(_SECRET_PREFIX):
        try:
            return base64.b64decode(value.removeprefix(_SECRET_PREFIX), validate=True)
        except binascii.Error:
            raise ValueError(
                "the webhook secret starts with whsec_ but the rest is not base64: give "
                "whsec_<base64> or a secret without the prefix"
            ) from None
    return value.encode()


def delivery_id(alert: Alert) -> str:
    """The ``webhook-id`` of an alert's version: the same on every retry of it, another
    for the next repeat of the alert (its ``count`` + 1)."""
    return f"{alert.alert_id.hex}-{alert.count}"


def sign(msg_id: str, timestamp: int, body: bytes, secret: SecretStr | str | bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256 of "{id}.{ts}.{body}">``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    msg_id: str, body: bytes, secret: SecretStr | str | bytes | None, now: float | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (no signature without a secret)."""
    timestamp = int(time.time() if now is None else now)
    headers = {ID_HEADER: msg_id, TIMESTAMP_HEADER: str(timestamp)}
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(msg_id, timestamp, body, secret)
    return headers


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secret: SecretStr | str | bytes,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """What a receiver runs on a delivery (the raw body, as received, and its headers):
    returns when it came from cxpulse, unaltered, and signed within ``tolerance`` seconds
    of ``now``; raises ``WebhookVerificationError`` saying why not. Any of several
    space-separated ``v1,`` signatures may match (a secret being rotated)."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (
        lower.get(ID_HEADER),
        lower.get(TIMESTAMP_HEADER),
        lower.get(SIGNATURE_HEADER),
    )
    if not msg_id or not stamp or not signatures:
        missing = [
            h
            for h, v in zip(
                (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER),
                (msg_id, stamp, signatures),
                strict=True,
            )
            if not v
        ]
        raise WebhookVerificationError(
            f"missing header {', '.join(missing)}: is the sender configured with a secret?"
        )
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError(
            f"{TIMESTAMP_HEADER} {stamp!r} is not Unix seconds"
        ) from None
    skew = (time.time() if now is None else now) - timestamp
    if abs(skew) > tolerance:
        which = "old" if skew > 0 else "in the future"
        raise WebhookVerificationError(
            f"{TIMESTAMP_HEADER} is {abs(skew):.0f}s {which}, beyond the {tolerance:.0f}s "
            "tolerance: a replayed delivery, or a clock to set right (NTP)"
        )
    expected = sign(msg_id, timestamp, body, secret).encode()
    for candidate in signatures.split():
        if hmac.compare_digest(expected, candidate.encode()):
            return
    raise WebhookVerificationError(
        "no valid v1 signature: the body was altered, or the secret differs from the sender's"
    )


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
        if secret is not None:
            secret_key(secret)  # a malformed whsec_ secret fails here, not at each post
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
        msg_id = delivery_id(alert)
        base = {"Content-Type": "application/json", ALERT_ID_HEADER: str(alert.alert_id)}
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
                    # signed per attempt: a retry after a long backoff is still fresh
                    headers = base | signed_headers(msg_id, body, self._secret)
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
