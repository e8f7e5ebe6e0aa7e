"""A real worker process, configured with a known ClickHouse password, driven through the
failure paths that can be triggered here; its whole log must never hold the password.

Locally: a mistyped scheme, a refused port on 127.0.0.1, and Faust's ``kill -USR1``
dump (every thread's stack with its local variables, every task with its locals). With
a ClickHouse server (CXPULSE_TEST_CLICKHOUSE_URL; CI always sets it): a wrong password,
and a row the server cannot take, as user ``cxpulse_secret`` whose password
``deploy/ci/start-clickhouse-server.sh`` sets (the default user has none to leak).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cxpulse.streams.dev.demo import WorkerProcess, free_port, scrape
from cxpulse.streams.publisher import Publisher
from cxpulse.streams.settings import Settings, load_settings
from tests.integration.conftest import clickhouse_server_url

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PASSWORD = "Pw-" + uuid.uuid4().hex[:12]  # distinctive: any leak is found by a search
#: The test server's user with a password (deploy/ci/start-clickhouse-server.sh adds it).
SECRET_USER, SECRET_PASSWORD = "cxpulse_secret", "cxpulse-secret-7d41"
ROOT = Path(__file__).resolve().parents[2]
#: How the worker's kill -USR1 dump shows the settings among a frame's locals.
SHOWN_SETTINGS = "clickhouse_password=SecretStr('**********')"


def run_worker_to_exit(env: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    """``cxpulse worker`` that is expected to stop at preflight: its code and output."""
    full = dict(os.environ, PYTHONPATH=str(ROOT), CXPULSE_DATA_DIR=str(tmp_path / "var"))
    full.update(env)
    done = subprocess.run(
        [sys.executable, "-m", "cxpulse.streams.cli", "worker"],
        env=full,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    return done.returncode, done.stdout + done.stderr


def test_a_mistyped_scheme_stops_the_worker_without_printing_the_password(
    tmp_path: Path,
) -> None:
    code, out = run_worker_to_exit(
        {"CXPULSE_CLICKHOUSE_URL": f"clickhouses://app:{PASSWORD}@127.0.0.1:9000/cx"}, tmp_path
    )
    assert code == 2, out
    assert PASSWORD not in out
    assert "CXPULSE_CLICKHOUSE_URL" in out and "Traceback" not in out


def test_an_unreachable_server_stops_the_worker_without_printing_the_password(
    kafka_broker: Any, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens: the connection is refused
    code, out = run_worker_to_exit(
        {
            "CXPULSE_KAFKA_URL": kafka_broker.url,
            "CXPULSE_TOPIC_PREFIX": f"s{uuid.uuid4().hex[:8]}",
            "CXPULSE_CLICKHOUSE_URL": (
                f"clickhouse://app:{PASSWORD}@127.0.0.1:{port}/cx?connect_timeout=2"
            ),
        },
        tmp_path,
    )
    assert code == 2, out
    assert f"127.0.0.1:{port}" in out and "unreachable" in out, out
    assert PASSWORD not in out and "Traceback" not in out


def test_the_servers_http_port_stops_the_worker_at_once_with_the_native_port(
    kafka_broker: Any, tmp_path: Path
) -> None:
    """clickhouse:// speaks the native protocol; pointed at the server's HTTP port (8123)
    it names the port for what it is, in one line, without waiting for the driver's
    handshake timeout (a minute)."""
    server = urlsplit(clickhouse_server_url())
    host = server.hostname or "127.0.0.1"
    code, out = run_worker_to_exit(
        {
            "CXPULSE_KAFKA_URL": kafka_broker.url,
            "CXPULSE_TOPIC_PREFIX": f"s{uuid.uuid4().hex[:8]}",
            "CXPULSE_CLICKHOUSE_URL": f"clickhouse://default:{PASSWORD}@{host}:8123/x",
        },
        tmp_path,
    )
    assert code == 2, out
    assert f"{host}:8123 is ClickHouse's HTTP port" in out and "usually 9000" in out, out
    assert len(out.strip().splitlines()) == 1, out
    assert PASSWORD not in out and "Traceback" not in out


def test_a_wrong_password_stops_the_worker_without_printing_it(
    kafka_broker: Any, tmp_path: Path
) -> None:
    server = clickhouse_server_url()
    settings = load_settings(clickhouse_url=server)  # its own password split off
    code, out = run_worker_to_exit(
        {
            "CXPULSE_KAFKA_URL": kafka_broker.url,
            "CXPULSE_TOPIC_PREFIX": f"s{uuid.uuid4().hex[:8]}",
            "CXPULSE_CLICKHOUSE_URL": settings.clickhouse_url,
            "CXPULSE_CLICKHOUSE_PASSWORD": PASSWORD,
        },
        tmp_path,
    )
    assert code == 2, out
    assert "refused user" in out, out
    assert PASSWORD not in out and "Traceback" not in out


def test_the_usr1_dump_of_a_running_worker_holds_no_password(
    kafka_broker: Any, tmp_path: Path
) -> None:
    """The password given in the URL (split off into a secret) and again on its own:
    the dump prints the locals of every frame and task, settings included."""
    name = f"s{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        kafka_url=kafka_broker.url,
        clickhouse_url=f"chdb://{tmp_path / 'chdb'}",
        clickhouse_password=PASSWORD,
        app_id=f"cxpulse-{name}",
        topic_prefix=name,
        web_port=free_port(),
        data_dir=tmp_path / "var",
    )
    log_path = tmp_path / "worker.log"
    worker = WorkerProcess(settings, log_path, extra_env={"PYTHONPATH": str(ROOT)})
    worker.start()
    try:
        deadline = time.monotonic() + 120
        while scrape(settings.web_port).get(("cxpulse_worker_ready_seconds", ()), 0) <= 0:
            assert worker.alive(), worker.log_tail(40)
            assert time.monotonic() < deadline, f"not ready\n{worker.log_tail(40)}"
            time.sleep(0.2)
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGUSR1)
        while "TASKS" not in log_path.read_text(errors="replace"):
            assert worker.alive(), worker.log_tail(40)
            assert time.monotonic() < deadline, f"no dump\n{worker.log_tail(40)}"
            time.sleep(0.2)
        assert worker.stop() == 0
    finally:
        worker.stop()
    text = log_path.read_text(errors="replace")
    assert SHOWN_SETTINGS in text  # the dump showed the settings, the secret masked
    assert PASSWORD not in text


def wait_metric(worker: WorkerProcess, settings: Settings, name: str, labels: Any = ()) -> None:
    deadline = time.monotonic() + 120
    while scrape(settings.web_port).get((name, labels), 0) <= 0:
        assert worker.alive(), worker.log_tail(40)
        assert time.monotonic() < deadline, f"no {name}\n{worker.log_tail(40)}"
        time.sleep(0.2)


def test_a_refused_row_and_the_usr1_dump_on_a_server_hold_no_password(
    kafka_broker: Any, tmp_path: Path
) -> None:
    """A worker on the server, logged in with a password: ClickHouse refuses one row's
    values (the sink logs it and keeps it in dead_letters), then the worker's dump shows every
    frame's locals while the backend is connected. The password shows nowhere."""
    from cxpulse.sinks.clickhouse import open_backend
    from cxpulse.sinks.errors import SinkConfigError

    server = load_settings(clickhouse_url=clickhouse_server_url())
    where = server.clickhouse_url.split("@", 1)[1].split("/", 1)[0]
    name = f"s{uuid.uuid4().hex[:8]}"
    url = f"clickhouse://{SECRET_USER}:{SECRET_PASSWORD}@{where}/cxpulse_{name}"
    try:
        open_backend(url).close()
    except SinkConfigError as exc:
        pytest.fail(f"{exc}: run deploy/ci/start-clickhouse-server.sh (it adds the user)")
    settings = load_settings(
        kafka_url=kafka_broker.url,
        clickhouse_url=url,
        app_id=f"cxpulse-{name}",
        topic_prefix=name,
        web_port=free_port(),
        data_dir=tmp_path / "var",
        sink_flush_seconds=0.3,
    )
    log_path = tmp_path / "worker.log"
    worker = WorkerProcess(settings, log_path, extra_env={"PYTHONPATH": str(ROOT)})
    worker.start([sys.executable, "-m", "tests.integration.refusing_worker"])
    try:
        with Publisher(settings) as publisher:
            for i in range(3):
                publisher.publish(
                    {
                        "event_id": str(uuid.uuid4()),
                        "occurred_at": f"2026-11-20T09:3{i}:00+00:00",
                        "customer_id": f"C-{i}",
                        "channel": "web",
                        "touchpoint": "web.login",
                        "journey_stage": "post_purchase",
                        "outcome": "success",
                    }
                )
        wait_metric(
            worker, settings, "cxpulse_sink_rows_refused_total", (("table", "touchpoint_events"),)
        )
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 120
        while "TASKS" not in log_path.read_text(errors="replace"):
            assert worker.alive(), worker.log_tail(40)
            assert time.monotonic() < deadline, f"no dump\n{worker.log_tail(40)}"
            time.sleep(0.2)
    finally:
        worker.stop()
    text = log_path.read_text(errors="replace")
    # the row's own line, whether its insert held the other rows (then split: "refused
    # values in a batch") or the checkpoint held that one row alone
    assert "ClickHouse refused a row of touchpoint_events" in text and SHOWN_SETTINGS in text
    assert SECRET_PASSWORD not in text
