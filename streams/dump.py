"""The worker's dump on ``kill -USR1``: every thread's stack, then every asyncio task's,
each frame with its local variables.

It replaces Faust's own (``mode``'s), which prints locals with their full ``repr``: one
whose ``repr`` raises ended the worker (a chDB result read on a sink thread in the middle
of a query raised ``UnicodeDecodeError``), and a large one (the state cache) prints
megabytes. Here a local is shown through ``reprlib``: cut to a bounded length, and one
whose ``repr`` fails shows as ``<Type instance at 0x...>``. A dump is a debugging aid: it
shows what it can and never stops the worker.
"""

from __future__ import annotations

import asyncio
import linecache
import reprlib
import sys
import threading
import traceback
from collections.abc import Iterable
from types import FrameType, TracebackType
from typing import IO, cast

from mode.utils.tracebacks import Traceback


class Shown(reprlib.Repr):
    """``reprlib`` cuts ``str`` values to ``maxstring``: so are ``bytes`` here (a state's
    msgpack, a Kafka message), not shown whole as any other object up to ``maxother``."""

    def repr_bytes(self, value: bytes, level: int) -> str:
        return self.repr_str(value, level)  # type: ignore[arg-type]


#: How a local is shown: long enough for the settings' ``repr`` (secrets show as
#: ``SecretStr('**********')``), bounded for a cache of 50,000 states.
SHOW = Shown()
SHOW.maxstring = 160
SHOW.maxother = 4000
SHOW.maxlevel = 3
SHOW.maxdict = SHOW.maxlist = SHOW.maxtuple = SHOW.maxset = 12

#: The deepest await chain shown for a task.
TASK_FRAMES = 32

RULE = "=" * 49


def dump(file: IO[str]) -> None:
    """Print every thread's stack and every task of the running loop to ``file``."""
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        print(f"THREAD {names.get(ident, ident)}", file=file)
        print(RULE, file=file)
        print_frames(reversed(list(traceback.walk_stack(frame))), file)
    print("TASKS", file=file)
    print(RULE, file=file)
    for task in asyncio.all_tasks():
        print(f"TASK {task!r}", file=file)
        chain = Traceback.from_task(task, limit=TASK_FRAMES)  # the task's await chain
        print_frames(traceback.walk_tb(cast(TracebackType, chain)), file)
    file.flush()


def print_frames(frames: Iterable[tuple[FrameType, int]], file: IO[str]) -> None:
    for frame, lineno in frames:
        code = frame.f_code
        print(f'  File "{code.co_filename}", line {lineno}, in {code.co_name}', file=file)
        line = linecache.getline(code.co_filename, lineno).strip()
        if line:
            print(f"    {line}", file=file)
        for name, value in dict(frame.f_locals).items():
            print(f"      {name} = {SHOW.repr(value)}", file=file)
