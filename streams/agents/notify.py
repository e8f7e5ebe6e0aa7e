"""Webhook notifications for alerts (optional: ``CXPULSE_WEBHOOK_URL``).

A separate agent on the alerts topic hands each alert to the notifier's bounded queue and
moves on: a slow or failing receiver never holds back scoring or the ClickHouse sink;
deliveries, failures and drops are counted.
"""

from __future__ import annotations

import logging
from typing import Any

from schemas.alerts import Alert
from streams import metrics
from streams.runtime import Runtime
from streams.webhook import WebhookNotifier

log = logging.getLogger(__name__)


def register(rt: Runtime) -> WebhookNotifier | None:
    url = rt.settings.webhook_url
    if not url:
        return None
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
