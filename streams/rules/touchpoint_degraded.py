"""touchpoint_degraded: a touchpoint instance failing for many customers at once.

The rule (``TouchpointDegraded``: is the instance degraded, and how to say so) and the
instance's health it is judged on (``apply_health``). Pure, like the customer rules: a
``HealthState`` per touchpoint instance (an ATM, a store's card terminal, a web page; the
touchpoint type when events name no instance), the instance's events, the model and
``now`` in; the new state and any alert out.

Why against its own baseline. An instance's normal failure rate is its own: a busy
cash-recycling ATM declines more cards than a balance kiosk, an old page times out more
than a new one. Comparing each instance with itself alerts on *change* (3× its usual rate
by default), and an instance that is always somewhat bad but stable raises nothing (a
problem for a backlog, not an incident). Two floors keep the rule quiet where a rate means
little: at least ``min_attempts`` attempts in the short window (one failure at 3 a.m. is
not an incident) and at least ``min_failure_rate`` failing. A new instance has no history,
so its baseline is smoothed toward ``prior_failure_rate`` as if ``prior_attempts`` attempts
had been seen at that rate.

Counts. An attempt is any event at the instance; a failure is outcome ``failure``
(abandonment is the customer's choice more often than the machine's fault). Counts are
kept per ``bucket_minutes`` for the short window (plus the allowed lateness) and per hour
for the baseline, so the state has ~35 small triples whatever the traffic. The baseline is
the hourly counts of the last ``baseline_hours`` minus the short window's own, so an
incident does not raise the bar it is measured against.

Time, order, duplicates. Windows are on event time. Events are applied in event-time
order and the rule is evaluated at each failure with the counts known at that point, so
batch boundaries do not change the outcome. Events older than the allowed lateness
(``health.allowed_lateness_minutes``) are ignored, duplicates are recognised by id (a
bounded set of 48-bit hashes with a floor, exactly as for customers) so a replay changes
nothing.

Alerts. One per instance per ``health.cooldown_hours``; while the instance stays degraded
each further short-window bucket in which the rule holds raises the open alert's count
(a count of 4 with 5-minute buckets: degraded in 4 buckets, however many failures they
held and in whatever order they came). Ids are a uuid5 of the instance and the start of
the bucket in which it opened, and ``triggered_at`` is that start: an instance's events
come from many customers, so from many source partitions, and which of the bucket's
failures first showed the rule holding depends on how those were interleaved; the
bucket does not. (What stays order-dependent, documented in docs/alerts.md: a short
window seen half-filled, say its failures before its successes, can hold, or reach the
escalation, earlier than it would in event-time order.) An alert lists the failures of its short
window (the ones it counted, up to ``alerts.max_event_ids``), never older ones, and says
what it compared with as it was: "over the previous 24 h" only with 24 h of history, the
real span for a younger instance, the prior for a new one.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import NamedTuple

from cxpulse.schemas.alerts import Alert, alert_id
from cxpulse.schemas.model import ExperienceModel, HealthSection
from cxpulse.schemas.scoring import seen_bytes, seen_text
from cxpulse.streams.core import dedup, ids
from cxpulse.streams.core.decimals import rounded
from cxpulse.streams.core.times import epoch
from cxpulse.streams.pipeline.records import EventHead
from cxpulse.streams.rules.base import Hit, alert_of
from cxpulse.streams.rules.memory import forget_closed, raise_severity, record_hit
from cxpulse.streams.rules.words import duration, label
from cxpulse.streams.state.health import HealthState

_HOUR = 3600


def _bucket_seed(start: int) -> str:
    """The alert id's seed for an instance degraded from the bucket starting at ``start``
    (epoch seconds): the same whatever order the bucket's events arrived in."""
    return f"bucket:{start}"


def health_key(event: EventHead) -> str:
    """The health subject of an event: its instance, else its touchpoint type. The stream
    keys the health table (and partitions) by this."""
    return event.touchpoint_instance or event.touchpoint


class _Counts:
    """The mutable working form of the bucket lists during one call."""

    def __init__(self, triples: list[tuple[int, int, int]]) -> None:
        self.b: dict[int, list[int]] = {s: [a, f] for s, a, f in triples}

    def add(self, start: int, failure: bool) -> None:
        cell = self.b.setdefault(start, [0, 0])
        cell[0] += 1
        cell[1] += int(failure)

    def total(self, lo: int, hi: int) -> tuple[int, int]:
        """Attempts and failures of the buckets starting in ``[lo, hi]``."""
        a = f = 0
        for s, (sa, sf) in self.b.items():
            if lo <= s <= hi:
                a += sa
                f += sf
        return a, f

    def triples(self, keep_from: int) -> list[tuple[int, int, int]]:
        return [(s, a, f) for s, (a, f) in sorted(self.b.items()) if s >= keep_from]


def customer_tag(customer_id: str) -> str:
    """A short, stable tag of a customer (8 hex digits of BLAKE2b): enough to count the
    different customers among an instance's few remembered failures, without keeping
    customer ids in the instance's state."""
    return hashlib.blake2b(customer_id.encode(), digest_size=4).hexdigest()


def _by(customers: int, remembered: int, failed: int) -> str:
    """Who failed: every failure of the window is remembered up to ``alerts.max_event_ids``
    (beyond, the customers of the latest ones are counted: "at least")."""
    if customers == 1:
        return ""
    return f" for {'at least ' if remembered < failed else ''}{customers} customers"


def _against(base: float, attempts: int, history_s: int, h: HealthSection) -> str:
    """What the rate was compared with, as it really was: the instance's own rate over the
    history it has (up to ``baseline_hours``), or the prior when it has none."""
    span = f"{h.baseline_hours} h" if history_s >= h.baseline_hours * _HOUR else duration(history_s)
    if attempts:
        return f"against {base:.0%} over the previous {span}"
    if history_s <= 0:
        return f"against the {base:.0%} assumed for a new instance"
    return f"against the {base:.0%} assumed, with no attempts in the previous {span}"


class Window(NamedTuple):
    """What an instance knows at one of its failures, as the rule judges it: the instance
    (``key``), the failing event at event time ``t`` in the short-window bucket starting
    at ``bucket``, the bucket counts, the failures remembered and when its history began."""

    key: str
    event: EventHead
    t: int
    bucket: int
    fine: _Counts
    hourly: _Counts
    failures: list[tuple[int, str] | tuple[int, str, str]]
    first: int


class TouchpointDegraded:
    """The rule: a failure that shows the instance's short window failing far above its
    own baseline, with volume, gives a hit. Configured by the model's ``health`` section."""

    name = "touchpoint_degraded"
    code = "td"

    def check(self, at: Window, model: ExperienceModel) -> Hit | None:
        h = model.health
        bucket = h.bucket_minutes * 60
        fb, t = at.bucket, at.t
        window_start = fb - h.short_window_minutes * 60 + bucket
        sa, sf = at.fine.total(window_start, fb)
        if sa < h.min_attempts or sf / sa < h.min_failure_rate:
            return None
        in_window = [f for f in at.failures if window_start <= f[0] < fb + bucket]
        customers = len({f[2] if len(f) > 2 else f[1] for f in in_window})
        if customers < h.min_failing_customers:
            return None
        rate = sf / sa
        hb = t - t % _HOUR
        ha, hf = at.hourly.total(hb - h.baseline_hours * _HOUR + _HOUR, hb)
        ba, bf = max(ha - sa, 0), max(hf - sf, 0)
        prior = h.prior_attempts
        base = (bf + h.prior_failure_rate * prior) / (ba + prior) if ba + prior else 0.0
        if rate < h.ratio * base:
            return None
        ev, key = at.event, at.key
        kind = label(model, ev.touchpoint) or ev.touchpoint
        name = key if key == ev.touchpoint else f"{key} ({kind})"
        # the failures counted: those of the short window, not the instance's last ever
        counted = [f[1] for f in in_window][-model.alerts.max_event_ids :]
        # Seeded and timed by the degraded bucket, not by the failure at which the rule was
        # first seen to hold: which failure that is depends on how the instance's events
        # (from many customers, so many source partitions) were interleaved.
        return Hit(
            rule=self.name,
            t=fb,
            trigger=_bucket_seed(fb),
            event_ids=counted,
            magnitude=rounded(rate, 3),
            large=rate >= h.escalate_at,
            explanation=(
                f"{name}: {sf} of {sa} attempts failed in {h.short_window_minutes} min "
                f"({rate:.0%}){_by(customers, len(in_window), sf)}, "
                f"{_against(base, ba, window_start - at.first, h)}"
            ),
            action=(
                f"open an incident for {key} now: check it, and point customers to "
                "a working alternative until it is fixed"
            ),
        )


RULE = TouchpointDegraded()


class HealthUpdate(NamedTuple):
    """What one batch did to an instance's health: the new state, the alerts that opened
    or repeated (each once, in its latest version), and how many events were ignored as
    later than the allowed lateness (counted, so operations can see when the rule was
    blind to part of the traffic)."""

    state: HealthState
    alerts: list[Alert]
    late: int


def apply_health(
    state: HealthState | None,
    events: Iterable[EventHead],
    model: ExperienceModel,
    now: datetime,
) -> HealthUpdate:
    """Apply one instance's batch of events. ``now`` (aware) clamps events stamped in the
    future, like the scoring core, and is the alerts' ``emitted_at``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (event times are)")
    # event time, then id (a UUID orders as its hex does)
    evs = sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    if state is None:
        if not evs:
            raise ValueError("apply_health needs a state or at least one event")
        state = HealthState(key=health_key(evs[0]))
    h = model.health
    bucket = h.bucket_minutes * 60
    short = h.short_window_minutes * 60
    baseline = h.baseline_hours * _HOUR
    lateness = int(h.allowed_lateness_minutes * 60)
    cooldown = int(h.cooldown_hours * _HOUR)
    limit = epoch(now) + int(model.score.max_clock_skew_minutes * 60)
    max_ids = model.alerts.max_event_ids

    # the instance's id set as the core works on a customer's (indexed at once for a busy
    # instance's call: hundreds of events, each evicting the oldest id)
    seen = dedup.Seen(seen_bytes(state.seen), len(evs))
    fine, hourly = _Counts(state.fine), _Counts(state.hourly)
    failures = list(state.failures)
    # States written before ``first`` existed: their oldest hourly bucket is the best guess.
    first = state.first or (state.hourly[0][0] if state.hourly else 0)
    memory: dict[str, int | float | str] = dict(state.alert_memory)
    watermark, floor = state.watermark, state.floor
    channel, touchpoint = state.channel, state.touchpoint
    changed: dict[str, Alert] = {}
    applied = late = 0

    for ev in evs:
        key = health_key(ev)
        if key != state.key:
            raise ValueError(
                f"event for touchpoint {key!r} applied to the health of {state.key!r}: "
                "apply one instance's events at a time"
            )
        h48 = dedup.id_hash(ev.event_id)
        if h48 in seen:
            continue
        t = min(epoch(ev.occurred_at), limit)
        if watermark and (t < watermark - lateness or t <= floor):
            late += 1  # counting it now could count it twice after its id is forgotten
            continue
        applied += 1
        floor = seen.remember(h48, t, h.seen_ids_max, floor)
        watermark = max(watermark, t)
        first = min(first, t) if first else t
        channel, touchpoint = ev.channel, ev.touchpoint
        failed = ev.outcome == "failure"
        fb = t - t % bucket
        fine.add(fb, failed)
        hourly.add(t - t % _HOUR, failed)
        if not failed:
            continue
        bisect.insort(failures, (t, ids.hex_of(ev.event_id), customer_tag(ev.customer_id)))
        del failures[: -max(max_ids, h.min_failing_customers)]
        if not h.enabled:
            continue
        hit = RULE.check(Window(state.key, ev, t, fb, fine, hourly, failures, first), model)
        if hit is None:
            continue
        severity = raise_severity(h.severity, tier_a=False, large=hit.large)
        new_id = alert_id("instance", state.key, hit.rule, hit.trigger).hex
        opened, moved = record_hit(memory, RULE.code, hit.t, cooldown, severity, new_id, mark=hit.t)
        if not moved:
            continue
        alert = alert_of(
            hit,
            opened,
            cooldown,
            now,
            event_ids=hit.event_ids,
            action=hit.action,
            subject_kind="instance",
            instance=state.key,
            channel=ev.channel,
            touchpoint=ev.touchpoint,
        )
        changed[str(alert.alert_id)] = alert

    if not applied:
        return HealthUpdate(state, [], late)
    forget_closed(memory, watermark - lateness, cooldown)
    new_state = HealthState(
        key=state.key,
        channel=channel,
        touchpoint=touchpoint,
        watermark=watermark,
        floor=floor,
        seen=seen_text(seen.stored(watermark - lateness)),
        fine=fine.triples(watermark - short - lateness - bucket),
        hourly=hourly.triples(watermark - baseline - _HOUR),
        first=first,
        failures=failures,
        alert_memory=memory,
    )
    return HealthUpdate(new_state, sorted(changed.values(), key=lambda a: a.updated_at), late)
