"""Validate raw input, the first step of the experience agent: each raw message's events are
read once, the events of customers of the message's own partition stay in the take and are
scored there (the input topic and the customer table are partitioned alike), the others go
on batched per customer partition through the events topic, every valid event goes on
batched per touchpoint-instance partition to the health step, and invalid ones go to the
dead-letter topic (as they came, a batch item on its own) with the reason and their
source in headers. Nothing one message holds can stop this step: ``route`` turns any
failure into a dead letter.

A raw message is acknowledged with the take it came in, at the checkpoint that holds
its local events' rows and states (``cxpulse.streams.pipeline.checkpoint``); what it sent on
is in the producer by then, and Faust flushes the producer before it commits an offset.
"""

from __future__ import annotations

import time
from collections import Counter
from operator import attrgetter
from typing import Any

from cxpulse.streams import metrics
from cxpulse.streams.pipeline.records import encode_events
from cxpulse.streams.routing import Routed, Source, dead_letter_headers, route
from cxpulse.streams.runtime import Runtime, chunks, count_headers


async def validate(rt: Runtime, messages: list[Any]) -> Routed:
    """Route raw ``messages`` (Faust events of the input topic): everything but their
    local events sent on; those are in ``Routed.messages``, one ``Decoded`` a message."""
    started = time.perf_counter()
    routed = route([(Source.of(e), e.value) for e in messages], rt.settings.partitions, local=True)
    metrics.MESSAGES_IN.inc(len(messages))
    now = time.time()
    channels: Counter[str] = Counter()
    for events in routed.by_health_partition.values():  # every valid event, once
        channels.update(map(_channel, events))
        metrics.EVENT_LAG.observe_many([max(0.0, now - e.occurred_at.timestamp()) for e in events])
    for topic, groups in (
        (rt.events, routed.by_partition),
        (rt.health, routed.by_health_partition),
    ):
        for partition, events in groups.items():
            for chunk in chunks(events):
                await topic.send(
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
    return routed


_channel = attrgetter("channel")
