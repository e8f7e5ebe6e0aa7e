"""ClickHouse fixtures: the three backends the sink contract runs against.

- memory: ``cxpulse.sinks.memory.MemoryBackend``.
- chdb: embedded chDB in a temporary directory. chDB allows one directory per process,
  so the backend is opened per test module and closed at its end, leaving the process
  free for other modules' chDB directories.
- server: the ClickHouse server named by ``CXPULSE_TEST_CLICKHOUSE_URL`` (CI starts
  Debian's 18.16 with ``deploy/ci/start-clickhouse-server.sh`` and sets
  ``clickhouse://default:@127.0.0.1:9000/cxpulse_test``). Unset: skipped locally, but a
  failure when ``CI`` is set, because CI must never silently skip the server path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cxpulse.sinks.base import Backend

SERVER_URL_ENV = "CXPULSE_TEST_CLICKHOUSE_URL"


def clickhouse_server_url() -> str:
    """The test server's URL, or skip (locally) / fail (in CI) when none is configured."""
    url = os.environ.get(SERVER_URL_ENV, "").strip()
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(
            f"{SERVER_URL_ENV} is not set in CI: run deploy/ci/start-clickhouse-server.sh and "
            f"export {SERVER_URL_ENV}=clickhouse://default:@127.0.0.1:9000/cxpulse_test",
            pytrace=False,
        )
    pytest.skip(f"{SERVER_URL_ENV} not set (deploy/ci/start-clickhouse-server.sh starts one)")


@pytest.fixture(scope="module")
def chdb_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """chDB in a fresh temporary directory, for this test module."""
    from cxpulse.sinks.embedded import ChdbBackend

    directory: Path = tmp_path_factory.mktemp("chdb")
    backend = ChdbBackend(f"chdb://{directory}")
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture(scope="module")
def server_backend() -> Iterator[Backend]:
    """The test server, its database dropped first so every run starts empty."""
    from cxpulse.sinks.clickhouse import open_backend

    backend = open_backend(clickhouse_server_url())
    _drop_database(backend)
    try:
        yield backend
    finally:
        backend.close()


def _drop_database(backend: Backend) -> None:
    from cxpulse.sinks.native import NativeBackend

    assert isinstance(backend, NativeBackend)
    backend._run(f"DROP DATABASE IF EXISTS `{backend.database}`")


@pytest.fixture(params=["memory", "chdb", "server"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each ClickHouse backend in turn; the contract tests run on all three."""
    if request.param == "memory":
        from cxpulse.sinks.memory import MemoryBackend

        return MemoryBackend()
    return request.getfixturevalue(f"{request.param}_backend")
