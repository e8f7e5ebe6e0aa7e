"""The rules' memory of open alerts: cooldown, repeats and severity, for every rule.

One alert per (subject, rule) per cooldown. Open alerts live in the subject's state
(``alert_memory`` of a customer or an instance) as ``"<code>@<t0>": "count|severity|last|
alert_id"``, where ``code`` is the rule's short memory code (``Rule.code``: the memory is
written to the changelog on every update), and are forgotten once no acceptable event can
fall within their cooldown, so the memory stays a few hundred bytes. Shared by the
customer rules (``cxpulse.streams.rules.customer``) and touchpoint health
(``cxpulse.streams.rules.touchpoint_degraded``).
"""

from __future__ import annotations

from collections.abc import MutableMapping

from cxpulse.schemas.alerts import SEVERITIES

MAX_OPEN_PER_RULE = 8
Memory = MutableMapping[str, int | float | str]


def raise_severity(base: str, *, tier_a: bool, large: bool) -> str:
    """The base severity, one level up for tier A and one for a large magnitude."""
    return SEVERITIES[min(SEVERITIES.index(base) + int(tier_a) + int(large), 2)]


class OpenAlert:
    """An alert that can still receive repeats, as remembered in a state's memory.

    ``last`` is the event time of the latest hit (customer rules) or the last short-window
    bucket counted (touchpoint health, which counts a degraded bucket once). A plain class
    (read from the memory at every customer's update): mypyc compiles its ``__init__``,
    not a dataclass's.
    """

    def __init__(self, t0: int, count: int, severity: str, last: int, alert_hex: str) -> None:
        self.t0 = t0
        self.count = count
        self.severity = severity
        self.last = last
        self.alert_hex = alert_hex

    def __repr__(self) -> str:
        return f"OpenAlert(t0={self.t0}, {self.encode()!r})"

    def encode(self) -> str:
        return f"{self.count}|{SEVERITIES.index(self.severity)}|{self.last}|{self.alert_hex}"

    @classmethod
    def decode(cls, key: str, value: object) -> OpenAlert | None:
        """None for anything unreadable: a damaged memory entry must not stop scoring."""
        try:
            count, sev, last, hexid = str(value).split("|")
            return cls(
                int(key.rsplit("@", 1)[1]), int(count), SEVERITIES[int(sev)], int(last), hexid
            )
        except (ValueError, IndexError):
            return None


def record_hit(
    memory: Memory,
    code: str,
    t: int,
    cooldown_s: int,
    severity: str,
    new_id: str,
    *,
    mark: int | None = None,
) -> tuple[OpenAlert, bool]:
    """Fold a hit at event time ``t`` into the open alerts of rule ``code``.

    A hit within the cooldown of an open alert (the nearest one) repeats it: count + 1,
    severity never lowered. Otherwise a new alert opens with id ``new_id``; at most
    ``MAX_OPEN_PER_RULE`` are kept per rule. ``mark`` (default ``t``) is what ``last``
    records; a hit whose ``mark`` equals the alert's ``last`` is not counted again, though
    it may raise the severity (health passes its bucket, so a degraded 5 minutes count
    once however many failures they hold, and in whatever order they came). Returns the
    alert and whether it changed.
    """
    mark_value = t if mark is None else mark
    prefix = code + "@"
    best: tuple[int, int, str, OpenAlert] | None = None
    for key, value in memory.items():
        if not key.startswith(prefix):
            continue
        found = OpenAlert.decode(key, value)
        if found is None:
            continue
        distance = abs(t - found.t0)
        if distance < cooldown_s and (best is None or (distance, found.t0) < best[:2]):
            best = (distance, found.t0, key, found)
    if best is not None:
        key, alert = best[2], best[3]
        higher = SEVERITIES.index(severity) > SEVERITIES.index(alert.severity)
        again = mark is not None and alert.last == mark
        if again and not higher:
            return alert, False
        if not again:  # a mark is counted once, even when it raises the severity
            alert.count += 1
        alert.last = max(alert.last, mark_value)
        if higher:
            alert.severity = severity
        memory[key] = alert.encode()
        return alert, True
    alert = OpenAlert(t, 1, severity, mark_value, new_id)
    memory[f"{prefix}{t}"] = alert.encode()
    mine = sorted(int(k[len(prefix) :]) for k in memory if k.startswith(prefix))
    for old in mine[: max(0, len(mine) - MAX_OPEN_PER_RULE)]:
        del memory[f"{prefix}{old}"]
    return alert, True


def forget_closed(memory: Memory, horizon: int, cooldown_s: int) -> None:
    """Drop open alerts no acceptable event (at or after ``horizon``) can repeat."""
    if not memory:
        return  # most customers have no open alert
    for key in [k for k in memory if "@" in k]:
        found = OpenAlert.decode(key, memory[key])
        if found is None or found.t0 + cooldown_s <= horizon:
            del memory[key]
