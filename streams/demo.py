"""``cxpulse demo``: the whole pipeline on the embedded default, in one command.

Starts the bundled broker and a real worker process (chDB under ``./var``), publishes a
built-in sample from all five channels (a few invalid events included), waits until the
worker's own metrics say every row is durable, then shows what landed in ClickHouse.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from streams.query import cell
from streams.settings import ConfigError, Settings, load_settings

# A pipe or CI log gets a wide console: tables of ClickHouse rows need the room.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The worker's /metrics as {(sample name, labels): value}; empty if not up yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def sink_rows(metrics: dict[Any, float], table: str) -> int:
    return int(metrics.get(("cxpulse_sink_rows_total", (("table", table),)), 0))


class WorkerProcess:
    """A ``cxpulse worker`` child process with its log in a file."""

    def __init__(self, settings: Settings, log_path: Path, extra_env: dict[str, str] | None = None):
        self.settings = settings
        self.log_path = log_path
        env = dict(os.environ)
        env.update(
            {
                "CXPULSE_KAFKA_URL": settings.kafka_url,
                "CXPULSE_CLICKHOUSE_URL": settings.clickhouse_url,
                "CXPULSE_WEB_PORT": str(settings.web_port),
                "CXPULSE_WEB_HOST": "127.0.0.1",
                "CXPULSE_DATA_DIR": str(settings.data_dir),
                "CXPULSE_APP_ID": settings.app_id,
                "CXPULSE_PARTITIONS": str(settings.partitions),
                "CXPULSE_TOPIC_PREFIX": settings.topic_prefix,
                "CXPULSE_SINK_FLUSH_SECONDS": str(settings.sink_flush_seconds),
            }
        )
        env.update(extra_env or {})
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, argv: Sequence[str] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        cmd = list(argv or [sys.executable, "-m", "streams.cli", "worker"])
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def wait_for_rows(
    worker: WorkerProcess, expected: dict[str, int], timeout: float
) -> dict[str, int]:
    """Poll the worker's metrics until each table has its expected rows (or time out)."""
    deadline = time.monotonic() + timeout
    got: dict[str, int] = {}
    with console.status("waiting for rows to land in ClickHouse ...") as status:
        while time.monotonic() < deadline:
            if not worker.alive():
                raise ConfigError(
                    f"the worker exited early; last lines of {worker.log_path}:\n"
                    + worker.log_tail()
                )
            metrics = scrape(worker.settings.web_port)
            got = {table: sink_rows(metrics, table) for table in expected}
            status.update(
                "waiting for rows: " + ", ".join(f"{t} {got[t]}/{n}" for t, n in expected.items())
            )
            if all(got[t] >= n for t, n in expected.items()):
                return got
            time.sleep(0.25)
    return got


def show(title: str, columns: list[str], rows: list[Sequence[Any]]) -> None:
    table = Table(*columns, title=title, title_justify="left", title_style="bold")
    for row in rows:
        table.add_row(*(cell(v) for v in row))
    console.print(table)


def run_demo(data_dir: str, timeout: float) -> int:
    """Run the demo; returns the process exit status."""
    from streams.admin import ensure_topics, wait_for_kafka
    from streams.app import TABLE_NAMES
    from streams.broker import EmbeddedBroker
    from streams.publisher import Publisher
    from streams.query import query_worker
    from streams.sample_events import sample_events, sample_invalid
    from streams.topics import all_topics, touchpoints

    root = Path(data_dir).resolve()
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with EmbeddedBroker(log_dir=logs) as broker:
        settings = load_settings(
            kafka_url=broker.url,
            clickhouse_url=f"chdb://{root / 'chdb'}",
            web_port=free_port(),
            data_dir=root,
            sink_flush_seconds=0.5,
        )
        console.print(f"[bold]broker[/]  {broker.url} (bundled tansu, in memory)")
        wait_for_kafka(settings.bootstrap_servers, timeout=30.0)
        ensure_topics(settings, all_topics(settings, TABLE_NAMES))
        worker = WorkerProcess(settings, logs / "worker.log")
        worker.start()
        console.print(
            f"[bold]worker[/]  pid {worker.proc.pid if worker.proc else '?'}, metrics on "
            f"http://127.0.0.1:{settings.web_port}/metrics, log {worker.log_path}"
        )
        try:
            events = sample_events(seed=7, now=datetime.now(UTC))
            invalid = sample_invalid()
            with Publisher(settings) as publisher:
                publisher.publish_many(events)
                publisher.flush()
            _send_raw(settings.bootstrap_servers, touchpoints(settings), invalid)
            console.print(
                f"[bold]published[/] {len(events)} valid events (batched) and "
                f"{len(invalid)} invalid messages to {touchpoints(settings)}"
            )
            got = wait_for_rows(
                worker,
                {
                    "touchpoint_events": len(events),
                    "dead_letters": len(invalid),
                    "moments": len(events),
                },
                timeout,
            )
            elapsed = time.monotonic() - started
            ok = (
                got.get("touchpoint_events", 0) >= len(events)
                and got.get("dead_letters", 0) >= len(invalid)
                and got.get("moments", 0) >= len(events)
            )
            _report(settings, query_worker)
            if ok:
                console.print(
                    f"[green]all {len(events)} events and {len(invalid)} dead letters are in "
                    f"ClickHouse[/] ({elapsed:.1f}s from start). Data stays in {root / 'chdb'}; "
                    f"query it with: CXPULSE_CLICKHOUSE_URL=chdb://{root / 'chdb'} cxpulse query "
                    '"SELECT ..."'
                )
                return 0
            console.print(f"[red]timed out after {timeout:.0f}s: {got}[/]\n{worker.log_tail()}")
            return 1
        finally:
            worker.stop()


def _send_raw(bootstrap: list[str], topic: str, messages: list[bytes]) -> None:
    """Invalid input goes around the SDK (which refuses it), as a careless producer would."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        for message in messages:
            producer.send(topic, message)
        producer.flush()
    finally:
        producer.close()


def _report(settings: Settings, query_worker: Any) -> None:
    def q(sql: str) -> tuple[list[str], list[Sequence[Any]]]:
        result = query_worker(settings, sql)
        if result is None:
            raise ConfigError("the worker stopped answering queries")
        return result

    show(
        "touchpoint_events by channel",
        *q(
            "SELECT channel, count() AS events, countIf(outcome = 'failure') AS failures, "
            "round(avg(nps), 1) AS avg_nps FROM touchpoint_events FINAL "
            "GROUP BY channel ORDER BY channel"
        ),
    )
    columns, rows = q(
        "SELECT source_partition, source_offset, source_index, reason "
        "FROM dead_letters FINAL ORDER BY source_partition, source_offset, source_index"
    )
    show("dead_letters (the invalid input, with reasons)", columns, rows)
    show(
        "customer_scores: every customer, worst first (50 = as expected)",
        *q(
            "SELECT customer_id, tier, round(score, 1) AS score, round(confidence, 2) AS conf, "
            "episodes, round(score_atm, 1) AS atm, round(score_call_center, 1) AS call, "
            "round(score_web, 1) AS web, round(score_app, 1) AS app, "
            "round(score_store, 1) AS store FROM customer_scores FINAL ORDER BY score"
        ),
    )
    columns, rows = q(
        "SELECT customer_id, explanation FROM customer_scores FINAL ORDER BY score LIMIT 1"
    )
    if rows:
        customer, explanation = rows[0]
        console.print(f"[bold]why is {customer} the lowest?[/] the moments that moved it most:")
        for item in json.loads(str(explanation)):
            console.print(
                f"  {item['occurred_at'][:16]}  {item['touchpoint']:<22} {item['factor']:<12} "
                f"impact {item['impact']:+.1f}"
            )
    show(
        "emotion_map: mean valence by journey stage × touchpoint × channel (worst first)",
        *q(
            "SELECT journey_stage, touchpoint, channel, moments, round(mean_valence, 2) AS "
            "mean_valence FROM emotion_map ORDER BY mean_valence LIMIT 8"
        ),
    )
