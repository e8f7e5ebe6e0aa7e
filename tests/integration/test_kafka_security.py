"""Kafka connection settings end to end, with real clients and the bundled broker.

- TLS with a client certificate (mTLS): the publisher SDK and ``cxpulse publish`` send
  over TLS, aiokafka reads the events back over TLS, ``cxpulse alerts`` reads over TLS,
  and a worker runs its pipeline over TLS. The bundled tansu cannot serve TLS itself (see
  ``tests/integration/kafka_tls.py``): a TLS-terminating proxy sits in front of it.
- Refused TLS: an untrusted broker certificate, a missing client certificate, and a
  plain client on a TLS port, each one line from ``cxpulse publish``.
- SASL: tansu's ``--authentication`` (SCRAM only; its memory and S3 storage keep no
  credentials, so no login can succeed): a SCRAM login is refused with one line, the
  password never printed. A successful SASL login is not testable with tansu 0.6.0.
- Fail fast: nothing listening, an unknown host, and malformed URLs, as one line with
  exit status 2 and no traceback.

No durations are asserted: the commands must end (pytest's timeout) and say why.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from cxpulse.schemas.envelope import decode_message
from cxpulse.streams.dev.broker import EmbeddedBroker, free_port
from cxpulse.streams.dev.demo import WorkerProcess, scrape, sink_rows
from cxpulse.streams.kafka_config import aiokafka_config, kafka_env
from cxpulse.streams.publisher import Publisher
from cxpulse.streams.settings import Settings, load_settings
from tests.integration.kafka_tls import PROXY_HOST, Certs, TLSProxy, make_certs
from tests.integration.test_broker_publish import make_events

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Scram-" + uuid.uuid4().hex[:12]  # distinctive: any leak is found by a search


def cxpulse(
    *args: str, env: dict[str, str | None], cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cxpulse ARGS`` with these settings on top of a clean Kafka environment."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_KAFKA")}
    full.update({k: v for k, v in env.items() if v is not None})
    full["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "cxpulse.streams.cli", *args],
        env=full,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The command failed with status 2 and a single ``cxpulse: ...`` line."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cxpulse: "), done.stderr
    return lines[0]


# -- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[str]:
    """The bundled broker behind a TLS proxy that wants a client certificate:
    ``127.0.0.2:port``, the only address clients are told about."""
    log_dir = tmp_path_factory.mktemp("tls-broker")
    with EmbeddedBroker(host="127.0.0.1", advertised_host=PROXY_HOST, log_dir=log_dir) as broker:
        proxy = TLSProxy(PROXY_HOST, broker.port, ("127.0.0.1", broker.port), certs).start()
        try:
            yield f"{PROXY_HOST}:{broker.port}"
        finally:
            proxy.stop()


def tls_settings(bootstrap: str, certs: Certs, **more: Any) -> Settings:
    return load_settings(
        kafka_url=bootstrap,
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=certs.ca,
        kafka_ssl_certfile=certs.client_cert,
        kafka_ssl_keyfile=certs.client_key,
        **more,
    )


async def read_events(settings: Settings, topic: str, expected: int) -> list[str]:
    """Every event id on ``topic``, read with aiokafka over the settings' security."""
    consumer = AIOKafkaConsumer(
        **aiokafka_config(settings), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions: set[int] | None = None
        for _ in range(100):
            partitions = consumer.partitions_for_topic(topic)
            if partitions:
                break
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        assert partitions, f"{topic} not found"
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        ids: list[str] = []
        for _ in range(200):
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    events, rejected = decode_message(record.value)
                    assert rejected == []
                    ids.extend(str(e.event_id) for e in events)
            if len(ids) >= expected:
                break
        return ids
    finally:
        await consumer.stop()


def test_mtls_publish_with_the_sdk_and_read_back_with_aiokafka(
    tls_broker: str, certs: Certs, unique_topic: Callable[[str], str]
) -> None:
    settings = tls_settings(tls_broker, certs, topic_prefix=unique_topic("tls"), partitions=2)
    events = make_events(40)
    with Publisher(settings, batch_size=7) as publisher:
        publisher.publish_many(events)
    assert publisher.summary.sent == 40 and publisher.summary.failed == 0
    got = asyncio.run(read_events(settings, publisher.topic, 40))
    assert sorted(got) == sorted(e["event_id"] for e in events)


def test_mtls_cxpulse_publish_and_alerts(
    tls_broker: str, certs: Certs, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    settings = tls_settings(tls_broker, certs, topic_prefix=unique_topic("cli"))
    env = {**kafka_env(settings), "CXPULSE_TOPIC_PREFIX": settings.topic_prefix}
    lines = "".join(json.dumps(e) + "\n" for e in make_events(12))
    done = cxpulse("publish", "-", env=env, cwd=tmp_path, stdin=lines)
    assert done.returncode == 0, done.stderr
    assert "sent 12 events" in done.stdout + done.stderr
    got = asyncio.run(read_events(settings, f"{settings.topic_prefix}.touchpoints", 12))
    assert len(got) == 12
    # The alert tail (kafka-python's consumer) over TLS: no alerts yet, a clean exit.
    done = cxpulse("alerts", "--idle-timeout", "1", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
@pytest.mark.clickhouse
def test_a_worker_runs_over_mtls(
    tls_broker: str, certs: Certs, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    """Faust's consumer and producer, the table recovery's reader, the admin and the
    readiness probe, all over TLS: the events come out of the pipeline as moments."""
    settings = tls_settings(
        tls_broker,
        certs,
        topic_prefix=unique_topic("w"),
        app_id=unique_topic("app"),
        partitions=2,
        clickhouse_url=f"chdb://{tmp_path / 'chdb'}",
        web_port=free_port(),
        data_dir=tmp_path / "var",
    )
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        with Publisher(settings) as publisher:
            publisher.publish_many(make_events(20, customers=4))
        # Consumed, scored into moments (produced to their topic) and inserted into chDB.
        deadline = time.monotonic() + 120
        metrics: dict[Any, float] = {}
        while time.monotonic() < deadline and worker.alive():
            metrics = scrape(settings.web_port)
            if sink_rows(metrics, "touchpoint_events") >= 20 and sink_rows(metrics, "moments"):
                break
            time.sleep(1)
        assert sink_rows(metrics, "touchpoint_events") == 20, worker.log_tail(30)
        assert sink_rows(metrics, "moments") > 0, worker.log_tail(30)
        ready = readyz(settings.web_port)
        assert ready == 200, worker.log_tail(30)
    finally:
        if worker.proc is not None:
            worker.proc.terminate()
            worker.proc.wait(60)


def readyz(port: int) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_an_untrusted_broker_certificate_is_one_line(
    tls_broker: str, certs: Certs, tmp_path: Path
) -> None:
    settings = tls_settings(tls_broker, certs).model_copy(
        update={"kafka_ssl_cafile": certs.other_ca}
    )
    line = one_line_error(cxpulse("publish", "-", env=kafka_env(settings), cwd=tmp_path))
    assert f"Kafka at {tls_broker} presented a certificate this client does not trust" in line
    assert "CXPULSE_KAFKA_SSL_CAFILE" in line


def test_a_missing_client_certificate_is_one_line(
    tls_broker: str, certs: Certs, tmp_path: Path
) -> None:
    settings = load_settings(
        kafka_url=tls_broker, kafka_security_protocol="SSL", kafka_ssl_cafile=certs.ca
    )
    line = one_line_error(cxpulse("publish", "-", env=kafka_env(settings), cwd=tmp_path))
    # TLS 1.3: the server refuses the missing certificate after the handshake, by
    # closing (the client may see the alert, or only the close).
    assert tls_broker in line
    assert "client certificate" in line and "CXPULSE_KAFKA_SSL_CERTFILE" in line


def test_a_plain_client_on_a_tls_port_is_told_about_tls(tls_broker: str, tmp_path: Path) -> None:
    line = one_line_error(
        cxpulse("publish", "-", env={"CXPULSE_KAFKA_URL": tls_broker}, cwd=tmp_path)
    )
    assert f"cannot reach Kafka at {tls_broker}" in line
    assert "CXPULSE_KAFKA_SECURITY_PROTOCOL=SSL" in line


# -- SASL --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(log_dir=tmp_path_factory.mktemp("sasl"), authentication=True) as broker:
        yield broker


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
def test_a_refused_sasl_login_is_one_line_without_the_password(
    sasl_broker: EmbeddedBroker, mechanism: str, tmp_path: Path
) -> None:
    env = {
        "CXPULSE_KAFKA_URL": sasl_broker.bootstrap,
        "CXPULSE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "CXPULSE_KAFKA_SASL_MECHANISM": mechanism,
        "CXPULSE_KAFKA_SASL_USERNAME": "alice",
        "CXPULSE_KAFKA_SASL_PASSWORD": PASSWORD,
    }
    done = cxpulse("publish", "-", env=env, cwd=tmp_path, stdin="")
    line = one_line_error(done)
    assert PASSWORD not in done.stdout + done.stderr
    assert f"SASL_PLAINTEXT ({mechanism} as alice)" in line


# -- fail fast ---------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["publish", "-"], ["alerts"], ["worker"]])
def test_nothing_listening_is_one_line(command: list[str], tmp_path: Path) -> None:
    url = f"kafka://127.0.0.1:{free_port()}"
    env = {"CXPULSE_KAFKA_URL": url, "CXPULSE_DATA_DIR": str(tmp_path / "var")}
    line = one_line_error(cxpulse(*command, env=env, cwd=tmp_path, stdin=""))
    assert "cannot reach Kafka at 127.0.0.1:" in line and "(connection refused)" in line
    assert "CXPULSE_KAFKA_URL" in line


def test_port_one_and_an_unknown_host_are_one_line(tmp_path: Path) -> None:
    env = {"CXPULSE_KAFKA_URL": "kafka://127.0.0.1:1"}
    assert "127.0.0.1:1 (connection refused)" in one_line_error(
        cxpulse("publish", "-", env=env, cwd=tmp_path, stdin="")
    )
    env = {"CXPULSE_KAFKA_URL": "localhost:1,no-such-broker.invalid:9092"}
    line = one_line_error(cxpulse("publish", "-", env=env, cwd=tmp_path, stdin=""))
    assert "localhost:1 (connection refused)" in line
    assert "no-such-broker.invalid:9092 (unknown host)" in line


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("kafka://host:notaport", "the port of 'host:notaport' is not a number"),
        ("kafka://", "names no host"),
        ("ssl://broker:9093", "CXPULSE_KAFKA_SECURITY_PROTOCOL"),
    ],
)
def test_a_malformed_url_stops_every_command_at_once(url: str, says: str, tmp_path: Path) -> None:
    for command in (["publish", "-"], ["alerts"], ["worker"]):
        env = {"CXPULSE_KAFKA_URL": url, "CXPULSE_DATA_DIR": str(tmp_path / "var")}
        line = one_line_error(cxpulse(*command, env=env, cwd=tmp_path, stdin=""))
        assert line.startswith("cxpulse: configuration error: CXPULSE_KAFKA_URL=") and says in line


def test_the_bootstrap_list_is_fine_when_any_address_answers(
    kafka_broker: EmbeddedBroker, unique_topic: Callable[[str], str], tmp_path: Path
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    env = {
        "CXPULSE_KAFKA_URL": f"{dead},no-such-broker.invalid:9092,{kafka_broker.bootstrap}",
        "CXPULSE_TOPIC_PREFIX": unique_topic("any"),
    }
    lines = "".join(json.dumps(e) + "\n" for e in make_events(3))
    done = cxpulse("publish", "-", env=env, cwd=tmp_path, stdin=lines)
    assert done.returncode == 0, done.stderr


def test_kafka_python_clients_bootstrap_from_the_address_that_answered(
    kafka_broker: EmbeddedBroker,
) -> None:
    """kafka-python picks a bootstrap server at random and waits out the backoff of one
    that failed rather than try another: given the whole list it gave up after 10 s about
    once in 40 clients while the live broker was listed. Each client gets the server that
    answered; forty clients in a row then all connect (each in milliseconds)."""
    from cxpulse.streams.admin import _admin, client_config

    listed = f"127.0.0.1:{free_port()},no-such-broker.invalid:9092,{kafka_broker.bootstrap}"
    settings = load_settings(kafka_url=listed)
    assert client_config(settings)["bootstrap_servers"] == [kafka_broker.bootstrap]
    for _ in range(40):
        _admin(settings).close()


def test_a_slow_broker_is_reachable_not_down() -> None:
    """A listener that accepts at once but answers after the connect window (a busy
    broker) is waited for: slow is not unreachable."""
    import socket
    import struct
    import threading

    from cxpulse.streams.admin import CONNECT_SECONDS, wait_for_kafka

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer_late() -> None:
        conn, _ = server.accept()
        with conn:
            request = conn.recv(64)
            correlation_id = request[8:12]
            time.sleep(CONNECT_SECONDS + 1)
            conn.sendall(struct.pack(">i", 4) + correlation_id)

    thread = threading.Thread(target=answer_late, daemon=True)
    thread.start()
    try:
        wait_for_kafka(f"127.0.0.1:{port}")
    finally:
        server.close()
        thread.join(10)
