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

import codecs
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

from cxpulse.schemas.envelope import MAX_BATCH_EVENTS, MAX_MESSAGE_BYTES, describe_validation_error
from cxpulse.schemas.envelope import _json_failure as json_failure
from cxpulse.schemas.events import TouchpointEvent
from cxpulse.streams.partitioning import partition_for
from cxpulse.streams.settings import ConfigError, Settings, get_settings
from cxpulse.streams.topics import TopicSpec, all_topics, touchpoints

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


def encode_event(event: TouchpointEvent) -> bytes:
    """A valid event's JSON as the SDK publishes it (compact, unset fields left out)."""
    return event.model_dump_json(exclude_none=True).encode()


def validate_event(item: Any) -> TouchpointEvent | str:
    """The item as a ``TouchpointEvent``, or a one-line reason why it is not one.

    Accepts a model, a mapping, or the raw JSON of one event (``bytes``/``str``, which
    pydantic parses straight from JSON: the fast path for JSON Lines).
    """
    if isinstance(item, TouchpointEvent):
        return item
    if isinstance(item, Oversize):
        return item.reason()
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
        connect_timeout: float | None = None,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        from cxpulse.streams.admin import (
            CONNECT_SECONDS,
            KafkaUnavailable,
            client_config,
            ensure_topics,
        )

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

        if connect_timeout is None:
            connect_timeout = CONNECT_SECONDS
        reach = client_config(self.settings, timeout=connect_timeout)
        if create_topic:
            # Create before the first send: the producer's metadata request would
            # otherwise let an auto-creating broker pick the partition count.
            known = {spec.name: spec for spec in all_topics(self.settings)}
            spec = known.get(self.topic) or TopicSpec(
                self.topic, self.settings.partitions, {}, "published to by cxpulse"
            )
            ensure_topics(self.settings, [spec], check_partitions=False)
        config: dict[str, Any] = {
            **reach,
            "client_id": "cxpulse-publisher",
            "acks": "all",
            "retries": 10,
            "linger_ms": linger_ms,
            "compression_type": compression_type,
            "batch_size": 256 * 1024,
            "max_request_size": max(1_048_576, max_batch_bytes + 64 * 1024),
            "max_block_ms": int(max(10.0, connect_timeout) * 1000),
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
        self._queue(result.customer_id, encode_event(result))
        return True

    def _queue(self, customer_id: str, encoded: bytes) -> None:
        """Queue one valid event's JSON in its partition's batch (sent when full)."""
        if self.batch_size == 1:
            self._send(encoded, customer_id.encode(), 1)
            return
        partition = self._partition_of(customer_id)
        buf = self._bufs.get(partition)
        if buf is not None and buf.size + len(encoded) + 1 > self.max_batch_bytes:
            self._send_batch(partition)
            buf = None
        if buf is None:
            buf = self._bufs[partition] = _Batch(customer_id)
        elif customer_id != buf.customer:
            buf.mixed = True
        buf.items.append(encoded)
        buf.size += len(encoded) + 1
        if len(buf.items) >= self.batch_size:
            self._send_batch(partition)

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

    def _send(self, value: bytes, key: bytes | None, n: int, partition: int | None = None) -> Any:
        """Hand one message to the producer; its future (acknowledged or failed later)."""
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
        return future

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


#: Bytes read from the input at a time. With the longest item kept (MAX_MESSAGE_BYTES),
#: this bounds what reading holds in memory, whatever the input: a line of gigabytes, or
#: /dev/zero, which has no newline at all.
READ_CHUNK = 1 << 20
_NOT_WHITESPACE = re.compile(rb"[^ \t\r\n\x0b\x0c]")
_UTF8_BOM = b"\xef\xbb\xbf"


class Oversize(NamedTuple):
    """An item over the message limit, skipped without being held: only its size is kept."""

    size: int

    def reason(self) -> str:
        return (
            f"{self.size:,} bytes, over the {MAX_MESSAGE_BYTES // (1 << 20)} MiB message "
            "limit (not read): an event is at most a few KiB, see docs/wire-format.md"
        )


def iter_source(
    source: str | Path, stdin: IO[bytes] | None = None, *, name: str | None = None
) -> Iterator[SourceItem]:
    """Items of a JSON Lines file, a JSON array file, or stdin (``-``), auto-detected.

    Reading is bounded: the input is read ``READ_CHUNK`` bytes at a time, and an item
    (a line, or an item of an array) longer than ``MAX_MESSAGE_BYTES`` is skipped as it
    is read, its bytes counted but never held, and yielded as ``Oversize`` (a rejection
    naming its line and size). So memory stays flat for any input, a single line of
    gigabytes or an endless stream without newlines included.

    JSON Lines: blank lines are skipped (still counted, so line numbers match an
    editor's); a bad line is yielded as is and rejected later with its line number. A
    JSON array, or pretty-printed objects one after another, are split into items by
    their brackets and strings, and each item is decoded alone; a syntax error, or an
    item Python's JSON decoder cannot read (nested too deeply, a number of too many
    digits), is an ``InputError`` naming the line, since where the item ends, and so
    everything after it, cannot be trusted. Every failure to read is an ``InputError``
    (one line, for ``cxpulse publish``), never a traceback. ``name`` is what its messages
    call the input (the file's name, or "stdin", by default).
    """
    f, opened, _ = _open(source, stdin)
    name = name or opened
    try:
        yield from _iter_stream(_Chunks(f), name)
    except OSError as exc:  # a read failing midway: a device error, a closed pipe
        raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None
    finally:
        if f is not stdin and f is not sys.stdin.buffer:
            f.close()


class _Chunks:
    """The input as a window: ``buf`` holds the unread bytes, ``more()`` appends a chunk,
    ``drop(n)`` forgets the first ``n`` while keeping the line, column and offset of
    ``buf[0]``."""

    def __init__(self, f: IO[bytes]) -> None:
        self._read = getattr(f, "read1", f.read)  # read1: a pipe's bytes as they come
        self.buf = bytearray()
        self.eof = False
        self.line = 1  # the line of buf[0]
        self.col = 1  # its column (bytes)
        self.offset = 0  # its offset in the input

    def read_chunk(self) -> bytes:
        """The next bytes of the input (b"" at its end), not kept in ``buf``."""
        if self.eof:
            return b""
        data = bytes(self._read(READ_CHUNK))
        if not data:
            self.eof = True
        return data

    def more(self) -> bool:
        data = self.read_chunk()
        self.buf += data
        return bool(data)

    def drop(self, n: int) -> None:
        n = min(n, len(self.buf))
        newlines = self.buf.count(b"\n", 0, n)
        if newlines:
            self.line += newlines
            self.col = n - self.buf.rfind(b"\n", 0, n)
        else:
            self.col += n
        self.offset += n
        del self.buf[:n]

    def skip_whitespace(self) -> int | None:
        """Drop leading whitespace; the first other byte, or None at the end."""
        while True:
            m = _NOT_WHITESPACE.search(self.buf)
            self.drop(m.start() if m is not None else len(self.buf))
            if self.buf:
                return self.buf[0]
            if not self.more():
                return None


def _iter_stream(r: _Chunks, name: str) -> Iterator[SourceItem]:
    while len(r.buf) < len(_UTF8_BOM) and r.more():
        pass
    if r.buf.startswith(_UTF8_BOM):
        del r.buf[: len(_UTF8_BOM)]  # not a column: an editor does not show it
    head = r.skip_whitespace()
    if head is None:
        raise InputError(
            f"{name} is empty: it holds no events (expected JSON Lines or a JSON array of "
            "events); nothing was sent"
        )
    if head == ord("["):
        yield from _iter_document(r, name, array=True)
        return
    if head != ord("{"):
        raise InputError(
            f"{name} is neither JSON Lines nor a JSON array of events (line {r.line} "
            f"starts with {bytes(r.buf[:20]).strip()!r})"
        )
    # One event per line, or pretty-printed objects: is the '{' alone on its line?
    end = 1
    while True:
        while end < len(r.buf) and r.buf[end] in b" \t\r\x0b\x0c":
            end += 1
        if end < len(r.buf) or not r.more():
            break
    if end >= len(r.buf) or r.buf[end] == ord("\n"):
        yield from _iter_document(r, name, array=False)
        return
    yield from _iter_lines(r)


def _iter_lines(r: _Chunks) -> Iterator[SourceItem]:
    """JSON Lines from ``r`` (at the start of a line), a chunk at a time."""
    lineno = r.line
    pending = bytearray()  # the line so far
    over = -1  # the length so far of a line over the limit, not held; -1: none
    data = bytes(r.buf)
    r.buf.clear()
    while True:
        parts = data.split(b"\n")
        for piece in parts[:-1]:
            if over >= 0:
                yield SourceItem(lineno, Oversize(over + len(piece)), over + len(piece) + 1)
                over = -1
            else:
                line = bytes(pending) + piece if pending else piece
                pending.clear()
                if len(line) > MAX_MESSAGE_BYTES:
                    yield SourceItem(lineno, Oversize(len(line)), len(line) + 1)
                else:
                    stripped = line.strip()
                    if stripped:
                        yield SourceItem(lineno, stripped, len(line) + 1)
                    # blank lines are skipped, but still counted so line numbers match
            lineno += 1
        tail = parts[-1]
        if over >= 0:
            over += len(tail)
        else:
            pending += tail
            if len(pending) > MAX_MESSAGE_BYTES:
                over = len(pending)
                pending = bytearray()
        if not r.more():
            break
        data = bytes(r.buf)
        r.buf.clear()
    if over >= 0:
        yield SourceItem(lineno, Oversize(over), over)
    elif pending.strip():
        yield SourceItem(lineno, bytes(pending).strip(), len(pending))


_NOT_JSON_WS = re.compile(r"[^ \t\r\n]")
_STRUCTURE = re.compile(r'[\[\]{}"]')
_IN_STRING = re.compile(r'["\\]')
_SCALAR_END = re.compile(r'[ \t\r\n,\[\]{}"]')


class _Text:
    """A JSON document read as text, a window at a time: ``text[pos:]`` is unread.

    Items are decoded in place by Python's JSON decoder (C speed, as if the document were
    read whole); only an item cut by the window's end, or one that does not decode, is
    scanned by its brackets and strings to read the rest of it first (and an item over
    MAX_MESSAGE_BYTES is skipped as it is scanned)."""

    def __init__(self, r: _Chunks, name: str) -> None:
        self._r = r
        self._name = name
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._fed = r.offset  # input bytes given to the decoder
        self.eof = False
        self.text = ""
        self.pos = 0
        # Line and column of text[0]; newlines counted up to text[_counted].
        self._line, self._col = r.line, r.col
        self._counted = 0
        self._counted_line = r.line
        self._last_newline: int | None = None  # in text[:_counted]
        data = bytes(r.buf)
        r.buf.clear()
        self.text = self._decode(data)

    def _decode(self, data: bytes, final: bool = False) -> str:
        try:
            text = self._utf8.decode(data, final)
        except UnicodeDecodeError as exc:
            at = max(0, self._fed + exc.start - len(self._utf8.getstate()[0]))
            raise InputError(f"{self._name} is not UTF-8 ({exc.reason} at byte {at})") from None
        self._fed += len(data)
        return text

    def where(self, p: int) -> tuple[int, int]:
        """Line and column of ``text[p]`` (``p`` never before an earlier call's)."""
        if p > self._counted:
            newlines = self.text.count("\n", self._counted, p)
            if newlines:
                self._counted_line += newlines
                self._last_newline = self.text.rfind("\n", self._counted, p)
            self._counted = p
        if self._last_newline is None:
            return self._counted_line, self._col + p
        return self._counted_line, p - self._last_newline

    def more(self) -> bool:
        """Forget ``text[:pos]``, then add a chunk of input; False at its end."""
        if self.eof:
            return False
        self._line, self._col = self.where(self.pos)
        self.text = self.text[self.pos :]
        self._counted, self._counted_line, self._last_newline = 0, self._line, None
        self.pos = 0
        data = self._r.read_chunk()
        if not data:
            self.eof = True
            self.text += self._decode(b"", final=True)
            return False
        self.text += self._decode(data)
        return True

    def skip_whitespace(self) -> str | None:
        """Move past whitespace; the next character, or None at the end."""
        while True:
            m = _NOT_JSON_WS.search(self.text, self.pos)
            if m is not None:
                self.pos = m.start()
                return self.text[self.pos]
            self.pos = len(self.text)
            if not self.more():
                return None

    def item(self, decoder: json.JSONDecoder) -> tuple[Any, int] | Oversize:
        """The value at ``pos`` and where it ends, or ``Oversize`` (then skipped)."""
        try:
            value, end = decoder.raw_decode(self.text, self.pos)
            if end < len(self.text) or self.eof:  # else a number may go on
                return value, end
        except json.JSONDecodeError as exc:
            # Not JSON well before the window's end: no more input can change that (an
            # item cut by the end fails at the end, or at its last string's start).
            if exc.msg != "Unterminated string starting at" and exc.pos + 16 < len(self.text):
                raise
            # Else read all of it first, then decode.
        size = self._read_whole_item()
        if size is not None:
            return Oversize(size)
        return decoder.raw_decode(self.text, self.pos)

    def _read_whole_item(self) -> int | None:
        """Read until the item at ``pos`` is whole in the window (by its brackets and
        strings), or the input ends. An item over the limit is skipped instead, from
        the window too (``pos`` after it): then its size in bytes."""
        head = self.text[self.pos]
        nested = head in "[{"
        in_string = head == '"'
        j = self.pos + (1 if in_string else 0)  # where scanning goes on
        depth = 0
        dropped = 0  # bytes of the item skipped so far
        while True:
            if j < len(self.text):
                pattern = _IN_STRING if in_string else _STRUCTURE if nested else _SCALAR_END
                m = pattern.search(self.text, j)
                if m is not None:
                    c = m.group()
                    j = m.end()
                    if in_string:
                        if c == "\\":
                            j += 1  # the escaped character, whatever it is
                            continue
                        in_string = False
                        if not nested:
                            return self._whole(j, dropped)
                    elif not nested:
                        return self._whole(m.start(), dropped)
                    elif c == '"':
                        in_string = True
                    elif c in "[{":
                        depth += 1
                    else:
                        depth -= 1
                        if depth == 0:
                            return self._whole(j, dropped)
                    continue
                j = len(self.text)
            if dropped or len(self.text) - self.pos > MAX_MESSAGE_BYTES:
                dropped += len(self.text[self.pos :].encode("utf-8", "surrogatepass"))
                behind = j - len(self.text)  # 1 when an escaped character is not read yet
                self.pos = len(self.text)
                more = self.more()
                j = self.pos + behind
            else:
                offset = j - self.pos
                more = self.more()
                j = self.pos + offset
            if not more:
                return self._whole(len(self.text), dropped)

    def _whole(self, end: int, dropped: int) -> int | None:
        if not dropped and end - self.pos <= MAX_MESSAGE_BYTES:
            return None
        size = dropped + len(self.text[self.pos : end].encode("utf-8", "surrogatepass"))
        self.pos = end
        return size


def _iter_document(r: _Chunks, name: str, *, array: bool) -> Iterator[SourceItem]:
    """The items of a JSON array (``r`` at its ``[``) or of objects one after another,
    each decoded where it stands in the window."""
    t = _Text(r, name)
    decoder = json.JSONDecoder()

    def fail(p: int, what: str) -> InputError:
        line, col = t.where(p)
        return InputError(f"{name}: {what} at line {line} column {col}")

    def expect_end() -> None:
        if t.skip_whitespace() is not None:
            raise fail(t.pos, "unexpected data after the JSON array")

    if array:
        t.pos += 1  # past '['
        if t.skip_whitespace() == "]":
            t.pos += 1
            expect_end()
            return
    while True:
        if t.skip_whitespace() is None:
            if array:  # an array never closed, after a ','
                raise fail(t.pos, "invalid JSON (Expecting value)")
            return
        start = t.pos
        line, _ = t.where(start)
        try:
            got = t.item(decoder)
        except json.JSONDecodeError as exc:
            raise fail(exc.pos, f"invalid JSON ({exc.msg})") from None
        except (RecursionError, ValueError) as exc:
            line, col = t.where(t.pos)
            raise InputError(
                f"{name}: cannot read the item at line {line} column {col}: {json_failure(exc)}"
            ) from None
        if isinstance(got, Oversize):
            yield SourceItem(line, got, got.size)
        else:
            value, end = got
            start = t.pos
            t.pos = end
            if isinstance(value, str):
                value = t.text[start:end]
            yield SourceItem(line, value, end - start)
        if not array:
            continue
        sep = t.skip_whitespace()
        if sep == ",":
            t.pos += 1
        elif sep == "]":
            t.pos += 1
            expect_end()
            return
        else:
            raise fail(t.pos, "expected ',' or ']' in the JSON array")


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
        read = [0]
        items = _counted(iter_source(source, stdin), read)
        try:
            if show:
                _publish_with_progress(publisher, items, name, size)
            else:
                for item in items:
                    publisher.publish(item.value, where=f"line {item.line}")
        except InputError as exc:
            if not read[0]:
                raise  # nothing was read: the message says what is wrong with the input
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


def _counted(items: Iterator[SourceItem], read: list[int]) -> Iterator[SourceItem]:
    for item in items:
        read[0] += 1
        yield item


def rejected_line(summary: PublishSummary) -> str | None:
    """The closing line of ``cxpulse publish`` when some input was rejected (it then
    exits 1): how many events went out and how many did not."""
    if not summary.rejected:
        return None
    return (
        f"cxpulse: {summary.rejected:,} of {summary.sent + summary.rejected:,} events were "
        f"rejected (listed above, not sent); {summary.sent:,} were sent to {summary.topic}. "
        "Fix the rejected lines and publish them again (events already sent are "
        "deduplicated by event_id)"
    )


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
    "Oversize",
    "PublishError",
    "PublishSummary",
    "Publisher",
    "Rejection",
    "SourceItem",
    "encode_event",
    "iter_source",
    "print_summary",
    "publish_source",
    "rejected_line",
    "validate_event",
]
