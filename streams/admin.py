"""Kafka administration: reachability, explicit topic creation, and reading topics back.

Why explicit creation: a broker that auto-creates topics (tansu does, with 4 partitions,
on the first metadata request that names an unknown topic) could give a source topic a
different partition count than its Faust table's changelog, which crashes the agent with
``PartitionsMismatch``. So every topic is created here, with its partition count and its
settings, before any client touches it. (tansu's DescribeConfigs only reports settings
given at creation, so settings must be given then.)

Why the readers count by consuming: tansu under-reports a partition's end offset when a
record batch holds several records, so offsets cannot prove how many records a topic
holds. ``count_records`` and ``read_records`` read every record instead.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from cxpulse.streams.settings import ConfigError, Settings
from cxpulse.streams.topics import TopicSpec

Bootstrap = str | Sequence[str]


class KafkaUnavailable(ConfigError):
    """Kafka cannot be reached: one line saying where and how to fix it."""


class TopicMismatch(ConfigError):
    """An existing topic's partition count differs from what cxpulse is configured for."""


def _hosts(bootstrap: Bootstrap) -> list[str]:
    if isinstance(bootstrap, str):
        bootstrap = bootstrap.removeprefix("kafka://").replace(";", ",").split(",")
    return [h.strip() for h in bootstrap if h.strip()]


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def probe_kafka(host: str, port: int, timeout: float = 2.0) -> None:
    """Send one Kafka ApiVersions (v0) request and check the reply's correlation id.

    A TCP connect alone succeeds against anything listening on the port (or a broker
    still starting up); a protocol round trip proves a Kafka broker is serving. Raises
    OSError when it is not. Standard library only, so it is cheap enough to poll.
    """
    client_id = b"cxpulse-probe"
    correlation_id = 0x0C0FFEE
    header = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(header)) + header)
        head = b""
        while len(head) < 8:
            chunk = sock.recv(8 - len(head))
            if not chunk:
                raise ConnectionError("connection closed before a Kafka reply")
            head += chunk
    size, got_id = struct.unpack(">ii", head)
    if size < 4 or got_id != correlation_id:
        raise ConnectionError("the reply is not a Kafka ApiVersions response")


def wait_for_kafka(bootstrap: Bootstrap, timeout: float = 30.0) -> None:
    """Return once any bootstrap server answers the Kafka protocol, else one line of error.

    Workers and the publisher call this first so an unreachable broker is reported at
    once and plainly, instead of as a client library retry loop or traceback.
    """
    hosts = _hosts(bootstrap)
    deadline = time.monotonic() + timeout
    last = "no bootstrap servers given"
    while True:
        for hostport in hosts:
            try:
                probe_kafka(*_split(hostport), timeout=min(2.0, max(timeout, 0.1)))
                return
            except (OSError, ValueError) as exc:
                last = str(exc) or type(exc).__name__
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    raise KafkaUnavailable(
        f"cannot reach Kafka at {','.join(hosts)} ({last}): start it with `cxpulse broker` "
        "or set CXPULSE_KAFKA_URL"
    )


def _admin(bootstrap: Bootstrap) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            bootstrap_servers=_hosts(bootstrap), client_id="cxpulse-admin", request_timeout_ms=15000
        )
    except KafkaError as exc:
        raise KafkaUnavailable(
            f"cannot reach Kafka at {','.join(_hosts(bootstrap))} ({exc}): start it with "
            "`cxpulse broker` or set CXPULSE_KAFKA_URL"
        ) from None


def _partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partition count of each named topic that exists (metadata without auto-creation)."""
    if not names:
        return {}
    described = admin.describe_topics(names)
    return {t["name"]: len(t["partitions"]) for t in described if t.get("error_code", 0) == 0}


def ensure_topics(
    settings: Settings,
    specs: Sequence[TopicSpec],
    *,
    check_partitions: bool = True,
    timeout: float = 10.0,
) -> dict[str, str]:
    """Create each topic that does not exist yet, with its partition count and config.

    Idempotent: an existing topic with the wanted partition count is left alone. With
    ``check_partitions`` (what workers need), a different count is a one-line error
    naming the topic; producers, which do not care how a topic is partitioned, pass
    False. Returns ``{topic: "created" | "exists"}``.
    """
    wait_for_kafka(settings.bootstrap_servers, timeout=timeout)
    admin = _admin(settings.bootstrap_servers)
    try:
        wanted = {spec.name: spec for spec in specs}
        existing = _partition_counts(admin, list(wanted))
        result: dict[str, str] = {}
        for name, spec in wanted.items():
            if name in existing:
                result[name] = "exists"
                continue
            topic = NewTopic(
                name,
                spec.partitions,
                settings.replication_factor,
                topic_configs=dict(spec.config),
            )
            try:
                admin.create_topics([topic], timeout_ms=int(timeout * 1000))
                result[name] = "created"
            except TopicAlreadyExistsError:  # another worker created it meanwhile
                result[name] = "exists"
            except KafkaError as exc:
                raise KafkaUnavailable(
                    f"cannot create topic {name} ({spec.partitions} partitions, replication "
                    f"{settings.replication_factor}): {exc}"
                ) from None
        _wait_visible(admin, list(wanted), timeout)
        if check_partitions:
            found = _partition_counts(admin, list(wanted))
            for name, spec in wanted.items():
                if name in found and found[name] != spec.partitions:
                    raise TopicMismatch(
                        f"topic {name} has {found[name]} partitions but cxpulse wants "
                        f"{spec.partitions} (CXPULSE_PARTITIONS): set CXPULSE_PARTITIONS="
                        f"{found[name]}, or delete the topic (its data is lost) and let "
                        "cxpulse create it again"
                    )
        return result
    finally:
        admin.close()


def _wait_visible(admin: KafkaAdminClient, names: list[str], timeout: float) -> None:
    """Creation is acknowledged before metadata shows the topic everywhere: wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        missing = set(names) - set(_partition_counts(admin, names))
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise KafkaUnavailable(
                f"topics {', '.join(sorted(missing))} were created but do not show up in "
                f"the broker's metadata after {timeout:.0f}s"
            )
        time.sleep(0.1)


def _consume(
    bootstrap: Bootstrap,
    topic: str,
    timeout: float,
    expected: int | None,
    idle: float,
    keep: bool,
) -> tuple[int, list[Any]]:
    """Read a topic from the beginning of every partition, without a consumer group.

    Stops when nothing new arrived for ``idle`` seconds, provided ``expected`` (if given)
    has been reached; always stops at ``timeout``. Waiting out ``idle`` after reaching
    ``expected`` is deliberate: a test asserting an exact count also sees duplicates.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=_hosts(bootstrap),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        allow_auto_create_topics=False,
        fetch_max_wait_ms=100,
        client_id="cxpulse-reader",
    )
    try:
        deadline = time.monotonic() + timeout
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.1)
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return 0, []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        count = 0
        records: list[Any] = []
        last_seen = time.monotonic()
        while True:
            now = time.monotonic()
            enough = expected is None or count >= expected
            if now >= deadline or (enough and now - last_seen >= idle):
                break
            batch = consumer.poll(timeout_ms=100)
            for recs in batch.values():
                count += len(recs)
                if keep:
                    records.extend(recs)
                last_seen = time.monotonic()
        return count, records
    finally:
        consumer.close()


def count_records(
    bootstrap: Bootstrap,
    topic: str,
    timeout: float = 10.0,
    *,
    expected: int | None = None,
    idle: float = 1.0,
) -> int:
    """How many records ``topic`` holds, counted by reading them (never from offsets).

    Give ``expected`` to wait (up to ``timeout``) for records still on their way.
    """
    count, _ = _consume(bootstrap, topic, timeout, expected, idle, keep=False)
    return count


def read_records(
    bootstrap: Bootstrap,
    topic: str,
    timeout: float = 10.0,
    *,
    expected: int | None = None,
    idle: float = 1.0,
) -> list[Any]:
    """Every record of ``topic`` as kafka-python ``ConsumerRecord``s (``.key``, ``.value``,
    ``.headers`` as ``[(str, bytes)]``, ``.partition``, ``.offset``), in partition order."""
    _, records = _consume(bootstrap, topic, timeout, expected, idle, keep=True)
    return records
