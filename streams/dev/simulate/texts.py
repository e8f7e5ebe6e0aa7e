"""Free-text feedback the simulated customers write, in English and in Chinese.

Why a fixed bank of phrases and not generated text: feedback must carry the sentiment
its outcome implies (a failed withdrawal earns a complaint, a quick fix earns praise) so
that the detractor rule and the delight readings react as they would to real customers,
and a short hand-written bank is the only way to be sure of that sign. The unit tests
check every phrase against the project's own sentiment analyser (VADER for English,
SnowNLP for Chinese). A small bank also suits the analyser's cache, as real feedback
does: people say the same few things.

Phrases are grouped by *topic* (what the moment was about) so a complaint about an ATM
talks about the ATM: ``atm``, ``digital`` (web and app), ``call``, ``store``, ``wait``
(any slow moment) and ``general`` (the fallback, mixed into every draw).
"""

# Chinese feedback uses full-width punctuation, as real Chinese text does.
# ruff: noqa: RUF001

from __future__ import annotations

import random
from typing import Literal

Mood = Literal["praise", "complaint"]
LANGUAGES: tuple[str, ...] = ("en", "zh")
TOPICS: tuple[str, ...] = ("general", "wait", "atm", "digital", "call", "store")

PHRASES: dict[tuple[str, str, str], tuple[str, ...]] = {
    # -- English ---------------------------------------------------------------------------
    ("en", "praise", "general"): (
        "Great service, thank you!",
        "Quick and easy, exactly what I needed.",
        "Very happy with how this was handled.",
    ),
    ("en", "praise", "wait"): (
        "No waiting at all, great and fast.",
        "Fast and smooth, thanks.",
    ),
    ("en", "praise", "atm"): (
        "The ATM was quick and worked perfectly.",
        "Easy withdrawal, no problems.",
    ),
    ("en", "praise", "digital"): (
        "The app is fast and easy to use, love it.",
        "Smooth online experience, thanks!",
        "Great new design, everything is clear.",
    ),
    ("en", "praise", "call"): (
        "The agent was friendly and solved my problem in minutes.",
        "Very helpful and patient staff on the phone, thank you.",
    ),
    ("en", "praise", "store"): (
        "Friendly staff, sorted everything out quickly.",
        "Great help at the branch, very professional.",
    ),
    ("en", "complaint", "general"): (
        "Terrible experience, nothing works.",
        "Very disappointed, awful service.",
        "This is the third time I have had this problem. Awful.",
    ),
    ("en", "complaint", "wait"): (
        "I waited far too long, terrible service.",
        "So slow, a complete waste of my time.",
        "Way too long to wait, frustrating and annoying.",
    ),
    ("en", "complaint", "atm"): (
        "The ATM failed and did not give me my cash. Awful.",
        "The ATM swallowed my card, terrible experience.",
        "Machine broken again, useless.",
    ),
    ("en", "complaint", "digital"): (
        "The app keeps crashing, really frustrating.",
        "Login failed again and again, awful website.",
        "Error after error, I gave up. Terrible.",
    ),
    ("en", "complaint", "call"): (
        "I was transferred three times and nobody helped me. Terrible and frustrating.",
        "Waited forever on hold and then the call dropped. Awful service.",
    ),
    ("en", "complaint", "store"): (
        "Huge queue and only one counter open. Terrible, frustrating service.",
        "Unhelpful staff and a long wait, very disappointed.",
    ),
    # -- Chinese ---------------------------------------------------------------------------
    ("zh", "praise", "general"): (
        "服务很好，非常满意，谢谢！",
        "办理很快，很方便，非常满意。",
        "体验很好，下次还会再来。",
    ),
    ("zh", "praise", "wait"): (
        "不用排队，速度很快，很满意。",
        "效率很高，很快就办好了，很好。",
    ),
    ("zh", "praise", "atm"): (
        "取款很快，很方便，很满意。",
        "ATM很好用，很方便。",
    ),
    ("zh", "praise", "digital"): (
        "手机App很方便，操作简单，很好用。",
        "网上办理很顺利，非常方便，很好用！",
    ),
    ("zh", "praise", "call"): (
        "客服很耐心，很快就帮我办好了，非常满意！",
        "客服很专业，服务很周到。",
    ),
    ("zh", "praise", "store"): (
        "工作人员很热情，办理很快，非常满意。",
        "网点服务很好，很热情，非常满意。",
    ),
    ("zh", "complaint", "general"): (
        "太失望了，服务太差了。",
        "问题一直没解决，太差了，非常失望。",
        "太糟糕了，再也不想用了。",
    ),
    ("zh", "complaint", "wait"): (
        "等了好久，太慢了，服务太差。",
        "排队排了半个小时，太浪费时间了，很不满意。",
    ),
    ("zh", "complaint", "atm"): (
        "ATM吞卡了，太糟糕了。",
        "取款失败，钱没出来，太差了。",
        "机器又坏了，真是太失望了。",
    ),
    ("zh", "complaint", "digital"): (
        "App一直闪退，登录不了，太差了。",
        "转账一直失败，太失望了。",
        "网站总是出错，非常不满意。",
    ),
    ("zh", "complaint", "call"): (
        "电话等了很久，转了好几次也没解决，服务太差了。",
        "客服电话打不通，太失望了。",
    ),
    ("zh", "complaint", "store"): (
        "排队太长了，只开了一个窗口，很不满意。",
        "工作人员态度很差，等了很久，太失望了。",
    ),
}


def topic_for(channel: str, slow: bool) -> str:
    """What a customer talks about after a moment on ``channel``: a slow moment is
    remembered for the wait, whatever the channel."""
    if slow:
        return "wait"
    return {"web": "digital", "app": "digital", "call_center": "call"}.get(channel, channel)


def feedback_text(rng: random.Random, language: str, mood: Mood, topic: str) -> str:
    """One phrase of ``mood`` in ``language`` about ``topic``, or now and then a general one
    (people do not always say what went wrong)."""
    specific = PHRASES.get((language, mood, topic), ())
    general = PHRASES[(language, mood, "general")]
    pool = specific if specific and rng.random() < 0.75 else general
    return pool[rng.randrange(len(pool))]


__all__ = ["LANGUAGES", "PHRASES", "TOPICS", "Mood", "feedback_text", "topic_for"]
