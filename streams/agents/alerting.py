"""Sending alerts: one message per alert on the alerts topic, keyed by its subject.

Alerts are rare next to events, and their readers (the live tail, webhooks, operations
consoles) want one alert per message, keyed so a subject's alerts stay in order.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from cxpulse.schemas.alerts import Alert
from cxpulse.streams import metrics
from cxpulse.streams.runtime import Runtime


async def send_alerts(rt: Runtime, alerts: Iterable[Alert], entered_at: float) -> None:
    """Send, and count by rule and severity; ``entered_at`` is the triggering message's
    record time (epoch seconds), for the event-to-alert latency."""
    for alert in alerts:
        await rt.alerts.send(key=alert.subject.encode(), value=alert.to_json_bytes())
        metrics.ALERTS.labels(alert.rule, alert.severity).inc()
        metrics.ALERT_LATENCY.observe(max(0.0, time.time() - entered_at))


def record_time(event: Any) -> float:
    """The Kafka record time of the message being processed (epoch seconds)."""
    timestamp = event.message.timestamp
    return float(timestamp) if timestamp else time.time()
