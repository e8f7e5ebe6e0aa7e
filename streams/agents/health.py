"""Touchpoint health: per-instance failure rates against their own baseline.

Keyed by touchpoint instance (an ATM, a store terminal, a web page), not by customer, so
the validate agent routes a second copy of each event batch by instance partition and
the state lives with its key. One table assignment per touched instance per batch.

Each instance of a batch is applied on its own: when the core raises for one instance (a
bug, a state it cannot handle), that instance's events go to the dead-letter topic with
the reason ``health scoring failed: ...``, source ``cx.health`` and their position in the
envelope, and the other instances go on (streams/agents/set_aside.py). Letting it raise
would lose the whole envelope: Faust acknowledges the message whatever the agent does
with it. The customer side of those events is unaffected (the experience agent reads its
own copy on ``cx.events``), and a replay of the dead letters is harmless there: the
customer state recognises the event ids.

Items of an envelope this agent cannot read are skipped, not dead-lettered: the same
items are in the ``cx.events`` copy, which the experience agent dead-letters, and one
dead letter per bad item is what an operator wants to see.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from cxpulse.schemas.alerts import HealthState
from cxpulse.streams import metrics
from cxpulse.streams.agents.alerting import record_time, send_alerts
from cxpulse.streams.agents.set_aside import positions, set_aside
from cxpulse.streams.pipeline.records import Event, decode_events
from cxpulse.streams.rules.touchpoint_degraded import apply_health, health_key
from cxpulse.streams.runtime import Runtime
from cxpulse.streams.state.table_codec import compact_value_type

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
            events, rejected = decode_events(message.value)
            if not events:
                continue
            started = time.perf_counter()
            by_instance: dict[str, list[Event]] = defaultdict(list)
            for event in events:
                by_instance[health_key(event)].append(event)
            now = datetime.now(UTC)
            raised = []
            for instance, batch in by_instance.items():
                key = instance.encode()
                try:
                    state, alerts, late = apply_health(instances.get(key), batch, rt.model, now)
                except Exception as exc:
                    # The table is assigned only after the core returns: a failed
                    # instance leaves no trace in it, and its events are set aside.
                    where = positions(events, rejected)
                    await set_aside(
                        rt,
                        message,
                        batch,
                        where,
                        exc,
                        step="health scoring",
                        subject=f"touchpoint instance {instance}",
                    )
                    continue
                instances[key] = state
                raised.extend(alerts)
                if late:
                    metrics.HEALTH_LATE_EVENTS.inc(late)
            await send_alerts(rt, raised, record_time(message))
            metrics.BATCH_SECONDS.labels("touchpoint_health").observe(time.perf_counter() - started)

    return instances
