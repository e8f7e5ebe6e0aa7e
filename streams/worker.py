"""Start a worker: check what it depends on, create its topics, then run Faust.

Every check fails fast with one line that says what is wrong and how to fix it, before
Faust starts and buries the cause in a retry loop or a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
import time

import faust

from cxpulse import native
from cxpulse.streams import dump, metrics, topics
from cxpulse.streams.app import TABLE_NAMES, create_app, default_connect, tables_dir
from cxpulse.streams.logs import WorkerLogFilters
from cxpulse.streams.settings import ConfigError, Settings

log = logging.getLogger(__name__)

#: A stop (SIGTERM, SIGINT) that has not finished after this long ends the process: with
#: Kafka gone, Faust can wait without end for in-flight messages it cannot commit. Ending
#: then loses nothing (offsets are committed only after their rows are in; what was not
#: committed is read again at the next start, and the tables' keys drop the repeats) and
#: keeps within the 10 s that docker compose gives before SIGKILL.
STOP_DEADLINE_SECONDS = 8.0


def cluster_id(settings: Settings) -> str:
    """The Kafka cluster id ('' when the broker does not say)."""
    from cxpulse.streams.admin import _admin

    admin = _admin(settings)
    try:
        return str(admin.describe_cluster().get("cluster_id") or "")
    finally:
        admin.close()


def adapt_to_broker(settings: Settings) -> Settings:
    """Work around what a broker gets wrong, when the settings leave it open.

    tansu (the bundled broker) reports a partition's end offset as if the last record
    batch held one record. Faust recovers a table by reading its changelog up to that
    end offset, so on tansu the worker reads the true end offsets off the records
    (``cxpulse.streams.kafka_consumer.true_end_offsets``) and producers batch as usual.
    """
    if settings.broker_end_offsets_exact is not None:
        return settings
    if cluster_id(settings).startswith("tansu"):
        log.info("tansu broker: table recovery reads end offsets off the records")
        return settings.model_copy(update={"broker_end_offsets_exact": False})
    return settings


def use_gil_switch(ms: float) -> None:
    """Let another thread have the GIL after the main thread held it ``ms`` milliseconds
    (``CXPULSE_GIL_SWITCH_MS``; Python's default is 5). The main thread runs a take's
    Python for up to seconds; the threads that feed the rows and sentiment processes
    (the process pools' manager and feeder threads), take their results back and run
    the sink's inserts each need the GIL for a moment, many times a take. At 5 ms a
    wait, a take's rows were ready in the rows process ~0.5 s after the take, holding its
    checkpoint up (docs/benchmarks.md, session 39)."""
    sys.setswitchinterval(ms / 1000)


def use_event_loop(choice: str) -> None:
    """Make ``choice`` (``CXPULSE_EVENT_LOOP``) the loop Faust runs on, before anything
    makes one: uvloop through mode's own switch (``mode.loop.use``, what Faust's
    ``--loop`` option calls), asyncio as it is."""
    if choice == "asyncio":
        return
    try:
        import uvloop  # noqa: F401
    except ImportError:
        raise ConfigError(
            "CXPULSE_EVENT_LOOP=uvloop, but uvloop is not installed: "
            "pip install 'cxpulse[worker]' (or uvloop), or set CXPULSE_EVENT_LOOP=asyncio"
        ) from None
    import mode.loop

    mode.loop.use("uvloop")


def event_loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """What the start-up line calls the loop the worker runs on (the one it got)."""
    if type(loop).__module__.split(".")[0] == "uvloop":
        import uvloop

        return f"uvloop {uvloop.__version__}"
    return "asyncio"


def preflight(settings: Settings) -> Settings:
    """Model valid, Kafka reachable, topics created with their partition counts,
    ClickHouse usable. Returns the settings adapted to the broker."""
    from cxpulse.schemas.model import ModelError
    from cxpulse.streams.admin import check_kafka, ensure_topics
    from cxpulse.streams.model_check import load_model

    try:
        load_model(settings.model_path)
    except ModelError as exc:
        raise ConfigError(f"{exc} (CXPULSE_MODEL_PATH={settings.model_path})") from None
    check_web_port(settings.web_host, settings.web_port)

    check_kafka(settings)
    settings = adapt_to_broker(settings)
    ensure_topics(settings, topics.all_topics(settings, TABLE_NAMES))
    try:
        backend = default_connect(settings)()
    except Exception as exc:
        raise ConfigError(
            f"ClickHouse at {settings.clickhouse_display_url} is not usable: {first_line(exc)} "
            "(check CXPULSE_CLICKHOUSE_URL; for the embedded default use chdb:///./var/chdb)"
        ) from None
    close = getattr(backend, "close", None)
    if close is not None:
        close()
    return settings


def check_web_port(host: str, port: int) -> None:
    """Fail with one line when the worker's HTTP port is taken (another worker on this
    host?), before Faust finds out with a traceback. Port 0 lets the system pick one."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} is already in use (another worker?): stop it or "
                    "set CXPULSE_WEB_PORT to a free port"
                ) from None
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}): fix "
                "CXPULSE_WEB_HOST or CXPULSE_WEB_PORT"
            ) from None


def startup_summary(settings: Settings, event_loop: str = "asyncio") -> str:
    """The worker's start-up line: what it reads and writes, where, its HTTP port, the
    event loop it runs on (``use_event_loop``), and whether the scoring core runs compiled
    (cxpulse/native.py)."""
    internal = [
        topics.events(settings),
        topics.health(settings),
        topics.moments(settings),
        topics.scores(settings),
        topics.alerts(settings),
        topics.touchpoints_dlq(settings),
    ]
    changelogs = [f"{settings.app_id}-{name}-changelog" for name in TABLE_NAMES]
    customers = (
        f"on local disk (RocksDB) in {tables_dir(settings)}"
        if settings.state_store == "rocksdb"
        else "in memory"
    )
    host = settings.web_host
    return (
        f"worker {settings.app_id}: consumes {topics.touchpoints(settings)} from Kafka "
        f"{settings.kafka_url} (group {settings.app_id}; internal topics "
        f"{', '.join(internal)}; {settings.partitions} partitions each), writes ClickHouse "
        f"{settings.clickhouse_display_url}, keeps the customer table {customers} "
        f"with changelogs {', '.join(changelogs)}, web port {settings.web_port} on {host} "
        f"(/metrics, /livez, /readyz); event loop: {event_loop}; scoring core: {native.STATUS}"
    )


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_worker(settings: Settings) -> None:
    """Run the Faust worker in the foreground until SIGINT/SIGTERM.

    ``kill -QUIT <pid>`` prints every thread's stack to the worker's stderr and keeps it
    running (as a JVM's thread dump does), even when the event loop itself is stuck: the
    way to see where a worker that stopped making progress is waiting. (``kill -USR1``
    is Faust's own dump of threads and asyncio tasks, which needs a live event loop.)
    """
    faulthandler.register(signal.SIGQUIT, all_threads=True, chain=False)
    use_gil_switch(settings.gil_switch_ms)
    use_event_loop(settings.event_loop)
    metrics.time_collections()
    started = time.monotonic()
    process_started = started - process_age()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings = preflight(settings)
    app = create_app(settings)
    log.info("preflight done in %.1fs", time.monotonic() - started)
    worker = ReadyTimedWorker(
        app,
        loglevel=settings.log_level.lower(),
        quiet=True,
        process_started=process_started,
    )
    worker.summary = startup_summary(settings, event_loop_name(worker.loop))
    try:
        worker.execute_from_commandline()
    finally:
        worker.log_stopped()


class ReadyTimedWorker(faust.Worker):
    """A Faust worker that says what it does, records how long it took to become Ready,
    and keeps its log readable (``cxpulse.streams.logs``).

    Start-up time is what an operator waits through on every deploy and restart (and what
    a rebalance costs the partitions that move), so it is a metric
    (``cxpulse_worker_ready_seconds``) and a log line, not a guess.
    """

    def __init__(
        self, *args: object, process_started: float, summary: str = "", **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.stop_deadline = STOP_DEADLINE_SECONDS
        self._process_started = process_started
        #: the start-up line, logged once logging is set up
        self.summary = summary
        self.log_filters = WorkerLogFilters()

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        self.log_filters.install(logger)

    async def on_first_start(self) -> None:
        await super().on_first_start()  # sets up logging
        if self.summary:
            log.info("%s", self.summary)
        self.add_future(self._flush_repeated_lines())

    async def _flush_repeated_lines(self) -> None:
        repeats = self.log_filters.repeats
        while not self.should_stop:
            await asyncio.sleep(min(1.0, repeats.interval))
            repeats.flush()

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        self.log_filters.keepalive.ready = True
        seconds = time.monotonic() - self._process_started
        metrics.WORKER_READY_SECONDS.set(seconds)
        log.info("ready %.1fs after the worker process started", seconds)

    async def _cry(self) -> None:
        """``kill -USR1``: this worker's dump (``cxpulse.streams.dump``), which no local's
        ``repr`` can end, in place of Faust's."""
        try:
            dump.dump(self.stderr)
        except Exception as exc:  # a debugging aid never stops the worker
            log.warning("the kill -USR1 dump stopped: %s", first_line(exc))

    def _on_sigterm(self) -> None:
        self._arm_stop_deadline()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._arm_stop_deadline()
        super()._on_sigint()

    def _arm_stop_deadline(self) -> None:
        if getattr(self, "_signalled_at", None) is not None:
            return  # a second signal: the first one's deadline stands
        self._signalled_at = time.monotonic()
        timer = threading.Timer(self.stop_deadline, self._stop_overdue)
        timer.name = "cxpulse-stop-deadline"
        timer.daemon = True
        timer.start()

    def _stop_overdue(self) -> None:
        """Runs on the deadline's thread: the event loop may be the one that is stuck."""
        log.warning(
            "the stop has not finished %.0fs after the signal (Kafka unreachable, or "
            "messages in flight that cannot be committed): ending the process now; what "
            "was not committed is read again at the next start, nothing is lost",
            self.stop_deadline,
        )
        self.log_filters.repeats.flush(final=True)
        self.log_stopped()
        logging.shutdown()
        os._exit(0)

    def on_worker_shutdown(self) -> None:
        super().on_worker_shutdown()
        self.log_filters.repeats.flush(final=True)

    def log_stopped(self) -> None:
        """The last line of a worker's log."""
        signalled = getattr(self, "_signalled_at", None)
        if signalled is None:
            log.info("worker stopped")
        else:
            log.info("worker stopped %.1fs after the signal", time.monotonic() - signalled)


def process_age() -> float:
    """Seconds since this process started (Linux ``/proc``; 0 where that is unavailable),
    so the ready time includes interpreter start-up and imports, as an operator sees it."""
    try:
        with open("/proc/self/stat") as stat:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            up = float(uptime.read().split()[0])
        return max(0.0, up - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0
