"""Webhook notifications for alerts (optional: ``CXPULSE_WEBHOOK_URL``).

A separate agent on the alerts topic hands each alert to the notifier's bounded queue and
moves on: a slow or failing receiver never holds back scoring or the ClickHouse sink;
deliveries, failures and drops are counted. A URL without a secret still delivers, but
unsigned: the worker says so at start with a warning.
"""

from __future__ import annotations

import logging
from typing import Any

from cxpulse.schemas.alerts import Alert
from cxpulse.streams import metrics
from cxpulse.streams.runtime import Runtime
from cxpulse.streams.settings import Settings
from cxpulse.streams.webhook import WebhookNotifier

log = logging.getLogger(__name__)


def warn_if_unsigned(settings: Settings) -> bool:
    """Log a WARNING when alerts would go out unsigned; True when it did."""
    if settings.webhook_url and settings.webhook_secret is None:
        log.warning(
            "CXPULSE_WEBHOOK_URL is set without CXPULSE_WEBHOOK_SECRET: alerts are posted "
            "unsigned and a receiver cannot tell them from forged or replayed ones; set "
            "CXPULSE_WEBHOOK_SECRET (whsec_<base64> or a long random string)"
        )
        return True
    return False


def register(rt: Runtime) -> WebhookNotifier | None:
    url = rt.settings.webhook_url
    if not url:
        return None
    warn_if_unsigned(rt.settings)
    notifier = WebhookNotifier(
        url,
        rt.settings.webhook_secret,
        on_sent=lambda alert: metrics.WEBHOOK_SENT.inc(),
        on_failed=lambda alert, reason: metrics.WEBHOOK_FAILED.inc(),
        on_dropped=lambda alert: metrics.WEBHOOK_DROPPED.inc(),
    )

    @rt.app.agent(rt.alerts, name="webhook")
    async def webhook(stream: Any) -> None:
        await notifier.start()
        async for value in stream:
            try:
                notifier.offer(Alert.from_json_bytes(value))
            except ValueError as exc:  # not an alert: say so, keep going
                log.warning("skipping an unreadable alert message: %s", exc)

    @rt.app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_notifier(app: Any, **kwargs: Any) -> None:
        await notifier.stop()

    return notifier
