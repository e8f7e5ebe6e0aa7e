"""The rows process (cxpulse.streams.pipeline.rows_process): a take's rows made into chDB's
Arrow tables in a child process are the tables the event loop makes of the same records,
and a part the child cannot make is made on the event loop, nothing lost."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cxpulse.schemas.events import TouchpointEvent
from cxpulse.schemas.tables import SPECS
from cxpulse.sinks.ddl import Capabilities
from cxpulse.sinks.embedded import arrow_table
from cxpulse.streams import metrics
from cxpulse.streams.core import apply_events, score_update
from cxpulse.streams.dev.sample_events import sample_events
from cxpulse.streams.model_check import load_model
from cxpulse.streams.pipeline.records import decode_events, encode_events, record_of
from cxpulse.streams.pipeline.rows import event_parts, moment_parts, score_parts
from cxpulse.streams.pipeline.rows_process import NAME, NICE, RowsProcess, columns_of
from cxpulse.streams.state.customer import pack

CAPABILITIES = Capabilities.from_version("25.8")
SPEC = {s.name: s for s in SPECS if hasattr(s, "columns") and hasattr(s, "column_names")}
INGESTED = datetime(2026, 11, 20, 12, 0, 0, 123000, tzinfo=UTC)


def _prepare(table: str, columns: Any) -> Any:
    return arrow_table(SPEC[table], columns, CAPABILITIES)


def _restarts() -> float:
    value = metrics.REGISTRY.get_sample_value(
        "cxpulse_child_process_restarts_total", {"process": "rows process"}
    )
    return value or 0.0


def _fallbacks() -> float:
    return metrics.REGISTRY.get_sample_value("cxpulse_rows_process_fallbacks_total") or 0.0


@pytest.fixture(scope="module")
def take() -> dict[str, Any]:
    """A take as the experience step holds it: cx.events messages (bytes, partition,
    offset), and the moments and new states its customers' events made (the states as the
    checkpoint packs them, and the score updates the event loop would work out)."""
    model = load_model()
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    records = [record_of(TouchpointEvent.model_validate(e)) for e in sample_events(400)]
    messages = [
        (encode_events(records[i : i + 60]), i // 60 % 4, 1000 + i) for i in range(0, 400, 60)
    ]
    by_customer: dict[str, list[Any]] = defaultdict(list)
    for r in records:
        by_customer[r.customer_id].append(r)
    moments, updates, states = [], [], []
    for batch in by_customer.values():
        state, produced = apply_events(None, batch, model, now)
        moments += [m for m in produced if m is not None]
        updates.append(score_update(state, model))
        states.append(pack(state))
    assert moments and updates
    return {
        "messages": messages,
        "moments": moments,
        "updates": updates,
        "states": states,
        "model": model,
    }


def _on_the_event_loop(take: dict[str, Any]) -> dict[str, list[tuple[tuple[str, ...], Any]]]:
    """The tables ``TakeRows`` makes of the take, through the same builders."""
    decoded = [(decode_events(v)[0], p, o) for v, p, o in take["messages"]]
    built = {
        "events": event_parts(INGESTED, decoded),
        "moments": moment_parts(take["moments"]),
        "scores": score_parts(take["updates"]),
    }
    return {
        kind: [
            ((t,) if isinstance(t, str) else t, _prepare(t if isinstance(t, str) else t[0], c))
            for t, c in parts
        ]
        for kind, parts in built.items()
    }


def _payloads(take: dict[str, Any]) -> dict[str, Any]:
    encode = msgspec.msgpack.Encoder().encode
    return {
        "events": (INGESTED, take["messages"]),
        "moments": encode(take["moments"]),
        "scores": list(take["states"]),
    }


def _same(got: list[tuple[tuple[str, ...], Any]], want: list[tuple[tuple[str, ...], Any]]) -> None:
    assert [names for names, _ in got] == [names for names, _ in want]
    for (names, table), (_, expected) in zip(got, want, strict=True):
        assert table.schema.equals(expected.schema, check_metadata=True), names
        assert table.equals(expected), names
        assert table.num_rows == expected.num_rows > 0


def test_the_child_makes_the_tables_the_event_loop_makes(take: dict[str, Any]) -> None:
    process = RowsProcess(CAPABILITIES, take["model"], _prepare)
    try:
        before = _fallbacks()
        process.warm_up().result(timeout=60)

        async def made() -> dict[str, Any]:
            pending = {k: process.part(k, p) for k, p in _payloads(take).items()}
            return {k: await prepared() for k, prepared in pending.items()}

        got = asyncio.run(made())
        want = _on_the_event_loop(take)
        for kind in ("events", "moments", "scores"):
            _same(got[kind], want[kind])
        assert _fallbacks() == before  # all made in the child
        (pid,) = process.pids()  # which names itself for ps and top
        assert Path(f"/proc/{pid}/comm").read_text().strip() == NAME
        # and yields the CPU to the worker's main thread: each of its threads an idle
        # task where there are such (Linux), else at a lower priority
        if hasattr(os, "SCHED_IDLE"):
            tasks = os.listdir(f"/proc/{pid}/task")
            assert len(tasks) > 1  # pyarrow's and the pool's threads too
            assert {os.sched_getscheduler(int(t)) for t in tasks} == {os.SCHED_IDLE}
        else:
            nice = os.getpriority(os.PRIO_PROCESS, 0)
            assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, nice + NICE) > nice
        names = [n for parts in got.values() for n, _ in parts]
        assert names == [
            ("touchpoint_events",),
            ("moments",),
            ("moment_factors",),
            ("customer_scores", "score_history"),
        ]
    finally:
        process.close()


def test_a_low_priority_child_is_niced_and_not_an_idle_task(take: dict[str, Any]) -> None:
    """``rows_process_priority = "low"``: the child runs as a normal task ``NICE`` lower,
    and gets its share of a busy machine (a backlog's parts made as the takes go)."""
    process = RowsProcess(CAPABILITIES, take["model"], _prepare, "low")
    try:
        process.warm_up().result(timeout=60)
        (pid,) = process.pids()
        nice = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, nice + NICE) > nice
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER
    finally:
        process.close()


def test_a_part_the_child_could_not_make_is_made_on_the_event_loop(
    take: dict[str, Any],
) -> None:
    """The child killed (an OOM kill, say) with parts in it: each comes back made on the
    event loop, one new child replaces it however many parts failed, and it makes the
    next part."""
    process = RowsProcess(CAPABILITIES, take["model"], _prepare)
    try:
        process.warm_up().result(timeout=60)
        (first,) = process.pids()
        before = _fallbacks()
        restarts = _restarts()
        want = _on_the_event_loop(take)
        payloads = _payloads(take)
        os.kill(first, signal.SIGKILL)
        # submitted at once: in the dying child, or (once the pool knows) in the new one
        pending = [process.part(kind, payloads[kind]) for kind in ("moments", "scores")]

        async def made() -> list[Any]:
            return [await prepared() for prepared in pending]

        moments, scores = asyncio.run(made())
        _same(moments, want["moments"])
        _same(scores, want["scores"])
        assert before + 1 <= _fallbacks() <= before + 2
        # the next part goes to the one new child, which makes it
        after = _fallbacks()
        _same(asyncio.run(process.part("events", payloads["events"])()), want["events"])
        assert _fallbacks() == after
        (second,) = process.pids()
        assert second != first
        assert _restarts() == restarts + 1  # once, however many parts failed
    finally:
        process.close()


def test_payload_kinds_are_the_ones_the_step_sends() -> None:
    with pytest.raises(ValueError, match="no rows of kind"):
        columns_of("alerts", b"", load_model())


def test_the_warm_up_loads_what_the_first_parts_need(take: dict[str, Any]) -> None:
    """In a fresh interpreter, as the child is: after the warm-up, making a part of each
    kind imports nothing more (pyarrow loads pandas at its first time-zone-aware column,
    ~0.3 s, which the first take's rows waited for), and the samples are one part each."""
    import pickle
    import subprocess
    import sys

    payloads = pickle.dumps((CAPABILITIES, take["model"], _payloads(take)))
    script = """
import pickle, sys
from cxpulse.streams.pipeline import rows_process as r
capabilities, model, payloads = pickle.loads(sys.stdin.buffer.read())
r._init_child(capabilities, model, "idle")
print(sorted(kind for kind, _ in r._samples(model)))
before = "pandas" in sys.modules
r._warm_up_in_child()
loaded = set(sys.modules)
for kind, payload in payloads.items():
    assert r._build_in_child(kind, payload)
print(before, "pandas" in loaded, sorted(set(sys.modules) - loaded))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], input=payloads, capture_output=True, check=True
    ).stdout.decode()
    assert out.splitlines() == ["['events', 'moments', 'scores']", "False True []"]


class _Recorded:
    """What a take's rows record in its checkpoint: the parts the rows process makes (with
    the rows they count for), and the columns made on the event loop."""

    def __init__(self) -> None:
        self.pending: list[tuple[dict[str, int], Any]] = []
        self.columns: list[tuple[Any, Any]] = []

    def add_pending(self, counts: dict[str, int], prepared: Any) -> None:
        self.pending.append((counts, prepared))

    def add_columns(self, tables: Any, columns: Any) -> None:
        self.columns.append((tables, columns))


def test_moments_that_came_encoded_are_handed_to_the_child_as_they_came(
    take: dict[str, Any],
) -> None:
    """The scoring process's moments (msgpack) go to the rows process as one part, never
    decoded on the event loop, counted as the rows they make; on the event loop's path
    (no rows process) they are decoded and built as any moments."""
    from cxpulse.streams.pipeline.rows import TakeRows
    from cxpulse.streams.pipeline.rows_process import moment_rows
    from cxpulse.streams.pipeline.score_process import MOMENTS

    raw = msgspec.msgpack.Encoder().encode(take["moments"])
    counts = {
        "moments": len(take["moments"]),
        "moment_factors": sum(len(m.readings) for m in take["moments"]),
    }
    process = RowsProcess(CAPABILITIES, take["model"], _prepare)
    try:
        recorded = _Recorded()
        rows = moment_rows(recorded, process)  # type: ignore[arg-type]
        rows.add_encoded(raw, MOMENTS.decode, counts)
        assert rows.count == 0  # nothing held back for a later part
        [(got_counts, prepared)] = recorded.pending
        assert got_counts == counts
        _same(asyncio.run(prepared()), _on_the_event_loop(take)["moments"])
    finally:
        process.close()

    recorded = _Recorded()
    here = TakeRows(recorded, moment_parts)  # type: ignore[arg-type]
    here.add_encoded(raw, MOMENTS.decode, counts)
    here.close()
    assert [tables for tables, _ in recorded.columns] == ["moments", "moment_factors"]
    assert [len(c[0]) for _, c in recorded.columns] == [
        counts["moments"],
        counts["moment_factors"],
    ]
