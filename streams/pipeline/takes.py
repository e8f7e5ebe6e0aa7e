"""A stateful step's loop: takes of its input, each handled, durable at the checkpoints.

The experience and touchpoint-health steps read their topic in takes: as many messages as
hold up to ``TAKE_EVENTS`` events (counted by the messages' count headers), at most
``TAKE_MESSAGES`` messages, or what is queued for it (once it holds a message, until
``LINGER_SECONDS`` pass without another, at most ``WITHIN_SECONDS``). Each subject of a take
(a customer, an instance) is applied once, so the larger the take the more of a
subject's events one call has. A take is bounded by its events first: a backlog of small
messages (a few hundred events each, as a worker that keeps up sends them) is taken as
one of full messages is, and a take's memory does not grow with the events a message
holds. The bound on messages is for messages that carry no count; raw input, which carries
none, counts by its bytes (``EVENT_BYTES``).

A handled take's messages are done, and acknowledged only when the checkpoint that holds
what they changed is committed (``cxpulse.streams.pipeline.checkpoint``: rows, then states,
then offsets). When the step fails or is cancelled, every checkpoint not committed is
rolled back, so the redelivered messages are applied again, not taken for duplicates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

from cxpulse.streams.durable_batches import durable_batches
from cxpulse.streams.pipeline.checkpoint import Checkpointer
from cxpulse.streams.runtime import items_in

TAKE_EVENTS = 32_000
#: A message without a count header (another producer's, or one written before the
#: header existed) counts as one event, so messages are bounded too: each counts as at
#: least ``TAKE_EVENTS // TAKE_MESSAGES`` events.
TAKE_MESSAGES = 256
WITHIN_SECONDS = 0.05
#: Once a take holds a message, how long it waits for more (``durable_batches``' linger):
#: what queued while the last take was handled is taken at once, not ``WITHIN_SECONDS``
#: later, so a busy step's takes, and an event's wait for its take, do not grow by
#: that wait (docs/benchmarks.md, session 33).
LINGER_SECONDS = 0.002
#: The longest stretch of a take's work before a step lets the event loop run the rest of
#: the worker (a checkpoint's commit, the other steps, Kafka fetches and heartbeats): a
#: take of 32,000 events is seconds of Python, and a commit that waits that long between
#: its inserts holds the next checkpoint up.
YIELD_SECONDS = 0.005

T = TypeVar("T")


async def yielding(items: Iterable[T]) -> AsyncIterator[T]:
    """``items``, letting the event loop run the rest of the worker every
    ``YIELD_SECONDS`` of a step's work on them (a take's subjects, one after another)."""
    clock = time.perf_counter
    yielded = clock()
    for item in items:
        if clock() - yielded >= YIELD_SECONDS:
            await asyncio.sleep(0)
            yielded = clock()
        yield item


#: A message without a count header (raw input: a JSON event or array, never counted)
#: is taken to hold an event per this many bytes (a simulated event is ~500 bytes of
#: JSON), so a take of raw input is bounded by its bytes whatever its envelopes hold.
EVENT_BYTES = 400


def worth(message: Any) -> int:
    """What a message counts for in a take: its events (a raw message's: by its bytes),
    and at least a share of the take (a take holds at most ``TAKE_MESSAGES`` messages,
    whatever they hold)."""
    n = items_in(message, 0) or len(message.value or b"") // EVENT_BYTES
    return max(n, TAKE_EVENTS // TAKE_MESSAGES)


async def run_takes(
    stream: Any, checkpoints: Checkpointer, handle: Callable[[list[Any]], Awaitable[None]]
) -> None:
    """Feed ``stream``'s takes to ``handle``, one at a time, each made durable by
    ``checkpoints`` (cut every so many rows or seconds, see ``Checkpointer``); an idle
    stream still lets a due checkpoint be cut."""
    checkpoints.rollback()  # a restarted step starts from what was committed
    checkpoints.ack = stream.ack
    try:
        async for take in durable_batches(
            stream,
            TAKE_EVENTS,
            WITHIN_SECONDS,
            size=worth,
            ack=False,
            idle=True,
            linger=LINGER_SECONDS,
        ):
            await handle(take)
            for message in take:
                checkpoints.done(message)
            await checkpoints.maybe_cut()
    except BaseException:
        checkpoints.rollback()
        raise
