"""The worker's HTTP pages: Prometheus /metrics, /healthz, and loopback-only /query."""

from __future__ import annotations

import json
from typing import Any

import faust.web

from streams import metrics
from streams.readonly_sql import NotReadOnly, check_read_only
from streams.runtime import Runtime

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def register(rt: Runtime) -> None:
    app, writer = rt.app, rt.writer

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        body, content_type = metrics.render()
        return web.bytes(body, content_type=content_type)

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok", "app": rt.settings.app_id})

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
