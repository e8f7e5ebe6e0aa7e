"""ClickHouse row models: what cxpulse writes, column by column.

Column names and ClickHouse types are declared once, as ``Column`` metadata on the fields
of a pydantic model. The DDL (``cxpulse.sinks.ddl``), the documentation
(``docs/clickhouse-tables.md``) and the row tuples built here all derive from that one
declaration, so they cannot drift apart. Column names are a public contract for BI users:
rename nothing, add columns at the end.

Rows are plain tuples in column order, built by ``event_row`` / ``dead_letter_row``:
constructing a pydantic model per row would cost more than the rest of a row's journey to
ClickHouse. The models exist to declare and to check (tests validate the tuples against
them), not to be instantiated on the hot path. The event rows hold their ids as text
(``id_text``) and no lists: see there why.

This module imports the standard library, msgspec and ``schemas`` only: the stream core may
use it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from pydantic import AwareDatetime, BaseModel, ConfigDict

from cxpulse.schemas.envelope import MAX_DEAD_LETTER_PAYLOAD_BYTES

# ------------------------------------------------------------------------------------
# The spec vocabulary: a column, a table, a view.
# ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Column:
    """One column's ClickHouse type and its meaning for the people who query it.

    ``type`` is written for a current ClickHouse. Older servers get a type derived by
    ``cxpulse.sinks.ddl`` (``LowCardinality(X)`` → ``X``, ``DateTime64(p, tz)`` → ``DateTime(tz)``);
    ``fallback`` overrides that derivation for the rare column where it is not right.
    """

    type: str
    doc: str
    fallback: str | None = None


@dataclass(frozen=True, slots=True)
class TableSpec:
    """A table as data: columns from a row model plus its storage layout.

    Storage is ``ReplacingMergeTree(version)`` ordered by a deterministic key, so a replay
    or a retried insert leaves one row per key once merged (or when read with ``FINAL``):
    that is how at-least-once delivery from Kafka becomes exactly-once in query results.
    """

    name: str
    model: type[BaseModel]
    order_by: tuple[str, ...]
    partition_by: str
    version: str | None
    doc: str
    ttl: tuple[str, int] | None = None  # (time column, days to keep); skipped where unsupported
    columns: tuple[tuple[str, Column], ...] = field(init=False)
    positions: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        cols = []
        for fname, finfo in self.model.model_fields.items():
            meta = [m for m in finfo.metadata if isinstance(m, Column)]
            if len(meta) != 1:
                raise TypeError(f"{self.model.__name__}.{fname} needs exactly one Column(...)")
            cols.append((fname, meta[0]))
        object.__setattr__(self, "columns", tuple(cols))
        object.__setattr__(self, "positions", {name: i for i, (name, _) in enumerate(cols)})
        names = self.column_names
        keys = [*self.order_by, *([self.version] if self.version else [])]
        keys += [self.ttl[0]] if self.ttl else []
        for key in keys:
            if key not in names:
                raise TypeError(f"table {self.name}: key column {key!r} is not a column")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def key_of(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """The ORDER BY key of a row tuple (the deduplication key)."""
        return tuple(row[self.positions[c]] for c in self.order_by)

    def version_of(self, row: tuple[Any, ...]) -> Any:
        """The ReplacingMergeTree version of a row (None when the table has none)."""
        return row[self.positions[self.version]] if self.version else None


@dataclass(frozen=True, slots=True)
class ViewSpec:
    """A view over tables, for BI. ``select`` may name ``{db}`` for the database.

    ``columns`` documents every column the view returns, in order, as (name, meaning):
    a view's columns are as much a public contract for BI users as a table's, and a test
    compares them with what ClickHouse reports for the created view.
    """

    name: str
    select: str
    doc: str
    columns: tuple[tuple[str, str], ...] = ()


def columns_of(table: TableSpec, *names: str) -> tuple[tuple[str, str], ...]:
    """(name, meaning) of columns a view passes through unchanged from ``table``."""
    docs = dict((name, col.doc) for name, col in table.columns)
    return tuple((name, docs[name]) for name in names)


# ------------------------------------------------------------------------------------
# touchpoint_events
# ------------------------------------------------------------------------------------

_TS = "DateTime64(3, 'UTC')"
_LC = "LowCardinality(String)"


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


class EventRow(_Row):
    """One validated touchpoint event, flattened for analysis."""

    event_id: Annotated[uuid.UUID, Column("UUID", "The event's id: the deduplication key.")]
    occurred_at: Annotated[
        AwareDatetime, Column(_TS, "When the interaction happened (event time, UTC).")
    ]
    ingested_at: Annotated[
        AwareDatetime,
        Column(_TS, "When cxpulse validated the event; the newest copy wins on replay."),
    ]
    schema_version: Annotated[int, Column("UInt8", "Version of the event contract it came in.")]
    customer_id: Annotated[str, Column("String", "The customer, as the upstream system names it.")]
    channel: Annotated[str, Column(_LC, "web, app, call_center, store or atm.")]
    touchpoint: Annotated[str, Column(_LC, "Touchpoint type, e.g. atm.withdrawal.")]
    touchpoint_instance: Annotated[
        str, Column(_LC, "Touchpoint instance (ATM-0042, store-117, /login); '' if not given.")
    ]
    journey_stage: Annotated[str, Column(_LC, "pre_purchase, purchase or post_purchase.")]
    journey_id: Annotated[str, Column("String", "Upstream journey id; '' if not given.")]
    intent: Annotated[str, Column(_LC, "What the customer came to do; '' if not given.")]
    outcome: Annotated[str, Column(_LC, "success, failure or abandoned.")]
    tier: Annotated[str, Column(_LC, "Customer value tier A, B or C; '' if unknown.")]
    segment: Annotated[str, Column(_LC, "Customer segment; '' if not given.")]
    latency_ms: Annotated[
        float | None, Column("Nullable(Float64)", "web/app: response latency, milliseconds.")
    ]
    http_status: Annotated[int | None, Column("Nullable(UInt16)", "web/app: HTTP status code.")]
    steps: Annotated[
        int | None, Column("Nullable(UInt16)", "web/app: steps the customer had to take.")
    ]
    wait_seconds: Annotated[
        float | None, Column("Nullable(Float64)", "call_center: time waiting for an agent.")
    ]
    handle_seconds: Annotated[
        float | None, Column("Nullable(Float64)", "call_center: time talking to agents.")
    ]
    transfers: Annotated[
        int | None, Column("Nullable(UInt16)", "call_center: transfers between agents.")
    ]
    ivr_steps: Annotated[int | None, Column("Nullable(UInt16)", "call_center: IVR menu steps.")]
    queue_seconds: Annotated[
        float | None, Column("Nullable(Float64)", "store: time queueing before service.")
    ]
    service_seconds: Annotated[
        float | None, Column("Nullable(Float64)", "store: time being served.")
    ]
    response_ms: Annotated[
        float | None, Column("Nullable(Float64)", "atm: response time, milliseconds.")
    ]
    error_code: Annotated[str, Column(_LC, "atm: the device's error code; '' if none.")]
    cash_dispensed: Annotated[
        int | None, Column("Nullable(UInt8)", "atm: 1 if cash came out, 0 if not.")
    ]
    nps: Annotated[int | None, Column("Nullable(UInt8)", "Survey: net promoter score 0-10.")]
    csat: Annotated[int | None, Column("Nullable(UInt8)", "Survey: satisfaction 1-5.")]
    ces: Annotated[
        int | None, Column("Nullable(UInt8)", "Survey: customer effort 1-7 (1 = effortless).")
    ]
    feedback_text: Annotated[str, Column("String", "Free-text feedback; '' if none.")]
    feedback_language: Annotated[
        str, Column(_LC, "Language of the feedback text (en, zh, ...); '' if not given.")
    ]
    details_json: Annotated[
        str, Column("String", "All channel details as JSON (fields left out when not given).")
    ]
    attributes_json: Annotated[str, Column("String", "Free-form upstream attributes as JSON.")]
    source_partition: Annotated[int, Column("Int32", "Kafka partition the event was read from.")]
    source_offset: Annotated[int, Column("Int64", "Kafka offset of the message holding it.")]


TOUCHPOINT_EVENTS = TableSpec(
    name="touchpoint_events",
    model=EventRow,
    order_by=("event_id",),
    partition_by="toYYYYMM(occurred_at)",
    version="ingested_at",
    doc=(
        "Every valid touchpoint event, one row per event_id (read with FINAL, or "
        "GROUP BY event_id, until background merges have removed replayed copies)."
    ),
)

# The detail fields that get their own columns; everything else stays in details_json.
_DETAIL_COLUMNS = (
    "latency_ms",
    "http_status",
    "steps",
    "wait_seconds",
    "handle_seconds",
    "transfers",
    "ivr_steps",
    "queue_seconds",
    "service_seconds",
    "response_ms",
)
#: The details columns of an event without details: no metrics, error_code '',
#: cash_dispensed NULL, the details as JSON '{}'.
_NO_DETAILS: tuple[Any, ...] = (*(None,) * len(_DETAIL_COLUMNS), "", None, "{}")


#: An id's text, as ``str(uuid)`` writes it (made in C, a fifth of the cost). Rows hold
#: their ids as text: a row tuple then holds no object the garbage collector tracks, so it
#: stops looking at the row the first time it sees it. Rows wait for their checkpoint
#: (hundreds of thousands of them under load), and holding UUID objects kept every one of
#: them in the collector's generations, scanned again and again.
id_text = msgspec.to_builtins


def to_millis(moment: datetime) -> datetime:
    """UTC, cut to milliseconds: the precision the tables store (``DateTime64(3)``), so a
    row read back equals the row written. A time with nothing finer than milliseconds
    (most: event times in JSON, whole-second scores) is not copied again: a keyword
    ``replace`` costs as much as the conversion to UTC."""
    moment = moment.astimezone(UTC)
    micros = moment.microsecond
    return moment if micros % 1000 == 0 else moment.replace(microsecond=micros // 1000 * 1000)


# msgspec's JSON encoders, made once: the standard library's builds its C encoder again
# at every call, and an event's two small objects cost 4.5 µs that way (1.6 µs here). The
# text is the standard library's (compact, UTF-8, not ASCII-escaped) but for a float
# written with an exponent: 1e16 and 1e-7 where it wrote 1e+16 and 1e-07 (the same number;
# pydantic writes the second form too).
_SORTED_JSON = msgspec.json.Encoder(order="sorted")
_ORDERED_JSON = msgspec.json.Encoder()


def _json(value: Any) -> str:
    return _SORTED_JSON.encode(value).decode()


def _detail_fields(details: Any) -> dict[str, Any]:
    """The details' kind and set fields, in the contract's order: from the trusted record
    (a msgspec Struct, ``cxpulse.streams.pipeline.records``) or the validated model."""
    config = getattr(details, "__struct_config__", None)
    if config is not None:
        fields = {"kind": config.tag}
        for name in details.__struct_fields__:
            value = getattr(details, name)
            if value is not None:
                fields[name] = value
        return fields
    return {k: v for k, v in details.__dict__.items() if v is not None}


def _json_in_order(fields: dict[str, Any]) -> str:
    """Compact JSON keeping the keys' order (what pydantic's model_dump_json writes)."""
    return _ORDERED_JSON.encode(fields).decode()


#: A batch's columns: one sequence of values per column of its table, in the table's
#: order (what the column builders here and in ``score_rows`` make; their rows transposed).
Columns = Sequence[Sequence[Any]]


def event_columns(
    events: Sequence[Any],
    source_partitions: Sequence[int],
    source_offsets: Sequence[int],
    ingested_at: datetime,
) -> Columns:
    """The ``touchpoint_events`` columns of these events (their rows, column by column,
    built straight from the records), each event's source partition and offset given in
    parallel, the ingestion time cut to milliseconds once.

    Absent strings become ``''`` (ClickHouse's idiom: cheaper than Nullable, and
    ``WHERE tier = ''`` reads naturally); absent numbers stay NULL so averages ignore them.
    Times are normalised to UTC milliseconds.
    """
    n = len(events)
    ingested = to_millis(ingested_at)
    details = [_detail_values(e.details) for e in events]
    # metrics, error_code, cash_dispensed, then (after the feedback's) the details' JSON
    detail_columns = (
        [list(c) for c in zip(*details, strict=True)] if n else [[] for _ in _NO_DETAILS]
    )
    feedback = [e.feedback for e in events]
    return [
        id_text([e.event_id for e in events]),
        [to_millis(e.occurred_at) for e in events],
        [ingested] * n,
        [e.schema_version for e in events],
        [e.customer_id for e in events],
        [e.channel for e in events],
        [e.touchpoint for e in events],
        [e.touchpoint_instance or "" for e in events],
        [e.journey_stage for e in events],
        [e.journey_id or "" for e in events],
        [e.intent or "" for e in events],
        [e.outcome for e in events],
        [e.tier or "" for e in events],
        [e.segment or "" for e in events],
        *detail_columns[:-1],
        [fb.nps if fb else None for fb in feedback],
        [fb.csat if fb else None for fb in feedback],
        [fb.ces if fb else None for fb in feedback],
        [(fb.text or "") if fb else "" for fb in feedback],
        [(fb.language or "") if fb else "" for fb in feedback],
        detail_columns[-1],
        [_json(e.attributes) for e in events],
        list(source_partitions),
        list(source_offsets),
    ]


def event_rows(
    events: Iterable[Any], *, source_partition: int, source_offset: int, ingested_at: datetime
) -> list[tuple[Any, ...]]:
    """The ``touchpoint_events`` rows of a message's events (``event_columns``)."""
    events = list(events)
    n = len(events)
    columns = event_columns(events, [source_partition] * n, [source_offset] * n, ingested_at)
    return list(zip(*columns, strict=True))


def event_row(
    event: Any, *, source_partition: int, source_offset: int, ingested_at: datetime
) -> tuple[Any, ...]:
    """Flatten an event into a ``touchpoint_events`` row tuple (column order of ``EventRow``)."""
    rows = event_rows(
        [event],
        source_partition=source_partition,
        source_offset=source_offset,
        ingested_at=ingested_at,
    )
    return rows[0]


def _detail_values(details: Any) -> tuple[Any, ...]:
    """An event's values of the details columns: the metrics, error_code,
    cash_dispensed and the details as JSON."""
    if details is None:
        return _NO_DETAILS
    fields = _detail_fields(details)
    dispensed = fields.get("cash_dispensed")
    return (
        *map(fields.get, _DETAIL_COLUMNS),
        fields.get("error_code") or "",
        None if dispensed is None else int(dispensed),
        _json_in_order(fields),
    )


# ------------------------------------------------------------------------------------
# dead_letters
# ------------------------------------------------------------------------------------


class DeadLetterRow(_Row):
    """A message (or one item of a batch message) that was not a valid event."""

    dead_letter_id: Annotated[
        uuid.UUID,
        Column("UUID", "Deterministic id from topic, partition, offset and index: the dedup key."),
    ]
    received_at: Annotated[
        AwareDatetime, Column(_TS, "When it was read (the Kafka record timestamp, UTC).")
    ]
    source_topic: Annotated[str, Column(_LC, "Kafka topic it was read from.")]
    source_partition: Annotated[int, Column("Int32", "Kafka partition it was read from.")]
    source_offset: Annotated[int, Column("Int64", "Kafka offset of the message.")]
    source_index: Annotated[
        int, Column("Int32", "Position in a batch message; -1 when the whole message is bad.")
    ]
    reason: Annotated[str, Column("String", "Why it was rejected, for a person to read.")]
    payload: Annotated[
        str,
        Column("String", "The rejected bytes as UTF-8 (undecodable bytes become U+FFFD)."),
    ]
    payload_bytes: Annotated[
        int, Column("UInt32", "Size of the rejected payload in bytes, before any truncation.")
    ]


DEAD_LETTERS = TableSpec(
    name="dead_letters",
    model=DeadLetterRow,
    order_by=("dead_letter_id",),
    partition_by="toYYYYMM(received_at)",
    version="received_at",
    ttl=("received_at", 90),
    doc=(
        "Input that was not a valid event, with the reason: nothing is dropped silently. "
        "Kept 90 days where the server supports TTL."
    ),
)

# Namespace of dead-letter ids (uuid5): fixed forever, or replays stop deduplicating.
DEAD_LETTER_NAMESPACE = uuid.UUID("0b9f3c52-5d0e-4d5e-9a43-3c6d1f1f7a10")


def dead_letter_id(topic: str, partition: int, offset: int, index: int | None) -> uuid.UUID:
    """The same message position always yields the same id, so a replay deduplicates."""
    return uuid.uuid5(
        DEAD_LETTER_NAMESPACE, f"{topic}/{partition}/{offset}/{-1 if index is None else index}"
    )


def dead_letter_row(
    *,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    source_index: int | None,
    reason: str,
    payload: bytes,
    received_at: datetime,
    payload_bytes: int | None = None,
) -> tuple[Any, ...]:
    """Build a ``dead_letters`` row tuple (column order of ``DeadLetterRow``).

    ``source_index`` is the item's position in a batch message, or None/-1 for the whole
    message. Pass the Kafka record's timestamp as ``received_at`` so a replayed dead letter
    is an identical row. ``payload_bytes`` is the original size when ``payload`` was
    already cut short upstream; the payload is also cut here at
    ``MAX_DEAD_LETTER_PAYLOAD_BYTES``.
    """
    index = -1 if source_index is None else source_index
    size = len(payload) if payload_bytes is None else payload_bytes
    return (
        dead_letter_id(source_topic, source_partition, source_offset, index),
        to_millis(received_at),
        source_topic,
        source_partition,
        source_offset,
        index,
        reason,
        payload[:MAX_DEAD_LETTER_PAYLOAD_BYTES].decode("utf-8", errors="replace"),
        size,
    )


#: ``reason`` of a dead letter that holds a row ClickHouse refused, before the error text.
REFUSED_ROW_REASON = "rejected by ClickHouse"


def _plain(value: Any) -> Any:
    """JSON for the values rows hold: times as RFC 3339, ids as text, bytes as UTF-8."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, set | frozenset):
        return list(value)
    return str(value)


def row_json(column_names: tuple[str, ...] | None, row: tuple[Any, ...]) -> str:
    """A row as JSON a person can read and re-insert: an object by column name when the
    row fits the table's columns, else the bare list of values (a row of the wrong width
    is one of the ways a row is refused: nothing of it may be lost)."""
    doc: Any = (
        dict(zip(column_names, row, strict=True))
        if column_names is not None and len(column_names) == len(row)
        else list(row)
    )
    try:
        text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=_plain)
    except ValueError:  # a circular value, an integer of 5,000 digits: show it as Python
        text = json.dumps(repr(row), ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: keep the \\u escapes, valid UTF-8
        text = json.dumps(json.loads(text), separators=(",", ":"))
    return text


def refused_row_dead_letter(
    *,
    table: str,
    row: tuple[Any, ...],
    error: str,
    received_at: datetime,
    spec: TableSpec | None = None,
) -> tuple[Any, ...]:
    """A ``dead_letters`` row holding a row that ClickHouse refused for its values.

    ``source_topic`` is the table's name (the row never was a Kafka message of its own),
    source partition, offset and index are -1, the reason is ``rejected by ClickHouse
    (<table>): <error>`` and the payload is the row as JSON (``row_json``). The id is
    derived from the table and the row's ORDER BY key (the whole row when that cannot be
    read), so the same refused row is one dead letter however often it is retried.
    """
    names = spec.column_names if spec is not None else None
    payload = row_json(names, row)
    key: Any = payload
    if spec is not None and names is not None and len(names) == len(row):
        key = row_json(spec.order_by, spec.key_of(row))
    letter_id = uuid.uuid5(DEAD_LETTER_NAMESPACE, f"clickhouse/{table}/{key}")
    return (
        letter_id,
        to_millis(received_at),
        table,
        -1,
        -1,
        -1,
        f"{REFUSED_ROW_REASON} ({table}): {error}",
        payload.encode()[:MAX_DEAD_LETTER_PAYLOAD_BYTES].decode("utf-8", errors="ignore"),
        len(payload.encode()),
    )


#: Every table and view cxpulse owns, in creation order. Later tables (moments,
#: customer_scores, score_history, alerts) and views are added here, nowhere else.
SPECS: tuple[TableSpec | ViewSpec, ...] = (TOUCHPOINT_EVENTS, DEAD_LETTERS)
