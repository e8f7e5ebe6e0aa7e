"""What the early-warning rules remember of a customer's moments, one collection per rule.

Why one per rule. A single shared list capped at a few entries is crowded out by routine
moments: the simulator (like real upstream systems) puts an intent on nearly every event,
so an active customer's sixteen routine app payments pushed out the calls that
repeat_contact counts over 7 days. Each rule now keeps only what it counts, and each
collection is bounded by what its rule needs (``state`` section of the model):

* ``failures`` (repeated_failure): outcome ``failure`` only, with touchpoint and instance;
  at most ``state.failures_max`` (validated >= the rule's ``count`` and ``escalate_at``).
* ``contacts`` (repeat_contact): every call-center contact with its intent; at most
  ``state.contacts_max`` (>= ``count``, ``same_intent_count`` and ``escalate_at``).
* ``intents`` (channel_hopping): per intent, the time of its latest success and, per
  channel, the latest unsuccessful try after it. A success settles every earlier try (the
  customer found a way), so a channel's tries reduce to its latest, and an intent never
  needs more than one entry per channel. An intent with no open tries is only remembered
  once it has had some (routine successes of a new intent cost nothing); at most
  ``state.intents_max`` intents, the least recently active dropped first.

How long. An entry is kept while an acceptable event could still fall within its rule's
window of it: ``episodes.allowed_lateness_hours`` plus the window, behind the watermark.
So an event arriving late (within the lateness) still completes a pattern, exactly.

Capping. ``Trail.stored`` prunes and caps when the state is written, the oldest entries
first (for intents, the least recently active), which are the ones in-order traffic can
no longer use. ``Trail.add`` first caps what it holds by count, as a state written after
the moment before would have been, then adds the moment: the core and the rules'
walk (``customer_alerts``) then hold, at every moment of a batch, what one-by-one
processing would have held, so a batch of any size (a catch-up after a restart) scores
the same states and fires the same alerts, with the same opening events, as steady flow.
Pruning by time can wait for the write: what it drops is older than any acceptable
event's window, and the oldest (the least active) go first under a cap anyway. The
limits (deterministic, documented): a cap only matters when more entries than it fall
within one window of the rule (failures of any touchpoint, calls of any intent: nine
failures within 30 minutes, say), and then the oldest of the window may be forgotten
(for one kind of failure or one intent, the rule has fired and escalated by then); and
an unsuccessful try arriving late, after a success of the same intent that is no longer
remembered, counts as open.

``score_trail`` (sharp_drop) holds the highest score of each hour over the last 24 h with
the time it was reached, so an alert can say how fast the score fell. The customer's
first moment is not recorded in it (``apply``): its score is the neutral 50 moved by one
moment, no reference to fall from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cxpulse.schemas.model import ExperienceModel
from cxpulse.schemas.scoring import ContactMark, CustomerState, FailureMark, IntentTries, TryMark

SCORE_TRAIL_S = 24 * 3600
_HOUR = 3600


@dataclass(frozen=True, slots=True)
class Limits:
    """How far back (seconds behind the watermark) and how many entries each rule keeps."""

    failures_s: int
    contacts_s: int
    intents_s: int
    failures_max: int
    contacts_max: int
    intents_max: int

    @classmethod
    def of(cls, model: ExperienceModel) -> Limits:
        """The limits of a model, computed once per model (the core asks per batch)."""
        cached = _LIMITS.get(id(model))
        if cached is not None and cached[0] is model:
            return cached[1]
        late = int(model.episodes.allowed_lateness_hours * 3600)
        a, s = model.alerts, model.state
        limits = cls(
            failures_s=late + int(a.repeated_failure.window_minutes * 60),
            contacts_s=late + int(a.repeat_contact.window_days * 86400),
            intents_s=late + int(a.channel_hopping.window_hours * 3600),
            failures_max=s.failures_max,
            contacts_max=s.contacts_max,
            intents_max=s.intents_max,
        )
        if len(_LIMITS) >= 16:
            _LIMITS.clear()
        _LIMITS[id(model)] = (model, limits)
        return limits


_LIMITS: dict[int, tuple[ExperienceModel, Limits]] = {}


def _activity(entry: IntentTries) -> int:
    return max([entry.ok, *(tm.t for tm in entry.tries.values())])


class Trail:
    """The working form of the rules' memory during one call (the state's stays intact:
    its collections are copied before the first change, an intent's entry is replaced,
    never changed in place). A plain class: mypyc compiles its ``__init__`` (a
    dataclass's runs as Python)."""

    def __init__(
        self,
        failures: list[FailureMark] | None = None,
        contacts: list[ContactMark] | None = None,
        intents: dict[str, IntentTries] | None = None,
        shared: bool = False,
        limits: Limits | None = None,
    ) -> None:
        self.failures: list[FailureMark] = [] if failures is None else failures
        self.contacts: list[ContactMark] = [] if contacts is None else contacts
        self.intents: dict[str, IntentTries] = {} if intents is None else intents
        #: True while the collections are the state's own: most moments change none of
        #: them (a success off the call center with no open tries), so they are copied
        #: only when one is about to change, and a state written unchanged shares them
        self.shared = shared
        #: the caps ``add`` keeps to before it adds (None: none, a trail read as it is)
        self.limits = limits

    @classmethod
    def of(cls, state: CustomerState | None, limits: Limits | None = None) -> Trail:
        if state is None:
            return cls(limits=limits)
        return cls(state.failures, state.contacts, state.intents, shared=True, limits=limits)

    def _own(self) -> None:
        """Copy the state's collections before the first change."""
        self.failures = list(self.failures)
        self.contacts = list(self.contacts)
        self.intents = dict(self.intents)
        self.shared = False

    def add(
        self,
        t: int,
        channel: str,
        touchpoint: str,
        instance: str | None,
        outcome: str,
        intent: str | None,
        event_id: str,
    ) -> None:
        """Remember one applied moment, after capping what is held by count (``limits``)
        as a state written now would be: the moment itself is counted beside the full
        caps, as one-by-one processing counts it. Routine moments (a success off the call
        center with no open tries for its intent) cost one comparison and a lookup."""
        limits = self.limits
        if limits is not None:
            self._cap(limits)
        if self.shared and (
            outcome == "failure"
            or channel == "call_center"
            or (intent is not None and (outcome != "success" or intent in self.intents))
        ):
            self._own()
        if outcome == "failure":
            _insert(self.failures, FailureMark(t, touchpoint, instance, event_id))
        if channel == "call_center":
            _insert(self.contacts, ContactMark(t, intent, event_id))
        if intent is None:
            return
        known = self.intents.get(intent)
        if outcome == "success":
            if known is not None and t > known.ok:
                tries = {ch: tm for ch, tm in known.tries.items() if tm.t > t}
                self.intents[intent] = IntentTries(t, tries)
            return
        if known is None:
            self.intents[intent] = IntentTries(0, {channel: TryMark(t, event_id)})
            return
        if t <= known.ok:
            return  # settled: a later success of the intent is already known
        latest = known.tries.get(channel)
        if latest is None or (t, event_id) > latest:
            self.intents[intent] = IntentTries(
                known.ok, {**known.tries, channel: TryMark(t, event_id)}
            )

    def _cap(self, limits: Limits) -> None:
        """Keep at most each cap of entries, as ``stored`` does (new collections: the
        state's own are never over a cap, so never changed here)."""
        if len(self.failures) > limits.failures_max:
            self.failures = self.failures[len(self.failures) - limits.failures_max :]
        if len(self.contacts) > limits.contacts_max:
            self.contacts = self.contacts[len(self.contacts) - limits.contacts_max :]
        if len(self.intents) > limits.intents_max:
            self.intents = _most_active(self.intents, limits.intents_max)

    def stored(self, limits: Limits, watermark: int) -> dict[str, Any]:
        """The state's fields: entries out of every window dropped, each collection
        capped (oldest first)."""
        horizon = watermark - limits.intents_s
        intents = self.intents
        if intents and (
            len(intents) > limits.intents_max
            or any(_oldest(entry) < horizon for entry in intents.values())
        ):
            intents = {}
            for intent, entry in self.intents.items():
                tries = {ch: tm for ch, tm in entry.tries.items() if tm.t >= horizon}
                if tries or entry.ok >= horizon:
                    kept = len(tries) == len(entry.tries)
                    intents[intent] = entry if kept else IntentTries(entry.ok, tries)
            if len(intents) > limits.intents_max:
                intents = _most_active(intents, limits.intents_max)
        return {
            "failures": _recent(self.failures, watermark - limits.failures_s, limits.failures_max),
            "contacts": _recent(self.contacts, watermark - limits.contacts_s, limits.contacts_max),
            "intents": intents,
        }


def _most_active(intents: dict[str, IntentTries], cap: int) -> dict[str, IntentTries]:
    """The ``cap`` most recently active intents (a tie: the greater name), in their order."""
    drop = sorted(intents, key=lambda k: (_activity(intents[k]), k))[: len(intents) - cap]
    return {k: v for k, v in intents.items() if k not in drop}


def _oldest(entry: IntentTries) -> int:
    """An entry needs pruning when a try, or (with no tries) its success, is older than
    this time's horizon."""
    return min(tm.t for tm in entry.tries.values()) if entry.tries else entry.ok


def _recent(marks: list[Any], since: int, cap: int) -> list[Any]:
    """The newest ``cap`` of ``marks`` (sorted by time) at or after ``since``."""
    if not marks or (len(marks) <= cap and marks[0].t >= since):
        return marks
    start = 0
    while start < len(marks) and marks[start].t < since:
        start += 1
    start = max(start, len(marks) - cap)
    return marks[start:] if start else marks


def _insert(marks: list[Any], mark: Any) -> None:
    """Keep ``marks`` in (event time, id) order; in-order traffic appends."""
    key = (mark.t, mark.event_id)
    if not marks or key >= (marks[-1].t, marks[-1].event_id):
        marks.append(mark)
        return
    i = len(marks)
    while i and (marks[i - 1].t, marks[i - 1].event_id) > key:
        i -= 1
    marks.insert(i, mark)


def add_score(trail: list[tuple[int, float]], t: int, score: float) -> list[tuple[int, float]]:
    """Fold the score at event time ``t`` into the hourly highs of the last 24 h (a new
    list: the state's is left as it is).

    Each entry is ``(time the hour's highest score was reached, that score)``; the later
    time wins a tie, so "how fast did it fall from there" is never overstated. (States
    written before kept the hour's start: read the same way, a little earlier.)
    """
    bucket = t - t % _HOUR
    horizon = bucket - SCORE_TRAIL_S
    # the entries are sorted, one per hour: those of hours out of the window are a prefix,
    # and a moment in order falls into the last entry's hour or after it
    start, n = 0, len(trail)
    while start < n and trail[start][0] - trail[start][0] % _HOUR <= horizon:
        start += 1
    out = trail[start:]
    if out:
        b, s = out[-1]
        last = b - b % _HOUR
        if last == bucket:
            if score > s or (score == s and t > b):
                out[-1] = (t, score)
            return out
        if last > bucket:
            for i, (b, s) in enumerate(out):
                if b - b % _HOUR == bucket:
                    if score > s or (score == s and t > b):
                        out[i] = (t, score)
                    return out
            out.append((t, score))
            out.sort()
            return out
    out.append((t, score))
    return out
