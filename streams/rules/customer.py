"""Customer early-warning alerts (cx-model.md, "Early-warning alerts"), pure.

``customer_alerts`` runs after ``apply_events`` on the same batch of one customer and turns
what the batch changed into alerts, by judging each moment with every customer rule of the
registry (``cxpulse.streams.rules.registry``: low_score, sharp_drop, repeated_failure,
repeat_contact, channel_hopping and detractor, in that order). It imports schemas and the
standard library only, and takes the wall-clock time of emission as an argument. The
rules say whether a moment is a hit and what the alert says; this module owns what is the
same for every rule: the walk, the memory of open alerts, cooldowns, severity and ids.

How the rules see time. Every window is on event time. Moments are walked in the order
``apply_events`` applied them (event time, then id), and at each moment a rule sees what
was known when that moment was applied: the memory from earlier batches (even entries
later in event time: an out-of-order arrival completes a pattern) plus this batch's
moments up to and including it, held as the state written after the moment before would
have held them (``cxpulse.streams.core.trail``: caps applied before each moment). So a
pattern fires at the event that completed it whether the events came in one batch, in
several, or one by one, and a catch-up after a restart raises what steady flow would have.

New customers (cx-model.md is silent; the choice a CX operations team expects). A score
resting on one episode is one moment, not an experience, so the score rules wait for
evidence (``cxpulse.streams.rules.low_score``, ``cxpulse.streams.rules.sharp_drop``). The rules that
are
evidence on their own (repeated_failure, repeat_contact, channel_hopping, detractor) fire
from the first moment.

What never alerts. Duplicates (``apply_events`` gives no Moment) and *late* moments
(older than the allowed lateness: they did not change the state). A late moment is history
(over 48 h old by default), too old for an early warning, and since late events are not
remembered in the dedup set a replay would bring them back each time.

Dedup and cooldown. One alert per (customer, rule) per cooldown: a hit within
``alerts.cooldown_hours`` (event time) of an open alert's opening trigger raises that
alert's ``count`` and re-emits it with the SAME ``alert_id`` (a uuid5 of customer, rule and
the opening event), later ``updated_at`` and severity never lowered; a hit outside it opens
a new alert. Open alerts live in ``CustomerState.alert_memory`` (``cxpulse.streams.rules.memory``).
A batch emits each changed alert once, in its latest version.

Severity: the rule's base (``alerts.<rule>.severity``), one level up for a tier A
customer, one more when the magnitude reaches the rule's ``escalate_at``; critical at most.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from cxpulse.schemas.alerts import Alert, alert_id
from cxpulse.schemas.model import ExperienceModel
from cxpulse.schemas.scoring import CustomerState, Moment
from cxpulse.streams.core.decimals import rounded
from cxpulse.streams.core.times import epoch
from cxpulse.streams.core.trail import Limits
from cxpulse.streams.pipeline.records import Event
from cxpulse.streams.rules.base import At, Batch, CustomerRule, Hit, alert_of
from cxpulse.streams.rules.memory import OpenAlert, forget_closed, raise_severity, record_hit
from cxpulse.streams.rules.registry import REGISTRY, Registry


def customer_alerts(
    before: CustomerState | None,
    after: CustomerState,
    events: Sequence[Event],
    moments: Sequence[Moment | None],
    model: ExperienceModel,
    emitted_at: datetime,
    *,
    include_feedback_text: bool = False,
    rules: Registry = REGISTRY,
) -> tuple[CustomerState, list[Alert]]:
    """The alerts one customer's batch raises, and the state with the rules' memory.

    ``before`` and ``after`` are the states around ``apply_events(before, events, ...)``
    and ``moments`` what it returned (parallel to ``events``; None for duplicates). The
    events are needed for their survey answers (a Moment keeps readings, not answers).
    The returned state is ``after`` with ``alert_memory`` updated (``after`` itself when
    nothing changed); write THAT one to the table.

    The counting rules read ``before``'s memory plus the batch's own moments, walked in
    order, capped before each moment as one-by-one processing would have stored them
    (reading ``after``'s, capped at the batch's end, would let the end of a large batch
    crowd out what its beginning needed).

    A detractor alert names the feedback's topic (the event's intent) and its sentiment,
    not the customer's words, unless ``include_feedback_text``
    (``CXPULSE_ALERTS_INCLUDE_FEEDBACK_TEXT``): alerts travel further (webhooks, chat
    channels, tickets) than the tables that keep the text.

    ``rules``: the rules to judge with (the registry's by default; a test or an extension
    passes its own, ``REGISTRY.with_rule(...)``).
    """
    if len(events) != len(moments):
        raise ValueError(f"{len(moments)} moments for {len(events)} events: pass one per event")
    if emitted_at.tzinfo is None:
        raise ValueError("emitted_at must be timezone-aware")
    # lengths checked above: a plain zip (compiled, a strict one iterates generically)
    live = [
        (e, m)
        for e, m in zip(events, moments)  # noqa: B905
        if m is not None and not m.late
    ]
    if not live:
        return after, []
    if len(live) > 1:  # event time, then id (a UUID orders as its hex does)
        live.sort(key=lambda p: (p[0].occurred_at, p[0].event_id))
    plan = _Plan.of(model, rules)
    cooldown = plan.cooldown
    memory: dict[str, int | float | str] = dict(after.alert_memory)
    batch = Batch(
        before=before,
        after=after,
        memory=memory,
        walk=live,
        highs=list(before.score_trail) if before is not None else [],
        quote_feedback=include_feedback_text,
        limits=plan.limits,
    )
    watermark = before.watermark if before is not None else 0
    prev_score = before.score if before is not None else 50.0
    first = before is None  # a customer's first moment is no reference for sharp_drop
    tier_a = after.tier == "A"
    # alert id → (hit, moment, alert state) of its latest hit: built into Alerts once, at
    # the end, however many hits a batch folds into one alert.
    changed: dict[str, tuple[Hit, Moment, OpenAlert]] = {}

    for ev, m in live:
        t = min(epoch(ev.occurred_at), after.watermark)
        batch.times.append(t)
        batch.walked += 1
        watermark = max(watermark, t)
        now = At(ev, m, t, watermark, prev_score, batch)
        hits: list[tuple[CustomerRule, str, Hit]] = []
        for rule, base in plan.active:
            hit = rule.check(now, model)
            if hit is not None:
                hits.append((rule, base, hit))
        if not first:
            batch.highs.append((watermark, m.score_after))
        first = False

        for rule, base, hit in hits:
            severity = raise_severity(base, tier_a=tier_a, large=hit.large)
            code = rule.code
            new_id = alert_id("customer", after.customer_id, hit.rule, hit.trigger).hex
            if any(k.startswith(f"{code}@") and str(v).endswith(new_id) for k, v in memory.items()):
                # the seed already opened a remembered case: seed a new one with the moment
                new_id = alert_id("customer", after.customer_id, hit.rule, now.hexid).hex
            opened, _ = record_hit(memory, code, hit.t, cooldown, severity, new_id)
            changed[opened.alert_hex] = (hit, m, opened)
        prev_score = m.score_after

    forget_closed(memory, after.watermark - plan.lateness, cooldown)
    if memory != after.alert_memory:
        after = msgspec.structs.replace(after, alert_memory=memory)
    alerts = [
        _alert(hit, m, opened, after, plan, emitted_at) for hit, m, opened in changed.values()
    ]
    return after, sorted(alerts, key=lambda a: (a.updated_at, a.rule))


@dataclass(frozen=True, slots=True)
class _Plan:
    """What ``customer_alerts`` reads of the model and the registry on every call, read
    once per (model, registry) pair: both are immutable (the model's sections are frozen,
    a registry's rules a tuple).

    ``active``: the rules switched on (``alerts.<rule>.enabled``), in the registry's order,
    each with its base severity; ``cooldown`` and ``lateness`` in seconds; ``limits``
    what the counting rules' memory keeps (``Trail.add``); ``urgency`` the
    first half of the recommended action by tier (``alerts.actions``), ``urgency_none``
    for a customer of none of the tiers A, B and C.
    """

    active: tuple[tuple[CustomerRule, str], ...]
    cooldown: int
    lateness: int
    max_event_ids: int
    limits: Limits
    urgency: dict[str, str]
    urgency_none: str

    @classmethod
    def of(cls, model: ExperienceModel, rules: Registry) -> _Plan:
        cached = _PLANS.get((id(model), id(rules)))
        if cached is not None and cached[0] is model and cached[1] is rules:
            return cached[2]
        cfg = model.alerts
        sections = [(r, cfg.rule(r.name)) for r in rules.customer]
        actions = cfg.actions
        plan = cls(
            active=tuple((r, section.severity) for r, section in sections if section.enabled),
            cooldown=int(cfg.cooldown_hours * 3600),
            lateness=int(model.episodes.allowed_lateness_hours * 3600),
            max_event_ids=cfg.max_event_ids,
            limits=Limits.of(model),
            urgency={"A": actions.A, "B": actions.B, "C": actions.C},
            urgency_none=actions.none,
        )
        if len(_PLANS) >= 16:
            _PLANS.clear()
        _PLANS[(id(model), id(rules))] = (model, rules, plan)
        return plan

    def urgency_for(self, tier: str | None) -> str:
        """How soon to reach out to a customer of ``tier`` (``alerts.actions``; ``none``
        for a customer without one of the tiers A, B, C)."""
        return self.urgency.get(tier, self.urgency_none) if tier else self.urgency_none


_PLANS: dict[tuple[int, int], tuple[ExperienceModel, Registry, _Plan]] = {}


def _alert(
    hit: Hit,
    m: Moment,
    opened: OpenAlert,
    state: CustomerState,
    plan: _Plan,
    emitted_at: datetime,
) -> Alert:
    return alert_of(
        hit,
        opened,
        plan.cooldown,
        emitted_at,
        event_ids=list(dict.fromkeys(hit.event_ids))[-plan.max_event_ids :],
        action=f"{plan.urgency_for(state.tier)}: {hit.action}",
        subject_kind="customer",
        customer_id=state.customer_id,
        instance=m.touchpoint_instance,
        tier=state.tier,
        segment=state.segment,
        score=rounded(m.score_after, 2),
        channel=m.channel,
        touchpoint=m.touchpoint,
    )
