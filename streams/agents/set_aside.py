"""Events an agent reads from an internal topic but cannot use go to the dead-letter topic.

Faust acknowledges a message whatever the agent does with it, so an agent that raises
while applying one subject's events (a customer, a touchpoint instance) loses the whole
envelope, every other subject's events with it. The agents keyed by subject therefore
guard each subject on its own: when applying one raises (a bug, a state the core cannot
handle), that subject's events are set aside here and the other subjects go on.

Set aside means what the validate step does with invalid input: one DLQ record per event
(its JSON as value; reason, kind and source in headers, the source being the internal
topic, partition, offset and the event's position in that envelope), so the event is
neither lost nor silent, and the dead letter of a replay is the very same row. All such
events share the kind ``scoring_failed`` and one counter,
``cxpulse_scoring_failed_events_total``: the customer score and the touchpoint health
score are both scores, and the reason's first words and the source topic say which.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

from cxpulse.schemas.envelope import Rejected, one_line
from cxpulse.streams import metrics
from cxpulse.streams.pipeline.records import Event, EventHead, decode_events
from cxpulse.streams.routing import Source, dead_letter_headers
from cxpulse.streams.runtime import Runtime

log = logging.getLogger(__name__)

KIND = "scoring_failed"


async def dead_letter(rt: Runtime, message: Any, rejected: list[Rejected]) -> None:
    """Send each rejected item of ``message`` (a Faust event) to the DLQ, like the validate
    agent's rejects: the item as value, the reason and the envelope's position in headers
    (the same position on a replay, so the dead letter is the same row)."""
    source = Source.of(message)
    for r in rejected:
        await rt.dlq.send(value=r.raw, headers=dead_letter_headers(source, r))


def positions(events: Sequence[EventHead], rejected: list[Rejected]) -> dict[int, int]:
    """Each valid event's position in its envelope (by object id), the rejected items'
    positions skipped: the ``cxpulse.source.index`` of its dead letter."""
    skipped = {r.index for r in rejected}
    slots = (i for i in range(len(events) + len(rejected)) if i not in skipped)
    return {id(event): slot for event, slot in zip(events, slots, strict=False)}


class Sources:
    """Where the events of a take came from: each event's message, and, worked out only
    when some of them are set aside, its position in that message's envelope."""

    def __init__(self) -> None:
        self._messages: list[tuple[Any, Sequence[EventHead], list[Rejected]]] = []
        self._origin: dict[int, Any] = {}  # id(event) -> the message it came in

    def add(self, message: Any, events: Sequence[EventHead], rejected: list[Rejected]) -> None:
        """``message``'s decoded events and rejected items, as ``decode_events`` gave them."""
        self._messages.append((message, events, rejected))
        for event in events:
            self._origin[id(event)] = message

    def message_of(self, event: EventHead) -> Any:
        return self._origin[id(event)]

    async def set_aside(
        self,
        rt: Runtime,
        batch: Sequence[EventHead],
        exc: BaseException,
        *,
        step: str,
        subject: str,
    ) -> None:
        """Dead-letter ``batch`` (one subject's events of the take, whose ``step`` raised
        ``exc``), each with its own message as source and its position in it. Events
        decoded as their heads (``decode_heads``) go as the whole events, read again from
        their message."""
        where: dict[int, int] = {}
        for _, events, rejected in self._messages:
            where.update(positions(events, rejected))
        groups: dict[int, tuple[Any, list[EventHead]]] = {}
        for event in batch:
            message = self.message_of(event)
            groups.setdefault(id(message), (message, []))[1].append(event)
        for message, theirs in groups.values():
            wholes = self._wholes(message, theirs)
            at = {id(w): where[id(e)] for e, w in zip(theirs, wholes, strict=True)}
            await set_aside(rt, message, wholes, at, exc, step=step, subject=subject)

    def _wholes(self, message: Any, events: list[EventHead]) -> list[Event]:
        """``events`` of ``message`` as whole events: themselves when they are, else (heads,
        ``decode_heads``) the message's records decoded again, which are in the same
        order as its heads."""
        if all(isinstance(e, Event) for e in events):
            return cast("list[Event]", events)
        heads = next(decoded for m, decoded, _ in self._messages if m is message)
        records, _ = decode_events(message.value)
        whole = {id(h): r for h, r in zip(heads, records, strict=True)}
        return [whole[id(e)] for e in events]


async def set_aside(
    rt: Runtime,
    message: Any,
    batch: list[Event],
    where: dict[int, int],
    exc: BaseException,
    *,
    step: str,
    subject: str,
) -> None:
    """Dead-letter ``batch``, the events of one subject whose ``step`` raised ``exc``:
    logged with the traceback, counted, each event a DLQ record with the reason
    ``<step> failed: <error>`` and its position in the envelope (``where``, from
    :func:`positions`)."""
    log.error(
        "%s failed for %s; its %d events go to the dead-letter topic",
        step,
        subject,
        len(batch),
        exc_info=exc,
    )
    metrics.SCORING_FAILED_EVENTS.inc(len(batch))
    reason = f"{step} failed: {one_line(exc)}"
    await dead_letter(
        rt,
        message,
        [Rejected(where[id(e)], e.to_json(), reason, KIND) for e in batch],
    )
