# ruff: noqa: RUF001  (Chinese punctuation is matched on purpose)
"""Topics of feedback text and the sentiment of each (aspect sentiment), English and Chinese.

The topics and their phrases are the model file's ``feedback.topics``
(``cxpulse.schemas.model.FeedbackSection``): a text names a topic when it holds one of the
topic's phrases; a phrase ``a+b`` needs both parts in one clause. English phrases match
at the start of a word, lower-cased ("fee" finds "Fees"); Chinese ones anywhere. The
aspect sentiment of a topic is the sentiment of the clauses that name it (scored by the
same analyser as the whole text): "the staff were lovely but the queue was awful" is
positive about staff_attitude and negative about queue. When those clauses hold no
opinion, a text of one topic gives it its whole sentiment ("Card blocked. Terrible!"), a
text of several gives it 0 (neutral: the opinion cannot be told apart).

Pure apart from the sentiment function it is given: no I/O, no model loading.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Clause boundaries: punctuation of both languages, and "but" words, which open a clause
#: of their own ("lovely staff but a long queue").
_CLAUSES = re.compile(
    r"[,.;:!?，。；：！？、\n]+|\s+(?=(?:but|however|although|though|yet)\b)|(?=但是|可是|不过)",
    re.IGNORECASE,
)


def clauses(text: str) -> list[str]:
    """The text cut at punctuation and before "but" (但是, 可是, 不过)."""
    return [c for c in _CLAUSES.split(text) if c and c.strip()]


@dataclass(frozen=True)
class _Topic:
    name: str
    factor: str
    # each phrase: its parts, all of which must be in one clause
    en: tuple[tuple[re.Pattern[str], ...], ...]
    zh: tuple[tuple[str, ...], ...]


def _en_part(part: str) -> re.Pattern[str]:
    return re.compile(r"(?<![a-z0-9])" + re.escape(part.strip()))


@dataclass(frozen=True)
class TopicReading:
    """A text's topics (in the model's order) and the aspect sentiment of each (-1..1)."""

    topics: tuple[str, ...] = ()
    aspects: dict[str, float] = field(default_factory=dict)


class TopicTagger:
    """Tags texts with the topics of a model's ``feedback.topics``."""

    def __init__(self, topics: Mapping[str, Any]) -> None:
        """``topics``: topic id -> a ``FeedbackTopic`` or its dict (``factor``, ``en``,
        ``zh``): the child process that scores feedback gets the dicts."""
        built: list[_Topic] = []
        for name, spec in topics.items():
            d = spec if isinstance(spec, Mapping) else spec.model_dump()
            built.append(
                _Topic(
                    name=name,
                    factor=d["factor"],
                    en=tuple(
                        tuple(_en_part(p) for p in phrase.lower().split("+") if p.strip())
                        for phrase in d.get("en") or ()
                    ),
                    zh=tuple(
                        tuple(p.strip() for p in phrase.lower().split("+") if p.strip())
                        for phrase in d.get("zh") or ()
                    ),
                )
            )
        self._topics = tuple(built)
        self.factors = {t.name: t.factor for t in built}

    def __bool__(self) -> bool:
        return bool(self._topics)

    def _names(self, topic: _Topic, clause: str, lang: str) -> bool:
        if lang == "zh":
            return any(all(p in clause for p in parts) for parts in topic.zh) or any(
                all(p.search(clause) for p in parts) for parts in topic.en
            )
        return any(all(p.search(clause) for p in parts) for parts in topic.en)

    def tag(self, text: str, lang: str) -> dict[str, list[str]]:
        """Topic id -> the clauses of ``text`` that name it, in the model's order.
        ``lang`` is ``en`` or ``zh`` (Chinese text also matches the English phrases:
        "ATM吞卡了" names the card in latin letters)."""
        found: dict[str, list[str]] = {}
        if not self._topics:
            return found
        parts = [c.lower() for c in clauses(text)]
        for topic in self._topics:
            hits = [c for c in parts if self._names(topic, c, lang)]
            if hits:
                found[topic.name] = hits
        return found

    def read(
        self, text: str, lang: str, compound: float, score: Callable[[str], float]
    ) -> TopicReading:
        """The topics of ``text`` and their aspect sentiment: ``score`` of the clauses
        naming each; where they hold no opinion, ``compound`` (the whole text's) for the
        only topic of a text, 0.0 for one of several."""
        tagged = self.tag(text, lang)
        if not tagged:
            return TopicReading()
        aspects: dict[str, float] = {}
        for name, hits in tagged.items():
            own = score("。".join(hits) if lang == "zh" else ". ".join(hits))
            if own == 0.0 and len(tagged) == 1:
                own = compound
            aspects[name] = round(own, 4)
        return TopicReading(tuple(tagged), aspects)
