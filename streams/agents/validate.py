"""Validate raw input: valid events go on batched per customer partition, invalid ones go
to the dead-letter topic (as they came, a batch item on its own) with the reason and
their source in headers. Nothing one message holds can stop this agent: ``route`` turns
any failure into a dead letter."""

from __future__ import annotations

import time
from collections import Counter
from operator import attrgetter
from typing import Any

from cxpulse.streams import metrics
from cxpulse.streams.durable_batches import durable_batches
from cxpulse.streams.pipeline.records import encode_events
from cxpulse.streams.routing import Source, dead_letter_headers, route
from cxpulse.streams.runtime import Runtime, chunks, count_headers

#: Raw messages taken at once, and the longest wait for them.
BATCH_MESSAGES = 500
WITHIN_SECONDS = 0.05
#: Once a batch holds a message, how long it waits for more: raw messages queued while
#: the last batch was handled go on at once (``durable_batches``' linger).
LINGER_SECONDS = 0.002


def register(rt: Runtime) -> None:
    @rt.app.agent(rt.raw, name="validate")
    async def validate(stream: Any) -> None:
        async for batch in durable_batches(
            stream, BATCH_MESSAGES, WITHIN_SECONDS, linger=LINGER_SECONDS
        ):
            started = time.perf_counter()
            routed = route([(Source.of(e), e.value) for e in batch], rt.settings.partitions)
            metrics.MESSAGES_IN.inc(len(batch))
            now = time.time()
            channels: Counter[str] = Counter()
            for events in routed.by_partition.values():
                channels.update(map(_channel, events))
                metrics.EVENT_LAG.observe_many(
                    [max(0.0, now - e.occurred_at.timestamp()) for e in events]
                )
            for partition, events in routed.by_partition.items():
                for chunk in chunks(events):
                    await rt.events.send(
                        value=encode_events(chunk),
                        partition=partition,
                        headers=count_headers(len(chunk)),
                    )
            for partition, events in routed.by_health_partition.items():
                for chunk in chunks(events):
                    await rt.health.send(
                        value=encode_events(chunk),
                        partition=partition,
                        headers=count_headers(len(chunk)),
                    )
            for channel, n in channels.items():
                metrics.EVENTS_IN.labels(channel).inc(n)
            for source, rejected in routed.rejected:
                metrics.EVENTS_INVALID.labels(rejected.kind).inc()
                await rt.dlq.send(value=rejected.raw, headers=dead_letter_headers(source, rejected))
            metrics.BATCH_SECONDS.labels("validate").observe(time.perf_counter() - started)


_channel = attrgetter("channel")
