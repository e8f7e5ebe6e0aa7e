"""detractor: the customer said so: NPS at most ``alerts.detractor.nps_at_most``, CSAT at
most ``csat_at_most``, or the sentiment of their words at most ``sentiment_at_most``.

The alert names what the feedback is about and its sentiment, not the customer's words:
the topics its text names (``moments.topics``: "negative feedback about card blocked and
wait on phone"), else the event's intent; unless the batch quotes feedback
(``include_feedback_text`` of ``customer_alerts``, ``CXPULSE_ALERTS_INCLUDE_FEEDBACK_TEXT``):
alerts travel further (webhooks, chat channels, tickets) than the tables that keep the
text. A survey answer that fires it names the text's topics too ("NPS 3, feedback about
fees").
"""

from __future__ import annotations

from cxpulse.schemas.model import ExperienceModel
from cxpulse.streams.core.decimals import rounded
from cxpulse.streams.rules.base import At, Hit
from cxpulse.streams.rules.words import humane, one_line, what


class Detractor:
    name = "detractor"
    code = "dt"

    def check(self, at: At, model: ExperienceModel) -> Hit | None:
        r = model.alerts.detractor
        m, fb, sentiment = at.moment, at.event.feedback, at.moment.sentiment
        negative = sentiment is not None and sentiment <= r.sentiment_at_most
        if fb is None and not negative:
            return None  # no survey answer and no negative words: most moments
        parts: list[str] = []
        readings: list[float] = []
        if fb is not None and fb.nps is not None and fb.nps <= r.nps_at_most:
            parts.append(f"NPS {fb.nps}")
            readings.append(float(fb.nps))
        if fb is not None and fb.csat is not None and fb.csat <= r.csat_at_most:
            parts.append(f"CSAT {fb.csat}")
            readings.append((fb.csat - 1) * 2.5)
        if not parts and not negative:
            return None
        topics = " and ".join(humane(t) for t in m.topics)
        if sentiment is not None and negative:
            quote = at.batch.quote_feedback
            text = one_line(fb.text, 80) if quote and fb is not None and fb.text else ""
            if text:
                parts.append(f'said "{text}"')
            else:  # the topic and how negative, never the words (they stay in moments)
                subject = topics or (humane(m.intent) if m.intent else "")
                about = f" about {subject}" if subject else ""
                parts.append(f"negative feedback{about} (sentiment {sentiment:.2f})")
                topics = ""  # named
            readings.append(5 + 5 * sentiment)
        if topics:  # a survey answer (or a quoted text) of a moment whose text names topics
            parts.append(f"feedback about {topics}")
        magnitude = rounded(10 - min(readings), 2)
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
