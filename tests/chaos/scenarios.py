"""Chaos scenarios: each a function of (harness, short) that returns its ``Result``.

Add a scenario by writing one more function here and listing it in ``SCENARIOS``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from cxpulse.streams.dev.demo import WorkerProcess
from tests.chaos.harness import Harness, Result, tree_rss_mib
from tests.chaos.servers import ClickHouseInstance, ServerUnavailable


def publish_during_restarts(h: Harness, short: bool) -> Result:
    """A worker is stopped gracefully and restarted again and again while a publisher
    keeps publishing; a burst is published right after each start, before Ready (the
    window in which a restart used to skip input)."""
    restarts = 3 if short else 30
    result = Result(f"publish during restarts x{restarts}")
    publisher = h.publish_in_background(total=0, per_tick=10, tick=0.5)
    worker = h.start_worker()
    h.wait_ready(worker)
    try:
        for _ in range(restarts):
            h.wait_processing(worker, rows=30)  # busy with the input, not idle
            h.stop(worker)
            worker = h.start_worker()
            h.publish(30)  # while the new worker joins, recovers and seeks
            h.wait_ready(worker)
            h.publish(30)
    finally:
        publisher.stop()
    return h.finish(worker, result)


def kill9_while_publishing(h: Harness, short: bool) -> Result:
    """kill -9 three times while a publisher sends a steady stream of events; a new
    worker starts at once after each kill."""
    total = 3_000 if short else 40_000
    kills = 3
    result = Result(f"kill -9 x{kills} ({total:,} events)")
    # Paced to last about as long as the kills take (~15 s a cycle on 2 busy cores).
    ticks = max(1, kills * 15 * 4)
    publisher = h.publish_in_background(
        total=total, per_tick=max(1, total // ticks), tick=0.25, batch_size=100
    )
    worker = h.start_worker()
    try:
        for _ in range(kills):
            h.wait_ready(worker)
            h.wait_processing(worker, rows=200)
            h.kill(worker)
            worker = h.start_worker()
        h.wait_ready(worker)
    finally:
        publisher.join()
        publisher.stop()
    return h.finish(worker, result)


def _clickhouse(h: Harness, result: Result) -> ClickHouseInstance | None:
    """A ClickHouse server of the scenario's own, which the workers write to; None (and
    ``result.not_run`` says why) when this machine cannot run one."""
    server = ClickHouseInstance.private()
    try:
        server.start()
    except (ServerUnavailable, OSError) as exc:
        server.close()
        result.not_run = f"no ClickHouse server instance: {exc}"
        return None
    h.use_clickhouse(server.url)
    return server


def clickhouse_down(h: Harness, short: bool) -> Result:
    """The ClickHouse server the worker writes to is stopped for 60 s (10 s short) while
    a publisher keeps publishing, then started again. The writer retries and holds its
    batches (backpressure): consumption pauses, memory stays bounded, nothing is lost."""
    outage = 10 if short else 60
    result = Result(f"ClickHouse down {outage} s")
    server = _clickhouse(h, result)
    if server is None:
        return result
    try:
        publisher = h.publish_in_background(total=0, per_tick=10, tick=0.25)
        worker = h.start_worker()
        try:
            h.wait_ready(worker)
            h.wait_processing(worker, rows=200)
            lag_before = sum(h.group_lag().values())
            rss_before = tree_rss_mib(worker.proc.pid)[0] if worker.proc else 0.0
            server.stop()
            peak = rss_before
            until = time.monotonic() + outage
            while time.monotonic() < until:
                time.sleep(1)
                if worker.proc is not None:
                    peak = max(peak, tree_rss_mib(worker.proc.pid)[0])
            lag_during = sum(h.group_lag().values())
            server.start()
            result.notes.append(
                f"{h.name}: worker RSS {rss_before:.0f} MiB before the outage, peak"
                f" {peak:.0f} during it; uncommitted records {lag_before} before,"
                f" {lag_during} at its end (input waits in Kafka)"
            )
            time.sleep(outage / 2)  # publishing goes on after the server is back
        finally:
            publisher.stop()
        return h.finish(worker, result)
    finally:
        h.close()
        server.close()


def _assignments(h: Harness, worker: WorkerProcess) -> str:
    """The source partitions a worker was given, assignment after assignment, and how
    many table recoveries it completed (from its log)."""
    text = worker.log_path.read_text(errors="replace")
    source = re.escape(f"{h.settings.topic_prefix}.touchpoints ")
    sets = re.findall(source + r"\s*\|\s*(\{[^}]*\})", text.split("Setting newly assigned", 1)[-1])
    taken = [s for i, s in enumerate(sets) if i == 0 or sets[i - 1] != s]
    return (
        f"source partitions {' -> '.join(taken) or '?'},"
        f" {text.count('Restore complete')} table restores completed"
    )


def two_workers_kill9(h: Harness, short: bool) -> Result:
    """Two workers of one group share the partitions; one is killed with SIGKILL while a
    publisher sends events. The other takes its partitions over and restores their state
    from the changelogs. (chDB is one process per directory: a ClickHouse server here.)"""
    total = 3_000 if short else 20_000
    result = Result(f"two workers, kill -9 one ({total:,} events)")
    server = _clickhouse(h, result)
    if server is None:
        return result
    try:
        first = h.start_worker()
        h.wait_ready(first)
        second = h.start_worker(own_port=True)
        h.wait_ready(second)
        ticks = 30 * 4 if short else 120 * 4
        publisher = h.publish_in_background(
            total=total, per_tick=max(1, total // ticks), tick=0.25, batch_size=50
        )
        try:
            h.wait_processing(first, rows=300)
            h.wait_processing(second, rows=300)
            h.kill(first)
        finally:
            publisher.join()
            publisher.stop()
        h.finish(second, result)
        result.notes.append(f"{h.name}: the survivor's {_assignments(h, second)}")
        return result
    finally:
        h.close()
        server.close()


def fuzzed_input(h: Harness, short: bool) -> Result:
    """10,000 bad inputs (1,000 short) from a seeded generator, published raw to the
    source topic beside valid events (some in the same batches). The worker must stay
    up, every valid event land, and every bad item be a dead letter with a reason, on
    the DLQ topic and in ``dead_letters``."""
    from datetime import UTC, datetime

    from kafka import KafkaProducer

    from cxpulse.streams.admin import read_records
    from cxpulse.streams.topics import touchpoints, touchpoints_dlq
    from tests.chaos.fuzz import Fuzzer
    from tests.chaos.harness import make_event

    bad_items = 1_000 if short else 10_000
    result = Result(f"fuzzed bad input x{bad_items:,}")
    template = make_event(10**9, h.customers, datetime.now(UTC), h.run_id + 1)
    fuzzer = Fuzzer(h.run_id, h.take, template)
    messages, expected = fuzzer.messages(bad_items)
    publisher = h.publish_in_background(total=0, per_tick=10, tick=0.25)
    worker = h.start_worker()
    try:
        h.wait_ready(worker)
        producer = KafkaProducer(
            bootstrap_servers=h.settings.bootstrap_servers, max_request_size=4 * 1024 * 1024
        )
        try:
            for raw in messages:
                producer.send(touchpoints(h.settings), raw)
            producer.flush()
        finally:
            producer.close()
    finally:
        publisher.stop()
    h.finish(worker, result)
    dlq = read_records(h.settings.bootstrap_servers, touchpoints_dlq(h.settings), timeout=60)
    rows, no_reason = h.query(
        "SELECT count(), countIf(reason = '') FROM dead_letters FINAL"
        f" WHERE source_topic = '{touchpoints(h.settings)}'"
    )[0]
    result.notes.append(
        f"{h.name}: {len(messages):,} bad messages holding {expected:,} bad items"
        f" ({', '.join(f'{k} {v}' for k, v in sorted(fuzzer.kinds.items()))});"
        f" DLQ records {len(dlq):,}, dead_letters rows {rows:,} ({no_reason} without a"
        f" reason); worker alive to the end"
    )
    if rows != expected or no_reason:
        result.problems.append(f"dead_letters holds {rows} rows, {expected} expected")
    if len(dlq) < expected:
        result.problems.append(f"DLQ topic holds {len(dlq)} records, {expected} expected")
    return result


def steady_rss(h: Harness, short: bool) -> Result:
    """10 minutes (1 short) of steady publishing at a moderate rate (40 events/s); the
    worker's resident memory and its children's (the sentiment process) at the start,
    every minute and at the end."""
    return _steady(h, short, Result(f"steady {1 if short else 10} min, 40 events/s"))


def steady_rss_server(h: Harness, short: bool) -> Result:
    """``steady_rss`` with the worker writing to a ClickHouse server instead of chDB,
    which runs inside the worker process and counts in its RSS."""
    result = Result(f"steady {1 if short else 10} min, 40 events/s, ClickHouse server")
    server = _clickhouse(h, result)
    if server is None:
        return result
    try:
        return _steady(h, short, result)
    finally:
        h.close()
        server.close()


def _steady(h: Harness, short: bool, result: Result) -> Result:
    minutes = 1 if short else 10
    worker = h.start_worker()
    h.wait_ready(worker)
    assert worker.proc is not None
    pid = worker.proc.pid
    samples = [tree_rss_mib(pid)]
    publisher = h.publish_in_background(total=0, per_tick=10, tick=0.25)
    try:
        for _ in range(minutes):
            time.sleep(60)
            if not worker.alive():
                break
            samples.append(tree_rss_mib(pid))
    finally:
        publisher.stop()
    h.drain(worker)
    samples.append(tree_rss_mib(pid))
    shown = ", ".join(f"{w:.0f}+{c:.0f}" for w, c in samples)
    first, last = samples[0][0], samples[-1][0]
    growth = 100 * (last - first) / first if first else 0.0
    result.notes.append(
        f"{h.name}: RSS MiB worker+children at start, each minute and after draining:"
        f" {shown} (worker {growth:+.1f} %)"
    )
    return h.finish(worker, result)


def broker_restarted(h: Harness, short: bool) -> Result:
    """The bundled broker on persistent storage (tansu's ``s3://`` engine on a local S3
    server) is stopped and started again on the same port while a worker runs and a
    publisher publishes (it retries until the broker is back). The worker reconnects."""
    from cxpulse.streams.dev.broker import EmbeddedBroker, free_port
    from tests.chaos.servers import S3Server

    restarts = 1 if short else 3
    result = Result(f"broker restarted x{restarts}")
    s3 = S3Server(h.workdir / "s3")
    try:
        s3.start()
    except (ServerUnavailable, OSError) as exc:
        result.not_run = str(exc)
        return result
    broker = EmbeddedBroker(
        free_port(),
        log_dir=h.workdir / "broker",
        storage_engine="s3://tansu/",
        env=s3.broker_env(),
    )
    try:
        broker.start()
        h.use_broker(broker.url)
        publisher = h.publish_in_background(total=0, per_tick=10, tick=0.25)
        worker = h.start_worker()
        try:
            h.wait_ready(worker)
            for _ in range(restarts):
                h.wait_processing(worker, rows=200)
                broker.stop()
                time.sleep(5)
                broker.start()
                time.sleep(15)
        finally:
            publisher.stop()
        return h.finish(worker, result)
    finally:
        h.close()
        broker.stop()
        s3.stop()


SCENARIOS: dict[str, Callable[[Harness, bool], Result]] = {
    "restarts": publish_during_restarts,
    "kill9": kill9_while_publishing,
    "clickhouse-down": clickhouse_down,
    "two-workers": two_workers_kill9,
    "fuzz": fuzzed_input,
    "broker-restart": broker_restarted,
    "steady-rss": steady_rss,
    "steady-rss-server": steady_rss_server,
}
