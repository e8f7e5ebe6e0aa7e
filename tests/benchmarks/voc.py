"""Voice of the customer on the labelled set: polarity and topics of feedback text.

    python -m tests.benchmarks.voc            # the table of docs/scoring.md "Feedback text"
    python -m tests.benchmarks.voc --no-rss   # accuracy only (no subprocesses)

For each analyser: polarity accuracy and macro-F1 against the labels of
tests/data/feedback_{en,zh}.jsonl (a compound of at least 0.05 reads positive, at most
-0.05 negative, else neutral: VADER's own convention), the time per text, and the memory
it adds: the RSS of a fresh interpreter after importing it and scoring one text, minus
that of a bare interpreter. Then the topic tagger's micro precision and recall per
language, with the default model's ``feedback.topics``.

The analysers compared for Chinese: SnowNLP (2p - 1, the worker's until this set chose
otherwise), cnsenti (a Chinese lexicon package on PyPI, MIT: (pos - neg) / (pos + neg) of
its counts) and the jieba + lexicon scorer of ``cxpulse.streams.zh_sentiment``.
``tests/unit/test_voc.py`` holds the thresholds the figures must keep.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data"
LABELS = ("negative", "neutral", "positive")
NEUTRAL_BAND = 0.05


def load(lang: str) -> list[dict[str, Any]]:
    """The labelled texts of one language (``en`` or ``zh``)."""
    path = DATA / f"feedback_{lang}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def polarity(compound: float | None) -> str:
    if compound is None or -NEUTRAL_BAND < compound < NEUTRAL_BAND:
        return "neutral"
    return "positive" if compound > 0 else "negative"


# Each analyser: (language, the code a fresh interpreter runs to build ``f``, text -> compound).
_SETUP: dict[str, tuple[str, str]] = {
    "vader": (
        "en",
        "from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer\n"
        "_v = SentimentIntensityAnalyzer()\n"
        "f = lambda t: _v.polarity_scores(t)['compound']\n",
    ),
    "vader+cx": (
        "en",
        "from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer\n"
        "from cxpulse.streams.en_sentiment import CX_WORDS\n"
        "_v = SentimentIntensityAnalyzer()\n_v.lexicon.update(CX_WORDS)\n"
        "f = lambda t: _v.polarity_scores(t)['compound']\n",
    ),
    "snownlp": (
        "zh",
        "from snownlp import SnowNLP\nf = lambda t: 2 * SnowNLP(t).sentiments - 1\n",
    ),
    "cnsenti": (
        "zh",
        "import jieba, logging\njieba.setLogLevel(logging.WARNING)\n"
        "from cnsenti import Sentiment\n_s = Sentiment()\n"
        "def f(t):\n"
        "    c = _s.sentiment_count(t)\n"
        "    return (c['pos'] - c['neg']) / max(1, c['pos'] + c['neg'])\n",
    ),
    "lexicon": (
        "zh",
        "from cxpulse.streams.zh_sentiment import ChineseLexiconSentiment\n"
        "f = ChineseLexiconSentiment().score\n",
    ),
}
#: What the worker ran before this evaluation, and what it runs now.
BEFORE = {"en": "vader", "zh": "snownlp"}
NOW = {"en": "vader+cx", "zh": "lexicon"}


def analyser(name: str) -> Callable[[str], float]:
    """The text -> compound function of an analyser of ``_SETUP``, in this process."""
    scope: dict[str, Any] = {}
    exec(_SETUP[name][1], scope)
    f: Callable[[str], float] = scope["f"]
    return f


@dataclass
class Polarity:
    name: str
    lang: str
    accuracy: float
    macro_f1: float
    ms_per_text: float
    rss_mib: float | None = None


def macro_f1(gold: list[str], pred: list[str]) -> float:
    scores = []
    for label in LABELS:
        tp = sum(g == p == label for g, p in zip(gold, pred, strict=True))
        fp = sum(p == label != g for g, p in zip(gold, pred, strict=True))
        fn = sum(g == label != p for g, p in zip(gold, pred, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores)


def evaluate_polarity(name: str) -> Polarity:
    lang = _SETUP[name][0]
    rows = load(lang)
    f = analyser(name)
    f(rows[0]["text"])  # loaded before the clock starts
    started = time.perf_counter()
    pred = [polarity(f(r["text"])) for r in rows]
    elapsed = time.perf_counter() - started
    gold = [r["label"] for r in rows]
    accuracy = sum(g == p for g, p in zip(gold, pred, strict=True)) / len(rows)
    return Polarity(name, lang, accuracy, macro_f1(gold, pred), 1000 * elapsed / len(rows))


_RSS = "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"


def _rss_kib(code: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", code + "\n" + _RSS], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


def added_rss_mib(name: str) -> float:
    """RSS of a fresh interpreter after import and a first score, minus a bare one's."""
    lang, setup = _SETUP[name]
    text = "服务很好" if lang == "zh" else "great service"
    loaded = _rss_kib(setup + f"f({text!r})")
    return (loaded - _rss_kib("pass")) / 1024


@dataclass
class Topics:
    lang: str
    precision: float
    recall: float
    texts_with_topics: int
    tagged: int


def evaluate_topics(lang: str) -> Topics:
    """Micro precision and recall of the default model's topics on one language's set."""
    from cxpulse.streams.feedback_text import TopicTagger
    from cxpulse.streams.model_check import load_model

    tagger = TopicTagger(load_model(None).feedback.topics)
    tp = fp = fn = 0
    rows = load(lang)
    for r in rows:
        gold = set(r["topics"])
        got = set(tagger.tag(r["text"], lang))
        tp += len(gold & got)
        fp += len(got - gold)
        fn += len(gold - got)
    return Topics(
        lang,
        tp / (tp + fp) if tp + fp else 1.0,
        tp / (tp + fn) if tp + fn else 1.0,
        sum(bool(r["topics"]) for r in rows),
        tp + fp,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.voc",
        description="Polarity and topics of feedback text on the labelled set (tests/data).",
    )
    parser.add_argument("--no-rss", action="store_true", help="skip the memory figures")
    args = parser.parse_args(argv)
    counts = {lang: len(load(lang)) for lang in ("en", "zh")}
    print(f"labelled set: {counts['en']} English, {counts['zh']} Chinese texts\n")
    print("| analyser | language | accuracy | macro-F1 | ms/text | RSS added (MiB) | worker |")
    print("|---|---|---|---|---|---|---|")
    for name in _SETUP:
        p = evaluate_polarity(name)
        rss = "" if args.no_rss else f"{added_rss_mib(name):.0f}"
        roles = [w for w, chosen in (("before", BEFORE), ("now", NOW)) if chosen[p.lang] == name]
        role = ", ".join(roles)
        print(
            f"| {name} | {p.lang} | {p.accuracy:.3f} | {p.macro_f1:.3f} | "
            f"{p.ms_per_text:.3f} | {rss} | {role} |"
        )
    print("\n| topics | texts with a topic | tagged | precision | recall |")
    print("|---|---|---|---|---|")
    for lang in ("en", "zh"):
        t = evaluate_topics(lang)
        print(
            f"| {lang} | {t.texts_with_topics} | {t.tagged} | {t.precision:.3f} | {t.recall:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
