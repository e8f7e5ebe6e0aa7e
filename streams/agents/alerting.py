"""Sending alerts: one message per alert on the alerts topic, keyed by its subject.

Alerts are rare next to events, and their readers (the live tail, webhooks, operations
consoles) want one alert per message, keyed so a subject's alerts stay in order. A step
sends the alerts of a take together, in producer batches
(``cxpulse.streams.pipeline.produce``: each in its subject's partition, as Faust's own
send would put it), and makes sure the broker has them before the take's offsets are
committed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from cxpulse.schemas.alerts import Alert
from cxpulse.streams import metrics
from cxpulse.streams.pipeline.produce import submit_keyed
from cxpulse.streams.runtime import Runtime


async def send_alerts(rt: Runtime, alerts: Sequence[tuple[Alert, float]]) -> list[Any]:
    """Queue ``alerts`` on the alerts topic and count them by rule and severity; each
    comes with the record time (epoch seconds) of the message that raised it, for the
    event-to-alert latency. Returns what to await for the broker to have them all."""
    now = time.time()
    for alert, entered_at in alerts:
        metrics.ALERTS.labels(alert.rule, alert.severity).inc()
        metrics.ALERT_LATENCY.observe(max(0.0, now - entered_at))
    return await submit_keyed(rt.alerts, [(a.subject, a.to_json_bytes()) for a, _ in alerts])


def record_time(event: Any) -> float:
    """The Kafka record time of the message being processed (epoch seconds)."""
    timestamp = event.message.timestamp
    return float(timestamp) if timestamp else time.time()
