"""low_score: the score crosses below ``alerts.low_score.below``; re-arms only above
``rearm_above`` (hysteresis).

New customers (cx-model.md is silent; the choice a CX operations team expects). A score
resting on one episode is one moment, not an experience: a first failure scores 5, 10 or
13.8 for tiers A, B, C. So the rule waits for ``min_episodes`` episodes (2 by default);
until then it stays armed.

While it waits for the score to recover, the rule keeps a flag in the customer's alert
memory (``DISARMED``), so the hysteresis holds across batches.
"""

from __future__ import annotations

from cxpulse.schemas.model import ExperienceModel
from cxpulse.streams.core.decimals import rounded
from cxpulse.streams.rules.base import At, Hit
from cxpulse.streams.rules.words import what

DISARMED = "ls.off"  # present in alert_memory while the rule waits for the score to recover


class LowScore:
    name = "low_score"
    code = "ls"

    def check(self, at: At, model: ExperienceModel) -> Hit | None:
        ls = model.alerts.low_score
        m, memory = at.moment, at.batch.memory
        armed = DISARMED not in memory
        if armed and m.score_after < ls.below and at.batch.episodes_known() >= ls.min_episodes:
            memory[DISARMED] = 1
            below = ls.below - m.score_after
            return Hit(
                rule=self.name,
                t=at.t,
                trigger=at.hexid,
                event_ids=[at.hexid, *at.batch.hurt_most(0, model)],
                magnitude=rounded(below, 2),
                large=below >= ls.escalate_at,
                explanation=(
                    f"score fell to {m.score_after:.1f} (below {ls.below:g}) after {what(m, model)}"
                ),
                action="go through the moments that pulled the score down and put "
                "the worst one right",
            )
        if not armed and m.score_after > ls.rearm_above:
            del memory[DISARMED]
        return None
