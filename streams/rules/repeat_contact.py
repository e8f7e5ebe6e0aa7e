"""repeat_contact: ``alerts.repeat_contact.count`` call-center contacts within
``window_days``, or ``same_intent_count`` of them about the same intent (the first call
did not resolve it). Every call-center event counts, whatever its outcome."""

from __future__ import annotations

from cxpulse.schemas.model import ExperienceModel
from cxpulse.streams.rules.base import At, Hit
from cxpulse.streams.rules.windows import densest, ids, opener
from cxpulse.streams.rules.words import duration, humane


class RepeatContact:
    name = "repeat_contact"
    code = "rc"

    def check(self, at: At, model: ExperienceModel) -> Hit | None:
        r = model.alerts.repeat_contact
        m, t = at.moment, at.t
        if m.channel != "call_center":
            return None
        window = int(r.window_days * 86400)
        calls = at.batch.trail.contacts
        every = densest(calls, t, window)
        same = densest([c for c in calls if c.intent == m.intent], t, window) if m.intent else []
        triggers = []
        if len(every) >= r.count:
            triggers.append(opener(every, r.count, t, model))
        if len(same) >= r.same_intent_count:
            triggers.append(opener(same, r.same_intent_count, t, model))
        if not triggers:
            return None
        trigger = min(triggers, key=lambda e: (e.t, e.event_id))
        hexid = at.hexid
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
            rule=self.name,
            t=t,
            trigger=trigger.event_id or hexid,
            event_ids=ids(sorted({*every, *same}, key=lambda e: (e.t, e.event_id)), hexid),
            magnitude=float(n),
            large=n >= r.escalate_at,
            explanation=text,
            action=f"give the case{topic} one owner who resolves it, so no further call is needed",
        )
