"""Where the sink writes: the ClickHouse URLs, parsed, and the read-only session's settings.

The backends (native.py, embedded.py) and the factory (clickhouse.py) take these; this
module imports none of them.

URLs (``CXPULSE_CLICKHOUSE_URL``):

- ``clickhouse://user:pass@host:9000/db`` — a ClickHouse server over the native protocol
  (clickhouse-driver). Defaults: user ``default``, empty password, port 9000, database
  ``cxpulse``. ``?secure=1`` for TLS, ``?connect_timeout=3`` (seconds).
- ``chdb:///absolute/dir`` — embedded chDB, its data in that directory.
  ``chdb:///./var/chdb`` (a path starting ``/./`` or ``/../``) is relative to the
  process's current directory. The database defaults to ``cxpulse``
  (``?database=name`` to change). chDB allows one directory per process, and one process
  per directory.
- ``memory://`` — the in-memory stand-in for tests.

``password`` (a ``SecretStr``, from ``CXPULSE_CLICKHOUSE_PASSWORD``) overrides the URL's.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import SecretStr

from .errors import SinkConfigError
from .urls import redact_url, split_password, with_password_mark

DEFAULT_DATABASE = "cxpulse"

#: The limits of every read-only query session (``open_read_only``, ``read_only()`` of a
#: backend): a query that runs longer, returns more or needs more memory is stopped by
#: ClickHouse with an error saying which limit it hit.
READ_ONLY_LIMITS: dict[str, Any] = {
    "max_execution_time": 10,
    "max_result_rows": 1_000_000,
    "max_result_bytes": 200_000_000,
    "result_overflow_mode": "throw",
    "max_memory_usage": 2_000_000_000,
}


def read_only_settings(**overrides: Any) -> dict[str, Any]:
    """The settings a read-only session is opened with: ``READ_ONLY_LIMITS`` (changed by
    ``overrides``) and ``readonly=1``, last. With readonly=1 in force for the session,
    ClickHouse refuses every write, DDL, ``SET``, ``SETTINGS`` clause (``readonly`` itself
    included) and table function that reaches outside (file, url, remote, s3, ...)."""
    settings = {**READ_ONLY_LIMITS, **overrides}
    settings.pop("readonly", None)
    settings["readonly"] = 1
    return settings


def query_param(url: str, name: str) -> str | None:
    values = parse_qs(urlsplit(url).query).get(name)
    return values[-1] if values else None


def redact(url: str) -> str:
    """The URL without its password (``user:***@``), for messages and logs."""
    return redact_url(url)


def parse_server_url(url: str, password: SecretStr | None = None) -> dict[str, Any]:
    """``clickhouse://`` URL → clickhouse-driver ``Client`` arguments plus ``database``.

    A password in the URL is split out first (``password`` overrides it), so whatever
    is wrong with the rest of the URL, the message quoting it holds no password.
    """
    url, url_password = split_password(url)
    if password is None and url_password is not None:
        password = SecretStr(url_password)
    shown = with_password_mark(url, url_password is not None)
    try:
        parts = urlsplit(url)
        port = parts.port or 9000
    except ValueError as exc:
        raise SinkConfigError(
            f"bad ClickHouse URL {shown!r} ({exc}): expected clickhouse://user:pass@host:9000/db"
        ) from None
    if not parts.hostname:
        raise SinkConfigError(
            f"ClickHouse URL {shown!r} names no host: expected clickhouse://user:pass@host:9000/db"
        )
    database = unquote(parts.path.lstrip("/")) or DEFAULT_DATABASE
    if "/" in database:
        raise SinkConfigError(f"ClickHouse URL {shown!r}: the path must be just the database name")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return {
        "host": parts.hostname,
        "port": port,
        "user": unquote(parts.username) if parts.username else "default",
        # Still a SecretStr: a frame's locals printed by a thread dump (Faust's kill -USR1)
        # must not show it. The backend unwraps it in the call that connects.
        "password": password if password is not None else SecretStr(""),
        "database": database,
        "secure": query.get("secure", "0").lower() in ("1", "true", "yes"),
        "connect_timeout": float(query.get("connect_timeout", 3)),
        "send_receive_timeout": float(query.get("send_receive_timeout", 60)),
    }


def parse_chdb_url(url: str) -> tuple[str, str]:
    """``chdb://`` URL → (directory, database).

    ``chdb:///abs/dir`` is absolute; ``chdb:///./dir`` and ``chdb:///../dir`` are
    relative to the current directory (the settings default ``chdb:///./var/chdb`` thus
    follows the directory the worker is started in).
    """
    parts = urlsplit(url)
    if parts.netloc:
        raise SinkConfigError(
            f"chDB URL {redact(url)!r} has a host part: write chdb:///absolute/dir or "
            f"chdb:///./relative/dir (three slashes)"
        )
    path = unquote(parts.path)
    if path.startswith(("/./", "/../")) or path in ("/.", "/.."):
        path = path[1:]
    if not path or path == "/":
        raise SinkConfigError(
            f"chDB URL {redact(url)!r} names no directory: e.g. chdb:///./var/chdb"
        )
    database = query_param(url, "database") or DEFAULT_DATABASE
    return path, database
