"""Touchpoint health: per-instance failure rates against their own baseline.

Keyed by touchpoint instance (an ATM, a store terminal, a web page), not by customer, so
the validate agent routes a second copy of each event batch by instance partition and
the state lives with its key. One table assignment per touched instance per batch.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from schemas.alerts import HealthState
from schemas.envelope import decode_message
from schemas.events import TouchpointEvent
from streams import metrics
from streams.agents.alerting import record_time, send_alerts
from streams.core.health import apply_health, health_key
from streams.runtime import Runtime
from streams.state_codec import compact_value_type

TABLE = "touchpoint_health"


def register(rt: Runtime) -> Any:
    """Register the table and the agent; returns the table."""
    instances: Any = rt.app.Table(
        TABLE,
        default=None,
        partitions=rt.settings.partitions,
        key_type=bytes,
        value_type=compact_value_type("cxpulse-touchpoint-health", HealthState.from_bytes),
        help="touchpoint instance -> HealthState (bucketed attempts and failures)",
    )

    @rt.app.agent(rt.health, name="touchpoint_health")
    async def touchpoint_health(stream: Any) -> None:
        async for message in stream.events():
            events, _ = decode_message(message.value)
            if not events:
                continue
            started = time.perf_counter()
            by_instance: dict[str, list[TouchpointEvent]] = defaultdict(list)
            for event in events:
                by_instance[health_key(event)].append(event)
            now = datetime.now(UTC)
            raised = []
            for instance, batch in by_instance.items():
                key = instance.encode()
                state, alerts = apply_health(instances.get(key), batch, rt.model, now)
                instances[key] = state
                raised.extend(alerts)
            await send_alerts(rt, raised, record_time(message))
            metrics.BATCH_SECONDS.labels("touchpoint_health").observe(time.perf_counter() - started)

    return instances
