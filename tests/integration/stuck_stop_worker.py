"""A real ``cxpulse worker`` whose stop never finishes by itself (fault injection for
tests): one more service of its app waits without end when asked to stop, as Faust does
for in-flight messages it cannot commit while Kafka is gone. Run as
``python -m tests.integration.stuck_stop_worker``."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from mode import Service

from cxpulse.streams import worker
from cxpulse.streams.settings import get_settings

_create_app = worker.create_app


def create_app(*args: Any, **kwargs: Any) -> faust.App:
    app = _create_app(*args, **kwargs)

    @app.service
    class NeverStops(Service):
        async def on_stop(self) -> None:
            await asyncio.sleep(3600)

    return app


def main() -> None:
    worker.create_app = create_app  # type: ignore[assignment]
    worker.run_worker(get_settings())


if __name__ == "__main__":
    main()
