"""``cxpulse publish`` as a user runs it, on the bundled broker: bounded memory whatever
the input, exit status 1 when some input was rejected, and an empty file said as such."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cxpulse.streams.dev.broker import EmbeddedBroker
from cxpulse.streams.publisher import InputError, publish_source
from cxpulse.streams.settings import Settings, load_settings

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]
#: Peak RSS allowed to `cxpulse publish` on a 100 MB item (interpreter, pydantic, kafka
#: and a bounded read window fit in well under this; reading the item whole does not).
RSS_BOUND_KB = 300 * 1024

# Runs the CLI in-process, then prints the process's peak resident set (VmHWM) from
# /proc: the high-water mark, read once at the end, so no sampling and no timing.
RUN_AND_REPORT_HWM = """
import sys
from cxpulse.streams.cli import main
sys.argv = ["cxpulse", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
with open("/proc/self/status") as status:
    hwm = next(line for line in status if line.startswith("VmHWM:"))
print("HWM", int(hwm.split()[1]), file=sys.stderr)
sys.exit(code)
"""


def event(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "occurred_at": "2026-11-20T09:30:00+00:00",
        "customer_id": "C-1",
        "channel": "web",
        "touchpoint": "web.login",
        "journey_stage": "post_purchase",
        "outcome": "success",
    }
    doc.update(overrides)
    return doc


@pytest.fixture
def settings(kafka_broker: EmbeddedBroker, unique_topic: Callable[[str], str]) -> Settings:
    return load_settings(kafka_url=kafka_broker.url, topic_prefix=unique_topic("b"), partitions=2)


def publish(settings: Settings, path: Path) -> tuple[int, str, str, int]:
    """``cxpulse publish PATH``: exit status, stdout, stderr, peak RSS in KiB."""
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        CXPULSE_KAFKA_URL=settings.kafka_url,
        CXPULSE_TOPIC_PREFIX=settings.topic_prefix,
        CXPULSE_PARTITIONS=str(settings.partitions),
    )
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT_HWM, "publish", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    lines = done.stderr.splitlines()
    assert lines and lines[-1].startswith("HWM "), done.stderr
    return done.returncode, done.stdout, "\n".join(lines[:-1]), int(lines[-1].split()[1])


def write_big(path: Path, head: bytes, size: int, tail: bytes) -> None:
    """``head`` + ``size`` bytes of 'x' + ``tail``, written without holding it all."""
    block = b"x" * (1 << 20)
    with path.open("wb") as f:
        f.write(head)
        for _ in range(size // len(block)):
            f.write(block)
        f.write(b"x" * (size % len(block)))
        f.write(tail)


@pytest.mark.parametrize("shape", ["jsonl", "array"])
def test_a_100_mb_item_without_newline_is_rejected_with_memory_bounded(
    settings: Settings, tmp_path: Path, shape: str
) -> None:
    good = json.dumps(event()).encode()
    path = tmp_path / f"big.{shape}"
    size = 100 * 1024 * 1024
    if shape == "jsonl":  # one good line, then one line of 100 MB that never ends
        write_big(path, good + b'\n{"attributes": {"a": "', size, b'"}}')
    else:  # an array whose second item is 100 MB on the same line
        write_big(path, b"[" + good + b', {"attributes": {"a": "', size, b'"}}, ' + good + b"]")
    code, out, err, hwm_kb = publish(settings, path)
    assert code == 1, (out, err)
    sent = 1 if shape == "jsonl" else 2
    assert f"sent {sent} events" in out, out
    big = size + len(b'{"attributes": {"a": "') + len(b'"}}')
    assert f"  line {2 if shape == 'jsonl' else 1}: {big:,} bytes, over the 8 MiB" in out, out
    assert f"1 of {sent + 1} events were rejected" in err and f"{sent} were sent" in err, err
    assert hwm_kb < RSS_BOUND_KB, f"peak RSS {hwm_kb} KiB"


def test_publish_exits_1_when_some_lines_were_rejected_and_says_how_many(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join([json.dumps(event()), "{broken", json.dumps(event(channel="fax"))]) + "\n"
    )
    code, out, err, _ = publish(settings, path)
    assert code == 1
    assert out.startswith("sent 1 events in 1 message")
    assert err.strip() == (
        f"cxpulse: 2 of 3 events were rejected (listed above, not sent); 1 were sent to "
        f"{settings.topic_prefix}.touchpoints. Fix the rejected lines and publish them "
        "again (events already sent are deduplicated by event_id)"
    )


def test_publish_of_only_valid_events_exits_0(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "good.jsonl"
    path.write_text(json.dumps(event()) + "\n")
    code, out, err, _ = publish(settings, path)
    assert (code, err) == (0, "")
    assert out.startswith("sent 1 events")


def test_an_empty_file_says_it_has_no_events(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(InputError) as err:
        publish_source(path, settings, progress=False)
    assert err.value.message == (
        f"{path} is empty: it holds no events (expected JSON Lines or a JSON array of "
        "events); nothing was sent"
    )
