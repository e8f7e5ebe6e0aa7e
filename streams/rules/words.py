"""How alerts say things: spans, plurals, touchpoint labels, places and moments in words.

Explanations name touchpoints as people do (``alerts.labels``: "3 failed cash withdrawals
at ATM-0042 in 12 min"), falling back to the code for an unlabelled type, and give spans
as measured ("in 4 min", not a rounded-up hour). Shared by every rule's module.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from cxpulse.schemas.model import ExperienceModel
from cxpulse.schemas.scoring import Moment


def at(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def duration(seconds: float) -> str:
    """A span as a person says it: "12 min", "5 h", "3 days"."""
    if seconds < 60:
        return "under a minute"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} days"


def one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def plural(noun: str) -> str:
    """English plural of a label's last word: withdrawal → withdrawals, search → searches,
    inquiry → inquiries."""
    if noun.endswith(("s", "x", "z", "ch", "sh")):
        return noun + "es"
    if len(noun) > 1 and noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def label(model: ExperienceModel, touchpoint: str) -> str | None:
    """What a person calls a touchpoint type (``alerts.labels``): exact, else the longest
    labelled dotted prefix (atm.withdrawal.cardless → cash withdrawal), else None."""
    labels = model.alerts.labels
    name = touchpoint
    while True:
        found = labels.get(name)
        if found is not None or "." not in name:
            return found
        name = name.rsplit(".", 1)[0]


def humane(code: str) -> str:
    """An intent or channel code as words: card_replacement → card replacement."""
    return code.replace("_", " ")


def places(names: Sequence[str | None]) -> str:
    """ " at ATM-0042", " at ATM-0042 and ATM-0007", or "" when no instance is known."""
    seen = list(dict.fromkeys(n for n in names if n))
    if not seen:
        return ""
    if len(seen) == 1:
        return f" at {seen[0]}"
    if len(seen) <= 3:
        return f" at {', '.join(seen[:-1])} and {seen[-1]}"
    return f" at {len(seen)} places, the latest {seen[-1]}"


_OUTCOME_WORDS = {"failure": "a failed", "abandoned": "an abandoned", "success": "a successful"}
_OUTCOME_NOUNS = {"failure": "a failure", "abandoned": "an abandonment", "success": "a success"}


def what(m: Moment, model: ExperienceModel) -> str:
    """The moment in words: "a failed cash withdrawal at ATM-0042"; for a type without a
    label, "a failure at web.new_page (/new)"."""
    name = label(model, m.touchpoint)
    if name is not None:
        where = f" at {m.touchpoint_instance}" if m.touchpoint_instance else ""
        return f"{_OUTCOME_WORDS.get(m.outcome, 'a')} {name}{where}"
    where = f" ({m.touchpoint_instance})" if m.touchpoint_instance else ""
    return f"{_OUTCOME_NOUNS.get(m.outcome, 'a moment')} at {m.touchpoint}{where}"
