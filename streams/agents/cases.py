"""The cases agent (docs/cases.md): alerts open and update cases, commands acknowledge,
resolve, escalate and expire them; every change goes to the compacted ``cx.cases`` topic
and from there into ClickHouse (``cases``, ``case_history``).

One agent reads ``cx.alerts`` and ``cx.case-commands``, both keyed by the customer or the
touchpoint instance, so the worker owning a subject's partition holds its case (the
changelogged table ``cases``: subject → its latest case) and applies both in order. The
logic is pure (``cxpulse.streams.cases.lifecycle``); this module moves bytes.

Deadlines: a timer looks at the cases of the partitions this worker owns and sends an
``escalate`` (or ``expire``) command for each one due; the agent applies it like any
command, so the escalation is a recorded change (the table, cx.cases) and a replay or a
second timer finds it done. The escalation raises a ``case_overdue`` alert on cx.alerts.

The hot path is untouched: cases read cx.alerts only, never cx.events.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

from cxpulse.schemas.alerts import Alert
from cxpulse.schemas.case_rows import case_rows
from cxpulse.schemas.cases import Case, CaseChange, CaseCommand, subject_key
from cxpulse.streams import metrics, topics
from cxpulse.streams.agents.alerting import send_alerts
from cxpulse.streams.cases.feed import CaseFeed, follow
from cxpulse.streams.cases.lifecycle import (
    CommandRefused,
    apply_alert,
    apply_command,
    expirable,
    forget,
    forgettable,
    kind_of,
    overdue,
    overdue_alert,
    recovery_event,
)
from cxpulse.streams.durable_batches import durable_batches
from cxpulse.streams.kafka_config import aiokafka_config
from cxpulse.streams.partitioning import partition_for
from cxpulse.streams.runtime import Runtime
from cxpulse.streams.state.table_codec import compact_value_type

log = logging.getLogger(__name__)

TABLE = "cases"


def _case_bytes(case: Case) -> bytes:
    return case.model_dump_json().encode()


def register(rt: Runtime) -> CaseFeed:
    """Register the table, the agent, the deadline timer, the sink and the feed."""
    s = rt.settings
    section = rt.model.cases
    feed = CaseFeed()
    rt.case_feed = feed
    alerts_name, commands_name = topics.alerts(s), topics.case_commands(s)
    cases_topic = rt.app.topic(topics.cases(s), key_serializer="raw", value_serializer="raw")
    commands = rt.app.topic(commands_name, key_serializer="raw", value_serializer="raw")
    rt.cases, rt.case_commands = cases_topic, commands
    table: Any = rt.app.Table(
        TABLE,
        default=None,
        partitions=s.partitions,
        key_type=bytes,
        value_type=compact_value_type("cxpulse-case", Case.model_validate_json, _case_bytes),
        help="kind:subject -> the subject's latest case (open, or closed until the next)",
    )
    source = rt.app.topic(alerts_name, commands_name, key_serializer="raw", value_serializer="raw")

    async def publish(key: bytes, change: CaseChange) -> None:
        case = change.case
        # cx.cases first, acknowledged by the broker before the table is set: a crash
        # before then re-derives the same change (same version) on redelivery, and the
        # copies collapse downstream. Not waiting for the acknowledgement let the table's
        # changelog record (sent after it) reach the broker while the change itself was
        # lost with the process: the replay then saw the change as done and never sent it.
        sent = await cases_topic.send(key=str(case.case_id).encode(), value=change.to_json_bytes())
        await sent
        table[key] = case
        feed.apply(change)
        metrics.CASE_CHANGES.labels(change.change).inc()
        if change.change == "escalated":
            await send_alerts(rt, [overdue_alert(change, datetime.now(UTC))], time.time())
        recovery = recovery_event(change)
        if recovery is not None and case.customer_id:
            await rt.raw.send(key=case.customer_id.encode(), value=json.dumps(recovery).encode())

    @rt.app.agent(source, name="cases")
    async def cases(stream: Any) -> None:
        async for event in stream.events():
            try:
                if event.message.topic == commands_name:
                    command = CaseCommand.from_json_bytes(event.value)
                    key = subject_key(command.kind, command.subject).encode()
                    if command.command == "forget":
                        if forget(table.get(key), command, section):
                            # the tombstone first, as publish sends the change first
                            sent = await cases_topic.send(
                                key=str(command.case_id).encode(), value=None
                            )
                            await sent
                            del table[key]
                            feed.forget(str(command.case_id))
                        continue
                    try:
                        change = apply_command(table.get(key), command, section)
                    except CommandRefused as exc:
                        log.info("case command %s refused: %s", command.command, exc)
                        continue
                else:
                    alert = Alert.from_json_bytes(event.value)
                    key = subject_key(kind_of(alert), alert.subject).encode()
                    change = apply_alert(table.get(key), alert, section)
            except ValueError as exc:  # another producer's junk must not stop the agent
                log.warning("skipping an unreadable message on %s: %s", event.message.topic, exc)
                continue
            if change is not None:
                await publish(key, change)

    def owned(case: Case, actives: set[Any]) -> bool:
        p = partition_for(case.subject, s.partitions)
        return any(tp.topic == alerts_name and tp.partition == p for tp in actives)

    async def send_command(case: Case, what: str, now: datetime) -> None:
        command = CaseCommand(
            command=what,
            case_id=case.case_id,
            kind=case.kind,
            subject=case.subject,
            at=now,
        )
        await commands.send(key=case.subject.encode(), value=command.to_json_bytes())

    @rt.app.timer(s.cases_check_seconds, name="case_deadlines")
    async def case_deadlines() -> None:
        """Escalate the overdue, expire the untouched and forget the long closed cases
        this worker owns."""
        now = datetime.now(UTC)
        actives = set(rt.app.assignor.assigned_actives())
        counts = {"open": 0, "acknowledged": 0}
        for case in list(table.values()):
            if case is None or not owned(case, actives):
                continue
            if case.closed:
                if forgettable(case, now, section):
                    await send_command(case, "forget", now)
                continue
            counts[case.status] = counts.get(case.status, 0) + 1
            due = "expire" if expirable(case, now, section) else None
            if due is None and overdue(case, now):
                due = "escalate"
            if due is None:
                continue
            await send_command(case, due, now)
        for status, n in counts.items():
            metrics.CASES_OPEN.labels(status).set(n)

    @rt.app.agent(cases_topic, name="sink_cases")
    async def sink_cases(stream: Any) -> None:
        """Case changes into ``cases`` and ``case_history``."""
        async for batch in durable_batches(stream, 1000, s.sink_flush_seconds):
            rows, history = [], []
            for e in batch:
                if e.value is None:
                    continue
                try:
                    case_row, history_row = case_rows(CaseChange.from_json_bytes(e.value))
                except ValueError as exc:
                    log.warning("skipping an unreadable case change: %s", exc)
                    continue
                rows.append(case_row)
                history.append(history_row)
            await rt.writer.write("cases", rows)
            await rt.writer.write("case_history", history)

    def consumer() -> Any:
        from aiokafka import AIOKafkaConsumer

        config = {**aiokafka_config(s), "enable_auto_commit": False, "group_id": None}
        return AIOKafkaConsumer(**config)

    @rt.app.task
    async def case_feed() -> None:
        """Every case of every partition, for the API on this worker."""
        await follow(feed, topics.cases(s), consumer)

    return feed
