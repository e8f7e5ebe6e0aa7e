"""Shared fixtures: one real Kafka-protocol broker per test session, unique names per test.

One broker for the whole session because starting tansu is cheap but not free, and
tests stay independent by using their own topics (``unique_topic``) and consumer groups.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from cxpulse.streams.dev.broker import EmbeddedBroker

SERVER_URL_ENV = "CXPULSE_TEST_CLICKHOUSE_URL"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs two processes), each process gets its own
    database on the test ClickHouse server: ``cxpulse_test`` becomes ``cxpulse_test_gw0``
    and ``cxpulse_test_gw1``, so one process dropping its database never drops the
    other's. Every test reads the server URL from the environment, after this."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    url = os.environ.get(SERVER_URL_ENV, "").strip()
    if worker and url:
        parts = urlsplit(url)
        database = parts.path.strip("/") or "cxpulse_test"
        os.environ[SERVER_URL_ENV] = urlunsplit(parts._replace(path=f"/{database}_{worker}"))


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
