"""Messages put to an agent under Faust's test_context(), as of a topic."""

from __future__ import annotations

from typing import Any


async def put_on(
    agent: Any,
    topic: str,
    value: bytes,
    *,
    partition: int = 0,
    timestamp: float | None = None,
    headers: Any = None,
) -> None:
    """``agent.put`` of a message of ``topic``: an agent of several topics (the experience
    agent reads the raw input and cx.events) gets its messages under Faust's test_context()
    as of a topic named ``<internal>``, and the agent tells them apart by topic."""
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
    async with agent.new_value_processed:
        await agent.new_value_processed.wait()
        if agent._crash_reason:
            raise agent._crash_reason
