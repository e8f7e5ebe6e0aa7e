"""Sink agents: topic batches into ClickHouse, offsets committed only after the insert.

Each agent takes many messages at once (``durable_batches``) so an insert carries
thousands of rows, and acknowledges them only when the sink writer says they are
durable. Events, moments and scores do not pass through here: the experience step, the
one agent reading cx.touchpoints and cx.events, inserts their rows at its checkpoints
(``cxpulse.streams.pipeline.checkpoint``), so no topic is read twice only to carry rows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cxpulse.schemas.alert_rows import alert_row
from cxpulse.schemas.alerts import Alert
from cxpulse.schemas.rows import dead_letter_row
from cxpulse.streams.durable_batches import durable_batches
from cxpulse.streams.pipeline.rows import moments_of, scores_of
from cxpulse.streams.runtime import Runtime, items_in

log = logging.getLogger(__name__)


def _headers(event: Any) -> dict[str, str]:
    raw: Any = event.headers or {}
    pairs = raw.items() if isinstance(raw, Mapping) else raw
    return {
        k: (v.decode(errors="replace") if isinstance(v, bytes | bytearray) else str(v))
        for k, v in pairs
    }


def _int_header(headers: dict[str, str], name: str) -> int | None:
    try:
        return int(headers[name])
    except (KeyError, ValueError):
        return None


def _received_at(headers: dict[str, str], event: Any) -> datetime:
    """The source record's time (``cxpulse.source.timestamp``), else this record's own.

    Never the wall clock: a replay of the same input then yields the very same row, in
    the same monthly partition, so ReplacingMergeTree merges the copies. The DLQ record's
    own time is only a fallback (another producer's record without the header): a replay
    re-produces the dead letter, with a new record time.
    """
    millis = _int_header(headers, "cxpulse.source.timestamp")
    for seconds in (None if millis is None else millis / 1000, event.message.timestamp):
        if seconds:
            try:
                return datetime.fromtimestamp(seconds, UTC)
            except (OverflowError, OSError, ValueError):
                continue
    return datetime.now(UTC)


def dead_letter_of(event: Any) -> tuple[Any, ...]:
    """The ``dead_letters`` row of one DLQ record. Headers another producer got wrong (or
    left out) fall back to defaults: a DLQ record must never stop this sink."""
    h = _headers(event)
    payload = event.value or b""
    size = _int_header(h, "cxpulse.source.bytes")
    index = _int_header(h, "cxpulse.source.index")
    partition = _int_header(h, "cxpulse.source.partition")
    offset = _int_header(h, "cxpulse.source.offset")
    return dead_letter_row(
        source_topic=h.get("cxpulse.source.topic", event.message.topic),
        source_partition=-1 if partition is None else partition,
        source_offset=-1 if offset is None else offset,
        source_index=index,
        reason=h.get("cxpulse.reason", "unknown"),
        payload=payload,
        received_at=_received_at(h, event),
        # The value may have been cut upstream (an oversize message keeps 1 KiB): the
        # header has the size it had.
        payload_bytes=None if size is None else max(size, len(payload)),
    )


def register(rt: Runtime) -> None:
    flush = rt.settings.sink_flush_seconds
    per_insert = rt.settings.sink_batch_size  # rows, counted from each message's header

    @rt.app.agent(rt.dlq, name="sink_dead_letters")
    async def sink_dead_letters(stream: Any) -> None:
        """Dead letters, with their reasons, into ``dead_letters``."""
        async for batch in durable_batches(stream, 1000, flush):
            await rt.writer.write("dead_letters", [dead_letter_of(e) for e in batch])

    @rt.app.agent(rt.moments, name="sink_moments")
    async def sink_moments(stream: Any) -> None:
        """Drains cx.moments: what workers before the checkpointed experience step left
        there (the experience agent now inserts its rows itself). Remove once no
        deployment can hold such a backlog."""
        async for batch in durable_batches(stream, per_insert, flush, size=items_in):
            rows: list[tuple[Any, ...]] = []
            factor_rows: list[tuple[Any, ...]] = []
            for e in batch:
                moments, factors = moments_of(e.value)
                rows.extend(moments)
                factor_rows.extend(factors)
            await rt.writer.write("moments", rows)
            await rt.writer.write("moment_factors", factor_rows)

    @rt.app.agent(rt.scores, name="sink_scores")
    async def sink_scores(stream: Any) -> None:
        """Drains cx.scores, as ``sink_moments`` drains cx.moments."""
        async for batch in durable_batches(stream, per_insert, flush, size=items_in):
            rows = [row for e in batch for row in scores_of(e.value)]
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
