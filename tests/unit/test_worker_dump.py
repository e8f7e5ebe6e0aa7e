"""The worker's ``kill -USR1`` dump (``cxpulse.streams.dump``): every thread and task with
its locals, bounded, and carried through a local whose ``repr`` raises (Faust's own dump
ended the worker on one: a chDB result read mid-query on a sink thread)."""

from __future__ import annotations

import asyncio
import io
import threading

from cxpulse.streams.dump import dump


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff")


def test_the_dump_shows_every_thread_and_task_through_a_local_that_cannot_be_shown() -> None:
    parked, release = threading.Event(), threading.Event()

    def sink_thread() -> None:
        result = Unprintable()  # noqa: F841 (a local the dump shows)
        big = {f"customer-{i}": b"x" * 2_500 for i in range(50_000)}  # noqa: F841
        parked.set()
        release.wait(30)

    async def agent() -> None:
        failing = Unprintable()  # noqa: F841
        await asyncio.sleep(30)

    async def main() -> str:
        task = asyncio.create_task(agent(), name="agent")
        await asyncio.sleep(0)
        out = io.StringIO()
        dump(out)
        task.cancel()
        return out.getvalue()

    thread = threading.Thread(target=sink_thread, name="cxpulse-sink_0")
    thread.start()
    try:
        assert parked.wait(30)
        text = asyncio.run(main())
    finally:
        release.set()
        thread.join()

    assert "THREAD cxpulse-sink_0" in text and "THREAD MainThread" in text
    assert "in sink_thread" in text and "release.wait(30)" in text
    assert text.count("result = <Unprintable instance at 0x") == 1
    assert "in agent" in text and "failing = <Unprintable instance at 0x" in text
    assert "TASKS" in text and "name='agent'" in text
    big = next(line for line in text.splitlines() if line.strip().startswith("big = "))
    assert "'customer-0'" in big and big.rstrip().endswith("...}") and len(big) < 4_000
    assert len(text) < 200_000  # 125 MB of states are not printed
