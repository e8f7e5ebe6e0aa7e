"""channel_hopping: one intent tried on ``alerts.channel_hopping.channels`` or more
channels within ``window_hours`` with no successful outcome for it: the customer is
looking for a way that works. One success for the intent settles every earlier try."""

from __future__ import annotations

from typing import NamedTuple

from cxpulse.schemas.model import ExperienceModel
from cxpulse.streams.rules.base import At, Hit
from cxpulse.streams.rules.windows import densest, ids, opener
from cxpulse.streams.rules.words import duration, humane


class _Try(NamedTuple):
    t: int
    channel: str
    event_id: str


class ChannelHopping:
    name = "channel_hopping"
    code = "ch"

    def check(self, at: At, model: ExperienceModel) -> Hit | None:
        """Each channel counts with its latest unsuccessful try since the intent's last
        success (``cxpulse.streams.core.trail``); the moment itself counts with its own time."""
        r = model.alerts.channel_hopping
        m, t = at.moment, at.t
        if not m.intent or m.outcome == "success":
            return None
        known = at.batch.trail.intents.get(m.intent)
        if known is None or known.ok >= t:
            return None  # settled: the customer found a way
        hexid = at.hexid
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
            rule=self.name,
            t=t,
            trigger=opener(best, r.channels, t, model).event_id or hexid,
            event_ids=ids(best, hexid),
            magnitude=float(n),
            large=n >= r.escalate_at,
            explanation=(
                f"tried {about} on {n} channels ({channels}) in "
                f"{duration(best[-1].t - best[0].t)} without success"
            ),
            action=f"resolve the {about} in this one contact and tell the customer which way works",
        )
