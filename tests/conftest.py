"""Shared fixtures: one real Kafka-protocol broker per test session, unique names per test.

One broker for the whole session because starting tansu is cheap but not free, and
tests stay independent by using their own topics (``unique_topic``) and consumer groups.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cxpulse.streams.dev.broker import EmbeddedBroker


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """The bundled tansu broker on a free loopback port, in memory, for the whole session.

    Use ``kafka_broker.url`` for ``CXPULSE_KAFKA_URL`` / ``load_settings(kafka_url=...)``
    and ``kafka_broker.bootstrap`` for kafka-python and aiokafka. Its log is under the
    session's tmp dir (shown by ``repr(kafka_broker)``) when something needs explaining.
    """
    log_dir: Path = tmp_path_factory.mktemp("kafka-broker")
    with EmbeddedBroker(log_dir=log_dir) as broker:
        yield broker


def make_unique_name(prefix: str = "t") -> str:
    """A topic/prefix/group name no other test uses: ``<prefix>-<10 hex>``."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", prefix).strip("-")[:80] or "t"
    return f"{clean}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def unique_topic(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory of topic names unique to this test: ``unique_topic("dlq")`` →
    ``test_x-dlq-1a2b3c4d5e``. Topics live as long as the session broker, so tests must
    never share one by accident."""

    def make(suffix: str = "") -> str:
        base = request.node.name[:40]
        return make_unique_name(f"{base}-{suffix}" if suffix else base)

    return make
