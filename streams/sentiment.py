"""Text sentiment of customer feedback, OUTSIDE the pure core.

The core takes sentiment as an input (a compound score in -1..1) because computing it is
costly and library-bound: VADER takes ~26 us per English text but SnowNLP ~1.1 ms per
Chinese one, more than everything else an event costs. The stream therefore scores a whole
batch at once through ``score_many``/``sentiments_for``, with an LRU cache in front (survey
free text repeats a lot: "ok", "good", "太慢了").

Both libraries install from PyPI with their models inside the wheel: nothing is downloaded
at run time. SnowNLP is imported lazily (its import takes ~3 s) so English-only
deployments never pay for it.

A worker scores feedback in a child process of its own (``SentimentProcess``): SnowNLP's
model takes ~400 MiB and its scoring holds the GIL for ~1 ms a text, both of which then
stay out of the worker process and off its event loop's thread.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol
from uuid import UUID

from cxpulse.streams.pipeline.records import Event

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


class SentimentAnalyzer(Protocol):
    """Compound sentiment in -1..1; None when the text says nothing we can read
    (empty, or a language the analyzer does not support), so no delight reading is made
    instead of a fake neutral one."""

    def score(self, text: str, language: str | None = None) -> float | None: ...

    def score_many(self, items: Sequence[tuple[str, str | None]]) -> list[float | None]: ...


def detect_language(text: str) -> str:
    """``zh`` if the text contains CJK ideographs, else ``en``: the two languages of our
    customers' feedback (cx-model.md); a mixed text ("ATM吞卡了") is Chinese."""
    return "zh" if _CJK.search(text) else "en"


def _base(language: str) -> str:
    return language.split("-", 1)[0].lower()


class DefaultSentimentAnalyzer:
    """VADER for English, SnowNLP for Chinese, with an LRU cache of ``cache_size`` texts."""

    SUPPORTED = ("en", "zh")

    def __init__(self, cache_size: int = 10_000) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._vader = SentimentIntensityAnalyzer()
        self._snownlp: Any = None
        self._cache: OrderedDict[tuple[str, str], float | None] = OrderedDict()
        self._cache_size = cache_size
        self.hits = 0
        self.misses = 0

    def _compute(self, text: str, lang: str) -> float | None:
        if lang == "en":
            return float(self._vader.polarity_scores(text)["compound"])
        if lang == "zh":
            if self._snownlp is None:
                from snownlp import SnowNLP

                self._snownlp = SnowNLP
            # SnowNLP gives P(positive) in 0..1; 2p - 1 puts it on VADER's -1..1 scale.
            p = float(self._snownlp(text).sentiments)
            return max(-1.0, min(1.0, 2.0 * p - 1.0))
        return None

    def score(self, text: str, language: str | None = None) -> float | None:
        text = text.strip()
        if not text:
            return None
        lang = _base(language) if language else detect_language(text)
        if lang == "en" and _CJK.search(text):
            lang = "zh"  # a mislabelled Chinese text would read as neutral English
        key = (lang, text)
        cache = self._cache
        if key in cache:
            self.hits += 1
            cache.move_to_end(key)
            return cache[key]
        self.misses += 1
        value = self._compute(text, lang)
        cache[key] = value
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
        return value

    def score_many(self, items: Sequence[tuple[str, str | None]]) -> list[float | None]:
        return [self.score(text, lang) for text, lang in items]


def sentiments_for(
    events: Iterable[Event], analyzer: SentimentAnalyzer
) -> dict[UUID, float | None]:
    """Sentiment of each event's feedback text, keyed by event id: the ``sentiments``
    argument of ``cxpulse.streams.core.apply_events``. Events without text are left out."""
    evs = [e for e in events if e.feedback is not None and e.feedback.text]
    items = [(e.feedback.text or "", e.feedback.language) for e in evs if e.feedback]
    return dict(zip((e.event_id for e in evs), analyzer.score_many(items), strict=True))


def feedback_items(events: Iterable[Event]) -> tuple[list[UUID], list[tuple[str, str | None]]]:
    """The ids and (text, language) of the events that carry feedback text."""
    ids: list[UUID] = []
    items: list[tuple[str, str | None]] = []
    for e in events:
        fb = e.feedback
        if fb is not None and fb.text:
            ids.append(e.event_id)
            items.append((fb.text, fb.language))
    return ids, items


_IN_CHILD: DefaultSentimentAnalyzer | None = None


def _score_in_child(items: Sequence[tuple[str, str | None]]) -> list[float | None]:
    global _IN_CHILD
    if _IN_CHILD is None:
        _IN_CHILD = DefaultSentimentAnalyzer()
    return _IN_CHILD.score_many(items)


#: How often the child checks that the worker that started it is still there.
PARENT_CHECK_SECONDS = 0.5


def _exit_with_parent(parent: int) -> None:
    """The child's initializer: end the child once its worker is gone.

    A worker that ends without closing the pool (SIGKILL, an OOM kill, a crash) would
    otherwise leave the child waiting on its call queue for ever, with SnowNLP's
    ~400 MiB: the child holds both ends of that queue, so it never sees the worker's end
    close. Orphaned, it is adopted by another process, which ``os.getppid`` shows.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="cxpulse-parent-watch", daemon=True).start()


def _warm_up_in_child() -> float:
    started = time.perf_counter()
    _score_in_child([("服务很好", "zh"), ("great service", "en")])
    return time.perf_counter() - started


class SentimentProcess:
    """``DefaultSentimentAnalyzer`` in one child process (spawned: a clean interpreter,
    not a fork of a process with threads). ``executor`` is what ``run_in_executor``
    takes; the child loads its models on the first call (``warm_up``), and ends by itself
    when the worker does, however the worker ended (``_exit_with_parent``)."""

    def __init__(self) -> None:
        self.executor = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )

    def warm_up(self) -> Any:
        """Start the child and load both models; a future of the seconds it took."""
        return self.executor.submit(_warm_up_in_child)

    @staticmethod
    def score_many(items: Sequence[tuple[str, str | None]]) -> list[float | None]:
        """Runs in the child (submit it to ``executor``)."""
        return _score_in_child(items)

    def pids(self) -> list[int]:
        """The child's process id, once started (for RSS figures)."""
        processes = getattr(self.executor, "_processes", None) or {}
        return list(processes)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
