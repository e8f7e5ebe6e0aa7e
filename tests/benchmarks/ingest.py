"""HTTP ingest throughput, against the Kafka publisher SDK on the same events in the same run.

``python -m tests.benchmarks.ingest`` (``make bench`` runs it) starts the bundled broker,
makes N simulated events (deterministic seed), and measures, loopback only:

- the SDK: ``Publisher`` (validation, JSON, batch messages of 500 per partition,
  kafka-python, ``acks=all``), the events given as dicts, timed to the last
  acknowledgement: the baseline;
- HTTP ingest: a ``cxpulse ingest`` process (``python -m cxpulse.streams.cli ingest``, its own
  process as in production) and a client in this process sending the same events as JSON
  arrays of 500 over ``--connections`` keep-alive connections, timed from the first
  request to the last answer (every answer a 200 saying 500 accepted: acknowledged by
  Kafka before it was sent).

Each is run ``--repeats`` times (medians; the HTTP runs after a warm-up request), and
printed as events/s with HTTP ÷ SDK, the target (20,000 events/s) and the load average.
The client, the ingest process and the broker share this machine's cores: the HTTP
figure includes the client's cost, as it would not in production. Figures are written to
``var/bench/ingest.json``; docs/benchmarks.md has the figures of the last run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.benchmarks.pipeline import (
    FIGURES,
    console,
    figure,
    make_events,
    print_table,
    publish,
    uptime_text,
)

BATCH = 500
TARGET = 20_000  # events/s through HTTP


def start_ingest(broker_url: str, prefix: str, port: int, log: Path) -> subprocess.Popen[str]:
    """``cxpulse ingest`` in a process of its own; returns once it listens."""
    env = dict(
        os.environ,
        CXPULSE_KAFKA_URL=broker_url,
        CXPULSE_TOPIC_PREFIX=prefix,
        CXPULSE_INGEST_PORT=str(port),
        CXPULSE_LOG_LEVEL="warning",
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "cxpulse.streams.cli", "ingest"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("cxpulse ingest: POST"):
        proc.kill()
        raise SystemExit(f"cxpulse ingest did not start: {line!r} (log: {log})")
    return proc


async def post_all(port: int, bodies: list[bytes], connections: int) -> float:
    """POST every body over ``connections`` keep-alive connections; seconds to the last
    answer. Every answer must be a 200 accepting all of its events."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/events"
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with session.post(url, data=body, headers=headers) as resp:
                    answer = await resp.json()
                    if resp.status != 200 or answer["accepted"] != BATCH:
                        raise SystemExit(f"ingest answered {resp.status}: {str(answer)[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(connections)))
        return time.perf_counter() - started


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from cxpulse.streams.dev.broker import EmbeddedBroker, free_port
    from cxpulse.streams.settings import load_settings

    events = make_events(args.events, args.customers, args.seed)
    n = len(events) - len(events) % BATCH
    events = events[:n]
    bodies = [
        json.dumps(events[i : i + BATCH], separators=(",", ":")).encode()
        for i in range(0, n, BATCH)
    ]
    console.print(
        f"[bold]HTTP ingest vs the publisher SDK[/]: {n:,} events, {len(bodies)} bodies of "
        f"{BATCH} ({sum(map(len, bodies)) / len(bodies) / 1024:.0f} KiB each), "
        f"{args.connections} connections; {uptime_text()}"
    )
    load_before = os.getloadavg()
    with EmbeddedBroker(log_dir=work / "broker") as broker:
        prefix = f"bench-ingest-{uuid.uuid4().hex[:8]}"
        settings = load_settings(
            kafka_url=broker.url, topic_prefix=prefix, partitions=args.partitions
        )
        # Topics first (both paths then find them), and a warm-up of the SDK path.
        publish(settings, events[:BATCH], f"{prefix}.sdk", BATCH)
        sdk = [n / publish(settings, events, f"{prefix}.sdk", BATCH) for _ in range(args.repeats)]
        port = free_port()
        proc = start_ingest(broker.url, prefix, port, work / "ingest.log")
        try:
            asyncio.run(post_all(port, bodies[:2], 1))  # warm-up: connections, metadata
            http = [
                n / asyncio.run(post_all(port, bodies, args.connections))
                for _ in range(args.repeats)
            ]
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    load_after = os.getloadavg()
    base = figure("sdk_eps", "publisher SDK (kafka-python, batches of 500)", sdk, "events/s")
    via = figure(
        "ingest_eps",
        f"HTTP ingest (POST arrays of {BATCH}, {args.connections} keep-alive connections)",
        http,
        "events/s",
        against=base,
        ratio_of="publisher SDK",
    )
    print_table()
    met = "met" if via.value >= TARGET else "NOT met"
    console.print(
        f"HTTP ingest: {via.value:,.0f} events/s = {via.ratio or 0:.2f} × the SDK's "
        f"{base.value:,.0f} events/s; target {TARGET:,} events/s: {met}"
    )
    console.print(f"[dim]load during the run (uptime): {uptime_text()}[/]")
    return {
        "events": n,
        "batch": BATCH,
        "connections": args.connections,
        "figures": [f.__dict__ for f in FIGURES],
        "target_events_per_second": TARGET,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "cpus": os.cpu_count(),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.benchmarks.ingest", description=__doc__)
    p.add_argument("--events", type=int, default=50_000, help="events per run (50000)")
    p.add_argument("--customers", type=int, default=3_000, help="simulated customers (3000)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--partitions", type=int, default=4, help="partitions of the topics (4)")
    p.add_argument("--connections", type=int, default=4, help="keep-alive connections (4)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each (3)")
    p.add_argument("--json", type=Path, default=Path("var/bench/ingest.json"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cxpulse-bench-ingest-") as tmp:
        result = run(args, Path(tmp))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    console.print(f"[dim]written to {args.json}[/]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
