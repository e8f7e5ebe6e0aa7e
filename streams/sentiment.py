"""Text sentiment and topics of customer feedback, OUTSIDE the pure core.

The core takes sentiment as an input (a compound score in -1..1) and the topics the text
names (``moments.topics``), because computing them is library-bound: the stream analyses
a whole batch at once through ``analyze_many`` (or ``score_many``/``sentiments_for`` for
the compound alone), with an LRU cache in front (survey free text repeats a lot: "ok",
"good", "太慢了").

English is read by VADER with the CX words it lacks (``cxpulse.streams.en_sentiment``),
Chinese by a jieba + lexicon scorer on VADER's scale (``cxpulse.streams.zh_sentiment``);
the topics and their aspect sentiment by the model file's ``feedback.topics``
(``cxpulse.streams.feedback_text``). SnowNLP, the earlier Chinese
analyser, stays available (``chinese="snownlp"``, with ``pip install snownlp``) for the
evaluation that replaced it: docs/scoring.md, "Feedback text", has the figures.

A worker analyses feedback in a child process of its own (``SentimentProcess``), so the
models' memory and the scoring's CPU stay out of the worker process and off its event
loop's thread; events without text never reach it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal, NamedTuple, Protocol
from uuid import UUID

from cxpulse.streams.child_process import ChildProcess
from cxpulse.streams.feedback_text import TopicTagger
from cxpulse.streams.pipeline.records import Event

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


class SentimentAnalyzer(Protocol):
    """Compound sentiment in -1..1; None when the text says nothing we can read
    (empty, or a language the analyzer does not support), so no delight reading is made
    instead of a fake neutral one."""

    def score(self, text: str, language: str | None = None) -> float | None: ...

    def score_many(self, items: Sequence[tuple[str, str | None]]) -> list[float | None]: ...


class TextReading(NamedTuple):
    """What a feedback text says: its compound sentiment (None when unreadable), the
    topics it names (the model's order) and the aspect sentiment of each."""

    compound: float | None
    topics: tuple[str, ...] = ()
    aspects: dict[str, float] | None = None


NO_READING = TextReading(None)
Chinese = Literal["lexicon", "snownlp"]


def detect_language(text: str) -> str:
    """``zh`` if the text contains CJK ideographs, else ``en``: the two languages of our
    customers' feedback (cx-model.md); a mixed text ("ATM吞卡了") is Chinese."""
    return "zh" if _CJK.search(text) else "en"


def _base(language: str) -> str:
    return language.split("-", 1)[0].lower()


class DefaultSentimentAnalyzer:
    """VADER (with CX words) for English, the lexicon scorer (or SnowNLP) for Chinese, the
    model's topics, with an LRU cache of ``cache_size`` texts.

    ``topics``: the model file's ``feedback.topics`` (or their dicts); none tags nothing.
    """

    SUPPORTED = ("en", "zh")

    def __init__(
        self,
        cache_size: int = 10_000,
        topics: Mapping[str, Any] | None = None,
        chinese: Chinese = "lexicon",
    ) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        from cxpulse.streams.en_sentiment import CX_WORDS

        self._vader = SentimentIntensityAnalyzer()
        self._vader.lexicon.update(CX_WORDS)  # CX words VADER lacks ("crashed", "buggy")
        self._chinese = chinese
        self._zh: Any = None
        self.tagger = TopicTagger(topics or {})
        self._cache: OrderedDict[tuple[str, str], TextReading] = OrderedDict()
        self._cache_size = cache_size
        self.hits = 0
        self.misses = 0

    def _zh_score(self, text: str) -> float:
        if self._zh is None:
            if self._chinese == "snownlp":
                from snownlp import SnowNLP

                # P(positive) in 0..1 put on -1..1 as 2p - 1 (uncalibrated: the reason
                # it was replaced, docs/scoring.md "Feedback text")
                self._zh = lambda t: max(-1.0, min(1.0, 2.0 * float(SnowNLP(t).sentiments) - 1))
            else:
                from cxpulse.streams.zh_sentiment import ChineseLexiconSentiment

                self._zh = ChineseLexiconSentiment().score
        return float(self._zh(text))

    def _en_score(self, text: str) -> float:
        return float(self._vader.polarity_scores(text)["compound"])

    def _compute(self, text: str, lang: str) -> TextReading:
        if lang == "en":
            score = self._en_score
        elif lang == "zh":
            score = self._zh_score
        else:
            return NO_READING
        compound = score(text)
        if not self.tagger:
            return TextReading(compound)
        topics = self.tagger.read(text, lang, compound, score)
        return TextReading(compound, topics.topics, topics.aspects)

    def analyze(self, text: str, language: str | None = None) -> TextReading:
        """Compound sentiment, topics and aspect sentiment of one text (cached)."""
        text = text.strip()
        if not text:
            return NO_READING
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

    def score(self, text: str, language: str | None = None) -> float | None:
        return self.analyze(text, language).compound

    def score_many(self, items: Sequence[tuple[str, str | None]]) -> list[float | None]:
        return [self.analyze(text, lang).compound for text, lang in items]

    def analyze_many(
        self, items: Sequence[tuple[str, str | None]]
    ) -> list[tuple[float | None, tuple[str, ...]]]:
        """(compound, topics) of each text: what the worker stores per moment."""
        out = []
        for text, lang in items:
            r = self.analyze(text, lang)
            out.append((r.compound, r.topics))
        return out


def sentiments_for(
    events: Iterable[Event], analyzer: SentimentAnalyzer
) -> dict[UUID, float | None]:
    """Sentiment of each event's feedback text, keyed by event id: the ``sentiments``
    argument of ``cxpulse.streams.core.apply_events``. Events without text are left out."""
    evs = [e for e in events if e.feedback is not None and e.feedback.text]
    items = [(e.feedback.text or "", e.feedback.language) for e in evs if e.feedback]
    return dict(zip((e.event_id for e in evs), analyzer.score_many(items), strict=True))


def has_text(event: Event) -> bool:
    """Whether the event carries feedback text (what the sentiment process reads)."""
    return event.feedback is not None and bool(event.feedback.text)


def feedback_items(events: Iterable[Event]) -> tuple[list[UUID], list[tuple[str, str | None]]]:
    """The ids and (text, language) of the events that carry feedback text."""
    ids: list[UUID] = []
    items: list[tuple[str, str | None]] = []
    for e in events:
        fb = e.feedback
        if fb is not None and fb.text:  # has_text, written out: every event of a take
            ids.append(e.event_id)
            items.append((fb.text, fb.language))
    return ids, items


_IN_CHILD: DefaultSentimentAnalyzer | None = None
_CHILD_TOPICS: dict[str, Any] = {}


def _init_child(topics: dict[str, Any]) -> None:
    """The child's initializer: the topics it tags with."""
    global _CHILD_TOPICS
    _CHILD_TOPICS = topics


def _score_in_child(
    items: Sequence[tuple[str, str | None]],
) -> list[tuple[float | None, tuple[str, ...]]]:
    global _IN_CHILD
    if _IN_CHILD is None:
        _IN_CHILD = DefaultSentimentAnalyzer(topics=_CHILD_TOPICS)
    return _IN_CHILD.analyze_many(items)


def _warm_up_in_child() -> float:
    started = time.perf_counter()
    _score_in_child([("服务很好", "zh"), ("great service", "en")])
    return time.perf_counter() - started


#: The child's name (``ps -o comm``, ``top``: at most 15 bytes).
NAME = "cxpulse-sentim"


class SentimentProcess(ChildProcess):
    """``DefaultSentimentAnalyzer`` in one child process (spawned: a clean interpreter,
    not a fork of a process with threads). The child loads its models on the first call
    (``warm_up``) and ends by itself when the worker does, however the worker ended
    (``cxpulse.streams.child_process``); one that died (an OOM kill, say) is replaced,
    and the texts it was reading go to the new one. ``topics``: the model's
    ``feedback.topics`` as plain dicts (what the child tags with)."""

    def __init__(self, topics: Mapping[str, Any] | None = None) -> None:
        super().__init__(NAME, "sentiment process", _init_child, dict(topics or {}))

    def warm_up(self) -> Future[float]:
        """Start the child and load both models; a future of the seconds it took."""
        return self._pool.submit(_warm_up_in_child)

    async def analyze_many(
        self, items: Sequence[tuple[str, str | None]]
    ) -> list[tuple[float | None, tuple[str, ...]]]:
        """(compound, topics) per text, read in the child. A child that died before or
        during the call is replaced, and the texts are read by the new one (which loads
        its models first: a take waits seconds once, and none fails for it)."""
        pool = self._pool
        try:
            return await asyncio.wrap_future(pool.submit(_score_in_child, items))
        except BrokenProcessPool as exc:
            self.replace(pool, exc)
        return await asyncio.wrap_future(self._pool.submit(_score_in_child, items))
