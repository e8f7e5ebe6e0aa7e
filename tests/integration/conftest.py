"""ClickHouse fixtures: the three backends the sink contract runs against.

- memory: ``cxpulse.sinks.memory.MemoryBackend``.
- chdb: embedded chDB in a temporary directory. chDB allows one directory per process,
  so the backend is opened per test module and closed at its end, leaving the process
  free for other modules' chDB directories.
- server: the ClickHouse server named by ``CXPULSE_TEST_CLICKHOUSE_URL`` (CI starts
  Debian's 18.16 with ``deploy/ci/start-clickhouse-server.sh`` and sets
  ``clickhouse://default:@127.0.0.1:9000/cxpulse_test``). Unset: skipped locally, but a
  failure when ``CI`` is set, because CI must never silently skip the server path.

And ``browser``: a headless Chromium (Debian's chromium + chromium-driver, driven by
selenium) for the web-page tests; skipped locally when absent, a failure in CI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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


def server_database_url(database: str) -> str:
    """The test server's URL naming ``database`` instead (skip locally / fail in CI when
    no server is configured)."""
    parts = urlsplit(clickhouse_server_url())
    return urlunsplit(parts._replace(path=f"/{database}"))


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


# --- a headless browser ----------------------------------------------------------------

BROWSER_HOWTO = (
    "apt-get install chromium chromium-driver (or bash .ci/install-tools.sh), "
    "and pip install selenium (the dev extra)"
)


def require_tool(found: object, how: str) -> None:
    """Skip locally, fail in CI, with one line saying how to get the missing tool."""
    if found:
        return
    if os.environ.get("CI"):
        pytest.fail(how, pytrace=False)
    pytest.skip(how)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium driven by selenium (a ``selenium.webdriver.Chrome``), fresh for
    the test: its own profile, so sessionStorage and cookies start empty.

    Debian's ``chromium`` and ``chromium-driver`` (installed by ``.ci/install-tools.sh``),
    named by path so selenium never tries to download a driver. Missing: the test skips
    with the how-to locally and fails in CI. On a failure, the page's console messages and
    its HTML are in the assertion's output only if the test prints them (``page_dump``).
    """
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require_tool(None, f"selenium not installed: {BROWSER_HOWTO}")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    require_tool(chromium and driver, f"chromium or chromedriver not found: {BROWSER_HOWTO}")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(driver), log_output=str(tmp_path / "chromedriver.log"))
    chrome = webdriver.Chrome(options=options, service=service)
    try:
        yield chrome
    finally:
        chrome.quit()


def page_dump(driver: Any) -> str:
    """The page's console messages and HTML, for an assertion's message."""
    try:
        messages = [f"{m['level']} {m['message']}" for m in driver.get_log("browser")]
    except Exception as exc:  # a dead browser still deserves a readable failure
        messages = [f"(no console log: {exc})"]
    html = driver.page_source if driver.session_id else ""
    return "console:\n" + "\n".join(messages[-40:]) + "\n\nhtml:\n" + html[-4000:]
