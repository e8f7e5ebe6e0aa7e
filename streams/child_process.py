"""The worker's helper processes: spawned, one at a time, ended with the worker.

A worker moves CPU work that would hold its event loop into a child of its own (the
sentiment of feedback texts: ``cxpulse.streams.sentiment``; a take's rows made into the
sink's batches: ``cxpulse.streams.pipeline.rows_process``). Each is a
``ProcessPoolExecutor`` of one process, spawned (a clean interpreter, not a fork of a
process with threads), that ends by itself once the worker is gone, however it ended.
``ChildProcess`` is what the steps' helpers share: the pool, a new one in place of one
that died, the pids, the close.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import Any

log = logging.getLogger(__name__)

#: How often a child checks that the worker that started it is still there.
PARENT_CHECK_SECONDS = 0.5
#: prctl(2)'s option that sets the calling thread's name (the main thread's is the
#: process's).
PR_SET_NAME = 15


def spawned_pool(
    name: str, initializer: Callable[..., None], *initargs: Any
) -> ProcessPoolExecutor:
    """A pool of one spawned process named ``name`` (what ``top`` and ``ps -o comm``
    show, at most 15 bytes); ``initializer(*initargs)`` runs in it first, and it ends with
    the process that made it (``exit_with_parent``)."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init,
        initargs=(os.getpid(), name, initializer, initargs),
    )


def _init(
    parent: int, name: str, initializer: Callable[..., None], initargs: tuple[Any, ...]
) -> None:
    exit_with_parent(parent)
    set_name(name)
    initializer(*initargs)


def set_name(name: str) -> None:
    """This process's name as the kernel shows it (``/proc/<pid>/comm``); Linux only."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the name stays python
        pass


def exit_with_parent(parent: int) -> None:
    """End the child once its worker is gone.

    A worker that ends without closing the pool (SIGKILL, an OOM kill, a crash) would
    otherwise leave the child waiting on its call queue for ever, with what it loaded in
    memory: the child holds both ends of that queue, so it never sees the worker's end
    close. Orphaned, it is adopted by another process, which ``os.getppid`` shows.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="cxpulse-parent-watch", daemon=True).start()


def pids(pool: ProcessPoolExecutor) -> list[int]:
    """The pool's process id, once started (for RSS figures)."""
    processes = getattr(pool, "_processes", None) or {}
    return list(processes)


def reason(exc: BaseException) -> str:
    """An exception in one line: its type, and its message when it has one."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class ChildProcess:
    """A step's helper process: ``spawned_pool(name, initializer, *initargs)``, replaced by
    a new one when it died (``replace``, counted in
    ``cxpulse_child_process_restarts_total``); ``what`` names it in the log and the
    metric."""

    def __init__(
        self, name: str, what: str, initializer: Callable[..., None], *initargs: Any
    ) -> None:
        self._spawn = partial(spawned_pool, name, initializer, *initargs)
        self._what = what
        self._pool: ProcessPoolExecutor = self._spawn()

    def pids(self) -> list[int]:
        return pids(self._pool)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def replace(self, broken: ProcessPoolExecutor, exc: BaseException) -> None:
        """A new child in place of ``broken``'s, unless it was replaced already (the work
        that was in it fails piece after piece; what goes to the new one goes on)."""
        if broken is not self._pool:
            return
        log.warning("the %s ended (%s); starting another", self._what, reason(exc))
        broken.shutdown(wait=False, cancel_futures=True)
        self._pool = self._spawn()
        # imported here: the children import this module, and need no metrics
        from cxpulse.streams import metrics

        metrics.CHILD_PROCESS_RESTARTS.labels(self._what).inc()
