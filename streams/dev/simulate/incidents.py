"""Incidents: what goes wrong, where, and when, on the simulated clock.

Why incidents are injected rather than left to chance: the operational alert
(touchpoint_degraded) and the customer alerts downstream of an outage (repeated
failures, channel hopping, repeat contacts, detractors) are what a CX team most needs to
see working, and random failures spread evenly over the fleet never produce them. An
incident raises the failure, abandonment and effort of the moments that match it while it
lasts; customers then react as they do anyway (retry at another ATM, escalate to the
phone), so the knock-on effects (a busier call center) emerge from the journeys.

Spec syntax, one incident per ``--incident``::

    KIND[:TARGET][@START][/DURATION]

    atm_outage:ATM-0042@+10m/30m     ATM-0042 fails most withdrawals from 10 min after
                                     the simulated start, for 30 min
    web_login_spike@09:00/1h         web logins fail and crawl from the first 09:00 on
                                     the simulated clock, for an hour
    call_center_backlog:cards-en     one queue (or, without a target, every queue) is
                                     backlogged for the whole run
    store_queues:store-017@+2h       long queues at store-017 from 2 h in, to the end

START is ``+OFFSET`` from the simulated start (default ``+0``) or ``HH:MM``, the first
such time of day on the simulated clock (in the start's time zone). OFFSET and DURATION
are numbers with units ``d``, ``h``, ``m``, ``s`` (``1h30m``). Without ``/DURATION`` the
incident lasts until the end of the run. Incidents compose: two on the same moment
multiply the slowness and combine their failure chances.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from cxpulse.streams.settings import ConfigError


class IncidentError(ConfigError):
    """An incident spec that cannot be used, explained on one line with an example."""


@dataclass(frozen=True, slots=True)
class Effect:
    """How an incident changes one moment: added chances of failure and abandonment,
    an effort multiplier, and the error codes a failure reports."""

    fail: float = 0.0
    abandon: float = 0.0
    slow: float = 1.0
    errors: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Moment:
    """What an incident needs to know about a moment to decide whether it applies."""

    channel: str
    touchpoint: str
    instance: str | None


@dataclass(frozen=True)
class IncidentKind:
    name: str
    target: str | None  # what TARGET names ("an ATM"), None if the kind takes none
    target_required: bool
    target_pattern: str | None
    target_example: str | None
    description: str
    effect: Callable[[Moment, str | None], Effect | None]


def _atm_outage(m: Moment, target: str | None) -> Effect | None:
    if m.channel != "atm" or m.instance != target:
        return None
    if m.touchpoint == "atm.balance":  # the host link is flaky, the machine still reads cards
        return Effect(fail=0.5, slow=3.0, errors=("E-HOST-TIMEOUT",))
    return Effect(fail=0.85, slow=3.0, errors=("E-CASH-JAM", "E-DISPENSER-FAULT", "E-HOST-TIMEOUT"))


def _web_login_spike(m: Moment, target: str | None) -> Effect | None:
    if m.touchpoint != "web.login":
        return None
    return Effect(fail=0.45, abandon=0.15, slow=6.0, errors=("503", "504", "502"))


def _call_center_backlog(m: Moment, target: str | None) -> Effect | None:
    if m.channel != "call_center" or (target is not None and m.instance != target):
        return None
    # Hold times explode; many callers hang up; the rest are served, just late.
    return Effect(abandon=0.35, slow=8.0)


def _store_queues(m: Moment, target: str | None) -> Effect | None:
    if m.channel != "store" or m.instance != target:
        return None
    return Effect(abandon=0.25, slow=5.0)  # people walk out of a long queue


KINDS: dict[str, IncidentKind] = {
    k.name: k
    for k in (
        IncidentKind(
            "atm_outage",
            "an ATM",
            True,
            r"ATM-\d{4}",
            "ATM-0042",
            "fails 85% of withdrawals and deposits, half of balance checks; 3x slower",
            _atm_outage,
        ),
        IncidentKind(
            "web_login_spike",
            None,
            False,
            None,
            None,
            "web logins fail 45% (HTTP 502-504), 15% more given up; latency 6x",
            _web_login_spike,
        ),
        IncidentKind(
            "call_center_backlog",
            "a call queue (default: every queue)",
            False,
            r"[a-z]+-[a-z]{2}",
            "cards-en",
            "waits 8x longer; 35% more callers hang up before an agent answers",
            _call_center_backlog,
        ),
        IncidentKind(
            "store_queues",
            "a store",
            True,
            r"store-\d{3}",
            "store-017",
            "queues 5x longer at that store; a quarter more visitors walk out",
            _store_queues,
        ),
    )
}


@dataclass(frozen=True)
class Incident:
    """A parsed incident: kind, optional target, when it starts and how long it lasts.

    ``offset`` (from the simulated start) or ``at`` (a time of day) says when it starts;
    ``duration`` None means until the end of the run. ``spec`` is its canonical text,
    used in summaries and in the ``incident`` attribute of the events it touched.
    """

    kind: str
    target: str | None = None
    offset: timedelta = timedelta(0)
    at: time | None = None
    duration: timedelta | None = None

    @property
    def spec(self) -> str:
        text = self.kind + (f":{self.target}" if self.target else "")
        if self.at is not None:
            text += f"@{self.at.strftime('%H:%M')}"
        elif self.offset:
            text += f"@+{format_duration(self.offset)}"
        if self.duration is not None:
            text += f"/{format_duration(self.duration)}"
        return text

    @property
    def name(self) -> str:
        """KIND[:TARGET]: what the incident is, without when."""
        return self.kind + (f":{self.target}" if self.target else "")

    def window(self, sim_start: datetime) -> tuple[datetime, datetime | None]:
        """Absolute start and end (None: open-ended) on a run starting at ``sim_start``."""
        if self.at is not None:
            begin = sim_start.replace(
                hour=self.at.hour, minute=self.at.minute, second=0, microsecond=0
            )
            if begin < sim_start:
                begin += timedelta(days=1)
        else:
            begin = sim_start + self.offset
        return begin, (begin + self.duration if self.duration is not None else None)

    def effect(self, moment: Moment) -> Effect | None:
        """The change this incident makes to ``moment`` (ignoring time), or None."""
        return KINDS[self.kind].effect(moment, self.target)


_UNIT = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)([dhms]))")


def parse_duration(text: str) -> timedelta:
    """``1h30m``, ``45s``, ``2d`` → timedelta; ValueError with the accepted forms."""
    s = text.strip().lower()
    if s == "0":
        return timedelta(0)
    if not s or _DURATION.sub("", s):
        raise ValueError(f"bad duration {text!r}: use e.g. 30m, 2h, 1h30m, 45s or 1d")
    seconds = sum(float(n) * _UNIT[u] for n, u in _DURATION.findall(s))
    return timedelta(seconds=seconds)


def format_duration(d: timedelta) -> str:
    """The shortest ``1h30m`` form of ``d`` (the inverse of ``parse_duration``)."""
    total = int(d.total_seconds())
    if total == 0:
        return "0s"
    parts = []
    for unit, size in _UNIT.items():
        n, total = divmod(total, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts)


_SPEC = re.compile(
    r"^(?P<kind>[a-z_]+)(?::(?P<target>[^@/]*))?(?:@(?P<start>[^/]*))?(?:/(?P<dur>.*))?$"
)


def parse_incident(spec: str) -> Incident:
    """Parse ``KIND[:TARGET][@START][/DURATION]``; an ``IncidentError`` (one line, with
    the accepted forms and an example) for anything else."""
    text = spec.strip()
    match = _SPEC.match(text)
    kinds = ", ".join(KINDS)
    if not match:
        raise IncidentError(
            f"bad incident {spec!r}: expected KIND[:TARGET][@START][/DURATION], "
            f"e.g. atm_outage:ATM-0042@+10m/30m (kinds: {kinds})"
        )
    name, target = match["kind"], match["target"]
    kind = KINDS.get(name)
    if kind is None:
        raise IncidentError(f"unknown incident kind {name!r} in {spec!r}: choose one of {kinds}")
    example = (
        f"{name}:{kind.target_example}@+10m/30m" if kind.target_example else f"{name}@+10m/30m"
    )
    if target is not None and kind.target is None:
        raise IncidentError(f"{name} takes no target, got {target!r} in {spec!r}: e.g. {example}")
    if target is None and kind.target_required:
        raise IncidentError(f"{name} needs {kind.target} as target in {spec!r}: e.g. {example}")
    if target is not None and kind.target_pattern and not re.fullmatch(kind.target_pattern, target):
        raise IncidentError(
            f"{name} target must look like {kind.target_example}, got {target!r} in "
            f"{spec!r}: e.g. {example}"
        )
    offset, at = timedelta(0), None
    start = match["start"]
    if start is not None:
        clock = re.fullmatch(r"(\d{1,2}):(\d{2})", start.strip())
        try:
            if clock:
                at = time(int(clock[1]), int(clock[2]))
            elif start.strip().startswith("+"):
                offset = parse_duration(start.strip()[1:])
            else:
                raise ValueError
        except ValueError:
            raise IncidentError(
                f"bad start {start!r} in {spec!r}: use +OFFSET from the simulated start "
                f"(+10m, +1h30m) or a time of day HH:MM, e.g. {example}"
            ) from None
    duration = None
    if match["dur"] is not None:
        try:
            duration = parse_duration(match["dur"])
        except ValueError:
            raise IncidentError(
                f"bad duration {match['dur']!r} in {spec!r}: use 30m, 2h, 1h30m, 45s or 1d, "
                f"e.g. {example}"
            ) from None
        if duration <= timedelta(0):
            raise IncidentError(f"duration must be more than zero in {spec!r}, e.g. {example}")
    return Incident(name, target, offset, at, duration)


def combine(effects: list[Effect]) -> Effect:
    """Several incidents on one moment: independent chances of failing or giving up
    (1 − Π(1 − p)), multiplied slowness, the first incident's error codes."""
    ok_fail = ok_abandon = 1.0
    slow = 1.0
    errors: tuple[str, ...] = ()
    for e in effects:
        ok_fail *= 1.0 - e.fail
        ok_abandon *= 1.0 - e.abandon
        slow *= e.slow
        errors = errors or e.errors
    return Effect(1.0 - ok_fail, 1.0 - ok_abandon, slow, errors)


def describe_kinds() -> str:
    """One line per incident kind, for ``--help``."""
    lines = []
    for k in KINDS.values():
        target = f":{k.target_example}" if k.target_example else ""
        optional = "" if k.target_required or not k.target_example else " (target optional)"
        lines.append(f"{k.name}{target}{optional}: {k.description}")
    return "\n".join(lines)


__all__ = [
    "KINDS",
    "Effect",
    "Incident",
    "IncidentError",
    "Moment",
    "combine",
    "describe_kinds",
    "format_duration",
    "parse_duration",
    "parse_incident",
]
