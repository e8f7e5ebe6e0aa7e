"""Give every partition the worker's group reads a committed offset before Faust starts.

Why. On the bundled tansu broker a restarted worker was seen to begin a partition that
its group had never committed at that partition's end, skipping what was already there
(docs/operations.md, "Start offsets"), although ``auto_offset_reset`` is ``earliest``. A
committed offset takes the reset out of the path: the worker starts where the commit
says. So each partition of the topics the worker consumes that has no committed offset gets
one at its earliest offset, which is exactly what ``earliest`` means. A group with live
members refuses a commit from outside its generation: their offsets then stand.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from streams.settings import Settings

log = logging.getLogger(__name__)


def commit_missing_start_offsets(settings: Settings, topics: Iterable[str]) -> int:
    """Commit the earliest offset for each partition of ``topics`` that the worker's group
    has not committed. Returns how many were committed."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata

    group = settings.app_id
    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, client_id="cxpulse-start-offsets"
    )
    try:
        committed = admin.list_group_offsets({group: None}).get(group, {})
    finally:
        admin.close()
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        client_id="cxpulse-start-offsets",
    )
    try:
        missing = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
            if TopicPartition(topic, p) not in committed
        ]
        if not missing:
            return 0
        earliest = consumer.beginning_offsets(missing)
        try:
            consumer.commit({tp: OffsetAndMetadata(earliest[tp], "", -1) for tp in missing})
        except KafkaError as exc:  # a live group refuses commits from outside: theirs stand
            log.info("group %s keeps its own offsets (%s)", group, exc)
            return 0
    finally:
        consumer.close()
    log.info("committed start offsets for %d partitions of group %s", len(missing), group)
    return len(missing)
