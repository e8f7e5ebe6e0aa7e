"""``cxpulse demo``: the whole pipeline on the embedded default, in one command.

Starts the bundled broker and a real worker process (chDB under ``./var/demo-chdb``),
publishes eight simulated hours of traffic from all five channels with four incidents
(``DEMO_INCIDENTS``) and a few invalid messages, shows warning and critical alerts as they
fire, waits until the worker's own metrics say every row is durable, then reports from
ClickHouse: events, the emotion map, the worst instances, scores by tier and channel, NPS
by tier, what feedback text is about (topics), alerts by rule, the dead letters with their
reasons, and one customer's score story.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, cast

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from cxpulse.sinks.ddl import string_literal
from cxpulse.streams.kafka_config import PLAINTEXT, kafka_env
from cxpulse.streams.query import cell
from cxpulse.streams.settings import ConfigError, Settings, load_settings

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
        for name, value in kafka_env(settings).items():  # the URL, TLS and SASL settings
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        env.update(
            {
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
        if settings.clickhouse_password is not None:
            # The URL held none (settings split it out): the child needs it on its own.
            env["CXPULSE_CLICKHOUSE_PASSWORD"] = settings.clickhouse_password.get_secret_value()
        env.update(extra_env or {})
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, argv: Sequence[str] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        cmd = list(argv or [sys.executable, "-m", "cxpulse.streams.cli", "worker"])
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def dump_stacks(self, settle: float = 1.0) -> str:
        """Every thread's stack, printed by the worker itself on SIGQUIT (see
        ``cxpulse.streams.worker.run_worker``), read back from its log."""
        if not self.alive():
            return ""
        assert self.proc is not None
        before = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc.send_signal(signal.SIGQUIT)
        time.sleep(settle)
        with self.log_path.open("rb") as log:
            log.seek(before)
            return log.read().decode(errors="replace")

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


def drained(metrics: dict[Any, float], expected: dict[str, int]) -> bool:
    """Every expected row count reached, and every score update and alert the worker
    emitted is in ClickHouse too."""
    if any(sink_rows(metrics, t) < n for t, n in expected.items()):
        return False
    updates = metrics.get(("cxpulse_score_updates_total", ()), 0)
    alerts = sum(v for (name, _), v in metrics.items() if name == "cxpulse_alerts_total")
    return (
        sink_rows(metrics, "customer_scores") >= updates and sink_rows(metrics, "alerts") >= alerts
    )


def wait_for_rows(
    worker: WorkerProcess,
    expected: dict[str, int],
    timeout: float,
    live: bool = False,
    waiting: Callable[[], bool] = lambda: False,
) -> dict[str, int]:
    """Poll the worker's metrics until everything is durable in ClickHouse (or time out).

    ``live``: alerts are being printed meanwhile, so progress is a line every few
    seconds instead of a spinner that would fight with them for the terminal; while
    ``waiting()``, the line says the first alert is still awaited.
    """
    deadline = time.monotonic() + timeout
    got: dict[str, int] = {}
    last_line = 0.0
    with console.status("waiting for rows to land in ClickHouse ...") if not live else _null():
        while time.monotonic() < deadline:
            if not worker.alive():
                raise ConfigError(
                    f"the worker exited early; last lines of {worker.log_path}:\n"
                    + worker.log_tail()
                )
            metrics = scrape(worker.settings.web_port)
            got = {table: sink_rows(metrics, table) for table in expected}
            if drained(metrics, expected):
                return got
            if live and time.monotonic() - last_line > 5:
                last_line = time.monotonic()
                console.print(
                    "[dim]  "
                    + (f"{WAITING}; " if waiting() else "")
                    + "in ClickHouse so far: "
                    + ", ".join(f"{t} {got[t]:,}/{n:,}" for t, n in expected.items())
                    + "[/]"
                )
            time.sleep(0.25)
    return got


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def show(title: str, columns: list[str], rows: list[Sequence[Any]]) -> None:
    table = Table(*columns, title=title, title_justify="left", title_style="bold")
    for row in rows:
        table.add_row(*(cell(v) for v in row))
    console.print(table)


#: The story's incidents, on the simulated clock of an 8-hour run.
DEMO_INCIDENTS = (
    "atm_outage:ATM-0003@+2h/90m",
    "store_queues:store-002@+1h/2h",
    "web_login_spike@+4h/45m",
    "call_center_backlog@+5h/2h",
)


def settings_app_id() -> str:
    """The app id the demo's worker runs as (its state directory's name)."""
    return load_settings().app_id


def run_demo(
    data_dir: str, timeout: float, customers: int = 20_000, seed: int = 7, live: int = 12
) -> int:
    """Run the demo story; returns the process exit status."""
    from cxpulse.streams.admin import ensure_topics, wait_for_kafka
    from cxpulse.streams.app import TABLE_NAMES, tables_dir
    from cxpulse.streams.dev.broker import EmbeddedBroker
    from cxpulse.streams.dev.sample_events import sample_invalid
    from cxpulse.streams.dev.simulate import simulate
    from cxpulse.streams.dev.simulate.runner import working_day_start
    from cxpulse.streams.query import query_worker
    from cxpulse.streams.topics import all_topics, touchpoints

    root = Path(data_dir).resolve()
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    chdb_dir = root / "demo-chdb"
    if chdb_dir.exists():
        shutil.rmtree(chdb_dir)  # the demo's own directory: each story starts clean
    # The worker's table state on disk belongs to the last run's broker, which kept its
    # topics in memory: against the new, empty changelogs Faust refuses it.
    for state in (root / "faust" / settings_app_id(),):
        if state.exists():
            shutil.rmtree(state)
    started = time.monotonic()
    with EmbeddedBroker(log_dir=logs) as broker:
        settings = load_settings(
            kafka_url=broker.url,
            **PLAINTEXT,  # the bundled broker, whatever the environment says
            clickhouse_url=f"chdb://{chdb_dir}",
            web_port=free_port(),
            data_dir=root,
            sink_flush_seconds=0.5,
        )
        # The broker starts empty: tables a previous demo left on disk would say their
        # changelogs hold records this broker never had, and the worker would refuse them.
        if tables_dir(settings).exists():
            shutil.rmtree(tables_dir(settings))
        console.rule("[bold]cxpulse demo")
        console.print(f"[bold]broker[/]    {broker.url} (bundled tansu, in memory)")
        wait_for_kafka(settings, timeout=30.0)
        ensure_topics(settings, all_topics(settings, TABLE_NAMES))
        token = secrets.token_urlsafe(24)  # the demo's own API token, for the cases story
        worker = WorkerProcess(
            settings,
            logs / "worker.log",
            extra_env={"CXPULSE_API_TOKEN": token, "CXPULSE_CASES_CHECK_SECONDS": "1"},
        )
        worker.start()
        console.print(
            f"[bold]worker[/]    pid {worker.proc.pid if worker.proc else '?'}, chDB in "
            f"{chdb_dir}, metrics http://127.0.0.1:{settings.web_port}/metrics, "
            f"log {worker.log_path}"
        )
        first_alert = threading.Event()
        done = threading.Event()
        follower = _follow_alerts(settings, live, worker, first_alert, done)
        try:
            console.print(
                f"[bold]simulate[/]  {customers:,} customers, 8 simulated hours, incidents: "
                + ", ".join(DEMO_INCIDENTS)
            )
            summary = simulate(
                settings,
                customers=customers,
                duration=timedelta(hours=8),
                # the customers' working day, whenever the demo runs: incidents in busy
                # hours, branches open
                start=working_day_start(timedelta(hours=8)),
                seed=seed,
                incidents=DEMO_INCIDENTS,
                atms=4,
                stores=4,
                progress=False,
            )
            invalid = sample_invalid()
            _send_raw(settings, touchpoints(settings), invalid)
            console.print(
                f"[bold]published[/] {summary.sent:,} events in {summary.messages:,} batch "
                f"messages ({summary.events_per_second:,.0f} events/s), plus {len(invalid)} "
                f"invalid messages, to {touchpoints(settings)}"
            )
            if live > 0:
                console.print(
                    f"[bold]live alerts[/] (the first {live} warnings and critical ones, at "
                    f"most {LIVE_PER_RULE} of a rule, as they fire):"
                )
                console.print(f"[dim]  {WAITING} ...[/]")
            expected = {
                "touchpoint_events": summary.sent,
                "moments": summary.sent,
                "dead_letters": len(invalid),
            }
            got = wait_for_rows(
                worker, expected, timeout, live=True, waiting=_waiting(live, first_alert)
            )
            elapsed = time.monotonic() - started
            ready = scrape(settings.web_port).get(("cxpulse_worker_ready_seconds", ()), 0.0)
            if follower is not None:
                follower.join(timeout=2)
            done.set()
            if not all(got.get(t, 0) >= n for t, n in expected.items()):
                console.print(f"[red]timed out after {timeout:.0f}s: {got}[/]")
                console.print(worker.log_tail())
                return 1
            console.rule("[bold]report from ClickHouse")
            _report(settings, query_worker)
            try:
                _cases_story(settings, token, query_worker)
            except (OSError, ValueError, KeyError) as exc:  # HTTPError is an OSError
                console.print(f"[red]the cases story stopped: {exc}[/]")
                return 1
            console.print(
                f"[green]{summary.sent:,} events, their moments, scores and alerts, and "
                f"{len(invalid)} dead letters are in ClickHouse[/] ({elapsed:.1f}s from "
                f"start; the worker was Ready {ready:.1f}s after its process started). "
                f"The data stays in {chdb_dir}; query it with:"
            )
            # unwrapped, so that it can be copied as it is
            console.print(
                "  " + query_hint(chdb_dir), soft_wrap=True, markup=False, highlight=False
            )
            return 0
        finally:
            done.set()
            worker.stop()


#: Live alerts shown per rule: enough to see each rule's explanation, few enough that the
#: rules firing most (low_score in a busy hour) leave room for the others.
LIVE_PER_RULE = 2


#: What the live-alert section says until its first alert is printed.
WAITING = "waiting for the first alert"


def _waiting(live: int, first_alert: threading.Event) -> Callable[[], bool]:
    return lambda: live > 0 and not first_alert.is_set()


class _Noting:
    """``out`` that sets ``event`` at its first write (the first alert printed)."""

    def __init__(self, out: IO[str], event: threading.Event) -> None:
        self.out, self.event = out, event

    def write(self, text: str) -> int:
        if text.strip():
            self.event.set()
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()

    def isatty(self) -> bool:
        return self.out.isatty()

    def fileno(self) -> int:
        return self.out.fileno()


def _follow_alerts(
    settings: Settings,
    live: int,
    worker: WorkerProcess,
    first_alert: threading.Event,
    done: threading.Event,
) -> threading.Thread | None:
    """Print the first ``live`` warning and critical alerts as they arrive, from a thread
    (started here; None when ``live`` is 0: no alerts are shown).

    The idle time after which it gives up counts from the worker's Ready: a worker that
    starts slowly (a cold machine, a busy CI runner) does not cost the story its alerts.
    """
    from cxpulse.streams.alerts_follow import follow_alerts
    from cxpulse.streams.topics import alerts

    def ready() -> bool:
        return scrape(settings.web_port).get(("cxpulse_worker_ready_seconds", ()), 0) > 0

    def run() -> None:
        while not ready():
            if done.wait(0.25) or not worker.alive():
                return
        follow_alerts(
            settings,
            alerts(settings),
            severity={"critical", "warning"},
            from_beginning=True,
            max_alerts=live,
            per_rule=LIVE_PER_RULE,
            idle_timeout=30.0,
            out=cast(IO[str], _Noting(sys.stdout, first_alert)),
        )

    if live <= 0:
        return None
    thread = threading.Thread(target=run, name="demo-alerts", daemon=True)
    thread.start()
    return thread


def query_hint(chdb_dir: Path) -> str:
    """The ``cxpulse query`` command that reads the demo's data, as this shell can run it:
    ``cxpulse`` when that is on the PATH, else the way this demo was started."""
    url = shlex.quote(f"chdb://{chdb_dir}")
    sql = shlex.quote("SELECT rule, count() FROM alerts FINAL GROUP BY rule")
    return f"CXPULSE_CLICKHOUSE_URL={url} {cxpulse_command()} query {sql}"


def cxpulse_command() -> str:
    """How to run ``cxpulse`` from here: the command on the PATH when it is this one, the
    script this process runs (``.venv/bin/cxpulse`` of ``make demo``), or this Python
    with ``-m cxpulse.streams.cli``."""
    script = sys.argv[0] if sys.argv else ""
    if Path(script).name == "cxpulse":
        on_path = shutil.which("cxpulse")
        if on_path and Path(on_path).resolve() == Path(script).resolve():
            return "cxpulse"
        return shlex.quote(script)
    return f"{shlex.quote(sys.executable)} -m cxpulse.streams.cli"


def _send_raw(settings: Settings, topic: str, messages: list[bytes]) -> None:
    """Invalid input goes around the SDK (which refuses it), as a careless producer would."""
    from kafka import KafkaProducer

    from cxpulse.streams.admin import client_config

    producer = KafkaProducer(**client_config(settings), linger_ms=5)
    try:
        for message in messages:
            producer.send(topic, message)
        producer.flush()
    finally:
        producer.close()


#: The most the cases story waits for an escalation or the recovery's score (seconds): a
#: limit for a stuck worker, not a pause (each wait ends as soon as the change is there).
CASES_PATIENCE = 30.0
DEMO_OPERATOR = "demo-operator"


def _api(settings: Settings, token: str, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.web_port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _story_case(cases: list[dict[str, Any]]) -> dict[str, Any] | None:
    """An escalated customer case: tier A first, the unhappiest (by tens of points)
    first, then one whose severity went up (opened as a warning)."""
    escalated = [c for c in cases if c["escalated"] and c["kind"] == "customer"]
    escalated.sort(
        key=lambda c: (
            c["tier"] != "A",
            round(c["score"] if c["score"] is not None else 100.0, -1),  # the unhappiest
            # a warning's service level is longer than a critical's: it was raised
            c["due_at"] <= _plus_hours(c["opened_at"], 1),
            c["opened_at"],
        )
    )
    return escalated[0] if escalated else None


def _plus_hours(iso: str, hours: float) -> str:
    from datetime import datetime

    moment = datetime.fromisoformat(iso.replace("Z", "+00:00")) + timedelta(hours=hours)
    return moment.isoformat().replace("+00:00", "Z")


def _cases_story(settings: Settings, token: str, query_worker: Any) -> None:
    """One case opened by an alert, escalated past its due time, acknowledged and
    resolved as recovered, and the customer's score after the recovery moment."""
    console.rule("[bold]cases: owned, escalated, resolved")
    deadline = time.monotonic() + CASES_PATIENCE
    while True:
        cases = _api(settings, token, "GET", "/api/cases?limit=1000")["cases"]
        case = _story_case(cases)
        if case is not None or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    owners: dict[str, list[int]] = {}
    for c in cases:
        row = owners.setdefault(c["owner"], [0, 0, 0])
        row[0] += 1
        row[1] += c["severity"] == "critical"
        row[2] += c["escalated"]
    show(
        "cases by owner",
        ["owner", "cases", "critical", "escalated"],
        [[o, *n] for o, n in sorted(owners.items(), key=lambda kv: -kv[1][0])],
    )
    if case is None:
        console.print("[yellow]no case went overdue within the demo's time[/]")
        return
    cid, customer = case["case_id"], case["customer_id"]
    opened = _api(settings, token, "GET", f"/api/cases/{cid}")["history"][0]
    console.print(
        f"[bold]case {cid}[/] opened {case['opened_at'][:16]} for customer {customer} "
        f"(tier {case['tier']}, score {case['score']:.0f}) by {case['rule']}: "
        f"{case['explanation']}\n  owner {case['owner']}, due {case['due_at'][:16]} "
        f"({opened['severity']}); nobody acknowledged it in time: escalated "
        + (
            f"{opened['severity']} → {case['severity']}"
            if opened["severity"] != case["severity"]
            else f"(already {case['severity']})"
        )
        + ", a case_overdue alert on cx.alerts"
    )

    def score() -> float | None:
        result = query_worker(
            settings,
            "SELECT score FROM customer_scores FINAL "
            f"WHERE customer_id = {string_literal(customer)}",
        )
        return float(result[1][0][0]) if result and result[1] else None

    before = score()
    _api(settings, token, "POST", f"/api/cases/{cid}/ack", {"by": DEMO_OPERATOR})
    note = "called the customer and put it right"
    done = _api(
        settings,
        token,
        "POST",
        f"/api/cases/{cid}/resolve",
        {"by": DEMO_OPERATOR, "outcome": "recovered", "note": note},
    )["case"]
    for change in _api(settings, token, "GET", f"/api/cases/{cid}")["history"]:
        console.print(
            f"  v{change['version']} {change['change']:<12} by {change['by']:<14} "
            f"→ {change['status']}, {change['severity']}"
        )
    deadline = time.monotonic() + CASES_PATIENCE
    after = score()
    while after == before and time.monotonic() < deadline:
        time.sleep(0.25)
        after = score()
    if before is not None and after is not None and after != before:
        console.print(
            f"resolved as {done['outcome']}: the recovery entered {customer}'s journey as a "
            f"service-recovery moment; score {before:.1f} → {after:.1f}"
        )
    else:
        console.print(f"resolved as {done['outcome']}; the recovery moment is not scored yet")


def _report(settings: Settings, query_worker: Any) -> None:
    def q(sql: str) -> tuple[list[str], list[Sequence[Any]]]:
        result = query_worker(settings, sql)
        if result is None:
            raise ConfigError("the worker stopped answering queries")
        return result

    show(
        "events by channel",
        *q(
            "SELECT channel, count() AS events, countIf(outcome = 'failure') AS failures, "
            "countIf(outcome = 'abandoned') AS abandoned, round(avg(nps), 1) AS avg_nps "
            "FROM touchpoint_events FINAL GROUP BY channel ORDER BY events DESC"
        ),
    )
    show(
        "emotion map: the worst-feeling touchpoints (mean valence, -10..10)",
        *q(
            # + 0 turns the -0 that rounding a small negative mean gives into 0
            "SELECT journey_stage, touchpoint, channel, moments, round(mean_valence, 2) + 0 "
            "AS mean_valence, round(negative_share, 2) AS negative_share FROM emotion_map "
            "WHERE moments >= 20 ORDER BY mean_valence LIMIT 8"
        ),
    )
    show(
        "worst touchpoint instances (failure rate, at least 20 attempts)",
        *q(
            "SELECT touchpoint_instance AS instance, any(touchpoint) AS touchpoint, "
            "count() AS attempts, countIf(outcome = 'failure') AS failures, "
            "round(failures / attempts, 3) AS failure_rate FROM touchpoint_events FINAL "
            "WHERE touchpoint_instance != '' GROUP BY instance HAVING attempts >= 20 "
            "ORDER BY failure_rate DESC LIMIT 6"
        ),
    )
    show(
        "scores by tier and channel (mean; 50 = as expected)",
        *q(
            "SELECT tier, count() AS customers, round(avg(score), 1) AS overall, "
            "countIf(score < 35) AS below_35, round(avg(score_web), 1) AS web, "
            "round(avg(score_app), 1) AS app, round(avg(score_call_center), 1) AS call_center, "
            "round(avg(score_store), 1) AS store, round(avg(score_atm), 1) AS atm "
            "FROM customer_scores FINAL GROUP BY tier ORDER BY tier"
        ),
    )
    show(
        "NPS by tier (loyalty: each customer's last answer; % promoters − % detractors)",
        *q(
            "SELECT tier, sum(customers) AS answered, "
            "round(100 * sum(promoters) / answered, 1) AS promoters_pct, "
            "round(100 * sum(detractors) / answered, 1) AS detractors_pct, "
            "round(100 * (toInt64(sum(promoters)) - toInt64(sum(detractors))) / answered, 1) "
            "AS nps FROM relationship_nps GROUP BY tier ORDER BY tier"
        ),
    )
    show(
        "what feedback text is about (topics in English and Chinese text, docs/scoring.md)",
        *q(
            "SELECT topic, sum(moments) AS mentions, "
            "round(sum(mean_sentiment * moments) / mentions, 2) + 0 AS mean_sentiment, "
            "round(sum(negative_share * moments) / mentions, 2) AS negative_share, "
            "argMax(touchpoint, moments) AS most_at FROM topic_sentiment "
            "GROUP BY topic ORDER BY mentions DESC, topic LIMIT 8"
        ),
    )
    show(
        "alerts by rule",
        *q(
            "SELECT rule, count() AS alerts, countIf(severity = 'critical') AS critical, "
            "countIf(severity = 'warning') AS warning, countIf(severity = 'info') AS info, "
            "sum(count) AS hits, argMax(explanation, magnitude) AS strongest "
            "FROM alerts FINAL GROUP BY rule ORDER BY alerts DESC"
        ),
    )
    show(
        "dead letters: invalid input, kept with the reason",
        *q(
            "SELECT source_partition AS partition, source_offset AS offset, "
            "source_index AS item, reason, substring(payload, 1, 40) AS payload "
            "FROM dead_letters FINAL ORDER BY source_partition, source_offset, source_index"
        ),
    )
    # A customer with a story: tier A, a few moments, and the furthest fall from the best
    # score they had to where they are now.
    _, rows = q(
        "SELECT customer_id, tier, score, explanation FROM customer_scores FINAL "
        "WHERE customer_id IN (SELECT customer_id FROM moments FINAL "
        "WHERE tier = 'A' AND late = 0 GROUP BY customer_id HAVING count() >= 3 "
        "ORDER BY max(score_after) - argMax(score_after, (occurred_at, event_id)) DESC, "
        "customer_id LIMIT 1)"
    )
    if rows:
        customer, tier, score, explanation = rows[0]
        # The score after each of its moments: score_history has a row per score update,
        # and a backlog like this one updates a customer once per batch, not per event.
        _, trend = q(
            "SELECT toString(occurred_at) AS t, score_after FROM moments FINAL "
            f"WHERE customer_id = {string_literal(str(customer))} AND late = 0 "
            "ORDER BY occurred_at, event_id"
        )
        console.print(
            f"[bold]why is {customer} (tier {tier}) at {float(score):.0f}?[/] its score moved "
            + " → ".join(f"{float(s):.0f} ({str(t)[11:16]})" for t, s in trend[-8:])
        )
        # a line of its own: after a trend of any length it is never wrapped mid-phrase
        console.print(
            "  the moments that account for it (points of score; with the rest they add up "
            "to score - 50):"
        )
        listed = json.loads(str(explanation))
        for item in listed:
            console.print(
                f"  {item['occurred_at'][:16]}  {item['touchpoint']:<26} {item['factor']:<12} "
                f"{item.get('contribution', 0.0):+6.1f}  (impact {item['impact']:+.1f})"
            )
        rest = float(score) - 50 - sum(item.get("contribution", 0.0) for item in listed)
        console.print(f"  {'every other moment':<62} {rest:+6.1f}")

    from cxpulse.streams.cli.drivers import demo_drivers

    demo_drivers(settings)
