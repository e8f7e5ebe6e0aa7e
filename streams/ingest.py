"""``cxpulse ingest``: touchpoint events over HTTP, for systems that cannot speak Kafka (an
ATM switch, a store's POS, a vendor's webhook). Its own process, stateless, so ingestion
scales apart from processing: run several behind a load balancer (docs/ingest.md).

``POST /events`` takes one event (a JSON object), a JSON array of events, or JSON Lines,
read and checked by the publisher SDK's own code (``cxpulse.streams.publisher``: the same parser
as ``cxpulse publish``, the same contract, the same reasons, the same batch messages keyed
and partitioned by ``customer_id``). The answer comes after Kafka has acknowledged
(``acks=all``) every message of the request, so a 2xx means every event in it is durable
on the touchpoint topic and every rejected item is in the dead-letter topic with its
reason, as for invalid input read from Kafka:

- 200: every event accepted;
- 207: some accepted, some rejected (``results`` says which and why);
- 400: nothing accepted: every item rejected, or the body is not JSON / JSON Lines of
  events at all (``error``); either way the client must fix what it sends;
- 401: no bearer token, or a wrong one (when ``CXPULSE_INGEST_TOKEN`` is set);
- 408: the body did not arrive within ``BODY_READ_SECONDS``;
- 413: the body is over ``CXPULSE_INGEST_MAX_BODY_BYTES`` (said by Content-Length: refused
  unread; else refused once that much has been read), or holds over 10,000 items;
- 415: another Content-Type than application/json or JSON Lines, or a charset not UTF-8;
- 503: Kafka did not acknowledge in time: send the same request again (event ids
  deduplicate the events, and the dead letters' ids come from the body, so those too).

Why a thread: kafka-python's ``send`` may block (metadata, a full buffer: backpressure),
and reading and validating a body is CPU work that would stall the event loop. So each
request's body is handed to one thread that parses, validates and hands the messages to
the producer, and the event loop only reads bodies and awaits acknowledgements. At most
``IN_PROCESS`` requests are read and checked at once, each at most the body limit: memory
stays bounded whatever the clients send.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import io
import json
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from kafka.errors import KafkaError
from pydantic import SecretStr, TypeAdapter, ValidationError

from cxpulse.schemas.envelope import EMPTY_BATCH_REASON, MAX_BATCH_EVENTS, UTF8_BOM, Rejected
from cxpulse.schemas.envelope import _safe_item_bytes as item_bytes
from cxpulse.schemas.events import TouchpointEvent
from cxpulse.streams import metrics
from cxpulse.streams.pipeline.decode import records_of
from cxpulse.streams.publisher import (
    InputError,
    Oversize,
    Publisher,
    PublishError,
    SourceItem,
    encode_event,
    iter_source,
    validate_event,
)
from cxpulse.streams.readiness import KafkaProbe, one_line, probe_interval, readiness
from cxpulse.streams.routing import Source, dead_letter_headers
from cxpulse.streams.settings import ConfigError, Settings, is_loopback
from cxpulse.streams.topics import all_topics, touchpoints_dlq

log = logging.getLogger(__name__)

PATH = "/events"
JSON_TYPES = frozenset({"application/json"})
JSON_LINES_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
    }
)
#: Requests read and checked at once; more wait, their bodies unread (TCP pushes back).
IN_PROCESS = 4
#: The longest wait for a request's body once its headers are in.
BODY_READ_SECONDS = 30.0
#: The longest wait for Kafka's acknowledgements (the producer gives up after 30 s).
ACK_SECONDS = 45.0
#: How long a stopping server lets requests in flight finish.
SHUTDOWN_SECONDS = 50.0
RETRY_AFTER_SECONDS = 5
LINGER_SECONDS = 2.0
#: ``cxpulse.source.topic`` of a dead letter from HTTP (partition -1; the offset is a
#: digest of the request body, so the same request sent again yields the same ids).
DLQ_SOURCE_TOPIC = "http"
#: The longest text of a valid event sent on as it came: above any valid event written
#: compactly (the contract bounds every field), so only padding makes one longer, and it
#: is then written out again, compact (a message must fit the producer's request size).
MAX_AS_SENT_BYTES = 256 * 1024
#: The most of a rejected item read again to show the event_id it claims.
MAX_CLAIM_BYTES = 64 * 1024
#: Statuses answered before the body is read: the connection is not kept for another.
_CLOSING = frozenset({401, 408, 413, 415})
_EVENTS = TypeAdapter(list[TouchpointEvent])
_items_as_sent = msgspec.json.Decoder(list[msgspec.Raw])


class BodyError(Exception):
    """A request body that is unusable as a whole: its status and a reason for a person."""

    def __init__(self, status: int, message: str, kind: str = "not_readable") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


# -- reading and checking a body (pure: no Kafka) ------------------------------------------


class Accepted(NamedTuple):
    """A valid event as it goes to Kafka: its JSON, and the customer whose partition it
    goes to."""

    customer_id: str
    json: bytes


@dataclass(slots=True)
class Item:
    """One item of a request: a valid event, or the rejection that goes to the DLQ."""

    index: int  # 0-based position in the request
    line: int  # the line it starts on
    event: Accepted | None = None
    rejected: Rejected | None = None
    event_id: str | None = None  # the valid event's, or the one a rejected item claims


def read_items(body: bytes, max_items: int = MAX_BATCH_EVENTS) -> list[Item]:
    """The items of a request body, each checked against the contract.

    The body is read by the publisher SDK's parser (``iter_source``): JSON Lines (blank
    lines skipped), one JSON array, or JSON objects one after another, told apart by the
    body itself (a UTF-8 byte order mark is ignored); each item is validated by
    ``validate_event``, so a reason here is word for word the one ``cxpulse publish``
    gives. Raises ``BodyError`` for a body that is not that at all (400), holds no event
    (400: an empty array, as on Kafka), or holds more than ``max_items`` (413).

    A body whose every event is valid (the normal case) is read at once first: by the
    worker's own boundary (``all_valid``), else, for an array, by one call of pydantic;
    when anything in it is wrong, it is read again item by item as above, for the
    reasons and lines.
    """
    head = body[len(UTF8_BOM) :] if body.startswith(UTF8_BOM) else body
    valid = all_valid(head, max_items)
    if valid is not None:
        return valid
    if head.lstrip()[:1] == b"[":
        try:
            events = _EVENTS.validate_json(head)
        except ValueError:  # ValidationError included: the exact path says what and where
            pass
        else:
            if 0 < len(events) <= max_items:
                return [
                    Item(i, 1, Accepted(e.customer_id, encode_event(e)), None, str(e.event_id))
                    for i, e in enumerate(events)
                ]
    found: list[SourceItem] = []
    try:
        source = iter_source("-", io.BytesIO(body), name="the request body")
        for n, item in enumerate(source):
            if n >= max_items:
                raise BodyError(
                    413,
                    f"the request holds more than {max_items:,} events: send at most "
                    f"{max_items:,} per request",
                    "too_large",
                )
            found.append(item)
    except InputError as exc:
        kind = "empty" if " is empty:" in exc.message else "not_json"
        raise BodyError(400, exc.message, kind) from None
    if not found:
        raise BodyError(400, EMPTY_BATCH_REASON, "empty_batch")
    return lines_valid(found) or [check_item(n, item) for n, item in enumerate(found)]


def lines_valid(found: list[SourceItem]) -> list[Item] | None:
    """The items of JSON Lines whose every line is a valid event, read at once as the
    array of its lines (``all_valid``; one call per line cost three times as much);
    None unless each line is exactly one item of that array."""
    lines = [item.value for item in found]
    if not all(isinstance(line, bytes) and line[:1] == b"{" for line in lines):
        return None
    valid = all_valid(b"[" + b",".join(lines) + b"]")
    if valid is None or len(valid) != len(found):
        return None
    items = []
    for n, (item, line, one) in enumerate(zip(found, lines, valid)):  # noqa: B905 (counted)
        if one.event is None or one.event.json != line:
            return None
        items.append(Item(n, item.line, one.event, None, one.event_id))
    return items


def all_valid(body: bytes, max_items: int = MAX_BATCH_EVENTS) -> list[Item] | None:
    """The items of a body (one event, or an array of them) whose every event is valid,
    read as the worker reads a message (``records_of``: one pass of msgspec, held by a
    property test to accept exactly what the contract's pydantic model accepts, in a
    strict form); None for any other body.

    Each event goes to Kafka as the client sent it (its item of the array, or the whole
    body): that text is valid JSON of a valid event, which the worker reads as it reads
    the SDK's. Reading it into the contract's models and writing it out again was two
    thirds of the server's work on a body.
    """
    found = records_of(body)
    if found is None or len(found) > max_items:
        return None
    if len(found) == 1 and body.lstrip()[:1] == b"{":
        texts = [body.strip()]
    else:
        texts = [bytes(raw) for raw in _items_as_sent.decode(body)]
    if any(len(text) > MAX_AS_SENT_BYTES for text in texts):
        return None  # padded: written out again by pydantic, compact
    return [
        Item(i, 1, Accepted(e.customer_id, text), None, str(e.event_id))
        for i, (e, text) in enumerate(zip(found, texts))  # noqa: B905 (records_of read them)
    ]


def check_item(index: int, item: SourceItem) -> Item:
    """One item, validated: the event, or its rejection (the item as sent for a line of
    JSON Lines, re-encoded alone as compact JSON for an item of an array, as the worker
    does for an item of a batch message)."""
    result = validate_event(item.value)
    if isinstance(result, TouchpointEvent):
        accepted = Accepted(result.customer_id, encode_event(result))
        return Item(index, item.line, accepted, None, str(result.event_id))
    value = item.value
    if isinstance(value, Oversize):
        raw, size = b"", value.size
    else:
        if isinstance(value, bytes | bytearray):
            raw = bytes(value)
        elif isinstance(value, str):  # an array's string item, as its JSON text
            raw = value.encode("utf-8", errors="replace")
        else:
            raw = item_bytes(value)
        size = len(raw)
    rejected = Rejected(index, raw, result, reason_kind(value, result), size)
    return Item(index, item.line, None, rejected, claimed_event_id(value))


def reason_kind(value: Any, reason: str) -> str:
    """A bounded label for a rejection (the worker's kinds: not_json, not_object,
    too_large, or pydantic's first error type such as missing or enum)."""
    if isinstance(value, Oversize):
        return "too_large"
    if reason.startswith("not JSON"):
        return "not_json"
    if reason.startswith("expected a JSON object"):
        return "not_object"
    try:  # only rejected items get here: validating again to learn the type is cheap
        if isinstance(value, bytes | bytearray | str):
            TouchpointEvent.model_validate_json(value)
        else:
            TouchpointEvent.model_validate(value)
    except ValidationError as exc:
        errors = exc.errors()
        return str(errors[0]["type"]) if errors else "invalid"
    except Exception:
        return "invalid"
    return "invalid"


def claimed_event_id(value: Any) -> str | None:
    """The ``event_id`` a rejected item names, if it names one (to help the client match
    the result to what it sent)."""
    if isinstance(value, bytes | bytearray | str):
        if len(value) > MAX_CLAIM_BYTES:
            return None
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return None
    if isinstance(value, dict):
        claimed = value.get("event_id")
        if isinstance(claimed, str) and claimed:
            return claimed[:100]
    return None


def body_digest(body: bytes) -> int:
    """63 bits of the body's BLAKE2b: the dead letters' ``source_offset``, so sending the
    same request again yields the same dead-letter ids (deduplicated in ClickHouse)."""
    return int.from_bytes(hashlib.blake2b(body, digest_size=8).digest(), "big") >> 1


def authorized(header: str | None, token: SecretStr | None) -> str | None:
    """None when the request may pass, else why not (one line, never the token)."""
    if token is None:
        return None
    if not header:
        return "no bearer token: send the header Authorization: Bearer <CXPULSE_INGEST_TOKEN>"
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return "send the token as Authorization: Bearer <CXPULSE_INGEST_TOKEN>"
    expected = token.get_secret_value().encode()
    if not hmac.compare_digest(given.strip().encode("utf-8", errors="replace"), expected):
        return "wrong bearer token: send the value of CXPULSE_INGEST_TOKEN"
    return None


@dataclass(slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def answer(items: list[Item], failure: str | None) -> Answer:
    """The answer to a request whose items were read: per-item results and counts.

    ``failure`` is why Kafka did not acknowledge every message (None when it did): then
    the valid items are ``failed`` and the status is 503, whatever else happened.
    """
    results: list[dict[str, Any]] = []
    accepted = rejected = failed = 0
    for it in items:
        if it.rejected is not None:
            rejected += 1
            result: dict[str, Any] = {
                "index": it.index,
                "status": "rejected",
                "line": it.line,
                "reason": it.rejected.reason,
            }
            if it.event_id is not None:
                result["event_id"] = it.event_id
        elif failure is not None:
            failed += 1
            result = {"index": it.index, "status": "failed", "event_id": it.event_id}
        else:
            accepted += 1
            result = {"index": it.index, "status": "accepted", "event_id": it.event_id}
        results.append(result)
    body: dict[str, Any] = {"accepted": accepted, "rejected": rejected, "failed": failed}
    headers: dict[str, str] = {}
    if failure is not None:
        status = 503
        body["error"] = (
            f"Kafka did not acknowledge: {failure}; send the same request again (events "
            "are deduplicated by event_id)"
        )
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    else:
        status = 200 if not rejected else 207 if accepted else 400
    body["results"] = results
    return Answer(status, body, headers)


def refuse_without_token(host: str, token: SecretStr | None) -> None:
    """No token is fine on a loopback address only: anything else would let anyone who
    reaches the port write into the pipeline."""
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"refusing to listen on {host} without a token: set CXPULSE_INGEST_TOKEN (16+ "
            "random characters, e.g. python -c 'import secrets; print(secrets.token_urlsafe"
            "(32))'), or listen on a loopback address (--host 127.0.0.1)"
        )


def size_text(n: int) -> str:
    if n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n % 1024 == 0:
        return f"{n >> 10} KiB"
    return f"{n:,} bytes"


# -- Kafka: the publisher SDK, each request's messages sent at once ------------------------


class _Sender(Publisher):
    """The publisher SDK (its producer configuration, batch messages, keys and
    partitioning), each request's events sent at once and the futures of its messages
    handed back. Used from one thread only: its buffers are never shared by two requests.
    """

    def __init__(self, settings: Settings) -> None:
        # linger: a request's messages are all sent together; waiting for more only
        # delays the answer.
        super().__init__(settings, linger_ms=5)
        self.dlq_topic = touchpoints_dlq(settings)
        self._futures: list[Any] | None = None

    def _send(self, value: bytes, key: bytes | None, n: int, partition: int | None = None) -> Any:
        future = super()._send(value, key, n, partition)
        if self._futures is not None:
            self._futures.append(future)
        return future

    def send_request(
        self, events: list[Accepted], dead: list[tuple[Source, Rejected]]
    ) -> list[Any]:
        """Hand ``events`` (valid) to the producer in batch messages, and ``dead`` to the
        dead-letter topic; the future of every message. Raises ``PublishError``."""
        self._futures = futures = []
        try:
            for event in events:
                self._queue(*event)
            self._send_batch(every=True)
            for source, rejected in dead:
                try:
                    futures.append(
                        self._producer.send(
                            self.dlq_topic,
                            value=rejected.raw,
                            headers=dead_letter_headers(source, rejected),
                        )
                    )
                except KafkaError as exc:
                    raise PublishError(
                        f"Kafka did not take a dead letter for {self.dlq_topic}: {exc}"
                    ) from None
        except PublishError:
            self._bufs.clear()  # not sent now, not later with another request either
            raise
        finally:
            self._futures = None
        return futures

    def shutdown(self, timeout: float = 30.0) -> None:
        """Wait for what is in flight and close the producer (every request has had its
        answer: a failure now is nobody's to report)."""
        self._closed = True
        with contextlib.suppress(KafkaError):
            self._producer.flush(timeout=timeout)
        self._producer.close(timeout=timeout)


@dataclass(slots=True)
class _Handled:
    """What the sender thread did with one body."""

    items: list[Item] = field(default_factory=list)
    futures: list[Any] = field(default_factory=list)
    body_error: BodyError | None = None
    send_error: str | None = None


def _bridge(loop: asyncio.AbstractEventLoop, future: Any) -> asyncio.Future[None]:
    """An asyncio future settled when kafka-python's ``future`` is (on its I/O thread)."""
    waiter: asyncio.Future[None] = loop.create_future()

    def settle(exc: BaseException | None) -> None:
        if waiter.done():
            return
        if exc is None:
            waiter.set_result(None)
        else:
            waiter.set_exception(exc)

    def threadsafe(exc: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, exc)

    future.add_callback(lambda _metadata: threadsafe(None))
    future.add_errback(threadsafe)
    return waiter


async def _cancelled(task: asyncio.Task[Any], tries: int = 50) -> None:
    """Cancel ``task`` and wait (a few seconds at most) until it is done. Once is not
    always enough: on Python 3.11, ``asyncio.wait_for`` swallows a cancellation that
    arrives as the awaited call completes, and the probe's loop would then go on."""
    for _ in range(tries):
        if task.done():
            return
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)


async def acknowledged(futures: list[Any], timeout: float = ACK_SECONDS) -> str | None:
    """None once Kafka has acknowledged every message, else the first error (one line)."""
    if not futures:
        return None
    loop = asyncio.get_running_loop()
    waiters = [_bridge(loop, f) for f in futures]
    _, pending = await asyncio.wait(waiters, timeout=timeout)
    for waiter in pending:
        waiter.cancel()
    if pending:
        return f"no acknowledgement within {timeout:.0f}s"
    for waiter in waiters:
        exc = waiter.exception()
        if exc is not None:
            return one_line(exc)
    return None


# -- the server ---------------------------------------------------------------------------


class IngestServer:
    """The HTTP server: ``connect()`` (blocking: Kafka, topics, the producer), then
    ``await start()`` and ``await stop()`` on an event loop."""

    def __init__(self, settings: Settings, host: str | None = None, port: int | None = None):
        self.settings = settings
        self.host = host or settings.ingest_host
        self.port = settings.ingest_port if port is None else port
        self.token = settings.ingest_token
        self.max_body = settings.ingest_max_body_bytes
        refuse_without_token(self.host, self.token)
        self._sender: _Sender | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._runner: web.AppRunner | None = None
        self._slots: asyncio.Semaphore | None = None
        self._probe = KafkaProbe(
            settings.bootstrap_servers, probe_interval(settings.ready_unreachable_seconds)
        )
        self._probe_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._in_flight = 0  # POST requests being handled (their bodies being read included)
        self.answered = 0

    @property
    def topic(self) -> str:
        return self._sender.topic if self._sender else ""

    @property
    def dlq_topic(self) -> str:
        return self._sender.dlq_topic if self._sender else touchpoints_dlq(self.settings)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{PATH}"

    def connect(self) -> None:
        """Wait for Kafka, create the topics (the touchpoint topic by the publisher, as
        ``cxpulse publish`` does) and the producer: one-line errors if that fails."""
        from cxpulse.streams.admin import ensure_topics

        dlq = [t for t in all_topics(self.settings) if t.name == touchpoints_dlq(self.settings)]
        ensure_topics(self.settings, dlq, check_partitions=False)
        self._sender = _Sender(self.settings)

    async def start(self) -> None:
        if self._sender is None:
            await asyncio.to_thread(self.connect)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="cxpulse-ingest")
        self._slots = asyncio.Semaphore(IN_PROCESS)
        app = web.Application()
        app.router.add_post(PATH, self._post_events)
        app.router.add_get("/livez", self._livez)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_SECONDS,
            # After a refusal (401, 413, ...) with the body unsent or unread, what the
            # client still sends is read and dropped this long, so that it gets the
            # answer rather than a reset connection; never held, and not for longer.
            lingering_time=LINGER_SECONDS,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            await asyncio.to_thread(self._close_sender)
            raise ConfigError(
                f"cannot listen on {self.host}:{self.port} ({exc.strerror or exc}): choose "
                "another --port (CXPULSE_INGEST_PORT) or --host"
            ) from None
        self.port = int(self._runner.addresses[0][1])
        self._probe_task = asyncio.create_task(self._probe.run())

    async def stop(self) -> None:
        """Stop listening, let requests in flight finish (their bodies still read, their
        answers sent), then close the connections and the producer.

        aiohttp's own shutdown stops reading every connection at once (what arrives on a
        closing connection is dropped), so a request whose body was half sent when the
        signal came would wait for the rest until ``BODY_READ_SECONDS`` and get a 408:
        the sites stop listening first, the requests in flight are awaited (up to
        ``SHUTDOWN_SECONDS``), and only then is the runner cleaned up."""
        self._stopping = True
        if self._runner is not None:
            for site in list(self._runner.sites):
                await site.stop()
            deadline = asyncio.get_running_loop().time() + SHUTDOWN_SECONDS
            while self._in_flight and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            await self._runner.cleanup()
        if self._probe_task is not None:
            await _cancelled(self._probe_task)
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_sender)
            self._executor.shutdown(wait=True)

    def _close_sender(self) -> None:
        if self._sender is not None:
            self._sender.shutdown()
            self._sender = None

    def startup_line(self) -> str:
        auth = "bearer token required" if self.token else "no token (loopback only)"
        return (
            f"cxpulse ingest: POST {self.url} -> {self.topic} at {self.settings.kafka_url} "
            f"(dead letters: {self.dlq_topic}); {auth}; bodies up to {size_text(self.max_body)}"
        )

    # -- pages -----------------------------------------------------------------------------

    async def _livez(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "app": "cxpulse-ingest"})

    async def _readyz(self, request: web.Request) -> web.Response:
        if self._stopping:
            body = {"status": "stopping", "reason": "shutting down: finishing requests in flight"}
            return web.json_response(body, status=503)
        body, status = readiness(
            app_id="cxpulse-ingest",
            threshold=self.settings.ready_unreachable_seconds,
            kafka=self._probe.unreachable(),
            clickhouse=None,
            kafka_where=self.settings.kafka_url,
        )
        return web.json_response(body, status=status)

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = metrics.render(metrics.INGEST_REGISTRY)
        return web.Response(body=body, content_type=content_type)

    async def _post_events(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        metrics.INGEST_IN_PROGRESS.inc()
        self._in_flight += 1
        try:
            result = await self._events(request)
        except Exception as exc:  # a bug: the client gets one line, the log the details
            log.exception("POST %s failed", PATH)
            result = Answer(500, {"error": f"internal error: {one_line(exc)}"})
        finally:
            self._in_flight -= 1
            metrics.INGEST_IN_PROGRESS.dec()
        metrics.INGEST_REQUESTS.labels(str(result.status)).inc()
        metrics.INGEST_SECONDS.observe(time.perf_counter() - started)
        self.answered += 1
        response = web.Response(
            body=json.dumps(result.body, ensure_ascii=False).encode(),
            status=result.status,
            content_type="application/json",
            headers=result.headers,
        )
        if result.status in _CLOSING:
            response.force_close()  # the body may be unread: do not keep the connection
        return response

    async def _events(self, request: web.Request) -> Answer:
        refused = authorized(request.headers.get("Authorization"), self.token)
        if refused is not None:
            return Answer(
                401, {"error": refused}, {"WWW-Authenticate": 'Bearer realm="cxpulse ingest"'}
            )
        content_type = request.content_type.lower()
        if content_type not in JSON_TYPES | JSON_LINES_TYPES:
            return Answer(
                415,
                {
                    "error": f"Content-Type {content_type} is not accepted: send "
                    "application/json (an event or an array of events) or "
                    "application/x-ndjson (JSON Lines: one event per line)"
                },
            )
        charset = (request.charset or "utf-8").lower()
        if charset not in ("utf-8", "utf8"):
            return Answer(415, {"error": f"charset {charset} is not accepted: send UTF-8"})
        declared = request.content_length
        if declared is not None and declared > self.max_body:
            return Answer(413, {"error": self._too_large(f"{declared:,} bytes")})
        assert self._slots is not None and self._executor is not None
        async with self._slots:
            try:
                body = await self._read_body(request)
            except BodyError as exc:
                return Answer(exc.status, {"error": exc.message})
            received_ms = int(time.time() * 1000)
            handled = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._handle, body, received_ms
            )
        failure = handled.send_error or await acknowledged(handled.futures)
        error = handled.body_error
        if error is not None:
            if error.status == 400:
                metrics.INGEST_REJECTED.labels("not_readable").inc()
            if failure is not None:
                log.warning("a dead letter of a request Kafka did not acknowledge: %s", failure)
            return Answer(
                error.status,
                {"error": error.message, "accepted": 0, "rejected": 0, "failed": 0, "results": []},
            )
        result = answer(handled.items, failure)
        metrics.INGEST_ACCEPTED.inc(result.body["accepted"])
        metrics.INGEST_FAILED.inc(result.body["failed"])
        for it in handled.items:
            if it.rejected is not None:
                metrics.INGEST_REJECTED.labels(it.rejected.kind).inc()
        return result

    def _too_large(self, what: str) -> str:
        return (
            f"the request body is {what}, over the {size_text(self.max_body)} limit "
            "(CXPULSE_INGEST_MAX_BODY_BYTES): send fewer events per request"
        )

    async def _read_body(self, request: web.Request) -> bytes:
        """The body, read a chunk at a time, refused (413) as soon as it passes the limit:
        never held whole when it is too large."""
        body = bytearray()
        try:
            async with asyncio.timeout(BODY_READ_SECONDS):
                async for chunk in request.content.iter_any():
                    body += chunk
                    if len(body) > self.max_body:
                        raise BodyError(413, self._too_large("larger"), "too_large")
        except TimeoutError:
            raise BodyError(
                408, f"the request body did not arrive within {BODY_READ_SECONDS:.0f}s"
            ) from None
        except (OSError, HttpProcessingError) as exc:
            raise BodyError(400, f"could not read the request body: {one_line(exc)}") from None
        return bytes(body)

    def _handle(self, body: bytes, received_ms: int) -> _Handled:
        """On the sender thread: read and check the body, hand its events and dead letters
        to the producer."""
        assert self._sender is not None
        handled = _Handled()
        try:
            handled.items = read_items(body)
        except BodyError as exc:
            handled.body_error = exc
            if exc.status != 400:
                return handled
            dead = [(self._source(body, received_ms), Rejected(None, body, exc.message, exc.kind))]
        else:
            rejected = [it.rejected for it in handled.items if it.rejected is not None]
            source = self._source(body, received_ms) if rejected else None
            dead = [(source, r) for r in rejected] if source else []
        events = [it.event for it in handled.items if it.event is not None]
        try:
            handled.futures = self._sender.send_request(events, dead)
        except PublishError as exc:
            handled.send_error = exc.message
        return handled

    @staticmethod
    def _source(body: bytes, received_ms: int) -> Source:
        return Source(DLQ_SOURCE_TOPIC, -1, body_digest(body), received_ms)


async def serve(
    server: IngestServer,
    announce: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
) -> None:
    """Run ``server`` until SIGTERM or SIGINT (or ``stop`` is set), then stop it cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    await server.start()
    announce(server.startup_line())
    try:
        await stop.wait()
    finally:
        await server.stop()
    announce(f"cxpulse ingest: stopped after answering {server.answered:,} requests")


def run_ingest(settings: Settings) -> None:
    """``cxpulse ingest``: serve until SIGTERM or Ctrl-C."""
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.root.level))
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.root.level))
    server = IngestServer(settings)  # refuses a public address without a token first
    server.connect()
    asyncio.run(serve(server, announce=lambda line: print(line, flush=True)))


__all__ = [
    "BodyError",
    "IngestServer",
    "Item",
    "answer",
    "authorized",
    "check_item",
    "read_items",
    "run_ingest",
    "serve",
]
