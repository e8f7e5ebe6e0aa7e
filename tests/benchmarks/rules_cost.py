"""The alert rules' and the touchpoint-health step's cost, alone, over the pipeline
benchmark's events; and a digest of the health step's outputs, to prove a change keeps
them.

    python tests/benchmarks/rules_cost.py TREE alerts [REPS]   # us per customer_alerts call
    python tests/benchmarks/rules_cost.py TREE health [REPS]   # us per event of apply_health
    python tests/benchmarks/rules_cost.py TREE health-digest OUT
    python tests/benchmarks/rules_cost.py --ab OLD_TREE NEW_TREE alerts|health PAIRS

``TREE`` is a checkout of the project (its ``cxpulse`` is the one measured), so the same
script times an older commit's worktree. The inputs are the benchmark's 20,000 events (seed
7, 3,000 customers), prepared untimed:

* ``alerts``: each customer batch (per message and partition, as ``core_only`` groups
  them, then the first 200 again) applied with ``apply_events``; only the
  ``customer_alerts`` calls that follow are timed (a batch with a fresh moment, as the
  experience agent calls it), with sentiment on every third event.
* ``health``: the events grouped per message and instance, as the touchpoint_health agent
  groups them; then the same traffic with incidents (every fifth instance, by a CRC of its
  key, fails every attempt over the second half of the time span), and the same again at
  production density (the events 50 ms apart, so busy instances hold their full id set and
  evict at every event). ``HEALTH_DENSE=1`` times the dense part alone.

Timings are CPU time (``time.process_time``) with the collector off, median of the reps;
``--ab`` keeps one process per tree and alternates their reps, which is what a shared,
noisy machine needs. Never put these numbers in tests.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any


def _prepare(tree: str) -> dict[str, Any]:
    sys.path.insert(0, tree)
    os.chdir(tree)
    import cxpulse

    assert cxpulse.__file__.startswith(tree), cxpulse.__file__
    from cxpulse.schemas.events import TouchpointEvent
    from cxpulse.streams.model_check import load_model
    from tests.benchmarks.pipeline import BATCH, make_events

    dicts = make_events(20000, 3000, 7)
    models = [TouchpointEvent.model_validate(d) for d in dicts]
    raw = [m.model_dump_json(exclude_none=True).encode() for m in models]
    return {
        "messages": [
            b"[" + b",".join(raw[i : i + BATCH]) + b"]" for i in range(0, len(raw), BATCH)
        ],
        "sent": {
            m.event_id: ((i * 37) % 201 - 100) / 100.0 for i, m in enumerate(models) if i % 3 == 0
        },
        "model": load_model(),
        "now": datetime(2030, 1, 1, tzinfo=UTC),
    }


def alert_calls(tree: str) -> tuple[Any, list[tuple[Any, ...]]]:
    """``customer_alerts`` and the argument tuples of its calls over the benchmark."""
    p = _prepare(tree)
    from cxpulse.schemas.envelope import decode_message
    from cxpulse.streams.core import apply_events
    from cxpulse.streams.partitioning import partition_for
    from cxpulse.streams.pipeline.records import record_of
    from cxpulse.streams.rules.customer import customer_alerts

    model, now = p["model"], p["now"]
    batches = []
    for message in p["messages"]:
        by_partition: dict[int, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        for e in map(record_of, decode_message(message)[0]):
            by_partition[partition_for(e.customer_id, 4)][e.customer_id].append(e)
        for groups in by_partition.values():
            batches.extend(groups.values())
    states: dict[str, Any] = {}
    calls = []
    for batch in batches + batches[:200]:
        cid = batch[0].customer_id
        before = states.get(cid)
        st, ms = apply_events(before, batch, model, now, p["sent"])
        if any(m is not None for m in ms):
            calls.append((before, st, batch, ms, model, now))
            st, _ = customer_alerts(before, st, batch, ms, model, now)
        states[cid] = st
    return customer_alerts, calls


def health_groups(tree: str) -> tuple[Any, list[tuple[str, list[Any]]], Any, Any]:
    """``apply_health``, the (table key, events) groups, the model and ``now``."""
    p = _prepare(tree)
    import msgspec

    from cxpulse.streams.pipeline.records import decode_events
    from cxpulse.streams.rules.touchpoint_degraded import apply_health, health_key

    groups: list[tuple[str, list[Any]]] = []
    for message in p["messages"]:
        by: dict[str, list[Any]] = defaultdict(list)
        for e in decode_events(message)[0]:
            by[health_key(e)].append(e)
        groups.extend(by.items())
    first = list(groups)
    every = sorted((e for _, b in first for e in b), key=lambda e: (e.occurred_at, e.event_id.hex))
    mid = every[len(every) // 2].occurred_at
    rank = {id(e): i for i, e in enumerate(every)}
    dense_from = datetime(2029, 12, 31, 23, 0, tzinfo=UTC)

    def incident(e: Any) -> Any:
        if hashlib.sha256(health_key(e).encode()).digest()[0] % 5 == 0 and e.occurred_at >= mid:
            return msgspec.structs.replace(e, outcome="failure")
        return e

    def dense(e: Any) -> Any:
        at = dense_from + timedelta(milliseconds=50 * rank[id(e)])
        return msgspec.structs.replace(incident(e), occurred_at=at)

    dense_groups = [("~" + k, [dense(e) for e in b]) for k, b in first]
    if os.environ.get("HEALTH_DENSE") == "1":
        return apply_health, dense_groups, p["model"], p["now"]
    groups = first + first[:200]
    groups += [("!" + k, [incident(e) for e in b]) for k, b in first]
    return apply_health, groups + dense_groups, p["model"], p["now"]


def _replay_health(
    apply_health: Any, groups: Any, model: Any, now: Any, out: list[str] | None
) -> None:
    from cxpulse.streams.state.health import HealthState

    states: dict[str, Any] = {}
    for key, batch in groups:
        state, alerts, late = apply_health(states.get(key), batch, model, now)
        states[key] = state
        if out is not None:
            out.extend(a.to_json_bytes().decode() for a in alerts)
            raw = state.to_bytes()
            assert HealthState.from_bytes(raw) == state
            out += [raw.decode(), str(late)]


def _timer(tree: str, what: str) -> tuple[Any, int]:
    """A function running one rep, and how many calls (alerts) or events (health) it covers."""
    if what == "alerts":
        customer_alerts, calls = alert_calls(tree)

        def rep() -> None:
            for c in calls:
                customer_alerts(*c)

        return rep, len(calls)
    apply_health, groups, model, now = health_groups(tree)
    return (lambda: _replay_health(apply_health, groups, model, now, None)), sum(
        len(b) for _, b in groups
    )


def _rep_us(rep: Any, n: int) -> float:
    started = time.process_time()
    rep()
    return (time.process_time() - started) / n * 1e6


def main(argv: list[str]) -> None:
    import gc

    if argv[0] == "--ab":
        old, new, what, pairs = argv[1], argv[2], argv[3], int(argv[4])
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, tree, what, "serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for tree in (old, new)
        ]
        times: list[list[float]] = [[], []]
        for _ in range(pairs):
            for k, proc in enumerate(procs):
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
                times[k].append(float(proc.stdout.readline()))
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait()
        a, b = (statistics.median(t) for t in times)
        ratios = statistics.median(x / y for x, y in zip(*times, strict=True))
        print(f"old {' '.join(f'{x:.2f}' for x in times[0])}")
        print(f"new {' '.join(f'{x:.2f}' for x in times[1])}")
        print(f"median old {a:.2f} us, new {b:.2f} us: {a / b:.2f}x", end=" ")
        print(f"(median of pair ratios {ratios:.2f})")
        return
    tree, what = os.path.abspath(argv[0]), argv[1]
    if what == "health-digest":
        apply_health, groups, model, now = health_groups(tree)
        lines: list[str] = []
        _replay_health(apply_health, groups, model, now, lines)
        with open(argv[2], "w") as f:
            f.write("\n".join(lines))
        h = hashlib.sha256()
        for line in lines:
            h.update(line.encode() + b"\n")
        alerts = sum('"alert_id"' in line for line in lines)
        print(len(groups), "groups", len(lines), "lines", alerts, "alerts", h.hexdigest())
        return
    rep, n = _timer(tree, what)
    rep()  # warm
    gc.disable()
    if argv[2:] == ["serve"]:  # one timed rep per line on stdin (--ab)
        for _ in sys.stdin:
            print(f"{_rep_us(rep, n):.3f}", flush=True)
        return
    reps = int(argv[2]) if len(argv) > 2 else 5
    times = sorted(_rep_us(rep, n) for _ in range(reps))
    unit = "call" if what == "alerts" else "event"
    print(f"{n} {unit}s: median {statistics.median(times):.2f} us/{unit}, min {times[0]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
