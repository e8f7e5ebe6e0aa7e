"""The publisher SDK and ``cxpulse publish``: validated touchpoint events, sent in batches.

Why validate here when the worker validates anyway: a producer learns about its own
mistakes at once, with a line number, instead of finding them later in a dead-letter
topic. The worker still validates everything: this SDK is a convenience, not the gate,
and any Kafka client may publish the same wire format (docs/wire-format.md).

Why batches: a Faust agent costs far more per Kafka message (~150-250 µs here) than
pydantic costs per event (~4 µs), and kafka-python costs ~70 µs per ``send``. So a
message is a JSON array of up to ``batch_size`` events (500 by default, at most ~900 KB,
under Kafka's default 1 MB message limit).

Why a batch per partition: Kafka keeps order within a partition only, and the alert
rules need each customer's events in event-time order (docs/alerts.md, "What is
guaranteed"). So every event goes to its customer's partition of the topic (Kafka's
default partitioner: murmur2 of the ``customer_id``), and a message holds the events of
one partition: a customer's events stay in one partition, in the order published. A
message of one customer is keyed by its ``customer_id``; one of several is sent to the
partition explicitly, unkeyed. (Unkeyed mixed messages went to any partition, so one
customer's events arrived in an order that changed from run to run, and so did the alerts
that judge the score moment by moment.) The producer is idempotent (kafka-python's
default), so a retry does not reorder a partition either.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NamedTuple, TextIO

from kafka import KafkaProducer
from kafka.errors import KafkaError
from pydantic import ValidationError

from schemas.envelope import MAX_BATCH_EVENTS, MAX_MESSAGE_BYTES, describe_validation_error
from schemas.envelope import _json_failure as json_failure
from schemas.events import TouchpointEvent
from streams.partitioning import partition_for
from streams.settings import ConfigError, Settings, get_settings
from streams.topics import TopicSpec, all_topics, touchpoints

DEFAULT_BATCH_SIZE = 500
DEFAULT_MAX_BATCH_BYTES = 900_000
KEPT_REJECTIONS = 1_000  # reasons kept in a summary; the count goes on regardless
PROGRESS_MIN_BYTES = 2_000_000  # show a progress bar for files larger than this


class InputError(ConfigError):
    """The input file cannot be used at all (missing, not JSON Lines or an array)."""


class PublishError(ConfigError):
    """Kafka did not acknowledge some messages: one line with what was and was not sent."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """An input item that is not a valid event: where it was and why, for a person."""

    where: str  # "line 12" in a file, "item 3" from publish_many
    reason: str


@dataclass
class PublishSummary:
    """What a publisher did: counts of acknowledged events and messages, and rejections."""

    topic: str
    url: str
    sent: int = 0  # events in messages Kafka acknowledged
    messages: int = 0  # messages Kafka acknowledged
    failed: int = 0  # events in messages Kafka did not acknowledge
    rejected: int = 0  # invalid events, never sent
    rejections: list[Rejection] = field(default_factory=list)  # the first KEPT_REJECTIONS
    errors: list[str] = field(default_factory=list)  # the first few delivery errors
    seconds: float = 0.0

    @property
    def events_per_second(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class _Batch:
    """The events (JSON) waiting to be sent to one partition."""

    customer: str  # the first event's customer: the key while the batch holds only it
    mixed: bool = False
    size: int = 1  # bytes of the JSON array: brackets and commas included
    items: list[bytes] = field(default_factory=list)


def validate_event(item: Any) -> TouchpointEvent | str:
    """The item as a ``TouchpointEvent``, or a one-line reason why it is not one.

    Accepts a model, a mapping, or the raw JSON of one event (``bytes``/``str``, which
    pydantic parses straight from JSON: the fast path for JSON Lines).
    """
    if isinstance(item, TouchpointEvent):
        return item
    try:
        if isinstance(item, Mapping):
            return TouchpointEvent.model_validate(item)
        if isinstance(item, bytes | bytearray | str):
            return TouchpointEvent.model_validate_json(item)
    except ValidationError as exc:
        first = exc.errors()[0] if exc.error_count() else None
        if first is not None and first["type"] == "json_invalid":
            error = str(first["ctx"].get("error", first["msg"]))
            if "\n" not in (item if isinstance(item, str) else item.decode("latin-1")):
                # One line of JSON Lines: its line number is the rejection's "where", so
                # pydantic's "line 1" would only contradict it.
                error = re.sub(r" at line 1 column (\d+)$", r" at column \1", error)
            return f"not JSON: {error}"
        if first is not None and first["type"] == "model_type":
            return f"expected a JSON object, got {_json_type(item)}"
        return describe_validation_error(exc)
    return f"expected a JSON object, got {_json_type(item)}"


def _json_type(item: Any) -> str:
    """The JSON type of a value, or of raw JSON that pydantic has already parsed (so its
    first character tells, and parsing it again can neither fail nor recurse)."""
    if isinstance(item, bytes | bytearray):
        item = bytes(item).strip()[:1].decode("latin-1")
    if isinstance(item, str):
        heads = {"[": "array", '"': "string", "t": "boolean", "f": "boolean", "n": "null"}
        return heads.get(item.strip()[:1], "number")
    names = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if item is None else names.get(type(item), type(item).__name__)


class Publisher:
    """Validate events and publish them in batch messages with kafka-python.

    ``publish`` buffers; a batch goes out when it holds ``batch_size`` events or would
    exceed ``max_batch_bytes``; ``flush`` sends the rest and waits for Kafka's
    acknowledgements. ``batch_size=1`` sends one event per message (a JSON object).
    Use it as a context manager so the last batch is never forgotten.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        topic: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        linger_ms: int = 15,
        compression_type: str | None = None,
        create_topic: bool = True,
        connect_timeout: float = 10.0,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        from streams.admin import KafkaUnavailable, ensure_topics, wait_for_kafka

        if not 1 <= batch_size <= MAX_BATCH_EVENTS:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_EVENTS}, got {batch_size}")
        if not 1024 <= max_batch_bytes <= MAX_MESSAGE_BYTES:
            raise ValueError(f"max_batch_bytes must be 1024..{MAX_MESSAGE_BYTES}")
        self.settings = settings or get_settings()
        self.topic = topic or touchpoints(self.settings)
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.summary = PublishSummary(self.topic, self.settings.kafka_url)
        self._lock = threading.Lock()
        self._bufs: dict[int | None, _Batch] = {}  # by partition (None: not known)
        self._partitions: int | None = None  # of the topic, asked once
        self._items = 0
        self._started: float | None = None
        self._closed = False

        wait_for_kafka(self.settings.bootstrap_servers, timeout=connect_timeout)
        if create_topic:
            # Create before the first send: the producer's metadata request would
            # otherwise let an auto-creating broker pick the partition count.
            known = {spec.name: spec for spec in all_topics(self.settings)}
            spec = known.get(self.topic) or TopicSpec(
                self.topic, self.settings.partitions, {}, "published to by cxpulse"
            )
            ensure_topics(self.settings, [spec], check_partitions=False)
        config: dict[str, Any] = {
            "bootstrap_servers": self.settings.bootstrap_servers,
            "client_id": "cxpulse-publisher",
            "acks": "all",
            "retries": 10,
            "linger_ms": linger_ms,
            "compression_type": compression_type,
            "batch_size": 256 * 1024,
            "max_request_size": max(1_048_576, max_batch_bytes + 64 * 1024),
            "max_block_ms": int(connect_timeout * 1000),
            "allow_auto_create_topics": False,
        }
        if "delivery_timeout_ms" in KafkaProducer.DEFAULT_CONFIG:
            # Give up on a lost broker after 30 s (Kafka's default is 2 min), so that
            # `cxpulse publish` reports it while someone is still watching.
            # It must exceed linger + request timeout, hence the shorter request timeout.
            config["request_timeout_ms"] = 20_000
            config["delivery_timeout_ms"] = 30_000 + linger_ms
        config.update(producer_config or {})
        try:
            self._producer = KafkaProducer(**config)
        except KafkaError as exc:
            raise KafkaUnavailable(
                f"cannot connect a producer to Kafka at {self.settings.kafka_url}: {exc}"
            ) from None
        except (RuntimeError, ValueError) as exc:  # e.g. a codec whose library is missing
            raise ConfigError(f"cannot create a Kafka producer: {exc}") from None

    # -- accepting events ---------------------------------------------------------------

    def publish(
        self, event: TouchpointEvent | Mapping[str, Any] | bytes | str, *, where: str | None = None
    ) -> bool:
        """Validate one event and queue it for sending; False (and a rejection) if invalid."""
        if self._closed:
            raise RuntimeError("publish() on a closed Publisher")
        if self._started is None:
            self._started = time.monotonic()
        self._items += 1
        result = validate_event(event)
        if isinstance(result, str):
            self._reject(where or f"item {self._items}", result)
            return False
        encoded = result.model_dump_json(exclude_none=True).encode()
        if self.batch_size == 1:
            self._send(encoded, result.customer_id.encode(), 1)
            return True
        partition = self._partition_of(result.customer_id)
        buf = self._bufs.get(partition)
        if buf is not None and buf.size + len(encoded) + 1 > self.max_batch_bytes:
            self._send_batch(partition)
            buf = None
        if buf is None:
            buf = self._bufs[partition] = _Batch(result.customer_id)
        elif result.customer_id != buf.customer:
            buf.mixed = True
        buf.items.append(encoded)
        buf.size += len(encoded) + 1
        if len(buf.items) >= self.batch_size:
            self._send_batch(partition)
        return True

    def _partition_of(self, customer_id: str) -> int | None:
        """The partition Kafka's default partitioner gives ``customer_id`` (None when the
        topic's partitions cannot be known: then a mixed batch goes unkeyed, as before)."""
        if self._partitions is None:
            try:
                known = self._producer.partitions_for(self.topic)
            except KafkaError:
                known = None
            self._partitions = len(known) if known else 0
        return partition_for(customer_id, self._partitions) if self._partitions else None

    def publish_many(
        self, events: Iterable[TouchpointEvent | Mapping[str, Any] | bytes | str]
    ) -> PublishSummary:
        """Publish every valid event of ``events`` (invalid ones are counted, not sent)."""
        for event in events:
            self.publish(event)
        return self.summary

    def _reject(self, where: str, reason: str) -> None:
        self.summary.rejected += 1
        if len(self.summary.rejections) < KEPT_REJECTIONS:
            self.summary.rejections.append(Rejection(where, reason))

    # -- sending ------------------------------------------------------------------------

    def _send_batch(self, partition: int | None = None, *, every: bool = False) -> None:
        """Send the batch of ``partition`` (of every partition with ``every``)."""
        for p in list(self._bufs) if every else [partition]:
            buf = self._bufs.pop(p, None)
            if buf is None or not buf.items:
                continue
            value = b"[" + b",".join(buf.items) + b"]"
            key = None if buf.mixed else buf.customer.encode()
            self._send(value, key, len(buf.items), None if key else p)

    def _send(self, value: bytes, key: bytes | None, n: int, partition: int | None = None) -> None:
        try:
            future = self._producer.send(self.topic, value=value, key=key, partition=partition)
        except KafkaError as exc:
            with self._lock:
                self.summary.failed += n
            raise PublishError(
                f"Kafka at {self.settings.kafka_url} did not take a message for topic "
                f"{self.topic}: {exc} ({self.summary.sent} events acknowledged before)"
            ) from None
        future.add_callback(self._acked, n)
        future.add_errback(self._failed, n)

    def _acked(self, n: int, _metadata: Any) -> None:
        with self._lock:
            self.summary.sent += n
            self.summary.messages += 1

    def _failed(self, n: int, exc: BaseException) -> None:
        with self._lock:
            self.summary.failed += n
            if len(self.summary.errors) < 5:
                self.summary.errors.append(str(exc) or type(exc).__name__)

    def flush(self, timeout: float | None = None) -> PublishSummary:
        """Send the partial batch, wait for every acknowledgement, and raise a one-line
        ``PublishError`` if Kafka refused or lost any message."""
        self._send_batch(every=True)
        try:
            self._producer.flush(timeout=timeout)
        except KafkaError as exc:
            raise PublishError(
                f"Kafka at {self.settings.kafka_url} did not acknowledge every message in "
                f"time: {exc} ({self.summary.sent} events acknowledged)"
            ) from None
        if self._started is not None:
            self.summary.seconds = time.monotonic() - self._started
        if self.summary.failed:
            first = self.summary.errors[0] if self.summary.errors else "unknown error"
            raise PublishError(
                f"Kafka at {self.settings.kafka_url} did not acknowledge "
                f"{self.summary.failed} events ({first}); "
                f"{self.summary.sent} events were sent to {self.topic}"
            )
        return self.summary

    def close(self, timeout: float = 30.0) -> PublishSummary:
        """Flush and close the producer (idempotent)."""
        if self._closed:
            return self.summary
        try:
            self.flush(timeout)
        finally:
            self._closed = True
            self._producer.close(timeout=timeout)
        return self.summary

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        # Already failing: do not bury the original error under a flush error.
        with contextlib.suppress(Exception):
            self._closed = True
            self._producer.close(timeout=5)


# -- reading input files ------------------------------------------------------------------


class SourceItem(NamedTuple):
    """One item of an input: its 1-based line, the raw JSON line (JSON Lines) or the
    parsed value (an array's item), and how many input bytes it took (for progress).

    An array item that is a JSON string stays its JSON text (``"x"`` with the quotes):
    ``validate_event`` reads a Python string as raw JSON, and would otherwise take the
    string's content for the event (or call it "not JSON")."""

    line: int
    value: Any
    size: int


def _open(source: str | Path, stdin: IO[bytes] | None) -> tuple[IO[bytes], str, int | None]:
    if str(source) == "-":
        return (stdin or sys.stdin.buffer), "stdin", None
    path = Path(source)
    try:
        f = path.open("rb")
        size = path.stat().st_size
    except OSError as exc:
        raise InputError(f"cannot read {source}: {exc.strerror or exc}") from None
    return f, str(source), size


def iter_source(source: str | Path, stdin: IO[bytes] | None = None) -> Iterator[SourceItem]:
    """Items of a JSON Lines file, a JSON array file, or stdin (``-``), auto-detected.

    JSON Lines stream line by line (memory stays flat for any file size; blank lines are
    skipped; a bad line is yielded as is and rejected later with its line number). A
    JSON array, or pretty-printed objects one after another, are read whole; a syntax
    error there, or an item Python's JSON decoder cannot read (nested too deeply, a
    number of too many digits), is an ``InputError`` naming the line, since the item's
    end, and so everything after it, cannot be found. Every failure to read is an
    ``InputError`` (one line, for ``cxpulse publish``), never a traceback.
    """
    f, name, _ = _open(source, stdin)
    try:
        yield from _iter_stream(f, name)
    except OSError as exc:  # a read failing midway: a device error, a closed pipe
        raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None
    finally:
        if f is not stdin and f is not sys.stdin.buffer:
            f.close()


def _iter_stream(f: IO[bytes], name: str) -> Iterator[SourceItem]:
    lineno = 0
    first: bytes | None = None
    for raw in f:
        lineno += 1
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if raw.strip():
            first = raw
            break
    if first is None:
        raise InputError(f"{name} is empty: expected JSON Lines or a JSON array of events")
    head = first.lstrip()[:1]
    if head == b"[":
        yield from _iter_document(first + f.read(), name, lineno, array=True)
        return
    if head != b"{":
        raise InputError(
            f"{name} is neither JSON Lines nor a JSON array of events (line {lineno} "
            f"starts with {first.strip()[:20]!r})"
        )
    if first.strip() == b"{":  # pretty-printed objects, not one event per line
        yield from _iter_document(first + f.read(), name, lineno, array=False)
        return
    yield SourceItem(lineno, first.strip(), len(first))
    for raw in f:
        lineno += 1
        stripped = raw.strip()
        if stripped:
            yield SourceItem(lineno, stripped, len(raw))
        # blank lines are skipped, but still counted so line numbers match an editor's


def _iter_document(data: bytes, name: str, first_line: int, *, array: bool) -> Iterator[SourceItem]:
    """Decode a whole JSON document item by item, tracking line numbers."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name} is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    decoder = json.JSONDecoder()
    line = first_line
    counted = 0  # text[:counted] has been scanned for newlines into ``line``

    def line_at(pos: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, pos)
        counted = pos
        return line

    def skip_ws(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    def where(pos: int) -> str:
        col = pos - (text.rfind("\n", 0, pos) + 1) + 1
        return f"line {line_at(pos)} column {col}"

    def fail(pos: int, what: str) -> InputError:
        return InputError(f"{name}: {what} at {where(pos)}")

    def decode(pos: int) -> tuple[Any, int]:
        """The value starting at ``pos`` and where it ends. JSON that is well formed but
        cannot be read (nested thousands of levels deep: Python's decoder recurses; an
        integer of more than 4,300 digits) fails at the item's start, since the decoder
        does not say where inside it gave up."""
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise fail(exc.pos, f"invalid JSON ({exc.msg})") from None
        except (RecursionError, ValueError) as exc:
            raise InputError(
                f"{name}: cannot read the item at {where(pos)}: {json_failure(exc)}"
            ) from None
        if isinstance(value, str):
            return text[pos:end], end
        return value, end

    pos = skip_ws(0)
    if array:
        pos = skip_ws(pos + 1)  # past '['
        if pos < len(text) and text[pos] == "]":
            pos += 1
            closed = True
        else:
            closed = False
        while not closed:
            value, end = decode(pos)
            yield SourceItem(line_at(pos), value, end - pos)
            pos = skip_ws(end)
            if pos < len(text) and text[pos] == ",":
                pos = skip_ws(pos + 1)
            elif pos < len(text) and text[pos] == "]":
                pos += 1
                closed = True
            else:
                raise fail(pos, "expected ',' or ']' in the JSON array")
        if skip_ws(pos) < len(text):
            raise fail(skip_ws(pos), "unexpected data after the JSON array")
        return
    while pos < len(text):
        value, end = decode(pos)
        yield SourceItem(line_at(pos), value, end - pos)
        pos = skip_ws(end)


# -- cxpulse publish ----------------------------------------------------------------------


def publish_source(
    source: str | Path,
    settings: Settings | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    topic: str | None = None,
    *,
    stdin: IO[bytes] | None = None,
    progress: bool | None = None,
    **publisher_options: Any,
) -> PublishSummary:
    """Publish the events of a JSON Lines / JSON array file (or ``-`` for stdin).

    Invalid events are reported with their line numbers and not sent. A progress bar
    shows on a terminal for files over ~2 MB (``progress`` forces it on or off).
    """
    settings = settings or get_settings()
    f, name, size = _open(source, stdin)  # fail on a missing file before connecting
    if f is not stdin and f is not sys.stdin.buffer:
        f.close()
    show = (
        progress
        if progress is not None
        else (sys.stdout.isatty() and (size is None or size >= PROGRESS_MIN_BYTES))
    )
    with Publisher(settings, topic=topic, batch_size=batch_size, **publisher_options) as publisher:
        items = iter_source(source, stdin)
        try:
            if show:
                _publish_with_progress(publisher, items, name, size)
            else:
                for item in items:
                    publisher.publish(item.value, where=f"line {item.line}")
        except InputError as exc:
            # A file that breaks midway (a truncated array) still had good events before
            # the break: send them, and say so, rather than leave the user guessing what
            # went out. Sending the fixed file again is safe: event_id deduplicates.
            summary = publisher.flush()
            raise InputError(
                f"{exc.message}; the {summary.sent:,} valid events before it were sent to "
                f"{summary.topic} ({summary.rejected:,} invalid, not sent). Fix the file and "
                "publish it again: events already sent are deduplicated by event_id"
            ) from exc
        publisher.flush()
    return publisher.summary


def _publish_with_progress(
    publisher: Publisher, items: Iterator[SourceItem], name: str, size: int | None
) -> None:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn()]
    columns += [TextColumn("{task.fields[events]:,} events"), TimeRemainingColumn()]
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(f"publishing {name}", total=size, events=0)
        done = pending = 0
        for item in items:
            publisher.publish(item.value, where=f"line {item.line}")
            done += 1
            pending += item.size
            if done % 2000 == 0:
                bar.update(task, advance=pending, events=done)
                pending = 0
        bar.update(task, advance=pending, events=done)


def print_summary(summary: PublishSummary, file: TextIO | None = None, limit: int = 5) -> None:
    """``sent N events in M messages to topic T at URL``, then rejections with lines."""
    out = file or sys.stdout
    rate = f", {summary.events_per_second:,.0f} events/s" if summary.seconds > 0 else ""
    plural = "" if summary.messages == 1 else "s"
    print(
        f"sent {summary.sent} events in {summary.messages} message{plural} "
        f"to topic {summary.topic} at {summary.url} ({summary.seconds:.2f}s{rate})",
        file=out,
    )
    if summary.failed:
        print(f"failed {summary.failed} events: {'; '.join(summary.errors[:3])}", file=out)
    if summary.rejected:
        print(f"rejected {summary.rejected} invalid events (not sent):", file=out)
        for rejection in summary.rejections[:limit]:
            print(f"  {rejection.where}: {rejection.reason}", file=out)
        if summary.rejected > limit:
            print(f"  ... and {summary.rejected - limit} more", file=out)


__all__ = [
    "InputError",
    "PublishError",
    "PublishSummary",
    "Publisher",
    "Rejection",
    "SourceItem",
    "iter_source",
    "print_summary",
    "publish_source",
    "validate_event",
]
