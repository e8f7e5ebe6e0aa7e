"""The worker's HTTP pages: Prometheus /metrics, /livez, /readyz, /healthz,
loopback-only /query, and the cases API under /api/cases (``register_cases``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import faust.web

from cxpulse.sinks.writer import SinkWriter
from cxpulse.streams import metrics
from cxpulse.streams.kafka_config import aiokafka_config
from cxpulse.streams.readiness import KafkaProbe, probe_interval, readiness
from cxpulse.streams.readonly_sql import QueryError, QueryUnavailable
from cxpulse.streams.runtime import Runtime

LOOPBACK = {"127.0.0.1", "::1", "localhost"}
#: The largest /query request body (the SQL and the directory it is meant for).
MAX_QUERY_BODY = 256 * 1024


def health(rt: Runtime, now: float | None = None) -> tuple[dict[str, Any], int]:
    """The /healthz answer: (JSON body, HTTP status)."""
    body: dict[str, Any] = {"status": "ok", "app": rt.settings.app_id}
    failing = rt.writer.failing(now)
    if failing is not None:
        table, seconds, error = failing
        body["sink"] = {"table": table, "failing_seconds": round(seconds, 1), "error": error}
        if seconds >= rt.settings.health_sink_failing_seconds:
            body["status"] = "failing"
            body["reason"] = (
                f"inserts into {table} have failed for {seconds:.0f}s (retrying, nothing "
                f"lost; consumption paused): {error}"
            )
            return body, 503
    return body, 200


async def query_answer(
    writer: SinkWriter,
    own: str,
    port: int,
    remote: str | None,
    headers: Mapping[str, str],
    read_body: Callable[[], Awaitable[bytes]],
) -> tuple[dict[str, Any], int]:
    """The /query answer: (JSON body, HTTP status). ``own`` is this worker's ClickHouse
    (``cxpulse.streams.query.clickhouse_identity``), ``port`` its web port.

    Only ``cxpulse query`` on this machine gets an answer: a loopback peer, no ``Origin``
    but this worker's own (a web page's request always has one; a JSON body from another
    origin also needs a CORS preflight the worker never grants), a loopback ``Host``
    (against DNS rebinding), a JSON body naming the ClickHouse the query is meant for.
    """
    if remote not in LOOPBACK:
        return {"error": "the query endpoint answers loopback only"}, 403
    header: dict[str, list[str]] = {}
    for key, value in headers.items():  # every value of a repeated header counts
        header.setdefault(key.lower(), []).append(value)
    names = ("127.0.0.1", "localhost", "[::1]")
    for origin in header.get("origin", []):
        if origin.lower() not in {f"http://{n}:{port}" for n in names}:
            return {
                "error": f"cross-origin request refused (Origin {origin[:100]!r}): the query "
                "endpoint answers cxpulse query on this machine only"
            }, 403
    for host in header.get("host", []):
        if host.lower() not in {f"{n}:{port}" for n in names}:
            return {
                "error": f"request for host {host[:100]!r} refused: the query endpoint "
                f"answers 127.0.0.1:{port} only"
            }, 403
    content_types = header.get("content-type", [""])
    content_type = content_types[-1].split(";", 1)[0].strip().lower()
    if len(content_types) > 1:
        content_type = ""
    if content_type != "application/json":
        return {
            "error": "send Content-Type: application/json and a body "
            '{"sql": "SELECT ...", "clickhouse": "<the ClickHouse it is meant for>"} '
            "(cxpulse query does)"
        }, 415
    body = await read_body()
    if len(body) > MAX_QUERY_BODY:
        return {"error": f"request body over {MAX_QUERY_BODY} bytes: send a shorter query"}, 413
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("sql"), str)
        or not isinstance(doc.get("clickhouse"), str)
    ):
        return {
            "error": 'the body must be a JSON object {"sql": "SELECT ...", "clickhouse": '
            '"<the ClickHouse it is meant for>"} (cxpulse query sends that)'
        }, 400
    if not own.startswith("chdb://"):
        return {
            "error": f"this worker writes to {own}, not an embedded chDB directory: "
            "cxpulse query reads a ClickHouse server directly, not through a worker",
            "worker_clickhouse": own,
        }, 409
    if doc["clickhouse"] != own:
        return {
            "error": f"this worker has {own} open, not {doc['clickhouse'][:300]}: fix "
            "CXPULSE_CLICKHOUSE_URL or CXPULSE_WEB_PORT",
            "worker_clickhouse": own,
        }, 409
    try:
        columns, rows = await writer.query(doc["sql"])
    except QueryUnavailable as exc:
        return {"error": str(exc)}, 503
    except QueryError as exc:
        return {"error": str(exc)}, 400
    except Exception as exc:  # an unexpected failure: one line, never a traceback
        text = str(exc).strip()
        return {"error": (text.splitlines()[0] if text else type(exc).__name__)[:500]}, 500
    return {"columns": list(columns), "rows": [list(r) for r in rows]}, 200


def worker_started() -> bool:
    """Whether the worker has reached Faust's Ready: it sets
    ``cxpulse_worker_ready_seconds`` then (``cxpulse.streams.worker``), 0 until then."""
    return (metrics.REGISTRY.get_sample_value("cxpulse_worker_ready_seconds") or 0.0) > 0


def ready(
    rt: Runtime, probe: KafkaProbe, now: float | None = None, started: bool | None = None
) -> tuple[dict[str, Any], int]:
    """The /readyz answer: (JSON body, HTTP status); see ``cxpulse.streams.readiness``.
    ``started`` None: whether this worker has reached Ready."""
    return readiness(
        app_id=rt.settings.app_id,
        threshold=rt.settings.ready_unreachable_seconds,
        kafka=probe.unreachable(now),
        clickhouse=rt.writer.failing(now),
        kafka_where=rt.settings.kafka_url,
        started=worker_started() if started is None else started,
    )


def register(rt: Runtime) -> None:
    app, writer = rt.app, rt.writer

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        body, content_type = metrics.render()
        return web.bytes(body, content_type=content_type)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        """200 while the worker serves and its inserts succeed; 503 once inserts into a
        table have failed for ``health_sink_failing_seconds`` in a row (the worker keeps
        retrying and pausing consumption, losing nothing: the 503 is for operations).
        Kept as it was for existing monitors; probes use /livez and /readyz."""
        body, status = health(rt)
        return web.json(body, status=status)

    probe = KafkaProbe(
        rt.settings.bootstrap_servers,
        probe_interval(rt.settings.ready_unreachable_seconds),
        aiokafka_config(rt.settings),
    )
    metrics.KAFKA_UNREACHABLE_SECONDS.set_function(probe.unreachable_seconds)
    metrics.READY.set_function(lambda: float(ready(rt, probe)[1] == 200))

    @app.task
    async def kafka_readiness_probe() -> None:
        await probe.run()

    @app.page("/livez")
    async def livez(web: Any, request: Any) -> Any:
        """200 while the process serves HTTP: restart it only when this fails."""
        return web.json({"status": "alive", "app": rt.settings.app_id})

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        """503 until the worker is Ready, and while Kafka or ClickHouse has been
        unreachable for longer than ``ready_unreachable_seconds``, with a one-line
        ``reason``; 200 otherwise."""
        body, status = ready(rt, probe)
        return web.json(body, status=status)

    from cxpulse.streams.query import clickhouse_identity

    own = clickhouse_identity(rt.settings.clickhouse_url)
    port = rt.settings.web_port

    class QueryView(faust.web.View):
        """Read-only SQL for ``cxpulse query`` on this machine (``query_answer``): an
        embedded chDB directory can be open in one process only, so while a worker runs,
        reads go through it."""

        async def post(self, request: Any) -> Any:
            body, status = await query_answer(
                writer,
                own,
                port or _local_port(request),
                request.remote,
                request.headers,
                request.read,
            )
            text = json.dumps(body, default=str)
            return self.bytes(text.encode(), content_type="application/json", status=status)

    app.page("/query")(QueryView)


#: Seconds between the comment lines that keep an idle Server-Sent Events stream open.
SSE_KEEPALIVE_SECONDS = 15.0


def _json(view: Any, body: dict[str, Any], status: int) -> Any:
    text = json.dumps(body, default=str)
    return view.bytes(text.encode(), content_type="application/json", status=status)


#: The cases API's routes; /events before /{case_id}: routes match in the order they are
#: added.
CASE_ROUTES = (
    "/api/cases/events",
    "/api/cases",
    "/api/cases/{case_id}",
    "/api/cases/{case_id}/ack",
    "/api/cases/{case_id}/resolve",
)


def register_cases(rt: Runtime) -> None:
    """The cases API (``cxpulse.streams.cases.api``, docs/cases.md): list, show, ack,
    resolve, and the Server-Sent Events stream of case changes."""
    from aiohttp import web as aioweb

    from cxpulse.schemas.cases import CaseCommand
    from cxpulse.streams.cases import api

    app, feed, section = rt.app, rt.case_feed, rt.model.cases
    token = rt.settings.api_token

    async def send(command: CaseCommand) -> None:
        assert rt.case_commands is not None
        await rt.case_commands.send(key=command.subject.encode(), value=command.to_json_bytes())

    class CasesView(faust.web.View):
        async def get(self, request: Any) -> Any:
            refused = api.authorize(token, request.headers, request.query)
            if refused is not None:
                return _json(self, *refused)
            return _json(self, *api.list_answer(feed, request.query))

    class CaseEventsView(faust.web.View):
        """``event: case`` with the case's JSON on every change; a comment line every
        15 s keeps the connection open through proxies."""

        async def get(self, request: Any) -> Any:
            refused = api.authorize(token, request.headers, request.query, allow_query=True)
            if refused is not None:
                return _json(self, *refused)
            response = aioweb.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            await response.prepare(request)
            await response.write(b": cxpulse case changes\n\n")
            async with feed.subscribe() as queue:
                while True:
                    try:
                        case = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE_SECONDS)
                    except TimeoutError:
                        chunk = b": keep-alive\n\n"
                    else:
                        if case is None:  # the worker is stopping
                            break
                        chunk = b"event: case\ndata: " + case.model_dump_json().encode() + b"\n\n"
                    try:
                        await response.write(chunk)
                    except (ConnectionError, RuntimeError):
                        break
            return response

    class CaseView(faust.web.View):
        async def get(self, request: Any, case_id: str) -> Any:
            refused = api.authorize(token, request.headers, request.query)
            if refused is not None:
                return _json(self, *refused)
            return _json(self, *api.show_answer(feed, case_id))

    def command_view(command: str) -> type[faust.web.View]:
        class CommandView(faust.web.View):
            async def post(self, request: Any, case_id: str) -> Any:
                refused = api.authorize(token, request.headers, request.query)
                if refused is not None:
                    return _json(self, *refused)
                body = await request.content.read(api.MAX_BODY + 1)
                answer = await api.command_answer(
                    feed,
                    section,
                    send,
                    case_id,
                    command,
                    body,
                    rt.settings.cases_answer_seconds,
                )
                return _json(self, *answer)

        CommandView.__name__ = f"Case{command.title()}View"
        return CommandView

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def end_case_streams(app: Any, **kwargs: Any) -> None:
        feed.close()  # open streams end, so the web server stops at once

    views: tuple[type[faust.web.View], ...] = (
        CaseEventsView,
        CasesView,
        CaseView,
        command_view("ack"),
        command_view("resolve"),
    )
    for path, view in zip(CASE_ROUTES, views, strict=True):
        app.page(path)(view)


def register_cases_off(rt: Runtime) -> None:
    """The cases routes of a worker whose model switches cases off (``cases.enabled:
    false``): each answers 404 with one line saying so, so the CLI and the console say
    why there are no cases instead of failing on a missing route."""
    from cxpulse.streams.cases import api

    token = rt.settings.api_token

    class CasesOffView(faust.web.View):
        async def get(self, request: Any, case_id: str = "") -> Any:
            return _json(self, *api.switched_off(token, request.headers, request.query))

        post = get  # ack and resolve: the same answer

    for path in CASE_ROUTES:
        rt.app.page(path)(CasesOffView)


def _local_port(request: Any) -> int:
    """The port a request came in on (for ``web_port`` 0: a port the system picked)."""
    try:
        return int(request.transport.get_extra_info("sockname")[1])
    except (AttributeError, IndexError, TypeError, ValueError):
        return -1
