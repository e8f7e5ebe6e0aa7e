"""Opening a ClickHouse backend by its URL: a server (native.py), embedded chDB
(embedded.py) or the in-memory stand-in (memory.py). The URLs and their forms are in
targets.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from .base import Backend
from .errors import SinkConfigError
from .targets import (
    DEFAULT_DATABASE,
    parse_chdb_url,
    parse_server_url,
    query_param,
    read_only_settings,
    redact,
)

if TYPE_CHECKING:
    from .embedded import ChdbBackend, ChdbReader
    from .native import NativeBackend, NativeReader


def open_backend(
    url: str, password: SecretStr | None = None
) -> NativeBackend | ChdbBackend | Backend:
    """Open the backend a URL names, checking at once that it answers.

    Raises ``SinkConfigError`` for a bad URL or credentials and ``SinkUnavailable`` when
    the server cannot be reached (or the chDB directory is in use by another process).
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "clickhouse":
        from .native import NativeBackend

        return NativeBackend(url, password)
    if scheme == "chdb":
        from .embedded import ChdbBackend

        return ChdbBackend(url)
    if scheme == "memory":
        from .memory import MemoryBackend

        return MemoryBackend(url, database=query_param(url, "database") or DEFAULT_DATABASE)
    raise SinkConfigError(
        f"unsupported ClickHouse URL {redact(url)!r}: use clickhouse://user:pass@host:9000/db "
        "for a server or chdb:///path/to/dir for embedded chDB"
    )


def open_read_only(
    url: str, password: SecretStr | None = None, **limits: Any
) -> NativeReader | ChdbReader:
    """A read-only query session on the ClickHouse a URL names, and nothing else: no
    connection that could write is opened (see ``read_only_settings``; ``limits``
    override ``READ_ONLY_LIMITS``). For ``chdb://`` the directory must exist and not be in
    use by another process; it is not created."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "clickhouse":
        from .native import NativeReader

        cfg = parse_server_url(url, password)
        database = cfg.pop("database")
        return NativeReader(cfg, database, read_only_settings(**limits))
    if scheme == "chdb":
        from .embedded import ChdbReader

        path, database = parse_chdb_url(url)
        return ChdbReader(path, database, read_only_settings(**limits), must_exist=True)
    raise SinkConfigError(
        f"no read-only query session for {redact(url)!r}: use clickhouse://user@host:9000/db "
        "for a server or chdb:///path/to/dir for embedded chDB"
    )
