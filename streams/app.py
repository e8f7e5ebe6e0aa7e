"""The Faust application of one cxpulse worker: topics, tables, agents, HTTP pages.

Agents are thin: they move bytes between Kafka and the pure functions in ``schemas``,
``cxpulse.streams.routing`` and ``cxpulse.streams.core``, count metrics, and hand rows to the sink
writer. Every topic carries batches (JSON arrays), so Faust's per-message cost is paid
per batch, not per event.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust

from cxpulse.schemas.model import ExperienceModel
from cxpulse.sinks.writer import InsertBackend, SinkWriter
from cxpulse.streams import console, lag, topics, web
from cxpulse.streams.agents import cases, experience, health, notify, sinks
from cxpulse.streams.kafka_config import faust_broker, faust_credentials
from cxpulse.streams.kafka_consumer import App
from cxpulse.streams.model_check import load_model
from cxpulse.streams.runtime import Runtime
from cxpulse.streams.settings import Settings

#: Faust tables of the app (their changelog topics are created before the worker starts).
TABLE_NAMES: list[str] = [experience.TABLE, health.TABLE, cases.TABLE]


def tables_dir(settings: Settings) -> Path:
    """Where the worker keeps its tables on local disk (RocksDB, and the offsets they hold):
    one directory per app id, as the tables belong to its consumer group and changelogs."""
    return settings.data_dir / "faust" / settings.app_id


def default_connect(settings: Settings) -> Callable[[], InsertBackend]:
    """Open the configured ClickHouse and make sure every table and view exists."""

    def connect() -> InsertBackend:
        from cxpulse.sinks.clickhouse import open_backend

        backend = open_backend(settings.clickhouse_url, settings.clickhouse_password)
        backend.ensure_schema()
        return backend

    return connect


def create_app(
    settings: Settings,
    connect: Callable[[], InsertBackend] | None = None,
    model: ExperienceModel | None = None,
) -> faust.App:
    """Build the worker's Faust app. ``connect`` overrides how ClickHouse is opened."""
    app = App(
        settings.app_id,
        broker=faust_broker(settings),
        broker_credentials=faust_credentials(settings),
        store="memory://",
        autodiscover=False,
        # Local table state belongs to one app id (its consumer group and changelogs):
        # a worker of another app id on the same data_dir must not read it.
        datadir=str(tables_dir(settings)),
        web_enabled=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout / 3),
        producer_linger_ms=settings.producer_linger_ms,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        stream_buffer_maxsize=settings.consumer_buffer_messages,
    )
    app.end_offsets_exact = settings.broker_end_offsets_exact is not False
    app.fetch_max_wait_ms = settings.consumer_fetch_max_wait_ms
    if settings.producer_max_batch_size is not None:
        app.conf.producer_max_batch_size = settings.producer_max_batch_size

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, key_serializer="raw", value_serializer="raw")

    rt = Runtime(
        app=app,
        settings=settings,
        writer=SinkWriter(connect or default_connect(settings), settings.sink_retry_max_seconds),
        model=model or load_model(settings.model_path),
        raw=topic(topics.touchpoints(settings)),
        events=topic(topics.events(settings)),
        dlq=topic(topics.touchpoints_dlq(settings)),
        moments=topic(topics.moments(settings)),
        scores=topic(topics.scores(settings)),
        health=topic(topics.health(settings)),
        alerts=topic(topics.alerts(settings)),
    )
    experience.register(rt)
    health.register(rt)
    sinks.register(rt)
    notify.register(rt)
    web.register(rt)
    if rt.model.cases.enabled:
        cases.register(rt)
        web.register_cases(rt)
    else:  # no case table, agent, timer or feed: the routes say cases are off
        web.register_cases_off(rt)
    console.register(rt)
    lag.register(app)

    @app.task
    async def open_writer() -> None:
        """ClickHouse opened at start, so the steps' first rows are prepared for it."""
        await rt.writer.open()

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_writer(app: faust.App, **kwargs: Any) -> None:
        rt.writer.close()

    app.cxpulse_runtime = rt  # type: ignore[attr-defined]
    return app
