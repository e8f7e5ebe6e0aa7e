"""The sink writer's answers to failure: retry what waiting can fix, and set aside the rows
ClickHouse refuses for their values (bisecting the batch) so the other rows go in.

The first tests drive the writer's logic with a test double of a ClickHouse backend (a
fake that stores rows and refuses marked ones, whole inserts at a time as ClickHouse
does); the last ones run it on real chDB with a row chDB itself refuses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import BaseModel

from cxpulse.schemas.events import TouchpointEvent
from cxpulse.schemas.rows import DEAD_LETTERS, TOUCHPOINT_EVENTS, Column, TableSpec, event_row
from cxpulse.schemas.tables import SPECS
from cxpulse.sinks.errors import SinkDataError, SinkUnavailable, SinkWriteError
from cxpulse.sinks.writer import SinkWriter, merge, rows_of
from cxpulse.streams import metrics

COL = {name: i for i, name in enumerate(DEAD_LETTERS.column_names)}


def sample(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


class FakeClickHouse:
    """Stores rows by table. An insert holding a row ``refuse(table, row)`` marks fails
    whole with a ``SinkDataError``; ``failures`` are raised first, one per insert."""

    def __init__(
        self,
        refuse: Callable[[str, tuple[Any, ...]], bool] = lambda table, row: False,
        failures: Sequence[BaseException] = (),
    ) -> None:
        self.refuse = refuse
        self.failures = list(failures)
        self.tables: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self.inserts: list[tuple[str, int]] = []
        self.closed = 0

    def insert(self, table: str, rows: Sequence[tuple[Any, ...]]) -> int:
        self.inserts.append((table, len(rows)))
        if self.failures:
            raise self.failures.pop(0)
        bad = [r for r in rows if self.refuse(table, r)]
        if bad:
            raise SinkDataError(f"Code: 53. value {bad[0][0]!r} does not fit its column", code=53)
        self.tables[table].extend(rows)
        return len(rows)

    def close(self) -> None:
        self.closed += 1


def writer_for(fake: FakeClickHouse) -> tuple[SinkWriter, list[int]]:
    connects: list[int] = []

    def connect() -> FakeClickHouse:
        connects.append(1)
        return fake

    return SinkWriter(connect, retry_max_seconds=0.01, retry_initial_seconds=0.001), connects


def run(writer: SinkWriter, *writes: tuple[str, list[tuple[Any, ...]]]) -> None:
    async def go() -> None:
        for table, rows in writes:
            await writer.write(table, rows)
        await writer.aclose()

    asyncio.run(go())


def test_one_refused_row_is_isolated_by_bisection_and_the_others_go_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeClickHouse(refuse=lambda table, row: row[0] == "r5")
    writer, connects = writer_for(fake)
    rows = [(f"r{i}", i) for i in range(8)]
    refused_before = sample("cxpulse_sink_rows_refused_total", {"table": "demo"})

    with caplog.at_level(logging.ERROR, logger="cxpulse.sinks.writer"):
        run(writer, ("demo", rows))

    assert fake.tables["demo"] == [r for r in rows if r[0] != "r5"]  # in order
    # Worked by hand: 8 fail; 0-3 ok; 4-7 fail; 4-5 fail; 4 ok; 5 fails alone; 6-7 ok.
    assert fake.inserts == [
        ("demo", 8),
        ("demo", 4),
        ("demo", 4),
        ("demo", 2),
        ("demo", 1),
        ("demo", 1),
        ("demo", 2),
        ("dead_letters", 1),
    ]
    assert connects == [1]  # the rows' fault: the connection is kept
    [letter] = fake.tables["dead_letters"]
    assert letter[COL["reason"]] == (
        "rejected by ClickHouse (demo): Code: 53. value 'r5' does not fit its column"
    )
    assert json.loads(letter[COL["payload"]]) == ["r5", 5]  # no spec: the bare values
    assert letter[COL["source_topic"]] == "demo"
    assert (letter[COL["source_partition"]], letter[COL["source_offset"]]) == (-1, -1)
    assert sample("cxpulse_sink_rows_refused_total", {"table": "demo"}) == refused_before + 1
    [logged] = [r for r in caplog.records if "kept in dead_letters" in r.getMessage()]
    assert "r5" in logged.getMessage() and "Code: 53" in logged.getMessage()


def test_a_column_batch_is_bisected_as_rows_are_and_its_refused_row_kept() -> None:
    """A server's batch stays columns (``ColumnBatch``) from the step to the insert; the
    writer splits it into halves as it splits rows, and a refused row reaches
    dead_letters as its values."""
    from cxpulse.sinks.base import ColumnBatch

    class ColumnsClickHouse(FakeClickHouse):
        def insert(self, table: str, rows: Any) -> int:
            assert isinstance(rows, ColumnBatch) or table == "dead_letters"
            return super().insert(table, rows_of(rows))

    fake = ColumnsClickHouse(refuse=lambda table, row: row[0] == "r5")
    writer, _ = writer_for(fake)
    batch = ColumnBatch([[f"r{i}" for i in range(8)], list(range(8))])
    run(writer, ("demo", batch))  # type: ignore[arg-type]
    assert fake.tables["demo"] == [(f"r{i}", i) for i in range(8) if i != 5]
    assert [n for table, n in fake.inserts if table == "demo"] == [8, 4, 4, 2, 1, 1, 2]
    [letter] = fake.tables["dead_letters"]
    assert json.loads(letter[COL["payload"]]) == ["r5", 5]


def test_column_batches_merge_slice_and_read_as_rows() -> None:
    from cxpulse.sinks.base import ColumnBatch

    a, b = ColumnBatch([["a", "b"], [1, 2]]), ColumnBatch([("c",), (3,)])
    both = merge([a, b])
    assert isinstance(both, ColumnBatch) and both.columns == [["a", "b", "c"], [1, 2, 3]]
    assert len(both) == 3 and both.slice(1, 2).rows() == [("b", 2), ("c", 3)]
    assert a.columns == [["a", "b"], [1, 2]]  # merging copies: the parts are unchanged
    assert merge([a, [("z", 9)]]) == [("a", 1), ("b", 2), ("z", 9)]
    with pytest.raises(ValueError, match="same length"):
        ColumnBatch([["a"], [1, 2]])


def test_several_refused_rows_all_reach_dead_letters() -> None:
    bad = {"r0", "r3", "r4", "r9"}
    fake = FakeClickHouse(refuse=lambda table, row: table == "demo" and row[0] in bad)
    writer, _ = writer_for(fake)
    rows = [(f"r{i}", i) for i in range(10)]

    run(writer, ("demo", rows))

    assert [r[0] for r in fake.tables["demo"]] == ["r1", "r2", "r5", "r6", "r7", "r8"]
    kept = sorted(json.loads(d[COL["payload"]])[0] for d in fake.tables["dead_letters"])
    assert kept == sorted(bad)


def event(customer: str) -> TouchpointEvent:
    return TouchpointEvent.model_validate(
        {
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, customer)),
            "occurred_at": "2026-11-20T09:30:00+00:00",
            "customer_id": customer,
            "channel": "web",
            "touchpoint": "web.login",
            "journey_stage": "post_purchase",
            "outcome": "success",
        }
    )


def test_a_refused_row_of_a_known_table_is_kept_as_json_by_column_and_dedups() -> None:
    """The payload names each column, so a person can fix and insert it; the id comes from
    the row's key, so refusing the same row again (a replay) is the same dead letter."""
    at = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    good = event_row(event("C-good"), source_partition=0, source_offset=1, ingested_at=at)
    bad = event_row(event("C-bad"), source_partition=0, source_offset=2, ingested_at=at)
    position = TOUCHPOINT_EVENTS.positions["customer_id"]
    fake = FakeClickHouse(refuse=lambda table, row: row[position] == "C-bad")
    writer, _ = writer_for(fake)

    run(writer, ("touchpoint_events", [good, bad]), ("touchpoint_events", [bad]))

    assert fake.tables["touchpoint_events"] == [good]
    first, again = fake.tables["dead_letters"]
    assert first[COL["dead_letter_id"]] == again[COL["dead_letter_id"]]
    doc = json.loads(first[COL["payload"]])
    assert doc["customer_id"] == "C-bad"
    assert doc["event_id"] == str(event("C-bad").event_id)
    assert doc["occurred_at"] == "2026-11-20T09:30:00+00:00"
    assert first[COL["payload_bytes"]] == len(first[COL["payload"]].encode())


def test_retryable_failures_are_retried_with_a_new_connection_until_they_succeed() -> None:
    down = SinkUnavailable("ClickHouse at 127.0.0.1:9000 is unreachable")
    fake = FakeClickHouse(failures=[down, ConnectionError("reset"), down])
    writer, connects = writer_for(fake)
    failures_before = sample("cxpulse_sink_failures_total", {"table": "demo"})

    run(writer, ("demo", [("a", 1), ("b", 2)]))

    assert fake.tables["demo"] == [("a", 1), ("b", 2)]
    assert fake.inserts == [("demo", 2)] * 4  # the same batch, whole, every time
    assert len(connects) == 4 and fake.closed == 4  # reconnected after each failure; closed
    assert "dead_letters" not in fake.tables
    assert sample("cxpulse_sink_failures_total", {"table": "demo"}) == failures_before + 3


def test_a_statement_error_is_retried_and_logged_as_an_error_never_isolated(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An unknown table is nobody's row's fault: bisecting would move every row into
    dead_letters. Reconnecting (which re-creates tables) is what heals it."""
    gone = SinkWriteError("refused the statement: Code: 60. Table x.demo doesn't exist", code=60)
    fake = FakeClickHouse(failures=[gone, gone])
    writer, connects = writer_for(fake)

    with caplog.at_level(logging.WARNING, logger="cxpulse.sinks.writer"):
        run(writer, ("demo", [("a", 1), ("b", 2), ("c", 3)]))

    assert fake.tables["demo"] == [("a", 1), ("b", 2), ("c", 3)]
    assert fake.inserts == [("demo", 3)] * 3
    assert len(connects) == 3  # each retry reconnects (and so re-creates missing tables)
    assert "dead_letters" not in fake.tables
    stuck = [r for r in caplog.records if "will not heal by waiting" in r.getMessage()]
    assert len(stuck) == 2 and all(r.levelno == logging.ERROR for r in stuck)


def test_a_refused_dead_letter_is_wrapped_once_into_a_dead_letter_of_its_own() -> None:
    """A dead_letters row from another producer's headers may not fit (an Int32 column
    given 2**40): it is kept, as JSON, in a dead letter the writer built itself."""
    partition = COL["source_partition"]
    fake = FakeClickHouse(refuse=lambda table, row: row[partition] == 2**40)
    writer, _ = writer_for(fake)
    fine = ("id-1", datetime(2026, 11, 20, tzinfo=UTC), "cx.touchpoints", 1, 2, -1, "r", "x", 1)
    odd = ("id-2", datetime(2026, 11, 20, tzinfo=UTC), "cx.touchpoints", 2**40, 2, -1, "r", "y", 1)

    run(writer, ("dead_letters", [fine, odd]))

    first, wrapped = fake.tables["dead_letters"]
    assert first == fine
    assert wrapped[COL["source_topic"]] == "dead_letters"
    assert json.loads(wrapped[COL["payload"]])["source_partition"] == 2**40


def test_when_dead_letters_refuses_too_the_row_is_logged_whole_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeClickHouse(refuse=lambda table, row: True)  # nothing fits anywhere
    writer, _ = writer_for(fake)
    before = sample("cxpulse_sink_rows_refused_total", {"table": "dead_letters"})

    with caplog.at_level(logging.ERROR, logger="cxpulse.sinks.writer"):
        run(writer, ("demo", [("only", 1)]))  # returns: nothing can stall the sink

    assert fake.tables == {}
    last = [r for r in caplog.records if "cannot be kept in dead_letters" in r.getMessage()]
    assert len(last) == 1 and "only" in last[0].getMessage()
    assert sample("cxpulse_sink_rows_refused_total", {"table": "dead_letters"}) == before + 1


# -- a table of the tests' own, with the Array(String) column whose NULL chDB refuses --------


class _ProbeRow(BaseModel):
    probe_id: Annotated[str, Column("String", "The key.")]
    tags: Annotated[list[str], Column("Array(String)", "Tags: an array cannot hold NULL.")]


PROBE = TableSpec(
    name="writer_probe",
    model=_ProbeRow,
    order_by=("probe_id",),
    partition_by="tuple()",
    version=None,
    doc="A test table.",
)


def chdb_writer(directory: Path) -> SinkWriter:
    from cxpulse.sinks.embedded import ChdbBackend

    def connect() -> ChdbBackend:
        backend = ChdbBackend(f"chdb://{directory}?database=cxpulse_writer")
        backend.ensure_schema((*SPECS, PROBE))
        return backend

    return SinkWriter(connect, retry_max_seconds=0.01, retry_initial_seconds=0.001)


@pytest.mark.clickhouse
def test_on_chdb_rows_the_engine_refuses_go_to_dead_letters_and_the_rest_in(
    tmp_path: Path,
) -> None:
    """Two rows chDB truly refuses among good ones: a NULL inside an Array(String) (the
    engine's Code 349, CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN, which the backend used to
    call retryable, so it was retried forever) and a dead letter with a negative UInt32
    (refused while building its Arrow column)."""
    from cxpulse.schemas.rows import dead_letter_row

    at = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    letters = [
        dead_letter_row(
            source_topic="cx.touchpoints",
            source_partition=0,
            source_offset=n,
            source_index=-1,
            reason="not JSON",
            payload=b"x",
            received_at=at,
        )
        for n in range(3)
    ]
    negative = list(letters[2])
    negative[COL["payload_bytes"]] = -5
    writer = chdb_writer(tmp_path / "chdb")

    async def go() -> tuple[Any, Any]:
        await writer.write("writer_probe", [("p1", ["a"]), ("p2", [None, "b"]), ("p3", [])])
        await writer.write("dead_letters", [letters[0], letters[1], tuple(negative)])
        probes = await writer.query("SELECT probe_id, tags FROM writer_probe ORDER BY probe_id")
        dead = await writer.query(
            "SELECT source_topic, source_offset, reason, payload FROM dead_letters FINAL "
            "ORDER BY source_topic, source_offset"
        )
        await writer.aclose()
        return probes, dead

    (_, probes), (_, dead) = asyncio.run(go())

    assert [tuple(r) for r in probes] == [("p1", ["a"]), ("p3", [])]
    kept = {(r[0], r[1]): r for r in dead}
    assert set(kept) == {
        ("writer_probe", -1),
        ("cx.touchpoints", 0),
        ("cx.touchpoints", 1),
        ("dead_letters", -1),
    }
    refused_probe = kept[("writer_probe", -1)]
    assert refused_probe[2].startswith("rejected by ClickHouse (writer_probe): chDB")
    assert "Code: 349" in refused_probe[2]
    assert json.loads(refused_probe[3]) == ["p2", [None, "b"]]  # no spec known: the values
    refused_letter = kept[("dead_letters", -1)]
    assert refused_letter[2].startswith("rejected by ClickHouse (dead_letters): cannot encode")
    assert json.loads(refused_letter[3])["payload_bytes"] == -5


def test_a_run_of_failed_inserts_is_reported_until_an_insert_succeeds() -> None:
    """What /healthz reads: the table failing longest, for how long, and why."""
    from types import SimpleNamespace

    from cxpulse.streams.settings import load_settings
    from cxpulse.streams.web import health

    fake = FakeClickHouse(failures=[SinkUnavailable("connection refused")] * 3)
    writer, _ = writer_for(fake)
    rt: Any = SimpleNamespace(writer=writer, settings=load_settings(health_sink_failing_seconds=60))
    seen: list[tuple[str, float, str] | None] = []
    original = writer._insert

    def watching(table: str, rows: Sequence[Any]) -> float:
        seen.append(writer.failing())
        return original(table, rows)

    writer._insert = watching  # type: ignore[method-assign]
    assert writer.failing() is None and health(rt) == ({"status": "ok", "app": "cxpulse"}, 200)
    run(writer, ("demo", [("r1", 1)]))

    assert seen[0] is None  # the first attempt: nothing failed yet
    assert all(s is not None and s[0] == "demo" and "connection refused" in s[2] for s in seen[1:])
    assert len(seen) == 4 and fake.tables["demo"] == [("r1", 1)]
    assert writer.failing() is None  # the fourth attempt worked: the run is over

    # the same run, seen by the health check 61 s after it began
    writer._failing["demo"] = (100.0, "connection refused")
    body, status = health(rt, now=161.0)
    assert status == 503 and body["status"] == "failing"
    assert body["sink"] == {"table": "demo", "failing_seconds": 61.0, "error": "connection refused"}
    assert body["reason"].startswith("inserts into demo have failed for 61s")
    body, status = health(rt, now=130.0)  # 30 s: reported, not yet unhealthy
    assert status == 200 and body["sink"]["failing_seconds"] == 30.0


# -- rows prepared by the step: Arrow tables made where the rows are made --------------------


def sample_event_rows(seed: int, n: int) -> list[tuple[Any, ...]]:
    from cxpulse.streams.dev.sample_events import sample_events

    at = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    events = [TouchpointEvent.model_validate(e) for e in sample_events(seed)][:n]
    return [
        event_row(e, source_partition=0, source_offset=i, ingested_at=at)
        for i, e in enumerate(events)
    ]


@pytest.mark.clickhouse
def test_on_chdb_a_checkpoints_prepared_takes_go_in_as_one_insert_of_the_same_rows(
    tmp_path: Path,
) -> None:
    """What the experience step does with a take's rows: prepared (an Arrow table) as the
    take ends, the takes of a checkpoint merged and inserted once. What reads back equals
    the row tuples, as when the rows waited as tuples."""
    import pyarrow as pa

    from cxpulse.sinks.base import normalize_rows
    from cxpulse.streams.pipeline.checkpoint import Checkpointer

    first, second = sample_event_rows(1, 7), sample_event_rows(2, 5)
    writer = chdb_writer(tmp_path / "chdb")
    inserts: list[int] = []

    async def go() -> Any:
        assert writer.prepare("touchpoint_events", first) is first  # not open yet: as is
        # columns, not open yet: their rows
        assert writer.prepare_columns("touchpoint_events", list(zip(*first, strict=True))) == first
        await writer.open()

        async def write(table: str, batch: Any) -> None:
            inserts.append(len(batch))
            assert isinstance(batch, pa.Table)
            await writer.write(table, batch)

        table: Any = type("Table", (), {"data": {}})()
        cp = Checkpointer(
            table, write, every_rows=1000, every_seconds=60.0, prepare=writer.prepare_columns
        )
        cp.add_columns("touchpoint_events", list(zip(*first, strict=True)))
        cp.add_columns("touchpoint_events", list(zip(*second, strict=True)))
        assert all(isinstance(p, pa.Table) for p in cp.current.rows["touchpoint_events"])
        assert cp.current.largest == 12
        await cp.flush()
        _, read = await writer.query(
            "SELECT * FROM touchpoint_events FINAL ORDER BY source_offset, event_id"
        )
        await writer.aclose()
        return read

    read = asyncio.run(go())
    assert inserts == [12]
    expected = normalize_rows(TOUCHPOINT_EVENTS, [*first, *second])
    assert sorted(normalize_rows(TOUCHPOINT_EVENTS, read), key=str) == sorted(expected, key=str)


@pytest.mark.clickhouse
def test_on_chdb_prepared_rows_the_engine_refuses_are_still_set_aside(tmp_path: Path) -> None:
    """A prepared batch is bisected as rows are (Arrow slices), the refused row reaches
    dead_letters as its values; a row no column can hold is not prepared at all (the
    step's rows stay tuples) and takes the rows' path."""
    import pyarrow as pa

    from cxpulse.schemas.rows import dead_letter_row

    writer = chdb_writer(tmp_path / "chdb")
    at = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    letter = list(
        dead_letter_row(
            source_topic="cx.touchpoints",
            source_partition=0,
            source_offset=9,
            source_index=-1,
            reason="not JSON",
            payload=b"x",
            received_at=at,
        )
    )
    letter[COL["payload_bytes"]] = -5  # no UInt32 holds it

    async def go() -> tuple[Any, Any, Any]:
        await writer.open()
        probes = writer.prepare("writer_probe", [("p1", ["a"]), ("p2", [None, "b"]), ("p3", [])])
        assert isinstance(probes, pa.Table)
        # the same rows as columns: the same Arrow table
        columns = [["p1", "p2", "p3"], [["a"], [None, "b"], []]]
        assert writer.prepare_columns("writer_probe", columns).equals(probes)
        unprepared = writer.prepare("dead_letters", [tuple(letter)])
        assert isinstance(unprepared, list)
        # columns no column can hold: their rows, for the rows' path
        as_columns = writer.prepare_columns("dead_letters", [[v] for v in letter])
        assert as_columns == unprepared == [tuple(letter)]
        await writer.write("writer_probe", probes)
        await writer.write("dead_letters", unprepared)
        kept = await writer.query("SELECT probe_id, tags FROM writer_probe ORDER BY probe_id")
        dead = await writer.query(
            "SELECT source_topic, reason, payload FROM dead_letters FINAL ORDER BY source_topic"
        )
        await writer.aclose()
        return kept, dead, probes

    (_, kept), (_, dead), _ = asyncio.run(go())
    assert [tuple(r) for r in kept] == [("p1", ["a"]), ("p3", [])]
    by_source = {r[0]: r for r in dead}
    assert set(by_source) == {"writer_probe", "dead_letters"}
    assert "Code: 349" in by_source["writer_probe"][1]
    assert json.loads(by_source["writer_probe"][2]) == ["p2", [None, "b"]]
    assert json.loads(by_source["dead_letters"][2])["payload_bytes"] == -5


def test_a_checkpoints_parts_merge_into_one_batch_in_order() -> None:
    import pyarrow as pa

    a = pa.table({"k": ["a", "b"], "v": [1, 2]})
    b = pa.table({"k": ["c"], "v": [3]})
    both = merge([a, b])
    assert isinstance(both, pa.Table) and both.to_pylist() == [
        {"k": "a", "v": 1},
        {"k": "b", "v": 2},
        {"k": "c", "v": 3},
    ]
    assert merge([a]) is a
    # a part left as tuples (not prepared) makes the whole batch tuples, in order
    assert merge([a, [("z", 9)], b]) == [("a", 1), ("b", 2), ("z", 9), ("c", 3)]
    assert rows_of(b) == [("c", 3)]


@pytest.mark.clickhouse
def test_on_chdb_score_rows_prepared_once_go_into_both_score_tables(tmp_path: Path) -> None:
    """customer_scores and score_history have the same columns: the step's score rows are
    one part for both, prepared once, and read back the same from each."""
    import pyarrow as pa

    from cxpulse.schemas.score_rows import CUSTOMER_SCORES, SCORE_HISTORY, score_row
    from cxpulse.sinks.base import normalize_rows
    from cxpulse.streams.core import apply_events, score_update
    from cxpulse.streams.dev.sample_events import sample_events
    from cxpulse.streams.model_check import load_model
    from cxpulse.streams.pipeline.checkpoint import Checkpointer
    from cxpulse.streams.pipeline.records import record_of

    model = load_model()
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    by_customer: dict[str, list[Any]] = defaultdict(list)
    for e in sample_events(3):
        record = record_of(TouchpointEvent.model_validate(e))
        by_customer[record.customer_id].append(record)
    rows = [
        score_row(score_update(apply_events(None, batch, model, now)[0], model))
        for batch in by_customer.values()
    ]
    writer = chdb_writer(tmp_path / "chdb")
    prepared: list[str] = []

    def prepare(table: str, columns: list[Any]) -> Any:
        prepared.append(table)
        return writer.prepare_columns(table, columns)

    async def go() -> tuple[Any, Any]:
        await writer.open()
        table: Any = type("Table", (), {"data": {}})()
        cp = Checkpointer(table, writer.write, every_rows=1000, every_seconds=60.0, prepare=prepare)
        cp.add_columns(("customer_scores", "score_history"), list(zip(*rows, strict=True)))
        part = cp.current.rows["customer_scores"][0]
        assert isinstance(part, pa.Table) and cp.current.rows["score_history"] == [part]
        await cp.flush()
        _, scores = await writer.query("SELECT * FROM customer_scores FINAL")
        _, history = await writer.query("SELECT * FROM score_history FINAL")
        await writer.aclose()
        return scores, history

    scores, history = asyncio.run(go())
    assert prepared == ["customer_scores"]

    def stored(v: Any) -> Any:  # the score columns are Float32
        return struct.unpack("f", struct.pack("f", v))[0] if isinstance(v, float) else v

    expected = sorted(
        (tuple(map(stored, r)) for r in normalize_rows(CUSTOMER_SCORES, rows)), key=str
    )
    assert sorted(normalize_rows(CUSTOMER_SCORES, scores), key=str) == expected
    assert sorted(normalize_rows(SCORE_HISTORY, history), key=str) == expected


@pytest.mark.clickhouse
def test_only_an_open_backend_that_prepares_arrow_from_columns_has_arrow_capabilities(
    tmp_path: Path,
) -> None:
    """What the experience step asks before it starts the rows process: chDB, once open,
    types Arrow batches by its capabilities; a backend that takes rows has none."""
    from cxpulse.sinks.memory import MemoryBackend

    writer = chdb_writer(tmp_path / "chdb")
    rows_writer = SinkWriter(MemoryBackend)

    async def go() -> tuple[Any, ...]:
        before = (writer.is_open, writer.arrow_capabilities())
        await writer.open()
        await rows_writer.open()
        after = (writer.is_open, writer.arrow_capabilities())
        other = (rows_writer.is_open, rows_writer.arrow_capabilities())
        await writer.aclose()
        await rows_writer.aclose()
        return before, after, other

    before, after, other = asyncio.run(go())
    assert before == (False, None)
    assert after[0] is True and after[1] is not None and after[1].version >= (23,)
    assert other == (True, None)
