"""Touchpoint health: per-instance failure rates against their own baseline.

Keyed by touchpoint instance (an ATM, a store terminal, a web page), not by customer, so
the validate step routes a second copy of each event batch by instance partition and
the state lives with its key. The agent takes several messages at once (up to
``TAKE_EVENTS`` events: streams/pipeline/takes.py) and applies each instance of the take
once. New states go to the table's store at once and to its changelog at checkpoints
(streams/pipeline/checkpoint.py: one changelog record per changed instance per
checkpoint, then the offsets), as the experience step's do; a take's alerts leave at its
end, and the broker has them before the offsets are committed.

Each instance of a take is applied on its own: when the core raises for one instance (a
bug, a state it cannot handle), that instance's events go to the dead-letter topic with
the reason ``health scoring failed: ...``, source ``cx.health`` (the message each came
in) and their position in that envelope, and the other instances go on
(streams/agents/set_aside.py). Letting it raise would stop the step at the same take
after every restart. The customer side of those events is unaffected (the experience
agent reads its own copy, on ``cx.touchpoints`` or ``cx.events``), and a replay of the
dead letters is harmless there: the customer state recognises the event ids.

The step reads each record's head only (``EventHead``: ids, time, touchpoint, outcome;
not the details, feedback or attributes it never uses); a set-aside event's dead letter
is the whole event, read again from its message.

Items of an envelope this agent cannot read are skipped, not dead-lettered: the
experience agent has the same events (read from the raw message itself, or from its
``cx.events`` copy, which it dead-letters when it cannot read them), and one dead letter
per bad item is what an operator wants to see.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from cxpulse.schemas.alerts import Alert
from cxpulse.streams import metrics
from cxpulse.streams.agents.alerting import record_time, send_alerts
from cxpulse.streams.agents.set_aside import Sources
from cxpulse.streams.pipeline.checkpoint import Checkpointer
from cxpulse.streams.pipeline.records import EventHead, decode_heads
from cxpulse.streams.pipeline.takes import run_takes, yielding
from cxpulse.streams.rules.touchpoint_degraded import apply_health, health_key
from cxpulse.streams.runtime import Runtime
from cxpulse.streams.state.health import HealthState
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

    async def handle(take: list[Any]) -> None:
        """A take of cx.health batch messages: each instance's events across the take
        applied at once, its new state recorded in the current checkpoint, its alerts
        sent."""
        started = time.perf_counter()
        by_instance: dict[str, list[EventHead]] = defaultdict(list)
        sources = Sources()
        for message in take:
            events, rejected = decode_heads(message.value)
            sources.add(message, events, rejected)
            for event in events:
                by_instance[health_key(event)].append(event)
        if not by_instance:
            return
        now = datetime.now(UTC)
        raised: list[tuple[Alert, float]] = []  # the take's alerts, sent together
        async for instance, batch in yielding(by_instance.items()):
            key = instance.encode()
            try:
                before = checkpoints.get(key)
                state, alerts, late = apply_health(before, batch, rt.model, now)
            except Exception as exc:
                # The state is recorded only after the core returns: a failed instance
                # leaves no trace in the table, and its events are set aside, each with
                # its own message's source.
                await sources.set_aside(
                    rt,
                    batch,
                    exc,
                    step="health scoring",
                    subject=f"touchpoint instance {instance}",
                )
                continue
            # An instance's events all come from one partition (cx.health is keyed by
            # instance): its state belongs to that partition's changelog.
            last = sources.message_of(batch[-1])
            checkpoints.set(key, last.message.partition, state, was=before)
            if alerts:
                entered_at = record_time(last)
                raised += [(alert, entered_at) for alert in alerts]
            if late:
                metrics.HEALTH_LATE_EVENTS.inc(late)
        if raised:  # on cx.alerts now; the broker has them before the offsets commit
            checkpoints.sent(await send_alerts(rt, raised))
        metrics.BATCH_SECONDS.labels("touchpoint_health").observe(time.perf_counter() - started)

    checkpoints = Checkpointer(
        instances,  # states only: no rows
        every_rows=rt.settings.sink_batch_size,
        every_seconds=rt.settings.sink_flush_seconds,
    )

    @rt.app.agent(rt.health, name="touchpoint_health")
    async def touchpoint_health(stream: Any) -> None:
        """Apply takes of cx.health; states and offsets become durable at each
        checkpoint, in that order (streams/pipeline/takes.py, checkpoint.py)."""
        await run_takes(stream, checkpoints, handle)

    return instances
