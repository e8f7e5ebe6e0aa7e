"""Batches of Faust events whose offsets are acknowledged only after the batch succeeded.

Faust's own ``Stream.take()`` acknowledges a buffer's events in a ``finally`` clause, so
when the code handling a batch raises or is cancelled (a ClickHouse insert failing during
shutdown or a rebalance) the offsets are still committed and the batch is lost. Here the
events are acknowledged only when the caller asks for the next batch, i.e. after it
finished the previous one; a failed or cancelled batch stays unacknowledged and is
delivered again after a restart (at-least-once, with idempotent sinks downstream).

The buffering mechanics follow ``faust.Stream.take`` (BSD-3-Clause, faust-streaming):
a processor fills the buffer while the stream is consumed passively, and blocks when the
buffer is full, which is the backpressure that pauses consumption while a sink is slow.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from faust.types import EventT, StreamT
from mode.utils.futures import notify


async def durable_batches(
    stream: StreamT[Any],
    max_size: int,
    within: float,
    size: Callable[[EventT[Any]], int] | None = None,
    *,
    ack: bool = True,
    idle: bool = False,
    linger: float | None = None,
) -> AsyncIterator[list[EventT[Any]]]:
    """Yield lists of events worth up to about ``max_size``, waiting at most ``within``
    seconds. Each event is worth ``size(event)`` (at least 1), or 1 without ``size``: the
    sink agents count rows, so an insert carries ``max_size`` rows whether the messages
    hold one event each or five hundred.

    ``ack=False`` leaves acknowledging to the caller (``stream.ack(event)``), for a step
    whose events are done only at a later checkpoint; ``idle=True`` also yields an empty
    list after ``within`` seconds without events, so such a step can checkpoint while
    its input is quiet.

    ``linger``: once the buffer holds an event, the batch goes as soon as ``linger``
    passes without another (or it is full, or ``within`` has passed), rather than after
    all of ``within``. For a step on the path from an event to its alert: what queued up
    while it handled the last batch is taken as soon as it is in the buffer, not
    ``within`` later (a wait that, added to every batch of a busy step, grows its batches
    and the time an event waits for its batch by ``within / (1 - load)``), while a
    backlog, whose events keep arriving, still fills batches for up to ``within``.
    Without it, a batch waits ``within`` to fill, as Faust's ``Stream.take`` does."""
    s: Any = stream  # Faust's typing hides the Stream internals this mirrors.
    buffer: list[EventT[Any]] = []
    buffer_full = asyncio.Event()
    arrived = asyncio.Event()  # an event was added to the buffer (with ``linger``)
    buffer_consumed = asyncio.Event()
    consuming: asyncio.Future[None] | None = None

    filled = 0  # what the buffer is worth so far

    async def add_to_buffer(value: Any) -> Any:
        nonlocal consuming, filled
        try:
            if consuming is not None:
                try:
                    await consuming
                finally:
                    consuming = None
            event = s.current_event
            if event is None:
                raise RuntimeError("durable_batches found no current event")
            buffer.append(event)
            arrived.set()
            filled += max(1, size(event)) if size is not None else 1
            if filled >= max_size:
                buffer_full.set()
                buffer_consumed.clear()
                await s.wait(buffer_consumed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failure here would otherwise stall the stream
            s.log.exception("Error adding to batch buffer: %r", exc)
            await s.crash(exc)
        return value

    saved_enable_acks = s.enable_acks
    s.enable_acks = False
    s.add_processor(add_to_buffer)
    s._enable_passive(aiter(s.channel))
    try:
        loop = asyncio.get_running_loop()
        while not s.should_stop:
            if linger is None:
                await s.wait_for_stopped(buffer_full, timeout=within)
            else:
                deadline = loop.time() + within
                await s.wait_for_stopped(arrived, timeout=within)
                # more while events keep arriving (a backlog: up to ``within``); once
                # ``linger`` passes without one, what was queued is in
                while buffer and not buffer_full.is_set():
                    left = min(linger, deadline - loop.time())
                    if left <= 0:
                        break
                    arrived.clear()
                    await s.wait_for_stopped(arrived, timeout=left)
                    if not arrived.is_set():
                        break
            if not buffer:
                if idle and not s.should_stop:
                    yield []
                continue
            consuming = loop.create_future()
            batch = list(buffer)
            buffer.clear()
            arrived.clear()
            filled = 0
            try:
                yield batch
                # Reached only when the caller asks for more: the batch is done.
                if ack:
                    for event in batch:
                        await s.ack(event)
            finally:
                notify(consuming)
                buffer_full.clear()
                buffer_consumed.set()
    finally:
        s.enable_acks = saved_enable_acks
        s._processors.remove(add_to_buffer)
