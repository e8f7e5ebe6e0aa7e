"""Every topic name and its configuration, in one place.

Topics are created explicitly with their partition count before any client touches them:
a broker that auto-creates topics (tansu does, with 4 partitions) could otherwise give a
source topic a different partition count than its table's changelog.
"""

from __future__ import annotations

from dataclasses import dataclass

from cxpulse.streams.settings import Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]
    purpose: str


def touchpoints(s: Settings) -> str:
    """Raw events from upstream: a JSON object or array per message, any key (an event in
    its customer's partition, as the SDK sends it, is scored with no hop)."""
    return f"{s.topic_prefix}.touchpoints"


def touchpoints_dlq(s: Settings) -> str:
    """Dead letters: a single event or unusable message as it came, a batch item
    re-encoded alone, at most 64 KiB of either; reason, source, original size in headers."""
    return f"{s.topic_prefix}.touchpoints.dlq"


def events(s: Settings) -> str:
    """Validated events as trusted msgpack records (streams/pipeline/records.py), batched
    per partition of customer_id: those that came in another partition than their
    customer's."""
    return f"{s.topic_prefix}.events"


def health(s: Settings) -> str:
    """Validated events batched per partition of their touchpoint instance (health state
    lives with the instance, not the customer)."""
    return f"{s.topic_prefix}.health"


def moments(s: Settings) -> str:
    """The moments and moment_factors rows of scored events, as earlier workers wrote them
    (msgpack, streams/pipeline/rows.py): no longer written (the experience step inserts
    its rows at its checkpoints); the sink agents drain what is left here."""
    return f"{s.topic_prefix}.moments"


def scores(s: Settings) -> str:
    """The customer_scores rows of score updates, as earlier workers wrote them (msgpack,
    streams/pipeline/rows.py): no longer written (the experience step inserts its rows at
    its checkpoints); the sink agents drain what is left here."""
    return f"{s.topic_prefix}.scores"


def alerts(s: Settings) -> str:
    """Early-warning alerts, keyed by customer_id or touchpoint instance."""
    return f"{s.topic_prefix}.alerts"


def cases(s: Settings) -> str:
    """Case changes (schemas/cases.py ``CaseChange``, JSON), keyed by case_id; compacted,
    so it keeps every case's latest change: what each worker's case view reads."""
    return f"{s.topic_prefix}.cases"


def case_commands(s: Settings) -> str:
    """Commands on cases (ack, resolve, escalate, expire; ``CaseCommand``, JSON), keyed
    like the alerts (customer id or instance), so the worker owning the case applies
    them."""
    return f"{s.topic_prefix}.case-commands"


def all_topics(s: Settings, table_names: list[str] | None = None) -> list[TopicSpec]:
    """Every topic cxpulse uses, including Faust table changelogs, with explicit configs."""
    week = str(7 * 24 * 3600 * 1000)
    month = str(30 * 24 * 3600 * 1000)
    specs = [
        TopicSpec(touchpoints(s), s.partitions, {"retention.ms": week}, "raw upstream events"),
        TopicSpec(touchpoints_dlq(s), s.partitions, {"retention.ms": month}, "dead letters"),
        TopicSpec(events(s), s.partitions, {"retention.ms": week}, "validated event records"),
        TopicSpec(health(s), s.partitions, {"retention.ms": week}, "events by instance"),
        TopicSpec(moments(s), s.partitions, {"retention.ms": week}, "moment rows (drained)"),
        TopicSpec(scores(s), s.partitions, {"retention.ms": week}, "score rows (drained)"),
        TopicSpec(alerts(s), s.partitions, {"retention.ms": month}, "alerts"),
        TopicSpec(cases(s), s.partitions, {"cleanup.policy": "compact"}, "case changes"),
        TopicSpec(case_commands(s), s.partitions, {"retention.ms": month}, "case commands"),
    ]
    for table in table_names or []:
        specs.append(
            TopicSpec(
                f"{s.app_id}-{table}-changelog",
                s.partitions,
                {"cleanup.policy": "compact"},
                f"changelog of table {table}",
            )
        )
    return specs
