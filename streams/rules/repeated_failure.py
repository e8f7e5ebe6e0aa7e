"""repeated_failure: ``alerts.repeated_failure.count`` failures of one touchpoint type
within ``window_minutes`` (the customer is stuck, now). Counts outcome ``failure`` only:
an abandonment is the customer's choice. Fires from a customer's first moment."""

from __future__ import annotations

from cxpulse.schemas.model import ExperienceModel
from cxpulse.streams.rules.base import At, Hit
from cxpulse.streams.rules.windows import densest, ids, opener
from cxpulse.streams.rules.words import duration, label, places, plural


class RepeatedFailure:
    name = "repeated_failure"
    code = "rf"

    def check(self, at: At, model: ExperienceModel) -> Hit | None:
        r = model.alerts.repeated_failure
        m, t = at.moment, at.t
        if m.outcome != "failure":
            return None
        fails = [f for f in at.batch.trail.failures if f.touchpoint == m.touchpoint]
        best = densest(fails, t, int(r.window_minutes * 60))
        if len(best) < r.count:
            return None
        n, hexid = len(best), at.hexid
        name = label(model, m.touchpoint)
        what = f"{n} failed {plural(name)}" if name else f"{n} failures of {m.touchpoint}"
        latest = best[-1].instance or m.touchpoint_instance
        fault = f" at {latest}" if latest else ""
        task = f"the {name}" if name else m.touchpoint
        return Hit(
            rule=self.name,
            t=t,
            trigger=opener(best, r.count, t, model).event_id or hexid,
            event_ids=ids(best, hexid),
            magnitude=float(n),
            large=n >= r.escalate_at,
            explanation=(
                f"{what}{places([f.instance for f in best])} in {duration(best[-1].t - best[0].t)}"
            ),
            action=f"help the customer finish {task} another way and report the fault{fault}",
        )
