"""The live operations console: ``GET /console`` (one HTML page shipped in the package,
``streams/data/console.html``) and the case stream it listens to,
``GET /api/cases/events`` (Server-Sent Events).

- Auth: the API token (``CXPULSE_API_TOKEN``) as ``Authorization: Bearer`` or, because a
  browser's ``EventSource`` and an address typed into it cannot send headers, as
  ``?token=``; compared in constant time. No token configured: 401 naming the setting.
  The worker's web server keeps no access log (Faust's aiohttp runner has
  ``access_log=None``), so a ``?token=`` is never written to a log; the page moves it into
  ``sessionStorage`` and out of the address bar at once.
- ``/console`` without a valid token answers 401 with a small sign-in form (the token in a
  password field); the console itself lists open and acknowledged cases by severity and
  deadline and acts on them through ``/api/cases``.
- The stream: every case change (``event: case``, ``data: <Case JSON>``), a comment line
  every ``KEEPALIVE_SECONDS``. Each worker tails the case-change topic from its end, so
  any worker's stream carries every change, whichever worker made it; a subscriber too
  slow to take ``QUEUE_SIZE`` changes is disconnected (its EventSource reconnects and the
  page reloads the list) rather than holding memory or the tail back.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any

from pydantic import SecretStr

log = logging.getLogger(__name__)

#: Seconds between the stream's keep-alive comment lines.
KEEPALIVE_SECONDS = 15.0
#: Case changes a subscriber may have waiting before it is disconnected.
QUEUE_SIZE = 1000
#: The EventSource's reconnect delay, sent at the start of every stream.
RETRY_MS = 3000

_END = object()


class CaseBroadcaster:
    """Hands every case change to every open stream of this worker (in-process, on the
    event loop: ``publish`` never blocks and never waits for a slow subscriber)."""

    def __init__(self, queue_size: int = QUEUE_SIZE) -> None:
        self._queue_size = queue_size
        self._subscribers: set[asyncio.Queue[Any]] = set()
        self.closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[asyncio.Queue[Any]]:
        """A queue of the changes published from now on (dicts), ending with ``_END``
        when the subscriber fell behind or the worker stops."""
        queue: asyncio.Queue[Any] = asyncio.Queue(self._queue_size + 1)
        if self.closed:
            queue.put_nowait(_END)
        else:
            self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def publish(self, case: Mapping[str, Any]) -> None:
        for queue in list(self._subscribers):
            if queue.qsize() >= self._queue_size:
                self._subscribers.discard(queue)  # too slow: end its stream
                queue.put_nowait(_END)
            else:
                queue.put_nowait(case)

    def close(self) -> None:
        """End every stream (the worker is stopping: no stream may hold its stop up)."""
        self.closed = True
        for queue in list(self._subscribers):
            self._subscribers.discard(queue)
            queue.put_nowait(_END)


def case_change(value: bytes | None) -> dict[str, Any] | None:
    """The case in one message of the case-change topic, or None for anything else
    (skipped, never fatal). A message is a change (``{"change": ..., "case": {...}}``,
    ``schemas/cases.py``'s ``CaseChange``) or the case itself; a case is a JSON object
    with a string ``case_id`` and an integer ``version``."""
    if not value:
        return None
    try:
        doc = json.loads(value)
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("case"), dict):
        doc = doc["case"]
    if not isinstance(doc, dict) or not isinstance(doc.get("case_id"), str):
        return None
    if not isinstance(doc.get("version"), int):
        return None
    return doc


# --- auth ---------------------------------------------------------------------------


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("Authorization") or headers.get("authorization")
    if not value:
        return None
    scheme, _, credential = value.partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else None


def refusal(
    token: SecretStr | None, headers: Mapping[str, str], query: Mapping[str, str]
) -> str | None:
    """None when the request carries the API token (bearer header or ``?token=``), else
    the one-line reason to answer 401 with. The token is compared in constant time."""
    if token is None:
        return (
            "no API token is configured on this worker: set CXPULSE_API_TOKEN (16+ "
            "characters) and send it as Authorization: Bearer <token> or ?token=<token>"
        )
    given = _bearer(headers) or query.get("token")
    if not given:
        return "send the API token (CXPULSE_API_TOKEN) as Authorization: Bearer <token>"
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        return "the API token was refused: send the worker's CXPULSE_API_TOKEN"
    return None


# --- the page -----------------------------------------------------------------------

SIGN_IN = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>cxpulse console: sign in</title>
<style>
  body { font: 16px/1.45 system-ui, sans-serif; max-width: 32rem; margin: 3rem auto; }
  body { padding: 0 1rem; }
  input, button { font: inherit; padding: .3rem .5rem; }
  .error { color: #b00020; font-weight: 600; }
</style>
</head>
<body>
<h1>cxpulse console</h1>
<p class="error" id="why">__REASON__</p>
<form method="get" action="/console">
  <label for="token">API token (CXPULSE_API_TOKEN)</label><br>
  <input id="token" name="token" type="password" required autocomplete="off" autofocus>
  <button type="submit">Open the console</button>
</form>
<script>
"use strict";
// A token kept from this tab's console (a reload) opens it again; a refused one is dropped.
(function () {
  var KEY = "cxpulse.console.token";
  if (new URLSearchParams(location.search).has("token")) { sessionStorage.removeItem(KEY); return; }
  var kept = sessionStorage.getItem(KEY);
  if (kept) location.replace("/console?token=" + encodeURIComponent(kept));
})();
</script>
</body>
</html>
"""


def _csp(html: str) -> str:
    """A Content-Security-Policy allowing exactly the page's inline script and style (by
    their hashes), requests to this worker only, and no framing (the buttons act)."""

    def hashes(tag: str) -> str:
        found = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
        return " ".join(
            "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
            for s in found
        )

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


@cache
def console_html() -> str:
    """The console page, read once from the package (``streams/data/console.html``)."""
    return (resources.files("cxpulse.streams") / "data" / "console.html").read_text("utf-8")


def page_headers(html: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": _csp(html),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def sign_in_html(reason: str) -> str:
    from html import escape

    return SIGN_IN.replace("__REASON__", escape(reason))


# --- the stream -----------------------------------------------------------------------


def sse_case(case: Mapping[str, Any]) -> bytes:
    """One ``event: case`` of the stream (the JSON on one ``data:`` line)."""
    data = json.dumps(case, separators=(",", ":"), default=str)
    return f"event: case\ndata: {data}\n\n".encode()


async def stream(
    request: Any, broadcaster: CaseBroadcaster, keepalive: float = KEEPALIVE_SECONDS
) -> Any:
    """Serve ``/api/cases/events`` to one client until it goes or the worker stops."""
    from aiohttp import web as aioweb

    response = aioweb.StreamResponse(
        status=200,
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # a proxy in front (nginx) must not buffer it
        },
    )
    with broadcaster.subscribe() as queue:
        await response.prepare(request)
        try:
            await response.write(f"retry: {RETRY_MS}\n: connected\n\n".encode())
            while True:
                try:
                    case = await asyncio.wait_for(queue.get(), keepalive)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if case is _END:
                    break
                await response.write(sse_case(case))
        except ConnectionError:
            pass  # the client went away
    return response


async def tail(
    client_config: Mapping[str, Any],
    topic: str,
    broadcaster: CaseBroadcaster,
    started: asyncio.Event | None = None,
) -> None:
    """Publish every change on the case-change topic to ``broadcaster``, from the
    topic's end at start (``client_config``: aiokafka's keywords, bootstrap servers and
    security) (a page loads the list itself, then follows the stream). No
    consumer group: every worker reads every partition, commits nothing, takes nothing
    from anyone. Runs until cancelled; a message that is not a case is skipped."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        **dict(client_config),
        enable_auto_commit=False,
        fetch_max_wait_ms=200,
        client_id="cxpulse-console-tail",
    )
    await consumer.start()
    try:
        partitions: set[int] | None = None
        while not partitions:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:  # the topic is made at the worker's start: wait for it
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.5)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the end now, so nothing published from here is missed
            await consumer.position(tp)
        if started is not None:
            started.set()
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    case = case_change(record.value)
                    if case is None:
                        log.warning(
                            "console: skipped a message on %s that is not a case (partition "
                            "%d, offset %d)",
                            topic,
                            record.partition,
                            record.offset,
                        )
                        continue
                    broadcaster.publish(case)
    finally:
        await consumer.stop()


# --- the worker's pages ----------------------------------------------------------------


def register(rt: Any) -> CaseBroadcaster:
    """``/console`` and ``/api/cases/events`` on the worker's web server, and the task
    tailing the case-change topic into the streams (a ``cxpulse.streams.runtime.Runtime``)."""
    import faust.web

    from cxpulse.streams import topics
    from cxpulse.streams.kafka_config import aiokafka_config

    app, settings = rt.app, rt.settings
    broadcaster = CaseBroadcaster()

    def unauthorized(web: Any, reason: str) -> Any:
        return web.json({"error": reason}, status=401, headers={"Cache-Control": "no-store"})

    @app.page("/console")
    async def console_page(web: Any, request: Any) -> Any:
        """The live operations console (HTML); a sign-in form (401) without the token."""
        reason = refusal(settings.api_token, request.headers, request.query)
        if reason is not None:
            html = sign_in_html(reason)
            return web.html(html, status=401, headers=page_headers(html))
        html = console_html()
        return web.html(html, headers=page_headers(html))

    class CaseEvents(faust.web.View):
        """Server-Sent Events: every case change as ``event: case``."""

        async def get(self, request: Any) -> Any:
            reason = refusal(settings.api_token, request.headers, request.query)
            if reason is not None:
                return unauthorized(self, reason)
            return await stream(request, broadcaster)

    app.page("/api/cases/events")(CaseEvents)

    @app.task
    async def console_case_tail() -> None:
        """The tail, restarted after a failure: the console never stops the worker."""
        delay = 1.0
        while True:
            try:
                await tail(aiokafka_config(settings), topics.cases(settings), broadcaster)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "console: reading %s failed (%s: %s); the live streams miss changes "
                    "until it is read again in %.0fs",
                    topics.cases(settings),
                    type(exc).__name__,
                    str(exc).splitlines()[0][:300] if str(exc) else "",
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    @app.on_before_shutdown.connect
    async def end_case_streams(app: Any, **kwargs: Any) -> None:
        broadcaster.close()  # open streams end, so the web server stops at once

    return broadcaster
