"""The chaos suite's machinery: a worker under a known input, stopped and killed at will,
then checked against what a clean run gives.

A scenario gets a ``Harness`` (its own topics, consumer group and chDB directory on the
shared bundled broker), starts workers, publishes events from ``Harness.take`` (a fixed,
numbered sequence, so "events in" is exactly what was handed out) and finally calls
``Harness.finish``: the last worker drains every topic (the group's committed offsets
reach the end offsets), is stopped, and ClickHouse is read directly.

What is counted (``Result``):

- lost: published events missing from ``touchpoint_events FINAL`` or from
  ``moments FINAL`` (by ``event_id``);
- duplicates after FINAL: rows beyond one per key in those two tables (ReplacingMergeTree
  must have folded every replayed copy);
- duplicate alerts: an alert case opened twice (same subject, rule and opening event
  time under different ``alert_id``s) plus rows beyond one per ``alert_id``;
- scores off: customers whose ``customer_scores FINAL`` score differs from a clean run of
  the same events (the pure core over all of a customer's events at once, as
  tests/integration/test_pipeline.py's ``expected_scores``), or who are missing;
- RSS: the worker processes' resident memory, at the first Ready and at its peak.

Nothing here asserts on time: waits are bounded only so that a stuck run ends with a
diagnosis instead of hanging.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cxpulse.streams.admin import ensure_topics, read_records
from cxpulse.streams.app import TABLE_NAMES
from cxpulse.streams.dev.demo import WorkerProcess, free_port, scrape
from cxpulse.streams.publisher import Publisher
from cxpulse.streams.settings import Settings, load_settings
from cxpulse.streams.topics import all_topics

STOP_TIMEOUT = 30.0

CHANNELS = [
    ("web", "web.login", {"kind": "web", "latency_ms": 850.0, "http_status": 200}),
    ("app", "app.transfer", {"kind": "app", "latency_ms": 400.0, "os": "ios"}),
    ("call_center", "call.card_hotline", {"kind": "call_center", "wait_seconds": 300.0}),
    ("store", "store.counter", {"kind": "store", "queue_seconds": 600.0}),
    ("atm", "atm.withdrawal", {"kind": "atm", "error_code": "E-CASH-JAM"}),
]


def make_event(i: int, customers: int, start: datetime, run: int) -> dict[str, Any]:
    """The ``i``-th event of a run: deterministic, one customer in ``customers`` each."""
    channel, touchpoint, details = CHANNELS[i % len(CHANNELS)]
    return {
        "event_id": str(uuid.UUID(int=(run << 64) + i + 1)),
        "occurred_at": (start + timedelta(seconds=2 * i)).isoformat(),
        "customer_id": f"C-{i % customers:05d}",
        "channel": channel,
        "touchpoint": touchpoint,
        "touchpoint_instance": f"{touchpoint}-{i % 17:02d}",
        "journey_stage": "post_purchase",
        "outcome": "failure" if i % 4 == 0 else "success",
        "details": details,
        "tier": "ABC"[i % 3],
    }


def expected_scores(docs: list[dict[str, Any]]) -> dict[str, float]:
    """A clean run's scores: the pure core over all of each customer's events at once."""
    from cxpulse.schemas.events import TouchpointEvent
    from cxpulse.streams.core import apply_events
    from cxpulse.streams.model_check import load_model

    events = [TouchpointEvent.model_validate(d) for d in docs]
    by_customer: dict[str, list[TouchpointEvent]] = {}
    for e in events:
        by_customer.setdefault(e.customer_id, []).append(e)
    model = load_model()
    now = datetime.now(UTC)
    return {c: apply_events(None, mine, model, now)[0].score for c, mine in by_customer.items()}


@dataclass
class Result:
    scenario: str
    events_in: int = 0
    lost_events: int = -1  # missing from touchpoint_events FINAL
    lost_moments: int = -1  # missing from moments FINAL
    duplicates: int = -1  # rows beyond one per event_id after FINAL (both tables)
    duplicate_alerts: int = -1
    scores_off: int = -1
    rss_start_mib: float = 0.0
    rss_peak_mib: float = 0.0
    hung_stops: int = 0  # graceful stops that did not end within STOP_TIMEOUT (then killed)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: Checks of a scenario's own that failed (a dead letter missing, ...): the row fails.
    problems: list[str] = field(default_factory=list)
    #: Why the scenario could not run here; the row says "not run" and does not fail.
    not_run: str = ""

    @property
    def ok(self) -> bool:
        if self.not_run:
            return True
        return (
            not self.problems
            and self.events_in > 0
            and self.lost_events == 0
            and self.lost_moments == 0
            and self.duplicates == 0
            and self.duplicate_alerts == 0
            and self.scores_off == 0
        )


class RssSampler(threading.Thread):
    """Samples the resident memory of whichever worker process is current."""

    def __init__(self, current: Callable[[], int | None]) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.current = current
        self.start_mib = 0.0
        self.peak_mib = 0.0
        self.ready = threading.Event()  # set at the first Ready: its sample is "start"
        self.done = threading.Event()

    @staticmethod
    def rss_mib(pid: int) -> float:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def run(self) -> None:
        while not self.done.wait(0.5):
            pid = self.current()
            if pid is None:
                continue
            mib = self.rss_mib(pid)
            if self.ready.is_set() and not self.start_mib and mib:
                self.start_mib = mib
            self.peak_mib = max(self.peak_mib, mib)


def tree_rss_mib(pid: int) -> tuple[float, float]:
    """Resident memory of ``pid`` and, apart, of all its descendants (the sentiment
    process and the multiprocessing helpers)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    children: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        children += kids
        todo += kids
    return RssSampler.rss_mib(pid), sum(RssSampler.rss_mib(c) for c in children)


class Harness:
    """One scenario's pipeline: topics, group and chDB of its own on the shared broker."""

    def __init__(
        self,
        name: str,
        broker_url: str,
        workdir: Path,
        *,
        customers: int = 50,
        debug: bool = False,
        log: Callable[[str], None] = print,
        clickhouse_url: str | None = None,
        drain_seconds: float = 600,
    ) -> None:
        self.name = name
        #: how long ``drain`` waits for the group to commit everything before it says
        #: what is left and lets the checks count what is missing
        self.drain_seconds = drain_seconds
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        tag = f"c{uuid.uuid4().hex[:8]}"
        self.run_id = int(uuid.uuid4().int >> 80)
        self.settings: Settings = load_settings(
            kafka_url=broker_url,
            clickhouse_url=clickhouse_url or f"chdb://{self.workdir / 'chdb'}",
            app_id=f"cxpulse-chaos-{tag}",
            topic_prefix=tag,
            partitions=4,
            web_port=free_port(),
            data_dir=self.workdir / "var",
            sink_flush_seconds=0.3,
        )
        ensure_topics(self.settings, all_topics(self.settings, TABLE_NAMES))
        self.customers = customers
        self.start_time = datetime.now(UTC) - timedelta(days=3)
        self.debug = debug
        self.log = log
        self.workers: list[WorkerProcess] = []
        self.hung_stops = 0
        self.published: list[dict[str, Any]] = []
        self._next = 0
        self._lock = threading.Lock()
        self.rss = RssSampler(self._current_pid)
        self.rss.start()
        self.started = time.monotonic()

    def use_clickhouse(self, url: str) -> None:
        """Workers started from now on write to ``url`` (a server the scenario runs)."""
        self.settings = self.settings.model_copy(update={"clickhouse_url": url})

    def use_broker(self, url: str) -> None:
        """Workers and publishers from now on use the broker at ``url`` (the scenario's
        own); the topics are made there."""
        self.settings = self.settings.model_copy(update={"kafka_url": url})
        ensure_topics(self.settings, all_topics(self.settings, TABLE_NAMES))

    # -- input ---------------------------------------------------------------------------

    def take(self, n: int) -> list[dict[str, Any]]:
        """The next ``n`` events of the run, recorded as published."""
        with self._lock:
            docs = [
                make_event(i, self.customers, self.start_time, self.run_id)
                for i in range(self._next, self._next + n)
            ]
            self._next += n
            self.published.extend(docs)
        return docs

    def publish(self, n: int, batch_size: int = 25) -> None:
        """Publish the next ``n`` events now (flushed: the broker has them on return)."""
        docs = self.take(n)
        with Publisher(self.settings, batch_size=batch_size) as publisher:
            publisher.publish_many(docs)
            summary = publisher.flush()
        if summary.sent != len(docs):
            raise RuntimeError(f"publisher: {summary.sent}/{len(docs)} acknowledged")

    def publish_in_background(
        self, total: int, per_tick: int, tick: float, batch_size: int = 25
    ) -> BackgroundPublisher:
        """A thread publishing ``per_tick`` events every ``tick`` seconds, ``total`` in all
        (0: until stopped)."""
        bp = BackgroundPublisher(self, total, per_tick, tick, batch_size)
        bp.start()
        return bp

    # -- workers -------------------------------------------------------------------------

    def _current_pid(self) -> int | None:
        w = self.workers[-1] if self.workers else None
        return w.proc.pid if w is not None and w.proc is not None and w.alive() else None

    def start_worker(self, own_port: bool = False) -> WorkerProcess:
        """A new worker of the group. ``own_port``: a web port and data directory of its
        own, for a worker running beside another (``self.settings``' are the first's)."""
        env = {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        if self.debug:
            env.update(CXPULSE_LOG_LEVEL="debug")
        settings = self.settings
        if own_port:
            n = len(self.workers)
            settings = settings.model_copy(
                update={"web_port": free_port(), "data_dir": self.workdir / f"var-{n:02d}"}
            )
        worker = WorkerProcess(
            settings, self.workdir / f"worker-{len(self.workers):02d}.log", extra_env=env
        )
        worker.start([sys.executable, "-m", "cxpulse.streams.cli", "worker"])
        self.workers.append(worker)
        return worker

    def wait_ready(self, worker: WorkerProcess, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        port = worker.settings.web_port
        while scrape(port).get(("cxpulse_worker_ready_seconds", ()), 0) <= 0:
            if not worker.alive():
                raise RuntimeError(f"worker died before Ready:\n{worker.log_tail(40)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker not Ready after {timeout}s:\n{worker.log_tail(40)}")
            time.sleep(0.2)
        if not self.rss.ready.is_set() and worker.proc is not None:
            self.rss.start_mib = RssSampler.rss_mib(worker.proc.pid)  # the first Ready
        self.rss.ready.set()

    def wait_processing(self, worker: WorkerProcess, rows: int = 1, timeout: float = 120) -> None:
        """Until this worker has inserted ``rows`` moments (it is past start-up)."""
        deadline = time.monotonic() + timeout
        while True:
            m = scrape(worker.settings.web_port)
            if m.get(("cxpulse_sink_rows_total", (("table", "moments"),)), 0) >= rows:
                return
            if not worker.alive():
                raise RuntimeError(f"worker died:\n{worker.log_tail(40)}")
            if time.monotonic() > deadline:
                return  # not fatal: the kill then lands earlier than meant
            time.sleep(0.2)

    def stop(self, worker: WorkerProcess) -> int | None:
        """Graceful stop: SIGTERM, and SIGKILL if it has not ended in ``STOP_TIMEOUT``
        (counted in ``hung_stops``; a stop takes ~2 s)."""
        code = worker.stop(timeout=STOP_TIMEOUT)
        if code == -9:
            self.hung_stops += 1
            self.log(f"  {self.name}: graceful stop hung, killed: {worker.log_path}")
        return code

    def kill(self, worker: WorkerProcess) -> None:
        assert worker.proc is not None
        worker.proc.kill()
        worker.proc.wait()

    # -- the end -------------------------------------------------------------------------

    def source_ends(self) -> dict[int, int]:
        """The source topic's true end offsets, by partition, from its records: tansu
        reports a multi-record batch as one offset, and the publisher sends such batches
        (docs/operations.md, the embedded broker's caveats)."""
        from cxpulse.streams.topics import touchpoints

        ends: dict[int, int] = {}
        for r in read_records(self.settings.bootstrap_servers, touchpoints(self.settings)):
            ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
        return ends

    def group_lag(self, source_ends: dict[int, int] | None = None) -> dict[str, int]:
        """Records not yet committed by the group, by consumed topic (changelogs apart)."""
        from kafka import KafkaAdminClient, KafkaConsumer
        from kafka.structs import TopicPartition

        from cxpulse.streams.topics import touchpoints

        names = [t.name for t in all_topics(self.settings)]
        admin = KafkaAdminClient(bootstrap_servers=self.settings.bootstrap_servers)
        consumer = KafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers)
        try:
            committed = admin.list_group_offsets({self.settings.app_id: None}).get(
                self.settings.app_id, {}
            )
            tps = [TopicPartition(n, p) for n in names for p in range(self.settings.partitions)]
            ends = consumer.end_offsets(tps)
        finally:
            admin.close()
            consumer.close()
        lag: dict[str, int] = {}
        for tp, end in ends.items():
            if source_ends is not None and tp.topic == touchpoints(self.settings):
                end = max(end, source_ends.get(tp.partition, 0))
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, end - done)
        return lag

    def drain(self, worker: WorkerProcess, timeout: float | None = None) -> None:
        """Until the group has committed every record of every topic it consumes, twice in
        a row a few seconds apart (a commit lands every ~3 s); at most ``timeout`` seconds
        (``drain_seconds``)."""
        timeout = self.drain_seconds if timeout is None else timeout
        started = time.monotonic()
        deadline, said = started + timeout, started
        clean = 0
        lag: dict[str, int] = {}
        source_ends = self.source_ends()  # publishing is over: these are final
        while clean < 2:
            if not worker.alive():
                raise RuntimeError(f"worker died while draining:\n{worker.log_tail(40)}")
            if time.monotonic() > deadline:
                self.log(f"  {self.name}: not drained after {timeout}s: lag {lag}")
                return
            if time.monotonic() - said >= 30:  # a drain usually takes 6 s: say what waits
                said = time.monotonic()
                waiting = {k: v for k, v in lag.items() if v}
                self.log(f"  {self.name}: draining for {said - started:.0f}s, lag {waiting}")
            time.sleep(3)
            lag = self.group_lag(source_ends)
            clean = clean + 1 if not any(lag.values()) else 0

    def finish(self, worker: WorkerProcess, result: Result) -> Result:
        """Drain with ``worker``, stop it and fill in ``result`` from ClickHouse."""
        self.drain(worker)
        self.stop(worker)
        self.rss.done.set()
        result.events_in = len(self.published)
        result.rss_start_mib = self.rss.start_mib
        result.rss_peak_mib = self.rss.peak_mib
        result.hung_stops = self.hung_stops
        self.check(result)
        result.seconds = time.monotonic() - self.started
        return result

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` on the scenario's ClickHouse (no worker may hold a chDB
        directory while this runs)."""
        from cxpulse.sinks.clickhouse import open_backend

        backend = open_backend(self.settings.clickhouse_url)
        try:
            return [tuple(r) for r in backend.query(sql)[1]]
        finally:
            backend.close()

    def check(self, result: Result) -> None:
        from cxpulse.sinks.clickhouse import open_backend

        backend = open_backend(self.settings.clickhouse_url)
        try:

            def q(sql: str) -> list[tuple[Any, ...]]:
                return [tuple(r) for r in backend.query(sql)[1]]

            events = {r[0] for r in q("SELECT toString(event_id) FROM touchpoint_events FINAL")}
            moments = {r[0] for r in q("SELECT toString(event_id) FROM moments FINAL")}
            dup = q(
                "SELECT (SELECT count() - uniqExact(event_id) FROM touchpoint_events FINAL)"
                " + (SELECT count() - uniqExact(event_id) FROM moments FINAL)"
            )[0][0]
            dup_alerts = q(
                "SELECT (count() - uniqExact(alert_id)) + (count() - uniqExact(subject_kind,"
                " ifNull(customer_id, ''), ifNull(instance, ''), rule, triggered_at))"
                " FROM alerts FINAL"
            )[0][0]
            scores = dict(q("SELECT customer_id, score FROM customer_scores FINAL"))
        finally:
            backend.close()
        ids = {d["event_id"] for d in self.published}
        lost_events = sorted(ids - events)
        lost_moments = sorted(ids - moments)
        result.lost_events = len(lost_events)
        result.lost_moments = len(lost_moments)
        result.duplicates = int(dup)
        result.duplicate_alerts = int(dup_alerts)
        expected = expected_scores(self.published)
        off = [c for c, s in expected.items() if c not in scores or abs(scores[c] - s) > 0.05] + [
            c for c in scores if c not in expected
        ]
        result.scores_off = len(off)
        if lost_events or lost_moments or off:
            result.notes.append(self.diagnose(lost_events, lost_moments, off))

    def diagnose(self, lost_events: list[str], lost_moments: list[str], off: list[str]) -> str:
        """Where the lost input is: a file with the lost ids, the source and events topics
        (partition@offset of each lost id) and the group's committed offsets."""
        from cxpulse.schemas.envelope import decode_message
        from cxpulse.streams.topics import events as events_topic
        from cxpulse.streams.topics import touchpoints

        lost = set(lost_events) | set(lost_moments)
        where: dict[str, list[str]] = {}
        for topic in (touchpoints(self.settings), events_topic(self.settings)):
            for r in read_records(self.settings.bootstrap_servers, topic, timeout=60):
                batch = decode_message(r.value)[0]
                for e in batch:
                    if str(e.event_id) in lost:
                        where.setdefault(str(e.event_id), []).append(
                            f"{topic}[{r.partition}]@{r.offset}"
                        )
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.settings.bootstrap_servers)
        try:
            committed = admin.list_group_offsets({self.settings.app_id: None}).get(
                self.settings.app_id, {}
            )
        finally:
            admin.close()
        path = self.workdir / "lost.json"
        path.write_text(
            json.dumps(
                {
                    "lost_events": lost_events,
                    "lost_moments": lost_moments,
                    "scores_off": off,
                    "where": where,
                    "committed": {
                        f"{tp.topic}[{tp.partition}]": m.offset for tp, m in committed.items()
                    },
                    "worker_logs": [str(w.log_path) for w in self.workers],
                },
                indent=1,
            )
        )
        return f"{self.name}: lost/off input described in {path}"

    def close(self) -> None:
        self.rss.done.set()
        for w in self.workers:
            if w.alive():
                w.stop(timeout=10)


class BackgroundPublisher(threading.Thread):
    def __init__(self, h: Harness, total: int, per_tick: int, tick: float, batch_size: int):
        super().__init__(daemon=True, name="chaos-publisher")
        self.h = h
        self.total = total
        self.per_tick = per_tick
        self.tick = tick
        self.batch_size = batch_size
        self.sent = 0
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with Publisher(self.h.settings, batch_size=self.batch_size) as publisher:
                while not self.stopping.is_set() and (not self.total or self.sent < self.total):
                    n = (
                        self.per_tick
                        if not self.total
                        else min(self.per_tick, self.total - self.sent)
                    )
                    publisher.publish_many(self.h.take(n))
                    publisher.flush()
                    self.sent += n
                    self.stopping.wait(self.tick)
                summary = publisher.flush()
            if summary.failed:
                raise RuntimeError(f"publisher: {summary.failed} events not acknowledged")
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        self.stopping.set()
        self.join()
        if self.error is not None:
            raise self.error
