"""The live alert tail behind ``cxpulse alerts --follow``: read ``cx.alerts``, filter, print.

Operations watch this in a terminal (one coloured line per alert: critical red, warning
yellow, info cyan) or pipe it (``as_json``: one JSON object per line, the alert exactly as
published). It reads without a consumer group: a tail must not commit offsets, take
partitions away from another tail, or leave a group behind; every partition of the topic
is assigned to it directly.

A repeat of an alert (same ``alert_id``, higher ``count``) is printed again with its count
(``×3``): the newest state is what a person acting on it needs. A message that is not an
alert (another producer's mistake, a future schema) is skipped with one warning line on
stderr; the tail never stops for one bad message.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Collection, Iterable
from typing import IO, Any

from kafka import KafkaConsumer, TopicPartition
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from cxpulse.schemas.alerts import Alert
from cxpulse.streams.admin import Bootstrap, client_config

SEVERITY_STYLES = {"critical": "bold red", "warning": "yellow", "info": "cyan"}
_WAIT_FOR_TOPIC_S = 0.5


def decode_alerts(value: bytes | None) -> list[Alert]:
    """The alerts in one ``cx.alerts`` message: a JSON object, or an array of them.

    Raises ValueError (one line) when the message holds anything else.
    """
    if value is None:
        raise ValueError("empty message")
    try:
        data = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc.__class__.__name__})") from None
    items = data if isinstance(data, list) else [data]
    out = []
    for item in items:
        try:
            out.append(Alert.model_validate(item))
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "<message>"
            raise ValueError(f"not an alert: {where}: {first['msg']}") from None
    return out


def matches(
    alert: Alert,
    *,
    severity: Collection[str] | None = None,
    rules: Collection[str] | None = None,
    channels: Collection[str] | None = None,
    tiers: Collection[str] | None = None,
) -> bool:
    """Whether an alert passes the filters (None or empty = no filter on that field)."""
    return (
        (not severity or alert.severity in severity)
        and (not rules or alert.rule in rules)
        and (not channels or (alert.channel or "") in channels)
        and (not tiers or (alert.tier or "") in tiers)
    )


def render(alert: Alert) -> Text:
    """One terminal line: time, severity, rule, subject, tier, score, explanation, action."""
    style = SEVERITY_STYLES.get(alert.severity, "")
    when = alert.updated_at.strftime("%Y-%m-%d %H:%M:%SZ")
    subject = f"{alert.subject_kind} {alert.subject}"
    line = Text(no_wrap=False)
    line.append(f"{when} ", style="dim")
    line.append(f"{alert.severity.upper():<8} ", style=style)
    line.append(f"{alert.rule:<19} ", style="bold")
    line.append(subject)
    if alert.tier:
        line.append(f" tier {alert.tier}")
    if alert.score is not None:
        line.append(f" score {alert.score:.0f}")
    if alert.count > 1:
        line.append(f" ×{alert.count}", style=style)
    line.append(f"  {alert.explanation}")
    line.append(f"  → {alert.recommended_action}", style="italic")
    return line


def follow_alerts(
    bootstrap: Bootstrap,
    topic: str,
    *,
    severity: set[str] | None = None,
    rules: set[str] | None = None,
    channels: set[str] | None = None,
    tiers: set[str] | None = None,
    as_json: bool = False,
    from_beginning: bool = False,
    max_alerts: int | None = None,
    per_rule: int | None = None,
    idle_timeout: float | None = None,
    out: IO[str] = sys.stdout,
    err: IO[str] = sys.stderr,
    color: bool | None = None,
) -> int:
    """Print the alerts on ``topic`` that pass the filters; return how many were printed.

    Starts at the end of every partition (only new alerts), or at the beginning with
    ``from_beginning``. Stops after ``max_alerts`` printed, or after ``idle_timeout``
    seconds without any message (None: follow until interrupted). ``per_rule`` prints at
    most that many alerts of each rule, so one noisy rule cannot crowd the others off a
    console. ``color`` forces colour on or off; by default rich decides from ``out`` (a
    pipe gets none).
    """
    console = Console(file=out, force_terminal=color, no_color=color is False, soft_wrap=True)
    consumer = KafkaConsumer(
        **client_config(bootstrap),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest",
        allow_auto_create_topics=False,
        fetch_max_wait_ms=200,
        client_id="cxpulse-alerts-follow",
    )
    printed = 0
    by_rule: dict[str, int] = {}
    last_activity = time.monotonic()

    def idle() -> bool:
        return idle_timeout is not None and time.monotonic() - last_activity >= idle_timeout

    try:
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:
            if idle():
                return 0
            time.sleep(_WAIT_FOR_TOPIC_S)
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        if from_beginning:
            consumer.seek_to_beginning(*tps)
        else:
            consumer.seek_to_end(*tps)
        while max_alerts is None or printed < max_alerts:
            batch = consumer.poll(timeout_ms=200)
            if not batch:
                if idle():
                    break
                continue
            last_activity = time.monotonic()
            for records in batch.values():
                for alert in _readable(records, err):
                    if not matches(
                        alert, severity=severity, rules=rules, channels=channels, tiers=tiers
                    ):
                        continue
                    if per_rule is not None:
                        if by_rule.get(alert.rule, 0) >= per_rule:
                            continue
                        by_rule[alert.rule] = by_rule.get(alert.rule, 0) + 1
                    if as_json:
                        out.write(alert.model_dump_json() + "\n")
                        out.flush()
                    else:
                        console.print(render(alert))
                    printed += 1
                    if max_alerts is not None and printed >= max_alerts:
                        return printed
        return printed
    finally:
        consumer.close()


def _readable(records: Iterable[Any], err: IO[str]) -> Iterable[Alert]:
    for record in records:
        try:
            yield from decode_alerts(record.value)
        except ValueError as exc:
            err.write(
                f"warning: skipped message {record.topic}[{record.partition}]@{record.offset}: "
                f"{exc}\n"
            )
            err.flush()
