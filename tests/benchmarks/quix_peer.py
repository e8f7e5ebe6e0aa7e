"""A Quix Streams peer of the cxpulse worker, for the pipeline benchmark.

``python -m tests.benchmarks.pipeline`` runs this module as a subprocess, in a Python that
has ``quixstreams`` (``pip install -e '.[bench]'``, or a separate virtualenv named by
``--peer-python``). It imports only the standard library and Quix Streams, never cxpulse.

The application does the streaming part of what the worker does, the idiomatic Quix way:

- reads the raw topic (500-event JSON arrays, as the Publisher SDK sends them);
- expands each array into its events;
- re-keys them by ``customer_id`` (``group_by``: a repartition topic, as the worker's
  validate step routes events to customer partitions);
- keeps per-customer State, with its changelog topic: a count, the last score, and the
  channels of the last five events;
- produces one JSON message per event to the output topic.

Every topic it uses besides the input (output, repartition, changelog) is created here,
before the application starts, with ``retention.ms`` and ``retention.bytes`` set: Quix
reads those two back to derive its internal topics' configs, and the bundled broker only
returns the configs a topic was created with.

When the first message is consumed, ``--out`` gets ``{"first": <unix time>, "pid": ...}``.
The benchmark times the rest by counting the output topic's records.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

RETENTION = {"retention.ms": str(7 * 24 * 3600 * 1000), "retention.bytes": "-1"}
OUTCOME_SCORE = {"success": 1.0, "abandoned": 0.5, "failure": 0.0}


def internal_topics(group: str, input_topic: str, operation: str) -> tuple[str, str]:
    """The repartition and changelog topic names Quix Streams 3.28 derives
    (``TopicManager._internal_name``) for ``group_by(operation)`` on ``input_topic``
    followed by a stateful step with the default store."""
    repartition = f"repartition__{group}--{input_topic}--{operation}"
    nested = repartition.replace(f"__{group}", "").replace("--", ".")
    changelog = f"changelog__{group}--{nested}--default"
    return repartition, changelog


def create_topics(broker: str, topics: dict[str, dict[str, str]], partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": broker})
    existing = set(admin.list_topics(timeout=10).topics)
    new = [
        NewTopic(name, num_partitions=partitions, replication_factor=1, config=config)
        for name, config in topics.items()
        if name not in existing
    ]
    if not new:
        return
    for name, future in admin.create_topics(new, operation_timeout=10).items():
        try:
            future.result(15)
        except Exception as exc:  # already there (a rerun) is fine, anything else is not
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise SystemExit(f"quix peer: cannot create topic {name}: {exc}") from None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--broker", required=True, help="host:port")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--group", required=True, help="consumer group (no '--' in it)")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--out", required=True, help="JSON file written at the first message")
    args = p.parse_args()

    from quixstreams import Application, State

    repartition, changelog = internal_topics(args.group, args.input, "customer_id")
    create_topics(
        args.broker,
        {
            args.output: RETENTION,
            repartition: RETENTION,
            changelog: {**RETENTION, "cleanup.policy": "compact"},
        },
        args.partitions,
    )

    app = Application(
        broker_address=args.broker,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel="WARNING",
    )
    source = app.topic(args.input, value_deserializer="json", key_deserializer="bytes")
    sink = app.topic(args.output, value_serializer="json", key_serializer="str")
    first: dict[str, float] = {}

    def expand(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not first:
            first["t"] = time.time()
            Path(args.out).write_text(json.dumps({"first": first["t"], "pid": os.getpid()}))
        return batch

    def update(event: dict[str, Any], state: State) -> dict[str, Any]:
        count = state.get("count", 0) + 1
        score = OUTCOME_SCORE.get(event.get("outcome", ""), 0.5)
        feedback = event.get("feedback") or {}
        if isinstance(feedback.get("rating"), int | float):
            score = float(feedback["rating"])
        recent = [*state.get("recent", []), event.get("channel")][-5:]
        state.set("count", count)
        state.set("score", score)
        state.set("recent", recent)
        return {
            "event_id": event.get("event_id"),
            "customer_id": event.get("customer_id"),
            "count": count,
            "last_score": score,
            "recent_channels": recent,
        }

    sdf = app.dataframe(source)
    sdf = sdf.apply(expand, expand=True)
    sdf = sdf.group_by("customer_id")
    sdf = sdf.apply(update, stateful=True)
    sdf.to_topic(sink)

    used = set(app._topic_manager.all_topics)  # what Quix registered, for the log
    missing = used - {args.input, args.output, repartition, changelog}
    if missing:
        print(f"quix peer: topics not created explicitly: {sorted(missing)}", flush=True)
    app.run()


if __name__ == "__main__":
    main()
