"""Settings for a real worker process in a test: names of its own, chDB under the test's
temporary directory, a free web port. The worker itself is
``cxpulse.streams.dev.demo.WorkerProcess``."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from cxpulse.streams.admin import ensure_topics
from cxpulse.streams.app import TABLE_NAMES
from cxpulse.streams.dev.demo import free_port
from cxpulse.streams.settings import Settings, load_settings
from cxpulse.streams.topics import all_topics
from tests.integration.conftest import server_database_url


def worker_settings(
    kafka_url: str,
    tmp_path: Path,
    *,
    backend: str = "chdb",
    create_topics: bool = True,
    **overrides: Any,
) -> Settings:
    """A fresh app id and topic prefix, 2 partitions, chDB in ``tmp_path/chdb`` (or, with
    ``backend="server"``, a database of its own on the test ClickHouse server), the data
    directory ``tmp_path/var``, a free web port and a 0.3 s sink flush (``overrides``
    change any of them); the worker's topics are created first unless ``create_topics``
    is false."""
    name = f"t{uuid.uuid4().hex[:10]}"
    if backend == "chdb":
        clickhouse_url = f"chdb://{tmp_path / 'chdb'}"
    elif backend == "server":
        clickhouse_url = server_database_url(f"cxpulse_{name}")
    else:
        raise ValueError(f"backend {backend!r}: chdb or server")
    fields: dict[str, Any] = {
        "kafka_url": kafka_url,
        "clickhouse_url": clickhouse_url,
        "app_id": f"cxpulse-{name}",
        "topic_prefix": name,
        "partitions": 2,
        "web_port": free_port(),
        "data_dir": tmp_path / "var",
        "sink_flush_seconds": 0.3,
    }
    settings = load_settings(**(fields | overrides))
    if create_topics:
        ensure_topics(settings, all_topics(settings, TABLE_NAMES))
    return settings
