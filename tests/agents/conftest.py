"""Agent tests run under Faust's test_context(): what an agent sends to other topics
leaves the process, so it is captured here instead of produced."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every Topic.send of the test, as {"topic": name, **send kwargs}."""
    captured: list[dict[str, Any]] = []

    async def capture(self: faust.Topic, **kwargs: Any) -> Any:
        captured.append({"topic": self.get_topic_name(), **kwargs})
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut

    monkeypatch.setattr(faust.Topic, "send", capture)
    return captured
