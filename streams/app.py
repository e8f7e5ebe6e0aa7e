"""The Faust application: topics, agents and the /metrics page of one cxpulse worker.

Agents are thin: they move bytes between Kafka and the pure functions in ``schemas``,
``streams.routing`` and ``streams.core``, count metrics, and hand rows to the sink
writer. Every topic carries batches (JSON arrays), so Faust's per-message cost is paid
per batch, not per event.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import faust
import faust.web
from faust.types import EventT

from schemas.envelope import decode_message, encode_batch
from streams import metrics, topics
from streams.durable_batches import durable_batches
from streams.readonly_sql import NotReadOnly, check_read_only
from streams.routing import Source, dead_letter_headers, route
from streams.settings import Settings
from streams.sink_writer import InsertBackend, SinkWriter

log = logging.getLogger(__name__)

#: Events per message on internal topics: big enough to amortise Faust's per-message
#: cost, small enough to stay far below Kafka's default 1 MB message limit.
ENVELOPE_EVENTS = 500
#: Raw messages the validate agent takes at once; it waits at most this long for them.
VALIDATE_BATCH_MESSAGES = 500
VALIDATE_WITHIN_SECONDS = 0.05

LOOPBACK = {"127.0.0.1", "::1", "localhost"}

#: Faust tables of the app (their changelog topics are created before the worker starts).
TABLE_NAMES: list[str] = []


def default_connect(settings: Settings) -> Callable[[], InsertBackend]:
    """Open the configured ClickHouse and make sure every table and view exists."""

    def connect() -> InsertBackend:
        from sinks.clickhouse import open_backend

        backend = open_backend(settings.clickhouse_url, settings.clickhouse_password)
        backend.ensure_schema()
        return backend

    return connect


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _headers(event: EventT[Any]) -> dict[str, str]:
    raw: Any = event.headers or {}
    pairs = raw.items() if isinstance(raw, Mapping) else raw
    return {
        k: (v.decode(errors="replace") if isinstance(v, bytes | bytearray) else str(v))
        for k, v in pairs
    }


def create_app(settings: Settings, connect: Callable[[], InsertBackend] | None = None) -> faust.App:
    """Build the worker's Faust app. ``connect`` overrides how ClickHouse is opened."""
    app = faust.App(
        settings.app_id,
        broker=settings.kafka_url,
        store="memory://",
        autodiscover=False,
        datadir=str(settings.data_dir / "faust"),
        web_enabled=True,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout / 3),
        producer_linger_ms=settings.producer_linger_ms,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
    )
    writer = SinkWriter(connect or default_connect(settings), settings.sink_retry_max_seconds)

    raw_topic = app.topic(
        topics.touchpoints(settings), key_serializer="raw", value_serializer="raw"
    )
    events_topic = app.topic(topics.events(settings), key_serializer="raw", value_serializer="raw")
    dlq_topic = app.topic(
        topics.touchpoints_dlq(settings), key_serializer="raw", value_serializer="raw"
    )
    sink_messages = max(1, settings.sink_batch_size // ENVELOPE_EVENTS)

    @app.agent(raw_topic, name="validate")
    async def validate(stream: faust.StreamT[bytes]) -> None:
        """Validate raw messages; valid events go on batched per customer partition,
        invalid ones go untouched to the DLQ with the reason and source in headers."""
        async for batch in durable_batches(
            stream, VALIDATE_BATCH_MESSAGES, VALIDATE_WITHIN_SECONDS
        ):
            routed = route(
                [
                    (Source(e.message.topic, e.message.partition, e.message.offset), e.value)
                    for e in batch
                ],
                settings.partitions,
            )
            metrics.MESSAGES_IN.inc(len(batch))
            now = time.time()
            channels: Counter[str] = Counter()
            for partition, events in routed.by_partition.items():
                for event in events:
                    channels[event.channel] += 1
                    metrics.EVENT_LAG.observe(max(0.0, now - event.occurred_at.timestamp()))
                for chunk in _chunks(events, ENVELOPE_EVENTS):
                    await events_topic.send(value=encode_batch(chunk), partition=partition)
            for channel, n in channels.items():
                metrics.EVENTS_IN.labels(channel).inc(n)
            for source, rejected in routed.rejected:
                metrics.EVENTS_INVALID.labels(rejected.kind).inc()
                await dlq_topic.send(
                    value=rejected.raw, headers=dead_letter_headers(source, rejected)
                )

    @app.agent(events_topic, name="sink_events")
    async def sink_events(stream: faust.StreamT[bytes]) -> None:
        """Insert validated events into ``touchpoint_events``; offsets commit after."""
        from schemas.rows import event_row

        async for batch in durable_batches(stream, sink_messages, settings.sink_flush_seconds):
            ingested_at = datetime.now(UTC)
            rows: list[tuple[Any, ...]] = []
            for e in batch:
                events, _ = decode_message(e.value)
                rows.extend(
                    event_row(
                        ev,
                        source_partition=e.message.partition,
                        source_offset=e.message.offset,
                        ingested_at=ingested_at,
                    )
                    for ev in events
                )
            await writer.write("touchpoint_events", rows)

    @app.agent(dlq_topic, name="sink_dead_letters")
    async def sink_dead_letters(stream: faust.StreamT[bytes]) -> None:
        """Insert dead letters, with their reasons, into ``dead_letters``."""
        from schemas.rows import dead_letter_row

        async for batch in durable_batches(stream, 1000, settings.sink_flush_seconds):
            rows: list[tuple[Any, ...]] = []
            for e in batch:
                h = _headers(e)
                # The record's own timestamp, not the wall clock: a replay then yields
                # the very same row (same partition of the table), so dedup applies.
                received_at = datetime.fromtimestamp(e.message.timestamp, UTC)
                rows.append(
                    dead_letter_row(
                        source_topic=h.get("cxpulse.source.topic", e.message.topic),
                        source_partition=int(h.get("cxpulse.source.partition", "-1")),
                        source_offset=int(h.get("cxpulse.source.offset", "-1")),
                        source_index=int(h.get("cxpulse.source.index", "-1")),
                        reason=h.get("cxpulse.reason", "unknown"),
                        payload=e.value or b"",
                        received_at=received_at,
                    )
                )
            await writer.write("dead_letters", rows)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        body, content_type = metrics.render()
        return web.bytes(body, content_type=content_type)

    class QueryView(faust.web.View):
        """Read-only SQL for ``cxpulse query`` from this machine (chDB is single-process)."""

        async def post(self, request: Any) -> Any:
            if request.remote not in LOOPBACK:
                return self.json({"error": "the query endpoint answers loopback only"}, status=403)
            try:
                sql = check_read_only((await request.read()).decode())
                columns, rows = await writer.query(sql)
            except NotReadOnly as exc:
                return self.json({"error": str(exc)}, status=400)
            except Exception as exc:  # the query's own error, for the person who typed it
                return self.json({"error": str(exc).strip().splitlines()[0][:500]}, status=400)
            body = json.dumps(
                {"columns": list(columns), "rows": [list(r) for r in rows]}, default=str
            )
            return self.bytes(body.encode(), content_type="application/json")

    app.page("/query")(QueryView)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "app": settings.app_id})

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_writer(app: faust.App, **kwargs: Any) -> None:
        writer.close()

    app.cxpulse_writer = writer  # type: ignore[attr-defined]
    return app
