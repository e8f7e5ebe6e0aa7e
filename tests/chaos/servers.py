"""Servers the chaos suite starts, stops and starts again by itself: a ClickHouse server
instance of its own (Debian's clickhouse-server, its own ports and directories, beside
any server already running) and the bundled broker on persistent storage.

Both run in the foreground as children of the suite, so stopping one is a plain signal
to a process the suite started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from cxpulse.streams.dev.broker import free_port

CLICKHOUSE_BIN = "/usr/sbin/clickhouse-server"
CLICKHOUSE_CONFIG = Path("/etc/clickhouse-server/config.xml")
CLICKHOUSE_USERS = Path("/etc/clickhouse-server/users.xml")


class ServerUnavailable(RuntimeError):
    """This machine cannot run the server: the message says exactly why."""


def _answers(port: int) -> bool:
    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)  # refusals expected
    try:
        from clickhouse_driver import Client

        Client(host="127.0.0.1", port=port, connect_timeout=1, send_receive_timeout=3).execute(
            "SELECT 1"
        )
        return True
    except Exception:
        return False


def _clickhouse_user() -> pwd.struct_passwd | None:
    """As root, the server runs as the package's ``clickhouse`` user (as
    deploy/ci/start-clickhouse-server.sh runs the shared one); otherwise as whoever runs
    the suite."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("clickhouse")
    except KeyError:
        raise ServerUnavailable("no 'clickhouse' user (the package's postinst makes it)") from None


class ClickHouseInstance:
    """A clickhouse-server of the suite's own: the packaged config with its ports, data,
    tmp and log paths moved under ``root``, run in the foreground as the ``clickhouse``
    user (as deploy/ci/start-clickhouse-server.sh runs the shared one)."""

    def __init__(self, root: Path, *, owned: bool = False) -> None:
        self.root = root
        self.owned = owned  # close() removes the root
        self.tcp_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def private(cls) -> ClickHouseInstance:
        """An instance in a directory of its own under the system's temporary directory,
        not under pytest's: pytest makes its ``pytest-of-<user>`` directory 0700 again
        whenever a session starts, which would hide this instance's config from the
        ``clickhouse`` user it runs as while another pytest session starts beside it."""
        return cls(Path(tempfile.mkdtemp(prefix="cxpulse-chaos-clickhouse-")), owned=True)

    @property
    def url(self) -> str:
        return f"clickhouse://default:@127.0.0.1:{self.tcp_port}/cxpulse_chaos"

    def _configure(self) -> Path:
        if not (os.access(CLICKHOUSE_BIN, os.X_OK) and CLICKHOUSE_CONFIG.is_file()):
            raise ServerUnavailable(
                f"{CLICKHOUSE_BIN} or {CLICKHOUSE_CONFIG} missing: apt-get install "
                "clickhouse-server (deploy/ci/start-clickhouse-server.sh)"
            )
        conf = self.root / "etc"
        data = self.root / "data"
        logs = self.root / "log"
        for d in (conf, data, data / "tmp", data / "user_files", data / "format_schemas", logs):
            d.mkdir(parents=True, exist_ok=True)
        self.tcp_port = free_port()
        text = CLICKHOUSE_CONFIG.read_text()
        subs = {
            r"<http_port>\d+</http_port>": f"<http_port>{free_port()}</http_port>",
            r"<tcp_port>\d+</tcp_port>": f"<tcp_port>{self.tcp_port}</tcp_port>",
            r"<interserver_http_port>\d+</interserver_http_port>": (
                f"<interserver_http_port>{free_port()}</interserver_http_port>"
            ),
            r"<listen_host>::1</listen_host>": "",
            r"<path>/var/lib/clickhouse/</path>": f"<path>{data}/</path>",
            r"<tmp_path>[^<]*</tmp_path>": f"<tmp_path>{data}/tmp/</tmp_path>",
            r"<user_files_path>[^<]*</user_files_path>": (
                f"<user_files_path>{data}/user_files/</user_files_path>"
            ),
            r"<format_schema_path>[^<]*</format_schema_path>": (
                f"<format_schema_path>{data}/format_schemas/</format_schema_path>"
            ),
            r"<log>[^<]*</log>": f"<log>{logs}/clickhouse-server.log</log>",
            r"<errorlog>[^<]*</errorlog>": f"<errorlog>{logs}/clickhouse-server.err.log</errorlog>",
        }
        for pattern, new in subs.items():
            text, n = re.subn(pattern, new, text)
            if not n and "listen_host" not in pattern:
                raise ServerUnavailable(f"{CLICKHOUSE_CONFIG} has no {pattern}: cannot relocate")
        (conf / "config.xml").write_text(text)
        shutil.copy(CLICKHOUSE_USERS, conf / "users.xml")
        ch = _clickhouse_user()
        if ch is None:
            return conf / "config.xml"  # not root: the server runs as this user
        for p in [self.root, *self.root.rglob("*")]:
            os.chown(p, ch.pw_uid, ch.pw_gid)
        # The parents must be traversable by the clickhouse user (tmp dirs are 0700).
        for parent in self.root.parents:
            if parent == Path("/"):
                break
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)
        return conf / "config.xml"

    def start(self, timeout: float = 90) -> ClickHouseInstance:
        config = self.root / "etc" / "config.xml"
        if not config.exists():
            config = self._configure()
        ch = _clickhouse_user()
        log = open(self.root / "log" / "stdout.log", "ab")  # noqa: SIM115 - the child's
        self.proc = subprocess.Popen(
            [CLICKHOUSE_BIN, f"--config-file={config}"],
            cwd=self.root / "data",
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=ch.pw_uid if ch else None,
            group=ch.pw_gid if ch else None,
            extra_groups=[] if ch else None,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not _answers(self.tcp_port):
            if self.proc.poll() is not None:
                raise ServerUnavailable(
                    f"clickhouse-server exited with {self.proc.returncode}: {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ServerUnavailable(f"clickhouse-server silent after {timeout}s")
            time.sleep(0.3)
        return self

    def stop(self, timeout: float = 60) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop the server and, for a private instance, remove its directories."""
        self.stop()
        if self.owned:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 5) -> str:
        out = []
        for name in ("stdout.log", "clickhouse-server.err.log"):
            with contextlib.suppress(OSError):
                out += (self.root / "log" / name).read_text(errors="replace").splitlines()[-lines:]
        return " | ".join(out)

    def rss_mib(self) -> float:
        return 0.0 if self.proc is None else _rss_mib(self.proc.pid)


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


#: Where the suite finds a local S3 server for the broker's storage: ``moto_server``
#: (``pip install "moto[server]"``, in a virtualenv of its own if you like) on PATH or
#: named by this variable. The bundled tansu offers no other persistent engine: its
#: ``postgres://`` and ``sqlite://`` engines are not compiled in (FeatureNotEnabled) and
#: ``file://`` is refused (UnsupportedStorageUrl).
MOTO_ENV = "CXPULSE_CHAOS_MOTO_SERVER"


class S3Server:
    """moto's S3 server on a loopback port with a ``tansu`` bucket: storage that outlives
    the broker (tansu's ``s3://`` engine)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str:
        found = os.environ.get(MOTO_ENV) or shutil.which("moto_server")
        if not found or not os.access(found, os.X_OK):
            raise ServerUnavailable(
                f"no local S3 server: set {MOTO_ENV} to a moto_server executable (pip install"
                ' "moto[server]") or put moto_server on PATH'
            )
        return found

    def start(self, timeout: float = 60) -> S3Server:
        import urllib.request

        binary = self.binary()
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        log = open(self.root / "moto.log", "ab")  # noqa: SIM115 - the child's
        self.proc = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                request = urllib.request.Request(f"{self.endpoint}/tansu", method="PUT")
                urllib.request.urlopen(request, timeout=2).close()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise ServerUnavailable(f"moto_server did not start: see {self.root}") from None
                time.sleep(0.3)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def broker_env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": "chaos",
            "AWS_SECRET_ACCESS_KEY": "chaos",
            "AWS_DEFAULT_REGION": "eu-west-2",
            "AWS_ALLOW_HTTP": "true",
        }

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
