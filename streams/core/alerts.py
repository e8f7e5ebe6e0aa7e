"""Customer early-warning rules (cx-model.md, "Early-warning alerts"), pure.

``customer_alerts`` runs after ``apply_events`` on the same batch of one customer and turns
what the batch changed into alerts: low_score, sharp_drop, repeated_failure,
repeat_contact, channel_hopping and detractor. It imports schemas and the standard library
only, and takes the wall-clock time of emission as an argument.

How the rules see time. Every window is on event time. Moments are walked in the order
``apply_events`` applied them (event time, then id), and at each moment a rule sees what
was known when that moment was applied: the memory from earlier batches (even entries
later in event time: an out-of-order arrival completes a pattern) plus this batch's
moments up to and including it, uncapped (``streams.core.trail``: caps apply only to what
is stored). So a pattern fires at the event that completed it whether the events came in
one batch, in several, or one by one, and a catch-up after a restart raises what steady
flow would have. Counting windows are "any window of the rule's length that contains the
moment", which is what lets an event arriving late (within the allowed lateness) complete
a pattern that straddles it.

New customers (cx-model.md is silent; the choice a CX operations team expects). A score
resting on one episode is one moment, not an experience: a first failure scores 5, 10 or
13.8 for tiers A, B, C. So low_score waits for ``low_score.min_episodes`` episodes (2 by
default) and sharp_drop measures only from scores the customer had after at least two
moments. The rules that are evidence on their own (repeated_failure, repeat_contact,
channel_hopping, detractor) fire from the first moment.

What never alerts. Duplicates (``apply_events`` gives no Moment) and *late* moments
(older than the allowed lateness: they did not change the state). A late moment is history
(over 48 h old by default), too old for an early warning, and since late events are not
remembered in the dedup set a replay would bring them back each time.

Dedup and cooldown. One alert per (customer, rule) per cooldown: a hit within
``alerts.cooldown_hours`` (event time) of an open alert's opening trigger raises that
alert's ``count`` and re-emits it with the SAME ``alert_id`` (a uuid5 of customer, rule and
the opening event), later ``updated_at`` and severity never lowered; a hit outside it opens
a new alert. Open alerts live in ``CustomerState.alert_memory`` as
``"<code>@<t0>": "count|severity|last|alert_id"`` and are forgotten once no acceptable event
can fall within their cooldown, so the memory stays a few hundred bytes. A batch emits each
changed alert once, in its latest version.

Severity: the rule's base, one level up for a tier A customer, one more when the
magnitude reaches the rule's ``escalate_at``; critical at most.

Explanations name touchpoints as people do (``alerts.labels``: "3 failed cash withdrawals
at ATM-0042 in 12 min"), falling back to the code for an unlabelled type, and give spans
as measured ("in 4 min", not a rounded-up hour).
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple, Protocol, TypeVar

import msgspec

from schemas.alerts import SEVERITIES, Alert, alert_id
from schemas.model import ExperienceModel
from schemas.scoring import CustomerState, Moment
from streams.core.times import epoch
from streams.core.trail import Trail
from streams.pipeline.records import Event

# Short memory codes per rule: alert_memory is written to the changelog on every update.
CODES: dict[str, str] = {
    "low_score": "ls",
    "sharp_drop": "sd",
    "repeated_failure": "rf",
    "repeat_contact": "rc",
    "channel_hopping": "ch",
    "detractor": "dt",
    "touchpoint_degraded": "td",
}
LOW_SCORE_DISARMED = "ls.off"  # present while low_score waits for the score to recover
MAX_OPEN_PER_RULE = 8
Memory = MutableMapping[str, int | float | str]


# -- shared with streams.core.health ---------------------------------------------------


def raise_severity(base: str, *, tier_a: bool, large: bool) -> str:
    """The base severity, one level up for tier A and one for a large magnitude."""
    return SEVERITIES[min(SEVERITIES.index(base) + int(tier_a) + int(large), 2)]


@dataclass(slots=True)
class OpenAlert:
    """An alert that can still receive repeats, as remembered in a state's memory.

    ``last`` is the event time of the latest hit (customer rules) or the last short-window
    bucket counted (touchpoint health, which counts a degraded bucket once).
    """

    t0: int
    count: int
    severity: str
    last: int
    alert_hex: str

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
    for key in [k for k in memory if "@" in k]:
        found = OpenAlert.decode(key, memory[key])
        if found is None or found.t0 + cooldown_s <= horizon:
            del memory[key]


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


# -- the customer rules ------------------------------------------------------------------


@dataclass(slots=True)
class Hit:
    """One rule matching at one moment, with everything its alert will say."""

    rule: str
    t: int
    trigger: str  # hex id of the event that completed the pattern: the alert id's seed
    event_ids: list[str]
    magnitude: float
    large: bool
    explanation: str
    action: str


_OUTCOME_WORDS = {"failure": "a failed", "abandoned": "an abandoned", "success": "a successful"}
_OUTCOME_NOUNS = {"failure": "a failure", "abandoned": "an abandonment", "success": "a success"}


def _what(m: Moment, model: ExperienceModel) -> str:
    """The moment in words: "a failed cash withdrawal at ATM-0042"; for a type without a
    label, "a failure at web.new_page (/new)"."""
    name = label(model, m.touchpoint)
    if name is not None:
        where = f" at {m.touchpoint_instance}" if m.touchpoint_instance else ""
        return f"{_OUTCOME_WORDS.get(m.outcome, 'a')} {name}{where}"
    where = f" ({m.touchpoint_instance})" if m.touchpoint_instance else ""
    return f"{_OUTCOME_NOUNS.get(m.outcome, 'a moment')} at {m.touchpoint}{where}"


class _Timed(Protocol):
    @property
    def t(self) -> int: ...
    @property
    def event_id(self) -> str: ...


_T = TypeVar("_T", bound=_Timed)


def densest(entries: Sequence[_T], t: int, window: int) -> list[_T]:
    """The entries of the fullest window of length ``window`` that contains ``t`` (the
    earliest such window on a tie), in event-time order. Windows are inclusive: "3 within
    30 min" means the first and the third are at most 30 min apart."""
    ordered = sorted(entries, key=lambda e: (e.t, e.event_id))
    best: list[_T] = []
    for start in sorted({e.t for e in ordered if t - window <= e.t <= t}):
        inside = [e for e in ordered if start <= e.t <= start + window]
        if len(inside) > len(best):
            best = inside
    return best


def _opener(best: Sequence[_T], count: int, t: int, model: ExperienceModel) -> _T:
    """The entry that completed the pattern, whose id seeds the alert id: the ``count``-th
    of the window, the same whatever order the events arrived in. Once that one is older
    than a cooldown before the moment (a pattern that goes on, seen again after its
    alert's cooldown), the first later entry: a new case needs a new id, not the old
    case's id with count 1. The moment itself always qualifies, so one exists."""
    since = t - int(model.alerts.cooldown_hours * 3600)
    return next(e for e in best[count - 1 :] if e.t >= since)


def _ids(entries: Sequence[_Timed], fallback: str) -> list[str]:
    ids = [e.event_id for e in entries if e.event_id]
    return ids or [fallback]


def _repeated_failure(
    m: Moment, t: int, hexid: str, memo: Trail, model: ExperienceModel
) -> Hit | None:
    r = model.alerts.repeated_failure
    if m.outcome != "failure":
        return None
    fails = [f for f in memo.failures if f.touchpoint == m.touchpoint]
    best = densest(fails, t, int(r.window_minutes * 60))
    if len(best) < r.count:
        return None
    n = len(best)
    name = label(model, m.touchpoint)
    what = f"{n} failed {plural(name)}" if name else f"{n} failures of {m.touchpoint}"
    latest = best[-1].instance or m.touchpoint_instance
    fault = f" at {latest}" if latest else ""
    task = f"the {name}" if name else m.touchpoint
    return Hit(
        rule="repeated_failure",
        t=t,
        trigger=_opener(best, r.count, t, model).event_id or hexid,
        event_ids=_ids(best, hexid),
        magnitude=float(n),
        large=n >= r.escalate_at,
        explanation=(
            f"{what}{places([f.instance for f in best])} in {duration(best[-1].t - best[0].t)}"
        ),
        action=f"help the customer finish {task} another way and report the fault{fault}",
    )


def _repeat_contact(
    m: Moment, t: int, hexid: str, memo: Trail, model: ExperienceModel
) -> Hit | None:
    r = model.alerts.repeat_contact
    if m.channel != "call_center":
        return None
    window = int(r.window_days * 86400)
    calls = memo.contacts
    every = densest(calls, t, window)
    same = densest([c for c in calls if c.intent == m.intent], t, window) if m.intent else []
    triggers = []
    if len(every) >= r.count:
        triggers.append(_opener(every, r.count, t, model))
    if len(same) >= r.same_intent_count:
        triggers.append(_opener(same, r.same_intent_count, t, model))
    if not triggers:
        return None
    trigger = min(triggers, key=lambda e: (e.t, e.event_id))
    n = max(len(every), len(same))
    span_of = every if len(every) >= len(same) else same
    span = duration(span_of[-1].t - span_of[0].t)
    about = humane(m.intent) if m.intent else ""
    if len(same) >= r.same_intent_count and len(every) > len(same):
        text = f"{len(every)} call-center contacts in {span}, {len(same)} about {about}"
    elif len(same) >= r.same_intent_count:
        text = f"{len(same)} call-center contacts about {about} in {span}"
    else:
        text = f"{len(every)} call-center contacts in {span}"
    topic = f" ({about})" if about else ""
    return Hit(
        rule="repeat_contact",
        t=t,
        trigger=trigger.event_id or hexid,
        event_ids=_ids(sorted({*every, *same}, key=lambda e: (e.t, e.event_id)), hexid),
        magnitude=float(n),
        large=n >= r.escalate_at,
        explanation=text,
        action=f"give the case{topic} one owner who resolves it, so no further call is needed",
    )


class _Try(NamedTuple):
    t: int
    channel: str
    event_id: str


def _channel_hopping(
    m: Moment, t: int, hexid: str, memo: Trail, model: ExperienceModel
) -> Hit | None:
    """Each channel counts with its latest unsuccessful try since the intent's last
    success (``streams.core.trail``); the moment itself counts with its own time."""
    r = model.alerts.channel_hopping
    if not m.intent or m.outcome == "success":
        return None
    known = memo.intents.get(m.intent)
    if known is None or known.ok >= t:
        return None  # settled: the customer found a way
    window = int(r.window_hours * 3600)
    points = [_Try(tm.t, ch, tm.event_id) for ch, tm in known.tries.items() if ch != m.channel]
    points.append(_Try(t, m.channel, hexid))
    best = densest(points, t, window)
    if len(best) < r.channels:
        return None
    n = len(best)
    about = humane(m.intent)
    channels = ", ".join(humane(p.channel) for p in best)
    return Hit(
        rule="channel_hopping",
        t=t,
        trigger=_opener(best, r.channels, t, model).event_id or hexid,
        event_ids=_ids(best, hexid),
        magnitude=float(n),
        large=n >= r.escalate_at,
        explanation=(
            f"tried {about} on {n} channels ({channels}) in "
            f"{duration(best[-1].t - best[0].t)} without success"
        ),
        action=f"resolve the {about} in this one contact and tell the customer which way works",
    )


def _detractor(
    ev: Event, m: Moment, t: int, hexid: str, model: ExperienceModel, include_text: bool
) -> Hit | None:
    r = model.alerts.detractor
    fb = ev.feedback
    parts: list[str] = []
    readings: list[float] = []
    if fb is not None and fb.nps is not None and fb.nps <= r.nps_at_most:
        parts.append(f"NPS {fb.nps}")
        readings.append(float(fb.nps))
    if fb is not None and fb.csat is not None and fb.csat <= r.csat_at_most:
        parts.append(f"CSAT {fb.csat}")
        readings.append((fb.csat - 1) * 2.5)
    if m.sentiment is not None and m.sentiment <= r.sentiment_at_most:
        text = one_line(fb.text, 80) if include_text and fb is not None and fb.text else ""
        if text:
            parts.append(f'said "{text}"')
        else:  # the topic and how negative, never the words (they stay in moments)
            about = f" about {humane(m.intent)}" if m.intent else ""
            parts.append(f"negative feedback{about} (sentiment {m.sentiment:.2f})")
        readings.append(5 + 5 * m.sentiment)
    if not parts:
        return None
    magnitude = round(10 - min(readings), 2)
    return Hit(
        rule="detractor",
        t=t,
        trigger=hexid,
        event_ids=[hexid],
        magnitude=magnitude,
        large=magnitude >= r.escalate_at,
        explanation=f"{', '.join(parts)} after {_what(m, model)}",
        action="answer what they said personally and close the loop",
    )


def _hurt_most(state: CustomerState, since: int, pending: set[str]) -> list[str]:
    """The key moments (those that moved the score most) that hurt, known so far."""
    return [
        k.event_id
        for k in state.key_moments
        if k.impact < 0 and k.t >= since and k.event_id not in pending
    ]


def customer_alerts(
    before: CustomerState | None,
    after: CustomerState,
    events: Sequence[Event],
    moments: Sequence[Moment | None],
    model: ExperienceModel,
    emitted_at: datetime,
    *,
    include_feedback_text: bool = False,
) -> tuple[CustomerState, list[Alert]]:
    """The alerts one customer's batch raises, and the state with the rules' memory.

    ``before`` and ``after`` are the states around ``apply_events(before, events, ...)``
    and ``moments`` what it returned (parallel to ``events``; None for duplicates). The
    events are needed for their survey answers (a Moment keeps readings, not answers).
    The returned state is ``after`` with ``alert_memory`` updated (``after`` itself when
    nothing changed); write THAT one to the table.

    The counting rules read ``before``'s memory plus the batch's own moments, walked in
    order and never capped (``after``'s is capped for storage: reading it would let the
    end of a large batch crowd out what its beginning needed).

    A detractor alert names the feedback's topic (the event's intent) and its sentiment,
    not the customer's words, unless ``include_feedback_text``
    (``CXPULSE_ALERTS_INCLUDE_FEEDBACK_TEXT``): alerts travel further (webhooks, chat
    channels, tickets) than the tables that keep the text.
    """
    if len(events) != len(moments):
        raise ValueError(f"{len(moments)} moments for {len(events)} events: pass one per event")
    if emitted_at.tzinfo is None:
        raise ValueError("emitted_at must be timezone-aware")
    # (event, moment, event id as hex): the hex is needed four times per moment
    live = [
        (e, m, e.event_id.hex)
        for e, m in zip(events, moments, strict=True)
        if m is not None and not m.late
    ]
    if not live:
        return after, []
    if len(live) > 1:
        live.sort(key=lambda p: (p[0].occurred_at, p[2]))
    cfg = model.alerts
    cooldown = int(cfg.cooldown_hours * 3600)
    memory: dict[str, int | float | str] = dict(after.alert_memory)
    pending = {hexid for _, _, hexid in live}
    memo = Trail.of(before)
    watermark = before.watermark if before is not None else 0
    prev_score = before.score if before is not None else 50.0
    # Episodes known so far (low_score's evidence): the folded ones, then the open ones
    # and the batch's by id. An out-of-order merge may count one twice: the rule then
    # errs toward alerting. Counted only when a low score asks (most moments are not
    # low): ``batch_episodes`` holds the batch's so far.
    folded = before.folded.count if before is not None else 0
    batch_episodes: list[str] = []

    def episodes_known() -> int:
        known = {ep.episode_id for ep in before.episodes} if before is not None else set()
        return folded + len(known.union(batch_episodes))

    # (time, score) highs known so far: the hourly highs from before the batch, then each
    # moment of the batch at the watermark it was scored at (a customer's first moment is
    # no reference: SharpDropRule).
    highs: list[tuple[int, float]] = list(before.score_trail) if before is not None else []
    first = before is None
    # alert id → (hit, moment, alert state) of its latest hit: built into Alerts once, at
    # the end, however many hits a batch folds into one alert.
    changed: dict[str, tuple[Hit, Moment, OpenAlert]] = {}
    ls, sd = cfg.low_score, cfg.sharp_drop
    window = int(sd.window_hours * 3600)
    # The counting rules, each only for the moments it can match (the checks return None
    # for all others, so skipping the call changes nothing).
    rf_on, rc_on = cfg.repeated_failure.enabled, cfg.repeat_contact.enabled
    ch_on, dt_on = cfg.channel_hopping.enabled, cfg.detractor.enabled

    for ev, m, hexid in live:
        pending.discard(hexid)
        t = min(epoch(ev.occurred_at), after.watermark)
        watermark = max(watermark, t)
        memo.add(t, m.channel, m.touchpoint, m.touchpoint_instance, m.outcome, m.intent, hexid)
        batch_episodes.append(m.episode_id)
        hits: list[Hit] = []

        if ls.enabled:
            armed = LOW_SCORE_DISARMED not in memory
            if armed and m.score_after < ls.below and episodes_known() >= ls.min_episodes:
                memory[LOW_SCORE_DISARMED] = 1
                below = ls.below - m.score_after
                hits.append(
                    Hit(
                        rule="low_score",
                        t=t,
                        trigger=hexid,
                        event_ids=[hexid, *_hurt_most(after, 0, pending)],
                        magnitude=round(below, 2),
                        large=below >= ls.escalate_at,
                        explanation=(
                            f"score fell to {m.score_after:.1f} (below {ls.below:g}) after "
                            f"{_what(m, model)}"
                        ),
                        action="go through the moments that pulled the score down and put "
                        "the worst one right",
                    )
                )
            elif not armed and m.score_after > ls.rearm_above:
                del memory[LOW_SCORE_DISARMED]

        if sd.enabled:
            # the highs of the window, looked for only when the score fell
            recent = (
                [(ht, s) for ht, s in highs if watermark - window < ht <= watermark]
                if m.score_after < prev_score
                else []
            )
            if recent:
                # the latest time at the peak: how fast it fell from there
                peak_t, peak = max(recent, key=lambda p: (p[1], p[0]))
                drop = peak - m.score_after
                if drop >= sd.drop:
                    hits.append(
                        Hit(
                            rule="sharp_drop",
                            t=t,
                            trigger=hexid,
                            event_ids=[hexid, *_hurt_most(after, watermark - window, pending)],
                            magnitude=round(drop, 2),
                            large=drop >= sd.escalate_at,
                            explanation=(
                                f"score fell {drop:.0f} points in "
                                f"{duration(watermark - peak_t)} (from {peak:.0f} to "
                                f"{m.score_after:.0f}) after {_what(m, model)}"
                            ),
                            action="find what went wrong in the listed moments and put it "
                            "right before it sets",
                        )
                    )
            if not first:
                highs.append((watermark, m.score_after))
        first = False

        if rf_on and m.outcome == "failure":
            hit = _repeated_failure(m, t, hexid, memo, model)
            if hit is not None:
                hits.append(hit)
        if rc_on and m.channel == "call_center":
            hit = _repeat_contact(m, t, hexid, memo, model)
            if hit is not None:
                hits.append(hit)
        if ch_on and m.intent and m.outcome != "success":
            hit = _channel_hopping(m, t, hexid, memo, model)
            if hit is not None:
                hits.append(hit)
        if dt_on and (ev.feedback is not None or m.sentiment is not None):
            hit = _detractor(ev, m, t, hexid, model, include_feedback_text)
            if hit is not None:
                hits.append(hit)

        for hit in hits:
            severity = raise_severity(
                getattr(cfg, hit.rule).severity, tier_a=after.tier == "A", large=hit.large
            )
            code = CODES[hit.rule]
            new_id = alert_id("customer", after.customer_id, hit.rule, hit.trigger).hex
            if any(k.startswith(f"{code}@") and str(v).endswith(new_id) for k, v in memory.items()):
                # the seed already opened a remembered case: seed a new one with the moment
                new_id = alert_id("customer", after.customer_id, hit.rule, hexid).hex
            opened, _ = record_hit(memory, code, hit.t, cooldown, severity, new_id)
            changed[opened.alert_hex] = (hit, m, opened)
        prev_score = m.score_after

    forget_closed(
        memory, after.watermark - int(model.episodes.allowed_lateness_hours * 3600), cooldown
    )
    if memory != after.alert_memory:
        after = msgspec.structs.replace(after, alert_memory=memory)
    alerts = [
        _alert(hit, m, opened, after, model, cooldown, emitted_at)
        for hit, m, opened in changed.values()
    ]
    return after, sorted(alerts, key=lambda a: (a.updated_at, a.rule))


def _alert(
    hit: Hit,
    m: Moment,
    opened: OpenAlert,
    state: CustomerState,
    model: ExperienceModel,
    cooldown: int,
    emitted_at: datetime,
) -> Alert:
    cfg = model.alerts
    urgency = getattr(cfg.actions, state.tier if state.tier in ("A", "B", "C") else "none")
    ids = list(dict.fromkeys(hit.event_ids))[-cfg.max_event_ids :]
    return Alert(
        alert_id=opened.alert_hex,
        rule=hit.rule,
        severity=opened.severity,
        subject_kind="customer",
        customer_id=state.customer_id,
        instance=m.touchpoint_instance,
        tier=state.tier,
        segment=state.segment,
        score=round(m.score_after, 2),
        channel=m.channel,
        touchpoint=m.touchpoint,
        triggered_at=at(opened.t0),
        updated_at=at(opened.last),
        emitted_at=emitted_at,
        open_until=at(opened.t0 + cooldown),
        event_ids=ids,
        count=opened.count,
        magnitude=hit.magnitude,
        explanation=one_line(hit.explanation),
        recommended_action=one_line(f"{urgency}: {hit.action}"),
    )
