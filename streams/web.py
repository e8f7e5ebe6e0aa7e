"""The worker's HTTP pages: Prometheus /metrics, /livez, /readyz, /healthz, and
loopback-only /query."""

from __future__ import annotations

import json
from typing import Any

import faust.web

from streams import metrics
from streams.readiness import KafkaProbe, probe_interval, readiness
from streams.readonly_sql import NotReadOnly, check_read_only
from streams.runtime import Runtime

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


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


def ready(rt: Runtime, probe: KafkaProbe, now: float | None = None) -> tuple[dict[str, Any], int]:
    """The /readyz answer: (JSON body, HTTP status); see ``streams.readiness``."""
    return readiness(
        app_id=rt.settings.app_id,
        threshold=rt.settings.ready_unreachable_seconds,
        kafka=probe.unreachable(now),
        clickhouse=rt.writer.failing(now),
        kafka_where=rt.settings.kafka_url,
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
        rt.settings.bootstrap_servers, probe_interval(rt.settings.ready_unreachable_seconds)
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
        """200 unless Kafka or ClickHouse has been unreachable for longer than
        ``ready_unreachable_seconds``; then 503 with a one-line ``reason``."""
        body, status = ready(rt, probe)
        return web.json(body, status=status)

    class QueryView(faust.web.View):
        """Read-only SQL for ``cxpulse query`` on this machine: an embedded chDB directory
        can be open in one process only, so while a worker runs, reads go through it."""

        async def post(self, request: Any) -> Any:
            if request.remote not in LOOPBACK:
                return self.json({"error": "the query endpoint answers loopback only"}, status=403)
            try:
                sql = check_read_only((await request.read()).decode())
                columns, rows = await writer.query(sql)
            except NotReadOnly as exc:
                return self.json({"error": str(exc)}, status=400)
            except Exception as exc:  # the query's own error, for the person who typed it
                return self.json({"error": str(exc).strip().splitlines()[0][:500]}, status=400)
            body = json.dumps(
                {"columns": list(columns), "rows": [list(r) for r in rows]}, default=str
            )
            return self.bytes(body.encode(), content_type="application/json")

    app.page("/query")(QueryView)
