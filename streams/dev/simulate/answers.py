"""Survey answers from known importances: the ground truth ``cxpulse drivers`` must find.

The simulator's own feedback follows how a moment went (its outcome and effort), not the
factors, so nothing in it says what each factor is worth. To check that the key-driver
analysis (``cxpulse.streams.analysis.drivers``) recovers importances, this replaces it:
every answer is removed, and each customer with at least two moments answers one CSAT
question at their last moment, generated from *true* importances ``T`` (per segment and
factor) and the customer's experience of the factors before it::

    x_f = the mean gap on f over the customer's other moments (0 if none touched f)
    u   = base + slope · Σ T_f x_f / Σ T_f + N(0, noise)        (on 0..10)
    csat = 1 + round(4 · clamp(u, 0, 10) / 10)                    (1..5)

The gaps are the worker's own: the events run through ``cxpulse.streams.core.apply_events``
with the model, exactly as the worker scores them, and none of those moments carries an
answer. Seeded: the same events, importances and seed give the same answers.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from cxpulse.schemas.model import ExperienceModel
from cxpulse.schemas.vocabulary import FACTORS

BASE, SLOPE, NOISE = 7.5, 3.0, 1.0


def answers_from_importance(
    events: Iterable[dict[str, Any]],
    true_importance: Mapping[str, Mapping[str, float]],
    *,
    seed: int = 0,
    model: ExperienceModel | None = None,
    base: float = BASE,
    slope: float = SLOPE,
    noise: float = NOISE,
) -> list[dict[str, Any]]:
    """``events`` (simulator dicts) with their feedback replaced by CSAT answers generated
    from ``true_importance[segment][factor]`` (module docstring). Returns new dicts in the
    same order; the input is not changed."""
    from cxpulse.schemas.events import TouchpointEvent
    from cxpulse.streams.core import apply_events
    from cxpulse.streams.model_check import load_model
    from cxpulse.streams.pipeline.records import record_of

    model = model if model is not None else load_model()
    rng = random.Random(seed)
    out = [{k: v for k, v in e.items() if k != "feedback"} for e in events]
    by_customer: dict[str, list[int]] = defaultdict(list)
    for i, e in enumerate(out):
        by_customer[e["customer_id"]].append(i)
    for cid in sorted(by_customer):
        idx = by_customer[cid]
        if len(idx) < 2:
            continue
        records = [record_of(TouchpointEvent.model_validate(out[i])) for i in idx]
        now = max(r.occurred_at for r in records) + timedelta(seconds=1)
        _, moments = apply_events(None, records, model, now)
        last = max(
            range(len(idx)), key=lambda j: (records[j].occurred_at, str(records[j].event_id))
        )
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        for j, m in enumerate(moments):
            if j == last or m is None or m.late:
                continue
            for f, g in m.gaps.items():
                sums[f] += g
                counts[f] += 1
        truth = true_importance[out[idx[last]].get("segment") or ""]
        weight = sum(truth[f] for f in FACTORS)
        v = sum(truth[f] * sums[f] / counts[f] for f in FACTORS if counts[f]) / weight
        u = min(10.0, max(0.0, base + slope * v + rng.gauss(0.0, noise)))
        out[idx[last]]["feedback"] = {"csat": 1 + round(4 * u / 10)}
    return out


def drivers_rows(
    events: Iterable[dict[str, Any]],
    model: ExperienceModel | None = None,
    answer: str = "csat",
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The rows ``cxpulse drivers`` reads from ClickHouse (``factor_sql(answer)`` and
    ``answer_sql(answer)`` of ``cxpulse.streams.analysis.drivers``), made in process from
    ``events`` by the worker's core: for tests and notebooks without a worker."""
    from cxpulse.schemas.events import TouchpointEvent
    from cxpulse.streams.core import apply_events
    from cxpulse.streams.model_check import load_model
    from cxpulse.streams.pipeline.records import record_of

    model = model if model is not None else load_model()
    by_customer: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_customer[e["customer_id"]].append(e)
    factor_rows: list[tuple[Any, ...]] = []
    answer_rows: list[tuple[Any, ...]] = []
    for cid in sorted(by_customer):
        evs = by_customer[cid]
        records = [record_of(TouchpointEvent.model_validate(e)) for e in evs]
        now = max(r.occurred_at for r in records) + timedelta(seconds=1)
        _, moments = apply_events(None, records, model, now)
        acc: dict[tuple[str, str], list[float]] = {}
        said = [e["feedback"][answer] for e in evs if (e.get("feedback") or {}).get(answer)]
        if said:
            answer_rows.append((cid, len(said), sum(said) / len(said)))
        for e, m in zip(evs, moments, strict=True):
            fb = e.get("feedback") or {}
            if m is None or m.late or any(fb.get(k) is not None for k in ANSWERED):
                continue
            for f, x in m.readings.items():
                a = acc.setdefault((m.segment or "", f), [0, 0.0, 0.0])
                a[0] += 1
                a[1] += x
                a[2] += m.gaps[f]
        for (segment, f), (n, readings, gaps) in sorted(acc.items()):
            factor_rows.append((segment, cid, f, int(n), readings / n, gaps / n))
    return factor_rows, answer_rows


#: A moment that carried any of these is left out of the factor rows, as factor_sql does.
ANSWERED = ("csat", "nps", "ces", "text")
