"""HTTP ingest on the bundled broker: what a client sends, what it is answered, and what
Kafka then holds (records read back from the topics, never counted from offsets).

The server runs in this process (``IngestServer`` on a thread of its own, port 0) for
most tests, and as ``python -m cxpulse.streams.cli ingest`` for the command's own behaviour
(start-up line, refusal without a token, SIGTERM after a request in flight).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cxpulse.schemas.envelope import decode_message
from cxpulse.streams.admin import read_records
from cxpulse.streams.dev.broker import EmbeddedBroker, free_port
from cxpulse.streams.ingest import IngestServer, serve
from cxpulse.streams.partitioning import partition_for
from cxpulse.streams.publisher import validate_event
from cxpulse.streams.settings import Settings, load_settings

pytestmark = pytest.mark.kafka

TOKEN = "ingest-test-token-" + uuid.uuid4().hex[:12]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json", **AUTH}
LINES = {"Content-Type": "application/x-ndjson", **AUTH}
LIMIT = 64 * 1024  # CXPULSE_INGEST_MAX_BODY_BYTES of these tests
PARTITIONS = 3
ROOT = Path(__file__).resolve().parents[2]


def event(customer: str = "C-1", **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-20T09:30:00+00:00",
        "customer_id": customer,
        "channel": "atm",
        "touchpoint": "atm.withdrawal",
        "touchpoint_instance": "ATM-0042",
        "journey_stage": "purchase",
        "outcome": "success",
        "details": {"kind": "atm", "response_ms": 800.0},
    }
    doc.update(changes)
    return doc


class Running:
    """An ``IngestServer`` serving on a thread of its own until ``close()``."""

    def __init__(self, settings: Settings) -> None:
        self.server = IngestServer(settings, "127.0.0.1", 0)
        self.server.connect()
        self.lines: list[str] = []
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ingest-test", daemon=True)
        self._thread.start()
        self._started.wait(60)
        if self._failed is not None:
            raise self._failed
        assert self._started.is_set(), "the ingest server did not start"

    def _run(self) -> None:
        def announce(line: str) -> None:
            self.lines.append(line)
            self._started.set()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await serve(self.server, announce=announce, stop=self._stop)

        try:
            asyncio.run(main())  # as cxpulse ingest runs it: what is left is cancelled
        except BaseException as exc:
            self._failed = exc
            self._started.set()

    @property
    def port(self) -> int:
        return self.server.port

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(120)


@pytest.fixture
def settings(kafka_broker: EmbeddedBroker, unique_topic: Callable[[str], str]) -> Settings:
    return load_settings(
        kafka_url=kafka_broker.url,
        topic_prefix=unique_topic("in"),
        partitions=PARTITIONS,
        ingest_token=TOKEN,
        ingest_max_body_bytes=LIMIT,
    )


@pytest.fixture
def ingest(settings: Settings) -> Iterator[Running]:
    running = Running(settings)
    try:
        yield running
    finally:
        running.close()


def post(
    port: int, body: bytes | str, headers: dict[str, str], path: str = "/events"
) -> tuple[int, dict[str, Any], dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read()), dict(resp.getheaders())
    finally:
        conn.close()


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def touchpoints(settings: Settings, kafka_broker: EmbeddedBroker, expected: int) -> list[Any]:
    return read_records(
        kafka_broker.bootstrap, f"{settings.topic_prefix}.touchpoints", expected=expected
    )


def dead_letters(settings: Settings, kafka_broker: EmbeddedBroker, expected: int) -> list[Any]:
    return read_records(
        kafka_broker.bootstrap, f"{settings.topic_prefix}.touchpoints.dlq", expected=expected
    )


def events_of(records: list[Any]) -> dict[str, tuple[Any, str]]:
    """event_id → (record, customer_id) of every event in ``records``."""
    found: dict[str, tuple[Any, str]] = {}
    for record in records:
        events, rejected = decode_message(record.value)
        assert rejected == []
        for e in events:
            assert str(e.event_id) not in found, "an event published twice"
            found[str(e.event_id)] = (record, e.customer_id)
    return found


def headers_of(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


# -- accepted --------------------------------------------------------------------------------


def test_an_object_an_array_and_json_lines_are_published_keyed_by_customer(
    ingest: Running, settings: Settings, kafka_broker: EmbeddedBroker
) -> None:
    one = event("C-solo")
    batch = [event(f"C-{i % 7}") for i in range(40)]
    lines = [event(f"C-{i % 3}") for i in range(9)]

    status, body, _ = post(ingest.port, json.dumps(one), JSON)
    assert status == 200, body
    assert body["accepted"] == 1 and body["results"] == [
        {"index": 0, "status": "accepted", "event_id": one["event_id"]}
    ]
    status, body, _ = post(ingest.port, json.dumps(batch), JSON)
    assert status == 200 and body["accepted"] == 40
    assert [r["event_id"] for r in body["results"]] == [e["event_id"] for e in batch]
    jsonl = "\n".join(json.dumps(e) for e in lines) + "\n"
    status, body, _ = post(ingest.port, jsonl, LINES)
    assert status == 200 and body["accepted"] == 9

    # Acknowledged before the answer: every event is there now, once, on its customer's
    # partition; a message of one customer is keyed by it, a mixed one unkeyed.
    sent = [one, *batch, *lines]
    records = touchpoints(settings, kafka_broker, expected=1)
    found = events_of(records)
    assert set(found) == {e["event_id"] for e in sent}
    for record, customer in found.values():
        assert record.partition == partition_for(customer, PARTITIONS)
        customers = {e["customer_id"] for e in json.loads(record.value)}
        if len(customers) == 1:
            assert record.key == customer.encode()
        else:
            assert record.key is None
    solo, _ = found[one["event_id"]]
    assert solo.key == b"C-solo"
    assert not dead_letters(settings, kafka_broker, expected=0)


# -- rejected --------------------------------------------------------------------------------


def test_mixed_items_get_their_results_and_the_invalid_ones_reach_the_dlq(
    ingest: Running, settings: Settings, kafka_broker: EmbeddedBroker
) -> None:
    good = [event("C-a"), event("C-b")]
    bad = event("C-c", channel="fax")
    missing = {k: v for k, v in event("C-d").items() if k != "customer_id"}
    items: list[Any] = [good[0], bad, 7, missing, good[1]]
    status, body, _ = post(ingest.port, json.dumps(items), JSON)
    assert status == 207, body
    assert (body["accepted"], body["rejected"], body["failed"]) == (2, 3, 0)
    results = body["results"]
    assert [r["status"] for r in results] == [
        "accepted",
        "rejected",
        "rejected",
        "rejected",
        "accepted",
    ]
    # The reasons are the publisher SDK's, word for word.
    assert results[1]["reason"] == validate_event(bad)
    assert results[2]["reason"] == "expected a JSON object, got number"
    assert results[3]["reason"] == validate_event(missing)
    assert results[1]["event_id"] == bad["event_id"]

    found = events_of(touchpoints(settings, kafka_broker, expected=1))
    assert set(found) == {e["event_id"] for e in good}
    letters = dead_letters(settings, kafka_broker, expected=3)
    assert len(letters) == 3
    by_index = {int(headers_of(r)["cxpulse.source.index"]): r for r in letters}
    assert set(by_index) == {1, 2, 3}
    for index, record in by_index.items():
        h = headers_of(record)
        assert h["cxpulse.reason"] == results[index]["reason"]
        assert h["cxpulse.source.topic"] == "http"
        assert h["cxpulse.source.partition"] == "-1"
        assert int(h["cxpulse.source.offset"]) >= 0
        assert int(h["cxpulse.source.bytes"]) == len(record.value)
        assert "cxpulse.source.timestamp" in h
    # An item of an array is kept alone, as compact JSON (as the worker keeps a batch's).
    assert json.loads(by_index[1].value) == bad
    assert by_index[2].value == b"7"
    assert headers_of(by_index[1])["cxpulse.reason_kind"] == "literal_error"


def test_nothing_valid_is_400_and_the_same_request_again_gives_the_same_dead_letters(
    ingest: Running, settings: Settings, kafka_broker: EmbeddedBroker
) -> None:
    lines = '{"customer_id": "C-1"}\nnope\n'
    for _ in range(2):
        status, body, _ = post(ingest.port, lines, LINES)
        assert status == 400, body
        assert (body["accepted"], body["rejected"]) == (0, 2)
        assert body["results"][0]["reason"].startswith("event_id: Field required")
        assert body["results"][1]["reason"].startswith("not JSON: ")
        assert body["results"][1]["line"] == 2
    letters = dead_letters(settings, kafka_broker, expected=4)
    assert len(letters) == 4
    # Same body, same source offset and index: the same dead-letter ids in ClickHouse.
    positions = [
        (headers_of(r)["cxpulse.source.offset"], headers_of(r)["cxpulse.source.index"])
        for r in letters
    ]
    assert len(set(positions)) == 2
    assert sorted(r.value for r in letters) == sorted([b"nope", b'{"customer_id": "C-1"}'] * 2)


def test_an_unreadable_body_is_400_and_one_dead_letter(
    ingest: Running, settings: Settings, kafka_broker: EmbeddedBroker
) -> None:
    body_sent = "[" + json.dumps(event()) + ", {"
    status, body, _ = post(ingest.port, body_sent, JSON)
    assert status == 400
    assert body["error"].startswith("the request body: ") and body["results"] == []
    (letter,) = dead_letters(settings, kafka_broker, expected=1)
    h = headers_of(letter)
    assert h["cxpulse.source.index"] == "-1" and h["cxpulse.reason"] == body["error"]
    assert letter.value == body_sent.encode()
    assert not touchpoints(settings, kafka_broker, expected=0)


# -- refused before reading ------------------------------------------------------------------


def test_without_or_with_a_wrong_token_it_is_401(
    ingest: Running, settings: Settings, kafka_broker: EmbeddedBroker
) -> None:
    doc = json.dumps(event())
    for auth in ({}, {"Authorization": "Bearer wrong-token-of-some-length"}):
        status, body, headers = post(ingest.port, doc, {"Content-Type": "application/json", **auth})
        assert status == 401
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert "CXPULSE_INGEST_TOKEN" in body["error"] and TOKEN not in body["error"]
    assert not touchpoints(settings, kafka_broker, expected=0)
    assert not dead_letters(settings, kafka_broker, expected=0)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/json; charset=latin-1"],
)
def test_another_content_type_is_415(ingest: Running, content_type: str) -> None:
    status, body, _ = post(ingest.port, json.dumps(event()), {"Content-Type": content_type, **AUTH})
    assert status == 415
    assert "application/x-ndjson" in body["error"] or "send UTF-8" in body["error"]


def test_a_body_over_the_limit_is_413(ingest: Running) -> None:
    big = json.dumps([event() for _ in range(LIMIT // 300)])
    assert len(big) > LIMIT
    status, body, _ = post(ingest.port, big, JSON)
    assert status == 413 and "CXPULSE_INGEST_MAX_BODY_BYTES" in body["error"]


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += sock.recv(65536)
    return status, rest


def request_head(port: int, extra: str) -> bytes:
    return (
        f"POST /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer {TOKEN}\r\n{extra}\r\n"
    ).encode()


def test_a_declared_huge_body_is_refused_unread(ingest: Running) -> None:
    """Content-Length of 1 TB: the answer comes after 1 KiB of it was sent."""
    with socket.create_connection(("127.0.0.1", ingest.port), timeout=60) as sock:
        sock.sendall(request_head(ingest.port, f"Content-Length: {10**12}\r\n") + b"[" * 1024)
        status, body = read_answer(sock)
    assert status == 413
    assert f"{10**12:,} bytes" in json.loads(body)["error"]


def test_a_chunked_body_is_refused_once_past_the_limit_not_read_whole(ingest: Running) -> None:
    """No Content-Length: chunks are sent until the server answers, which it does once it
    has read past the limit, not after the (endless) body."""
    chunk = b" " * 8192
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", ingest.port), timeout=60) as sock:
        sock.sendall(request_head(ingest.port, "Transfer-Encoding: chunked\r\n"))
        while True:
            readable, writable, _ = select.select([sock], [sock], [], 60)
            if readable:
                break
            assert writable, "the server neither reads nor answers"
            assert sent < 200 * LIMIT, "the server kept reading past its limit"
            sock.sendall(framed)
            sent += len(chunk)
        status, body = read_answer(sock)
    assert status == 413 and "over the 64 KiB limit" in json.loads(body)["error"]


# -- probes and metrics ----------------------------------------------------------------------


def test_probes_and_metrics(ingest: Running) -> None:
    assert get(ingest.port, "/livez")[0] == 200
    status, body = get(ingest.port, "/readyz")
    assert status == 200 and json.loads(body)["status"] == "ready"
    post(ingest.port, json.dumps([event(), {"x": 1}]), JSON)
    status, text = get(ingest.port, "/metrics")
    assert status == 200
    assert b'cxpulse_ingest_requests_total{status="207"}' in text
    assert b'cxpulse_ingest_events_rejected_total{reason="missing"}' in text
    assert b"cxpulse_ingest_events_accepted_total" in text
    assert b"cxpulse_events_in_total" not in text  # the worker's metrics are not here
    assert ingest.lines[0].startswith(f"cxpulse ingest: POST http://127.0.0.1:{ingest.port}/")
    assert "bearer token required" in ingest.lines[0] and TOKEN not in ingest.lines[0]


# -- the command -----------------------------------------------------------------------------


def command_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXPULSE_")}
    env.update(
        PYTHONPATH=str(ROOT),
        CXPULSE_KAFKA_URL=settings.kafka_url,
        CXPULSE_TOPIC_PREFIX=settings.topic_prefix,
        CXPULSE_PARTITIONS=str(PARTITIONS),
    )
    env.update(extra)
    return env


def test_the_command_refuses_a_public_address_without_a_token(settings: Settings) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cxpulse.streams.cli", "ingest", "--host", "0.0.0.0"],
        env=command_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("cxpulse: refusing to listen on 0.0.0.0 without a token")


def test_the_command_starts_with_one_line_and_finishes_a_request_in_flight_on_sigterm(
    settings: Settings, kafka_broker: EmbeddedBroker
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cxpulse.streams.cli",
            "ingest",
            "--port",
            str(port),
            "--host",
            "0.0.0.0",
        ],
        env=command_env(settings, CXPULSE_INGEST_TOKEN=TOKEN, CXPULSE_LOG_LEVEL="warning"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"cxpulse ingest: POST http://0.0.0.0:{port}/events -> ")
        assert f"{settings.topic_prefix}.touchpoints at {settings.kafka_url}" in first
        assert "bearer token required" in first and TOKEN not in first

        # A request whose body is half sent when SIGTERM arrives still gets its answer.
        doc = json.dumps([event("C-term")]).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(request_head(port, f"Content-Length: {len(doc)}\r\n") + doc[:20])
            while b"cxpulse_ingest_requests_in_progress 1.0" not in get(port, "/metrics")[1]:
                time.sleep(0.05)  # until the server holds the request
            proc.send_signal(signal.SIGTERM)
            # the rest of the body comes after the server has begun to stop (it used to
            # be dropped then, and the request answered 408 after BODY_READ_SECONDS)
            time.sleep(1.0)
            sock.sendall(doc[20:])
            status, body = read_answer(sock)
        assert status == 200 and json.loads(body)["accepted"] == 1
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopped after answering" in out
    assert TOKEN not in out + err and "Traceback" not in err
    found = events_of(touchpoints(settings, kafka_broker, expected=1))
    assert set(found) == {json.loads(doc)[0]["event_id"]}


def test_a_gzip_body_is_read_and_its_limit_is_after_decompression(ingest: Running) -> None:
    import gzip

    docs = [event() for _ in range(3)]
    headers = {**JSON, "Content-Encoding": "gzip"}
    status, body, _ = post(ingest.port, gzip.compress(json.dumps(docs).encode()), headers)
    assert status == 200 and body["accepted"] == 3
    bomb = gzip.compress(b"[" + b" " * (50 * LIMIT) + b"]")
    assert len(bomb) < LIMIT
    status, body, _ = post(ingest.port, bomb, headers)
    assert status == 413
