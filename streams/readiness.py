"""Is this worker able to do its job right now? What ``/readyz`` answers.

A worker is *ready* unless Kafka or ClickHouse has been unreachable for longer than
``CXPULSE_READY_UNREACHABLE_SECONDS`` (30 s by default: long enough to ride out a broker
leader election or a ClickHouse restart without flapping, short enough for an
orchestrator to notice a real outage).

- **ClickHouse**: the sink writer's failing run (``SinkWriter.failing``): how long the
  inserts into a table have failed without a success between. A worker with nothing to
  insert does not probe ClickHouse: it is not unreachable for it until it needs it.
- **Kafka**: the time since the brokers last answered a metadata request of this
  worker's Kafka probe, ``KafkaProbe``: an aiokafka admin client of its own
  (``describe_cluster``, every ``interval`` seconds, each with a timeout of the same
  length). Why a probe rather than a state Faust or aiokafka keeps: Faust's consumer
  runs on a thread of its own with its own event loop, and what aiokafka records about
  its connections (``AIOKafkaClient._conns``, ``ClusterMetadata``'s last refresh, the
  fetcher's per-node state) is private, refreshed only every ``metadata_max_age_ms``
  (5 min) when all is well, and changes between releases. A metadata request answered
  over the same network, with the same bootstrap servers, is public API
  (``AIOKafkaAdminClient.describe_cluster``) and says what readiness means: the
  brokers answer this process. It costs one small request per interval.

Nothing here stops or pauses the worker: it keeps retrying either side (nothing is lost);
readiness is what operations and orchestrators see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

log = logging.getLogger(__name__)


def one_line(exc: BaseException) -> str:
    """An exception as one short line, its type named once."""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


def probe_interval(threshold: float) -> float:
    """Seconds between Kafka probes: a third of the threshold (so a red answer is late by
    at most a third of it), between 0.5 and 5 s."""
    return max(0.5, min(5.0, threshold / 3))


class KafkaProbe:
    """Asks the brokers for metadata every ``interval`` s and remembers the last answer."""

    def __init__(
        self,
        bootstrap_servers: list[str],
        interval: float,
        client_config: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        #: aiokafka keywords beyond the servers: the worker's TLS and SASL settings
        self.client_config = {
            k: v for k, v in (client_config or {}).items() if k != "bootstrap_servers"
        }
        self.interval = interval
        #: monotonic time of the last answer (of the probe's start, before the first)
        self.last_ok = time.monotonic()
        #: the last failure, one line ('' after an answer)
        self.error = ""
        self.answered = False

    def unreachable(self, now: float | None = None) -> tuple[float, str] | None:
        """(seconds since the brokers last answered, last error), or None when the latest
        probe was answered."""
        if not self.error:
            return None
        return (time.monotonic() if now is None else now) - self.last_ok, self.error

    def unreachable_seconds(self) -> float:
        found = self.unreachable()
        return found[0] if found else 0.0

    async def probe_once(self, admin: Any) -> bool:
        """One metadata request; True when the brokers answered."""
        try:
            await asyncio.wait_for(admin.describe_cluster(), self.interval)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = one_line(exc)
            if not self.error:
                log.warning(
                    "Kafka at %s did not answer the readiness probe: %s",
                    ",".join(self.bootstrap_servers),
                    error,
                )
            self.error = error
            return False
        if self.error and self.answered:
            log.info("Kafka answers the readiness probe again")
        self.last_ok, self.error, self.answered = time.monotonic(), "", True
        return True

    async def run(self) -> None:
        """Probe until cancelled (the worker stopping)."""
        from aiokafka.admin import AIOKafkaAdminClient

        admin: Any = None
        try:
            while True:
                if admin is None:
                    admin = AIOKafkaAdminClient(
                        bootstrap_servers=self.bootstrap_servers,
                        **self.client_config,
                        client_id="cxpulse-readiness",
                        request_timeout_ms=max(500, int(self.interval * 1000)),
                    )
                    try:
                        await asyncio.wait_for(admin.start(), self.interval)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # not even bootstrapped: try afresh next time
                        with contextlib.suppress(Exception):
                            await admin.close()
                        admin = None
                        if not self.error:
                            log.warning("Kafka readiness probe cannot connect: %r", exc)
                        self.error = f"cannot connect: {one_line(exc)}"
                        await asyncio.sleep(self.interval)
                        continue
                if not await self.probe_once(admin):
                    # bootstrap afresh next time: the cached brokers may have moved
                    with contextlib.suppress(Exception):
                        await admin.close()
                    admin = None
                await asyncio.sleep(self.interval)
        finally:
            if admin is not None:
                with contextlib.suppress(Exception):
                    await admin.close()


def readiness(
    *,
    app_id: str,
    threshold: float,
    kafka: tuple[float, str] | None,
    clickhouse: tuple[str, float, str] | None,
    kafka_where: str = "",
    started: bool = True,
) -> tuple[dict[str, Any], int]:
    """The /readyz answer: (JSON body, HTTP status). ``kafka`` is the probe's
    ``unreachable()``, ``clickhouse`` the sink writer's ``failing()``, ``started`` whether
    the worker has reached Faust's Ready (its web server answers seconds before: while it
    joins its group and recovers its tables, it is not ready)."""
    body: dict[str, Any] = {"status": "ready", "app": app_id, "threshold_seconds": threshold}
    reasons = []
    if not started:
        reasons.append(
            "the worker is starting (joining its consumer group, recovering its tables): "
            "ready once its log says 'ready N s after the worker process started'"
        )
    if kafka is not None:
        seconds, error = kafka
        body["kafka"] = {"unreachable_seconds": round(seconds, 1), "error": error}
        if seconds > threshold:
            reasons.append(
                f"Kafka{' at ' + kafka_where if kafka_where else ''} has not answered for "
                f"{seconds:.0f}s ({error}): check the brokers and CXPULSE_KAFKA_URL"
            )
    if clickhouse is not None:
        table, seconds, error = clickhouse
        body["clickhouse"] = {"table": table, "failing_seconds": round(seconds, 1), "error": error}
        if seconds > threshold:
            reasons.append(
                f"inserts into {table} have failed for {seconds:.0f}s ({error}): check "
                "ClickHouse; the worker retries and loses nothing"
            )
    if reasons:
        body["status"] = "unready" if started else "starting"
        body["reason"] = "; ".join(reasons)
        return body, 503
    return body, 200
