"""What every alert rule is: a name, a memory code, and a pure check that gives a hit or not.

A customer rule (``CustomerRule``) is one object with ``name`` (its name in
``cxpulse.schemas.vocabulary.RULES`` and its section ``alerts.<name>`` of the model file),
``code`` (its short key in ``alert_memory``) and ``check(at, model)``: what the customer's
moment ``at`` shows, under the model's configuration, as a ``Hit`` or None. The check is
pure: no clock (event time is in ``at``), no I/O; all it may change is its own flag in
``at.batch.memory`` (low_score's disarm). Everything else an alert needs (the cooldown, the
open alert's count, the severity for the tier, the alert id, the recommended action's
urgency) is the orchestration's, ``cxpulse.streams.rules.customer.customer_alerts``, the same for
every rule.

What a rule sees (``At``): the event (its survey answers), its moment (readings, score
after it), its event time, the batch's memory of what the counting rules count
(``cxpulse.streams.core.trail``: earlier batches plus this batch up to and including the
moment, held as one-by-one processing would hold it) and the story of the score so far
(``Batch``: the hourly highs, the episodes known, the key moments). The rules that count
events read the trail; the rules that judge the score (low_score, sharp_drop) read the
score's story. Both are kept by the orchestration as it walks the batch, so a rule holds
no state of its own between moments.

The touchpoint rule (``cxpulse.streams.rules.touchpoint_degraded``) judges an instance, not a
customer: it is a ``Rule`` with a check of its own shape, and gives the same ``Hit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from cxpulse.schemas.alerts import Alert
from cxpulse.schemas.model import ExperienceModel
from cxpulse.schemas.scoring import CustomerState, Moment
from cxpulse.streams.core import ids
from cxpulse.streams.core.apply import explanation
from cxpulse.streams.core.episodes import episode_id
from cxpulse.streams.core.trail import Limits, Trail
from cxpulse.streams.pipeline.records import Event
from cxpulse.streams.rules.memory import Memory, OpenAlert
from cxpulse.streams.rules.words import at, one_line


class Hit:
    """One rule matching at one moment, with everything its alert will say.

    ``Hit``, ``Batch`` and ``At`` are plain classes, not dataclasses: mypyc compiles their
    ``__init__`` with the module, where a dataclass's generated one runs as interpreted
    Python (an ``At`` is made for every moment the rules judge)."""

    def __init__(
        self,
        rule: str,
        t: int,
        trigger: str,
        event_ids: list[str],
        magnitude: float,
        large: bool,
        explanation: str,
        action: str,
    ) -> None:
        self.rule = rule
        self.t = t
        #: hex id of the event that completed the pattern: the alert id's seed
        self.trigger = trigger
        self.event_ids = event_ids
        self.magnitude = magnitude
        self.large = large
        self.explanation = explanation
        self.action = action

    def __repr__(self) -> str:
        return f"Hit({self.rule!r}, t={self.t}, trigger={self.trigger!r}, {self.magnitude})"


def alert_of(
    hit: Hit,
    opened: OpenAlert,
    cooldown: int,
    emitted_at: datetime,
    *,
    event_ids: list[str],
    action: str,
    **subject: Any,
) -> Alert:
    """The alert an open alert is after its latest ``hit``: id, severity, times and count
    from the memory (``opened``), what it says from the hit, and the subject's own fields
    (``subject_kind``, then ``customer_id``, ``instance``, ``tier``, ... as ``Alert``
    names them)."""
    return Alert(
        alert_id=opened.alert_hex,
        rule=hit.rule,
        severity=opened.severity,
        triggered_at=at(opened.t0),
        updated_at=at(opened.last),
        emitted_at=emitted_at,
        open_until=at(opened.t0 + cooldown),
        event_ids=event_ids,
        count=opened.count,
        magnitude=hit.magnitude,
        explanation=one_line(hit.explanation),
        recommended_action=one_line(action),
        **subject,
    )


class Batch:
    """What the rules share while one customer's batch is walked, kept by the orchestration.

    ``memory`` is the alert memory being written (a rule may keep a flag of its own
    there); ``highs`` the (time, score) highs known so far: the hourly highs from before
    the batch, then each moment of the batch at the watermark it was scored at (a
    customer's first moment is no reference: ``SharpDropRule``); ``walk`` the batch's live
    moments with their events, in the order they are judged, of which the first
    ``walked`` are known (the moment being judged included), ``times`` their event times.
    What is derived from the walk (``trail``, the batch's episodes, the moments not yet
    known) is derived only when a rule asks, which few moments do: a routine moment
    (a success, off the call center) is judged without copying the state's memory.
    """

    def __init__(
        self,
        before: CustomerState | None,
        after: CustomerState,
        memory: Memory,
        walk: Sequence[tuple[Event, Moment]],
        highs: list[tuple[int, float]],
        quote_feedback: bool,
        limits: Limits,
    ) -> None:
        self.before = before
        self.limits = limits
        self.after = after
        self.memory = memory
        self.walk = walk
        self.highs = highs
        self.quote_feedback = quote_feedback
        self.walked = 0
        self.times: list[int] = []
        self._trail: Trail | None = None
        self._added = 0  # the walked moments added to _trail

    @property
    def trail(self) -> Trail:
        """What the counting rules count as known at the moment judged
        (``cxpulse.streams.core.trail``: the state's memory plus the batch's moments walked
        so far, each collection capped before each moment as the core caps it): copied
        from the state when a rule first asks, then brought up to date with the moments
        walked since."""
        trail = self._trail
        if trail is None:
            trail = self._trail = Trail.of(self.before, self.limits)
        walk, times = self.walk, self.times
        for i in range(self._added, self.walked):
            ev, m = walk[i]
            trail.add(
                times[i],
                m.channel,
                m.touchpoint,
                m.touchpoint_instance,
                m.outcome,
                m.intent,
                ids.hex_of(ev.event_id),
            )
        self._added = self.walked
        return trail

    def episodes_known(self) -> int:
        """Episodes known so far (low_score's evidence): the folded ones, then the open
        ones and the batch's by id. An out-of-order merge may count one twice: the rule
        then errs toward alerting. Counted only when a low score asks (most moments are
        not low)."""
        mine = {m.episode_id for _, m in self.walk[: self.walked]}
        before = self.before
        if before is None:
            return len(mine)
        known = {episode_id(ep) for ep in before.episodes}
        return before.folded.count + len(known.union(mine))

    def hurt_most(self, since: int, model: ExperienceModel) -> list[str]:
        """The listed moments (those that account for the score most) that pull it down,
        known so far (not one of the batch's moments still to walk), largest first."""
        pending = {ids.hex_of(ev.event_id) for ev, _ in self.walk[self.walked :]}
        return [
            k.event_id
            for k, contribution in explanation(self.after, model)
            if contribution < 0 and k.t >= since and k.event_id not in pending
        ]


class At:
    """One moment of a customer's batch as the rules see it when it is applied."""

    def __init__(
        self,
        event: Event,
        moment: Moment,
        t: int,
        watermark: int,
        prev_score: float,
        batch: Batch,
    ) -> None:
        self.event = event
        self.moment = moment
        self.t = t  # event time, epoch seconds
        #: the customer's event-time watermark once this moment is applied
        self.watermark = watermark
        self.prev_score = prev_score  # the score before this moment
        self.batch = batch

    @property
    def hexid(self) -> str:
        """The event id as hex (what alerts and the trail name events by), made when a
        rule asks: most moments are judged without it."""
        return ids.hex_of(self.event.event_id)


class Rule(Protocol):
    """What the registry knows of every rule."""

    @property
    def name(self) -> str:
        """Its name in ``cxpulse.schemas.vocabulary.RULES``: the alert's ``rule``."""
        ...

    @property
    def code(self) -> str:
        """Its short key in ``alert_memory`` (written to the changelog on every update)."""
        ...


class CustomerRule(Rule, Protocol):
    """A rule about one customer, judged at each moment; configured by ``alerts.<name>``."""

    def check(self, at: At, model: ExperienceModel) -> Hit | None:
        """The hit this moment completes, or None."""
        ...
