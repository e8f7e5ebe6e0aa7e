"""``durable_batches``' batching: what a batch holds, and a ``linger`` that hands over what
is buffered without waiting all of ``within``.

The stream is a stand-in with the few parts of a Faust stream ``durable_batches`` uses (a
processor chain fed by a passive drainer, ``wait_for_stopped``); the worker's own runs on
the bundled broker exercise it on Faust itself (tests/integration)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from cxpulse.streams.durable_batches import durable_batches

#: Long enough that a batch waiting for it would hit the test's own bound first.
WITHIN = 60.0
BOUND = 20.0


class _Stream:
    """What ``durable_batches`` reads of a Faust stream."""

    def __init__(self, queue: asyncio.Queue[Any]) -> None:
        self.queue = queue
        self.channel = self
        self.should_stop = False
        self.enable_acks = True
        self.current_event: Any = None
        self._processors: list[Callable[[Any], Awaitable[Any]]] = []
        self.log = logging.getLogger(__name__)
        self.acked: list[Any] = []
        self._drainer: asyncio.Task[None] | None = None

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._events()

    async def _events(self) -> AsyncIterator[Any]:
        while True:
            yield await self.queue.get()

    def add_processor(self, processor: Callable[[Any], Awaitable[Any]]) -> None:
        self._processors.append(processor)

    def _enable_passive(self, events: AsyncIterator[Any]) -> None:
        async def drain() -> None:
            async for value in events:
                self.current_event = SimpleNamespace(value=value)
                for processor in self._processors:
                    await processor(value)

        self._drainer = asyncio.ensure_future(drain())

    async def wait_for_stopped(self, event: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    async def wait(self, event: asyncio.Event) -> None:
        await event.wait()

    async def ack(self, event: Any) -> None:
        self.acked.append(event.value)

    async def crash(self, exc: BaseException) -> None:
        raise exc

    async def stop(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer


async def _batches(sends: list[list[int]], **kw: Any) -> tuple[list[list[int]], list[int]]:
    """Put each group of values on the stream, then take one batch: the batches' values,
    and what was acknowledged."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stream = _Stream(queue)
    batches: Any = durable_batches(stream, 1000, WITHIN, **kw)  # type: ignore[arg-type]
    out: list[list[int]] = []
    try:
        for values in sends:
            for v in values:
                queue.put_nowait(v)
            batch = await asyncio.wait_for(anext(batches), BOUND)
            out.append([e.value for e in batch])
    finally:
        await batches.aclose()
        await stream.stop()
    return out, stream.acked


def test_a_lingering_batch_takes_what_is_buffered_without_waiting_for_within() -> None:
    """With ``linger``, each batch is what was put before it was asked for, handed over
    long before ``within`` (60 s) runs out: nothing lost, nothing twice, in order, each
    acknowledged once the next is asked for."""
    got, acked = asyncio.run(_batches([[1, 2, 3], [4], [5, 6]], linger=0.05))
    assert got == [[1, 2, 3], [4], [5, 6]]
    assert acked == [1, 2, 3, 4]  # the last batch: not asked past, not acknowledged


def test_without_linger_a_batch_goes_before_within_only_when_full() -> None:
    """Without ``linger`` a batch waits ``within`` unless it is full: full at 1,000."""
    got, _ = asyncio.run(_batches([list(range(1000)), list(range(1000, 2500))]))
    assert got == [list(range(1000)), list(range(1000, 2000))]


def test_a_lingering_batch_keeps_filling_while_events_keep_arriving() -> None:
    """A backlog (events arriving well within ``linger`` of each other) still fills one
    batch, up to ``within``; the batch goes once ``linger`` passes without one."""

    async def go() -> list[list[int]]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stream = _Stream(queue)
        batches: Any = durable_batches(stream, 1000, WITHIN, linger=1.0)  # type: ignore[arg-type]
        try:
            taking = asyncio.ensure_future(anext(batches))
            for v in range(10):
                queue.put_nowait(v)
                await asyncio.sleep(0.01)
            first = await asyncio.wait_for(taking, BOUND)
            queue.put_nowait(10)
            second = await asyncio.wait_for(anext(batches), BOUND)
        finally:
            await batches.aclose()
            await stream.stop()
        return [[e.value for e in first], [e.value for e in second]]

    assert asyncio.run(go()) == [list(range(10)), [10]]
