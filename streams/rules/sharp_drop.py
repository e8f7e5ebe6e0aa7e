"""sharp_drop: the score is ``alerts.sharp_drop.drop`` points or more below its highest of
the last ``window_hours``, on a moment that lowered it.

The highest is taken from the batch's story of the score (``Batch.highs``): the hourly
highs the state remembers and the batch's own moments, each at the watermark it was
scored at, from the customer's second moment on (a first moment's score is the neutral 50
moved by that one moment, no reference to fall from).
"""

from __future__ import annotations

from cxpulse.schemas.model import ExperienceModel
from cxpulse.streams.core.decimals import rounded
from cxpulse.streams.rules.base import At, Hit
from cxpulse.streams.rules.words import duration, what


class SharpDrop:
    name = "sharp_drop"
    code = "sd"

    def check(self, at: At, model: ExperienceModel) -> Hit | None:
        sd = model.alerts.sharp_drop
        m, watermark = at.moment, at.watermark
        if m.score_after >= at.prev_score:
            return None
        window = int(sd.window_hours * 3600)
        # the highest of the window, looked for only when the score fell; the latest
        # time at the peak: how fast it fell from there
        top: tuple[float, int] | None = None
        for ht, s in at.batch.highs:
            if watermark - window < ht <= watermark and (top is None or (s, ht) > top):
                top = (s, ht)
        if top is None:
            return None
        peak, peak_t = top
        drop = peak - m.score_after
        if drop < sd.drop:
            return None
        return Hit(
            rule=self.name,
            t=at.t,
            trigger=at.hexid,
            event_ids=[at.hexid, *at.batch.hurt_most(watermark - window, model)],
            magnitude=rounded(drop, 2),
            large=drop >= sd.escalate_at,
            explanation=(
                f"score fell {drop:.0f} points in "
                f"{duration(watermark - peak_t)} (from {peak:.0f} to "
                f"{m.score_after:.0f}) after {what(m, model)}"
            ),
            action="find what went wrong in the listed moments and put it right before it sets",
        )
