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

import queue
import socket
import ssl
import struct
import threading
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from cxpulse.streams.kafka_config import describe, kafka_python_config, ssl_context
from cxpulse.streams.kafka_url import format_address, parse_bootstrap
from cxpulse.streams.settings import ConfigError, Settings
from cxpulse.streams.topics import TopicSpec

#: Where Kafka is: the settings (bootstrap servers and security), or bootstrap servers
#: alone (PLAINTEXT), as ``host:port[,host:port]`` or a list of ``host:port``.
Bootstrap = Settings | str | Sequence[str]

#: How long a command or a starting worker tries to reach Kafka before it gives up with
#: one line: long enough for a broker that is restarting, short enough to fail fast.
CONNECT_SECONDS = 2.0

#: How long a broker that accepted the connection may take to answer: a busy broker is
#: reachable, and slow is not down (this is not the fail-fast path).
REPLY_SECONDS = 15.0

HOW_TO_FIX = "start it with `cxpulse broker` or set CXPULSE_KAFKA_URL"


class KafkaUnavailable(ConfigError):
    """Kafka cannot be reached: one line saying where and how to fix it."""


class TopicMismatch(ConfigError):
    """An existing topic's partition count differs from what cxpulse is configured for."""


def _addresses(bootstrap: Bootstrap) -> list[tuple[str, int]]:
    if isinstance(bootstrap, Settings):
        bootstrap = bootstrap.bootstrap_servers
    if isinstance(bootstrap, str):
        return parse_bootstrap(bootstrap)
    return [a for item in bootstrap for a in parse_bootstrap(item)]


def client_config(bootstrap: Bootstrap, timeout: float = CONNECT_SECONDS) -> dict[str, Any]:
    """kafka-python keyword arguments to reach ``bootstrap`` once it answers: with the
    settings' security when given settings, plain otherwise.

    The client bootstraps from the server that answered first (``wait_for_kafka``), not
    from the whole list: kafka-python picks a bootstrap server at random and, when that
    one failed before, waits out its backoff instead of trying another, so with two dead
    addresses of three it gave up after 10 s about once in 40 while the third answered.
    The broker it reaches lists the cluster's other brokers.
    """
    answered = wait_for_kafka(bootstrap, timeout)
    if isinstance(bootstrap, Settings):
        return {**kafka_python_config(bootstrap), "bootstrap_servers": [answered]}
    return {"bootstrap_servers": [answered]}


def probe_kafka(
    host: str,
    port: int,
    timeout: float = 2.0,
    *,
    tls: ssl.SSLContext | None = None,
    reply_timeout: float | None = None,
) -> None:
    """Send one Kafka ApiVersions (v0) request and check the reply's correlation id.

    A TCP connect alone succeeds against anything listening on the port (or a broker
    still starting up); a protocol round trip proves a Kafka broker is serving. With
    ``tls`` the request goes over TLS, so the broker's certificate (and, for mTLS, ours)
    is checked too; a SASL listener answers ApiVersions before the login. Raises OSError
    (``ssl.SSLError`` for TLS) when it is not answered. Standard library only, so it is
    cheap enough to poll. ``timeout`` bounds the connect, ``reply_timeout`` (default: the
    same) the TLS handshake and the reply once connected.
    """
    client_id = b"cxpulse-probe"
    correlation_id = 0x0C0FFEE
    header = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        raise TimeoutError(f"no answer to the connect within {timeout:g}s") from None
    reply = reply_timeout or timeout
    with raw:
        raw.settimeout(reply)
        try:
            sock = tls.wrap_socket(raw, server_hostname=host) if tls is not None else raw
            with sock:
                sock.sendall(struct.pack(">i", len(header)) + header)
                head = b""
                while len(head) < 8:
                    chunk = sock.recv(8 - len(head))
                    if not chunk:
                        raise ConnectionError("connection closed before a Kafka reply")
                    head += chunk
        except TimeoutError:
            raise TimeoutError(f"connected, but no Kafka answer within {reply:g}s") from None
    size, got_id = struct.unpack(">ii", head)
    if size < 4 or got_id != correlation_id:
        raise ConnectionError("the reply is not a Kafka ApiVersions response")


def _reason(exc: BaseException, timeout: float) -> str:
    """Why one address did not answer, in a few words."""
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return str(exc) or f"no answer within {timeout:g}s"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).strip().lower() or type(exc).__name__


def _probe_all(
    addresses: list[tuple[str, int]], timeout: float, tls: ssl.SSLContext | None
) -> str | dict[str, BaseException]:
    """Probe every address at once (each on a daemon thread, so a host name that takes
    long to resolve cannot hold the caller past ``timeout``); the first address to answer
    (``host:port``) as soon as one does, else the error of each."""
    results: queue.Queue[tuple[str, BaseException | None]] = queue.Queue()

    def probe(address: tuple[str, int]) -> None:
        try:
            probe_kafka(*address, timeout=timeout, tls=tls, reply_timeout=REPLY_SECONDS)
            results.put((format_address(address), None))
        except (OSError, ValueError) as exc:
            results.put((format_address(address), exc))

    for address in addresses:
        threading.Thread(target=probe, args=(address,), daemon=True).start()
    errors: dict[str, BaseException] = {}
    end = time.monotonic() + timeout + REPLY_SECONDS + 0.2
    while len(errors) < len(addresses):
        try:
            where, error = results.get(timeout=max(0.01, end - time.monotonic()))
        except queue.Empty:
            break
        if error is None:
            return where
        errors[where] = error
    for address in addresses:
        errors.setdefault(format_address(address), TimeoutError())
    return errors


def _fatal(errors: dict[str, BaseException]) -> str | None:
    """A one-line error when retrying cannot help (the TLS handshake refused), else None.
    (An EOF in the handshake is retried: a proxy whose broker is not up yet does that.)"""
    for where, exc in errors.items():
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (
                f"Kafka at {where} presented a certificate this client does not trust "
                f"({exc.verify_message or exc.reason}): set CXPULSE_KAFKA_SSL_CAFILE to the "
                "CA that signed it (and connect by a name or address the certificate holds)"
            )
    for where, exc in errors.items():
        if isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLEOFError):
            return (
                f"the TLS handshake with Kafka at {where} failed ({exc.reason or exc}): "
                "is that port a TLS listener (else CXPULSE_KAFKA_SECURITY_PROTOCOL="
                "PLAINTEXT or SASL_PLAINTEXT), and does it want a client certificate "
                "(CXPULSE_KAFKA_SSL_CERTFILE, CXPULSE_KAFKA_SSL_KEYFILE)?"
            )
    return None


def _hint(errors: dict[str, BaseException], tls: bool) -> str:
    """The fix to suggest: a listener that closes a plain connection unanswered may
    want TLS; otherwise the broker is not there."""
    closed = all("closed before a Kafka reply" in str(e) for e in errors.values())
    if closed and not tls:
        return (
            "if its listener uses TLS set CXPULSE_KAFKA_SECURITY_PROTOCOL=SSL (or SASL_SSL); "
            + HOW_TO_FIX
        )
    if closed:  # TLS 1.3: a server refuses a missing client certificate after the handshake
        return (
            "if it wants a client certificate (mTLS) set CXPULSE_KAFKA_SSL_CERTFILE and "
            "CXPULSE_KAFKA_SSL_KEYFILE; " + HOW_TO_FIX
        )
    return HOW_TO_FIX


def wait_for_kafka(
    bootstrap: Bootstrap,
    timeout: float = CONNECT_SECONDS,
    *,
    tls: ssl.SSLContext | None = None,
) -> str:
    """Return the first bootstrap server (``host:port``) to answer the Kafka protocol,
    else raise one line of error.

    Workers, the publisher and every command call this first so that an unreachable
    broker (unknown host, refused connection, no answer) or a refused TLS handshake is
    reported within ``timeout`` and plainly, instead of as a client library's retry loop
    or traceback. Given settings, it connects as they say (TLS when the protocol uses
    it); ``tls`` gives the TLS context with bare bootstrap servers.
    """
    if isinstance(bootstrap, Settings):
        tls = ssl_context(bootstrap)
        security = f" over {describe(bootstrap)}" if tls is not None else ""
    else:
        security = ""
    addresses = _addresses(bootstrap)
    deadline = time.monotonic() + timeout
    while True:
        attempt = min(2.0, max(deadline - time.monotonic(), 0.1))
        errors = _probe_all(addresses, attempt, tls)
        if isinstance(errors, str):
            return errors
        fatal = _fatal(errors)
        if fatal is not None:
            raise KafkaUnavailable(fatal)
        unknown = all(isinstance(e, socket.gaierror) for e in errors.values())
        if unknown or time.monotonic() >= deadline:
            break  # (a host name that does not resolve now will not in a moment either)
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    reasons = ", ".join(f"{where} ({_reason(exc, attempt)})" for where, exc in errors.items())
    raise KafkaUnavailable(
        f"cannot reach Kafka{security} at {reasons}: {_hint(errors, tls is not None)}"
    )


def check_kafka(settings: Settings, timeout: float = CONNECT_SECONDS) -> None:
    """``wait_for_kafka`` with the settings' servers and security: what every command
    that talks to Kafka does first."""
    wait_for_kafka(settings, timeout)


def _admin(bootstrap: Bootstrap, timeout: float = CONNECT_SECONDS) -> KafkaAdminClient:
    config = client_config(bootstrap, timeout)
    try:
        return KafkaAdminClient(
            **config,
            client_id="cxpulse-admin",
            request_timeout_ms=15000,
            bootstrap_timeout_ms=10_000,
        )
    except KafkaError as exc:
        login = ""
        if isinstance(bootstrap, Settings) and bootstrap.kafka_security_protocol.startswith(
            "SASL_"
        ):
            login = (
                f"; it answers, so check the login ({describe(bootstrap)}): "
                "CXPULSE_KAFKA_SASL_MECHANISM, _USERNAME and _PASSWORD"
            )
        raise KafkaUnavailable(
            f"cannot connect to Kafka at {','.join(config['bootstrap_servers'])} "
            f"({exc}){login}: {HOW_TO_FIX}"
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
    admin = _admin(settings, timeout=min(timeout, CONNECT_SECONDS))
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
        **client_config(bootstrap),
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
