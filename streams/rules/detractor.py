"""detractor: the customer said so: NPS at most ``alerts.detractor.nps_at_most``, CSAT at
most ``csat_at_most``, or the sentiment of their words at most ``sentiment_at_most``.

The alert names the feedback's topic (the event's intent) and its sentiment, not the
customer's words, unless the batch quotes feedback (``include_feedback_text`` of
``customer_alerts``, ``CXPULSE_ALERTS_INCLUDE_FEEDBACK_TEXT``): alerts travel further
(webhooks, chat channels, tickets) than the tables that keep the text.
"""

from __future__ import annotations

from cxpulse.schemas.model import ExperienceModel
from cxpulse.streams.rules.base import At, Hit
from cxpulse.streams.rules.words import humane, one_line, what


class Detractor:
    name = "detractor"
    code = "dt"

    def check(self, at: At, model: ExperienceModel) -> Hit | None:
        r = model.alerts.detractor
        m, fb = at.moment, at.event.feedback
        parts: list[str] = []
        readings: list[float] = []
        if fb is not None and fb.nps is not None and fb.nps <= r.nps_at_most:
            parts.append(f"NPS {fb.nps}")
            readings.append(float(fb.nps))
        if fb is not None and fb.csat is not None and fb.csat <= r.csat_at_most:
            parts.append(f"CSAT {fb.csat}")
            readings.append((fb.csat - 1) * 2.5)
        if m.sentiment is not None and m.sentiment <= r.sentiment_at_most:
            quote = at.batch.quote_feedback
            text = one_line(fb.text, 80) if quote and fb is not None and fb.text else ""
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
            rule=self.name,
            t=at.t,
            trigger=at.hexid,
            event_ids=[at.hexid],
            magnitude=magnitude,
            large=magnitude >= r.escalate_at,
            explanation=f"{', '.join(parts)} after {what(m, model)}",
            action="answer what they said personally and close the loop",
        )
