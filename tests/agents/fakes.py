"""Messages put to an agent under Faust's test_context(), as of a topic, and what stands in
for ClickHouse behind its sink writer."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any


async def put_on(
    agent: Any,
    topic: str,
    value: bytes,
    *,
    partition: int = 0,
    timestamp: float | None = None,
    headers: Any = None,
    wait: bool = True,
) -> None:
    """``agent.put`` of a message of ``topic``: an agent of several topics (the experience
    agent reads the raw input and cx.events) gets its messages under Faust's test_context()
    as of a topic named ``<internal>``, and the agent tells them apart by topic.
    ``wait``: until the agent has processed it (else the message is only queued: several
    put so land in one take)."""
    message = agent.to_message(
        None,
        value,
        partition=partition,
        offset=agent.sent_offset,
        timestamp=timestamp,
        headers=headers,
    )
    message.topic = topic
    channel = agent.stream().channel
    await channel.put(await channel.decode(message))
    agent.sent_offset += 1
    if not wait:
        return
    async with agent.new_value_processed:
        await agent.new_value_processed.wait()
        if agent._crash_reason:
            raise agent._crash_reason


async def until(condition: Any, seconds: float = 30.0) -> None:
    """Until ``condition()`` holds (a limit that only catches a hang)."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {seconds} s")


class Recorder:
    """Stands in for ClickHouse behind the sink writer: keeps every inserted row."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[Any, ...]]] = {}
        self.lock = threading.Lock()

    def insert(self, table: str, rows: Sequence[Any]) -> int:
        with self.lock:
            self.rows.setdefault(table, []).extend(rows)
        return len(rows)

    def docs(self, table: str, spec: Any) -> list[dict[str, Any]]:
        with self.lock:
            rows = list(self.rows.get(table, []))
        return [dict(zip(spec.column_names, row, strict=True)) for row in rows]

    def count(self, *, events: bool = True) -> int:
        """Rows inserted; ``events=False`` leaves out touchpoint_events (a replayed message's
        events are inserted again, with the same keys: ReplacingMergeTree keeps one)."""
        with self.lock:
            return sum(len(r) for t, r in self.rows.items() if events or t != "touchpoint_events")
