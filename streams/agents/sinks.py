"""Sink agents: topic batches into ClickHouse, offsets committed only after the insert.

Each agent takes many messages at once (``durable_batches``) so an insert carries
thousands of rows, and acknowledges them only when the sink writer says they are
durable. Decoding here re-validates internal messages: cheap next to the insert, and a
schema mismatch between worker versions then surfaces as an error, not a wrong row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from schemas.alert_rows import alert_row
from schemas.alerts import Alert
from schemas.envelope import decode_message
from schemas.rows import dead_letter_row, event_row
from schemas.score_rows import moment_rows, score_row
from schemas.scoring import Moment, ScoreUpdate
from streams.durable_batches import durable_batches
from streams.runtime import Runtime

log = logging.getLogger(__name__)

MOMENTS = TypeAdapter(list[Moment])
SCORE_UPDATES = TypeAdapter(list[ScoreUpdate])


def _headers(event: Any) -> dict[str, str]:
    raw: Any = event.headers or {}
    pairs = raw.items() if isinstance(raw, Mapping) else raw
    return {
        k: (v.decode(errors="replace") if isinstance(v, bytes | bytearray) else str(v))
        for k, v in pairs
    }


def register(rt: Runtime) -> None:
    flush = rt.settings.sink_flush_seconds

    @rt.app.agent(rt.events, name="sink_events")
    async def sink_events(stream: Any) -> None:
        """Validated events into ``touchpoint_events``."""
        async for batch in durable_batches(stream, rt.sink_messages, flush):
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
            await rt.writer.write("touchpoint_events", rows)

    @rt.app.agent(rt.dlq, name="sink_dead_letters")
    async def sink_dead_letters(stream: Any) -> None:
        """Dead letters, with their reasons, into ``dead_letters``."""
        async for batch in durable_batches(stream, 1000, flush):
            rows: list[tuple[Any, ...]] = []
            for e in batch:
                h = _headers(e)
                rows.append(
                    dead_letter_row(
                        source_topic=h.get("cxpulse.source.topic", e.message.topic),
                        source_partition=int(h.get("cxpulse.source.partition", "-1")),
                        source_offset=int(h.get("cxpulse.source.offset", "-1")),
                        source_index=int(h.get("cxpulse.source.index", "-1")),
                        reason=h.get("cxpulse.reason", "unknown"),
                        payload=e.value or b"",
                        # The record's own time, not the wall clock: a replay then yields
                        # the very same row (same table partition), so dedup applies.
                        received_at=datetime.fromtimestamp(e.message.timestamp, UTC),
                    )
                )
            await rt.writer.write("dead_letters", rows)

    @rt.app.agent(rt.moments, name="sink_moments")
    async def sink_moments(stream: Any) -> None:
        """Moments into ``moments`` and their factors into ``moment_factors``."""
        async for batch in durable_batches(stream, rt.sink_messages, flush):
            rows: list[tuple[Any, ...]] = []
            factor_rows: list[tuple[Any, ...]] = []
            for e in batch:
                for moment in MOMENTS.validate_json(e.value):
                    row, factors = moment_rows(moment)
                    rows.append(row)
                    factor_rows.extend(factors)
            await rt.writer.write("moments", rows)
            await rt.writer.write("moment_factors", factor_rows)

    @rt.app.agent(rt.scores, name="sink_scores")
    async def sink_scores(stream: Any) -> None:
        """Score updates into ``customer_scores`` (latest) and ``score_history``."""
        async for batch in durable_batches(stream, rt.sink_messages, flush):
            rows = [
                score_row(update) for e in batch for update in SCORE_UPDATES.validate_json(e.value)
            ]
            await rt.writer.write("customer_scores", rows)
            await rt.writer.write("score_history", rows)

    @rt.app.agent(rt.alerts, name="sink_alerts")
    async def sink_alerts(stream: Any) -> None:
        """Alerts into ``alerts``; a repeat (same alert_id, higher count) replaces it."""
        async for batch in durable_batches(stream, 1000, flush):
            rows = []
            for e in batch:
                try:
                    rows.append(alert_row(Alert.from_json_bytes(e.value)))
                except ValueError as exc:  # another producer's junk must not stop the sink
                    log.warning("skipping an unreadable alert message: %s", exc)
            await rt.writer.write("alerts", rows)
