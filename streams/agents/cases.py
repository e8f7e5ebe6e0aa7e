"""The cases agent (docs/cases.md): alerts open and update cases, commands acknowledge,
resolve, escalate and expire them; every change goes to the compacted ``cx.cases`` topic
and from there into ClickHouse (``cases``, ``case_history``).

One agent reads ``cx.alerts`` and ``cx.case-commands``, both keyed by the customer or the
touchpoint instance, so the worker owning a subject's partition holds its case (the
changelogged table ``cases``: subject → its latest case) and applies both in order, in
takes (up to ``CASE_TAKE`` messages): each message's change is worked out from the case
the one before left, every change of the take goes to cx.cases and is acknowledged by the
broker, and only then is the table set (``handle``). The logic is pure
(``cxpulse.streams.cases.lifecycle``); this module moves bytes.

Deadlines: a timer looks at the cases of the partitions this worker owns and sends an
``escalate`` (or ``expire``) command for each one due; the agent applies it like any
command, so the escalation is a recorded change (the table, cx.cases) and a replay or a
second timer finds it done. The escalation raises a ``case_overdue`` alert on cx.alerts.

The hot path is untouched: cases read cx.alerts only, never cx.events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

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
from cxpulse.streams.pipeline.produce import Record, submit_keyed
from cxpulse.streams.pipeline.takes import LINGER_SECONDS, WITHIN_SECONDS
from cxpulse.streams.runtime import Runtime
from cxpulse.streams.state.changelog import send_records
from cxpulse.streams.state.table_codec import compact_value_type, encode_values

log = logging.getLogger(__name__)

TABLE = "cases"
#: Alerts and commands a take at most (``handle``).
CASE_TAKE = 1_000


class _Step(NamedTuple):
    """What one message of a take does: ``change`` (None: the case is forgotten, its
    tombstone sent) to the case of subject ``key``."""

    event: Any
    key: bytes
    change: CaseChange | None
    case_id: str


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

    def decide(event: Any, latest: Callable[[bytes], Case | None]) -> _Step | None:
        """What one message does to its subject's case (``latest``: the case as the take
        left it so far): a change, a forget, or nothing (a refused command, junk)."""
        try:
            if event.message.topic == commands_name:
                command = CaseCommand.from_json_bytes(event.value)
                key = subject_key(command.kind, command.subject).encode()
                if command.command == "forget":
                    if forget(latest(key), command, section):
                        return _Step(event, key, None, str(command.case_id))
                    return None
                try:
                    change = apply_command(latest(key), command, section)
                except CommandRefused as exc:
                    log.info("case command %s refused: %s", command.command, exc)
                    return None
            else:
                alert = Alert.from_json_bytes(event.value)
                key = subject_key(kind_of(alert), alert.subject).encode()
                change = apply_alert(latest(key), alert, section)
        except ValueError as exc:  # another producer's junk must not stop the agent
            log.warning("skipping an unreadable message on %s: %s", event.message.topic, exc)
            return None
        return None if change is None else _Step(event, key, change, str(change.case.case_id))

    async def handle(take: list[Any]) -> None:
        """A take of alerts and commands, in order: each subject's case worked out from the
        one before it (in the take, else in the table); then every change sent to cx.cases
        and acknowledged by the broker, and only then the table set, the feed told and
        the follow-ups sent (an escalation's alert, a recovery's event).

        cx.cases first, acknowledged before the table is set: a crash before then
        re-derives the same changes (same versions) on redelivery, and the copies
        collapse downstream. Not waiting for the acknowledgement let the table's
        changelog record reach the broker while the change itself was lost with the
        process: the replay then saw the change as done and never sent it. The
        acknowledgements are awaited once a take, not once a change: one at a time, a
        change waited for the producer's linger and the broker, and the agent kept up
        with ~30 alerts a second while an incident raised hundreds."""
        started = time.perf_counter()
        cases_now: dict[bytes, Case | None] = {}

        def latest(key: bytes) -> Case | None:
            return cases_now[key] if key in cases_now else table.get(key)

        steps: list[_Step] = []
        for event in take:
            step = decide(event, latest)
            if step is not None:
                steps.append(step)
                cases_now[step.key] = None if step.change is None else step.change.case
        if not steps:
            return
        # every change (or a forget's tombstone) on cx.cases, acknowledged by the broker
        changes = [
            (step.case_id, None if step.change is None else step.change.to_json_bytes())
            for step in steps
        ]
        await asyncio.gather(*await submit_keyed(cases_topic, changes))
        # The table: each subject's latest case once, in the partition of the message
        # that left it so (alerts and commands are keyed by subject, as the table is),
        # its changelog records sent together and acknowledged.
        last = {step.key: step for step in steps}
        store = table.data
        kept = [key for key in last if cases_now[key] is not None]
        values = dict(zip(kept, encode_values(store, [cases_now[k] for k in kept]), strict=True))
        changelog: dict[int, list[Record]] = {}
        for key, step in last.items():
            record = (store._encode_key(key), values.get(key))  # None: the key deleted
            changelog.setdefault(step.event.message.partition, []).append(record)
            case = cases_now[key]
            if case is None:
                store.pop(key, None)
            else:
                store[key] = case
        await send_records(table, changelog)
        now = datetime.now(UTC)
        overdue_alerts = []
        for step in steps:
            change = step.change
            if change is None:
                feed.forget(step.case_id)
                continue
            feed.apply(change)
            metrics.CASE_CHANGES.labels(change.change).inc()
            if change.change == "escalated":
                overdue_alerts.append((overdue_alert(change, now), time.time()))
            recovery = recovery_event(change)
            if recovery is not None and change.case.customer_id:
                await rt.raw.send(
                    key=change.case.customer_id.encode(), value=json.dumps(recovery).encode()
                )
        if overdue_alerts:
            await asyncio.gather(*await send_alerts(rt, overdue_alerts))
        metrics.BATCH_SECONDS.labels("cases").observe(time.perf_counter() - started)

    @rt.app.agent(source, name="cases")
    async def cases(stream: Any) -> None:
        """Takes of cx.alerts and cx.case-commands; a take's offsets are acknowledged once
        it is handled (``durable_batches``)."""
        async for take in durable_batches(stream, CASE_TAKE, WITHIN_SECONDS, linger=LINGER_SECONDS):
            await handle(take)

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
