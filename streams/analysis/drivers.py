"""Key drivers: each factor's importance per segment, learnt from what customers said.

The model file asserts importance (``factors.importance``, 1..10 per factor and segment);
this measures it. The question asked of the data: *how strongly does a customer's
satisfaction answer move with their experience of each factor?*

The method (docs/drivers.md says why each step, and its limits):

1. **One observation per customer who answered.** ``y`` is the customer's mean answer
   (CSAT, or NPS), mapped linearly to 0..10 by the model's own scale for it. ``x_f`` is the
   customer's mean gap (reading minus the tier's expectation) on factor ``f`` over their
   scored moments **that carried no answer and no text**: a surveyed moment's readings
   contain the answer itself (the delight level), so regressing the answer on them would
   measure the answer against itself. A factor the customer's moments never touched has
   ``x_f = 0``: as expected, the model's own neutral.
2. **Ordinary least squares** ``y = a + Σ β_f x_f`` over the factors that enough customers
   touched (``min_factor_customers``). Gaps are all on the 0..10 reading scale, so the raw
   coefficients compare across factors: ``β_f`` is how many answer points one point of gap
   on ``f`` is worth, which is what ``importance_f`` means in the valence
   ``Σ importance·gap / Σ importance`` (only its ratios matter there).
3. **Rescaled to the model's 1..10**: ``learnt_f = β_f · S`` with ``S`` such that the
   estimated factors keep the total importance the configured model gives them (the data
   redistributes the weight, it does not invent a new scale), lowered if needed so that
   none exceeds 10; the model file gets it rounded and clamped to 1..10.
   Factors whose gaps move together (correlation above ``INSEPARABLE``) enter as one
   regressor and split their weight as configured.
4. **A bootstrap** over customers (``resamples`` draws with replacement, seeded) refits
   and rescales each resample: the 95 % percentile interval of each ``learnt_f``.
5. **Below ``min_customers``** answering customers in a segment it says "not enough data"
   and estimates nothing; a factor touched by fewer than ``min_factor_customers`` of them
   is left out of the regression and keeps its configured importance; a learnt
   importance whose interval is wider than ``max_interval`` points is reported but not
   suggested (the model file keeps the configured one), and so is every importance of a
   segment whose gaps explain no more of the answers than chance (``n·R²`` below χ² at
   1 % for as many degrees of freedom as regressors).

Pure functions of rows shaped like the SQL below returns; ``cxpulse drivers``
(``cxpulse.streams.cli.drivers``) runs the SQL and prints or writes the results.
"""

from __future__ import annotations

import operator
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cxpulse.schemas.model import DEFAULT_SEGMENT, ExperienceModel
from cxpulse.schemas.vocabulary import FACTORS

#: Answering customers a segment needs before anything is estimated for it.
MIN_CUSTOMERS = 200
#: Answering customers who touched a factor before it enters the regression.
MIN_FACTOR_CUSTOMERS = 30
RESAMPLES = 200
#: χ² at 1 % for 1..6 degrees of freedom: the joint test of a segment's regression.
CHI2_99 = (6.635, 9.210, 11.345, 13.277, 15.086, 16.812)
#: A learnt importance is suggested only when its 95 % interval is at most this wide (on
#: 1..10); a wider one is reported but the configured importance is kept.
MAX_INTERVAL = 4.0
ANSWERS = ("csat", "nps")


def factor_sql(answer: str) -> str:
    """Per answering customer and factor: moments, mean reading, mean gap, over the scored
    moments that carried no survey answer and no text (their readings would contain the
    answer). Only customers who gave an ``answer`` answer: the rows stay within what a
    read-only query may return however large the customer base."""
    _check(answer)
    return (
        "SELECT segment, customer_id, factor, count() AS moments, "
        "avg(reading) AS mean_reading, avg(gap) AS mean_gap "
        "FROM moment_factors FINAL "
        "WHERE event_id IN (SELECT event_id FROM moments FINAL WHERE late = 0 "
        "AND sentiment IS NULL) "
        "AND event_id NOT IN (SELECT event_id FROM touchpoint_events FINAL "
        "WHERE csat IS NOT NULL OR nps IS NOT NULL OR ces IS NOT NULL OR feedback_text != '') "
        "AND customer_id IN (SELECT customer_id FROM touchpoint_events FINAL "
        f"WHERE {answer} IS NOT NULL) "
        "GROUP BY segment, customer_id, factor"
    )


def _check(answer: str) -> None:
    if answer not in ANSWERS:
        raise ValueError(f"answer {answer!r}: use one of {', '.join(ANSWERS)}")


def answer_sql(answer: str) -> str:
    """Per customer: how many ``answer`` answers, and their mean (raw scale)."""
    _check(answer)
    return (
        f"SELECT customer_id, count() AS answers, avg({answer}) AS mean_answer "
        f"FROM touchpoint_events FINAL WHERE {answer} IS NOT NULL GROUP BY customer_id"
    )


@dataclass(frozen=True, slots=True)
class Observation:
    """One answering customer: their mean answer on 0..10 and their factor gaps."""

    customer_id: str
    answer: float
    gaps: dict[str, float]  # only the factors their unsurveyed moments touched
    readings: dict[str, float]
    moments: dict[str, int]


@dataclass(frozen=True, slots=True)
class FactorDriver:
    """One factor of one segment: configured and learnt importance, and its performance."""

    factor: str
    configured: float
    customers: int  # answering customers whose moments touched it
    moments: int
    mean_reading: float | None
    mean_gap: float | None
    coefficient: float | None = None  # answer points per point of gap
    learnt: float | None = None  # on the model's 1..10 scale (unrounded, not clamped)
    low: float | None = None  # 95 % bootstrap interval of ``learnt``
    high: float | None = None
    note: str = ""  # why nothing was learnt, or why it is not suggested
    uncertain: bool = False  # learnt, but its interval is too wide to suggest it

    @property
    def suggested(self) -> int:
        """What the model file gets: the learnt importance rounded into 1..10, else (none
        learnt, or too uncertain) the configured one."""
        if self.learnt is None or self.uncertain:
            return round(self.configured)
        return max(1, min(10, round(self.learnt)))


@dataclass(frozen=True, slots=True)
class SegmentDrivers:
    """The key drivers of one segment (``model_segment``: its name in the model file)."""

    segment: str
    model_segment: str
    customers: int
    r2: float | None
    factors: list[FactorDriver] = field(default_factory=list)
    note: str = ""  # "not enough data: ..." when nothing was estimated
    compared_with: str = DEFAULT_SEGMENT  # the model's segment the configured values are of

    @property
    def estimated(self) -> bool:
        return self.r2 is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "model_segment": self.model_segment,
            "compared_with": self.compared_with,
            "customers": self.customers,
            "r2": _round(self.r2),
            "note": self.note,
            "factors": [
                {
                    "factor": f.factor,
                    "configured": f.configured,
                    "learnt": _round(f.learnt),
                    "ci95": [_round(f.low), _round(f.high)] if f.low is not None else None,
                    "suggested": f.suggested,
                    "coefficient": _round(f.coefficient),
                    "customers": f.customers,
                    "moments": f.moments,
                    "mean_reading": _round(f.mean_reading),
                    "mean_gap": _round(f.mean_gap),
                    "quadrant": quadrant(self, f),
                    "uncertain": f.uncertain,
                    "note": f.note,
                }
                for f in self.factors
            ],
        }


def _round(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)


def observations(
    factor_rows: Iterable[Sequence[Any]],
    answer_rows: Iterable[Sequence[Any]],
    model: ExperienceModel,
    answer: str = "csat",
) -> dict[str, list[Observation]]:
    """Answering customers by segment, from the rows of ``factor_sql`` and ``answer_sql``.

    A customer without unsurveyed moments tells nothing about factors and is left out; a
    customer seen in two segments counts in each (their moments' segment decides)."""
    scale = model.readings.answer_scale(answer)
    answers: dict[str, float] = {}
    for customer_id, _n, mean in answer_rows:
        x = 10.0 * (float(mean) - scale.zero) / (scale.ten - scale.zero)
        answers[str(customer_id)] = min(10.0, max(0.0, x))
    per: dict[tuple[str, str], Observation] = {}
    for segment, customer_id, factor, moments, mean_reading, mean_gap in factor_rows:
        cid = str(customer_id)
        if cid not in answers or factor not in FACTORS:
            continue
        key = (str(segment), cid)
        obs = per.get(key)
        if obs is None:
            obs = per[key] = Observation(cid, answers[cid], {}, {}, {})
        obs.gaps[factor] = float(mean_gap)
        obs.readings[factor] = float(mean_reading)
        obs.moments[factor] = int(moments)
    out: dict[str, list[Observation]] = defaultdict(list)
    for (segment, _), obs in sorted(per.items()):
        out[segment].append(obs)
    return dict(out)


def _solve(a: list[list[float]], b: list[float]) -> list[float] | None:
    """``a x = b`` by Gaussian elimination with partial pivoting; None when singular."""
    n = len(b)
    m = [[*row[:], b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-9:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            k = m[r][col] / m[col][col]
            if k:
                for c in range(col, n + 1):
                    m[r][c] -= k * m[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][c] * x[c] for c in range(r + 1, n))) / m[r][r]
    return x


def _products(rows: list[list[float]]) -> list[list[float]]:
    """Per row ``z = (1, x..., y)``: the upper triangle of ``z zᵀ``, flattened, so that the
    normal equations of any resample are sums of these."""
    out = []
    for z in rows:
        k = len(z)
        out.append([z[i] * z[j] for i in range(k) for j in range(i, k)])
    return out


def _fit(sums: list[float], k: int) -> tuple[list[float], float] | None:
    """OLS coefficients (intercept first) and R² from the summed products of ``k``
    columns (1, x..., y); None when the design is singular."""
    idx = {}
    p = 0
    for i in range(k):
        for j in range(i, k):
            idx[i, j] = idx[j, i] = p
            p += 1
    q = k - 1  # the columns of the design: 1 and the x
    xtx = [[sums[idx[i, j]] for j in range(q)] for i in range(q)]
    xty = [sums[idx[i, q]] for i in range(q)]
    beta = _solve(xtx, xty)
    if beta is None:
        return None
    n = sums[idx[0, 0]]
    sy, syy = sums[idx[0, q]], sums[idx[q, q]]
    tss = syy - sy * sy / n
    rss = syy - sum(b * v for b, v in zip(beta, xty, strict=True))
    r2 = 1.0 - rss / tss if tss > 1e-12 else 0.0
    return beta, r2


#: Two factors whose gaps correlate above this across customers cannot be told apart
#: (on the same touchpoints, and no effort metric of their own): they enter as one.
INSEPARABLE = 0.95


def _corr(a: Sequence[float], b: Sequence[float]) -> float:
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    sab = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    saa = sum((x - ma) ** 2 for x in a)
    sbb = sum((y - mb) ** 2 for y in b)
    return sab / (saa * sbb) ** 0.5 if saa > 0 and sbb > 0 else 0.0


def _groups(
    used: Sequence[str], obs: Sequence[Observation], configured: Mapping[str, float]
) -> list[tuple[str, ...]]:
    """The regressors: each factor alone, except factors whose gaps move together
    (correlation above ``INSEPARABLE``), which enter as one group."""
    cols = {f: [o.gaps.get(f, 0.0) for o in obs] for f in used}
    groups: list[list[str]] = []
    for f in used:
        home = next(
            (g for g in groups if any(_corr(cols[f], cols[m]) > INSEPARABLE for m in g)), None
        )
        if home is None:
            groups.append([f])
        else:
            home.append(f)
    return [tuple(g) for g in groups]


def _column(group: Sequence[str], o: Observation, configured: Mapping[str, float]) -> float:
    """A group's regressor: its members' gaps weighted by their configured importance."""
    if len(group) == 1:
        return o.gaps.get(group[0], 0.0)
    w = sum(configured[f] for f in group)
    return sum(configured[f] * o.gaps.get(f, 0.0) for f in group) / w


def _members(
    groups: Sequence[Sequence[str]], beta: Sequence[float], configured: Mapping[str, float]
) -> dict[str, float]:
    """Each factor's coefficient: a group's split in proportion to configured importance."""
    out = {}
    for group, b in zip(groups, beta, strict=True):
        w = sum(configured[f] for f in group)
        for f in group:
            out[f] = b * configured[f] / w
    return out


def estimate(
    segment: str,
    obs: Sequence[Observation],
    model: ExperienceModel,
    *,
    min_customers: int = MIN_CUSTOMERS,
    min_factor_customers: int = MIN_FACTOR_CUSTOMERS,
    resamples: int = RESAMPLES,
    max_interval: float = MAX_INTERVAL,
    seed: int = 0,
) -> SegmentDrivers:
    """The key drivers of one segment from its answering customers (module docstring)."""
    importance = model.factors.importance
    # events without a segment are scored with the default importances; a segment the
    # model does not list is scored with them too, and learns its own (a new segment)
    model_segment = segment or DEFAULT_SEGMENT
    compared = model_segment if model_segment in importance else DEFAULT_SEGMENT
    configured = importance[compared].as_dict()
    touched = {f: sum(1 for o in obs if f in o.gaps) for f in FACTORS}
    moments = {f: sum(o.moments.get(f, 0) for o in obs) for f in FACTORS}

    def performance(f: str, attr: str) -> float | None:
        total = sum(getattr(o, attr)[f] * o.moments[f] for o in obs if f in o.gaps)
        return total / moments[f] if moments[f] else None

    def plain(f: str, note: str) -> FactorDriver:
        return FactorDriver(
            f,
            configured[f],
            touched[f],
            moments[f],
            performance(f, "readings"),
            performance(f, "gaps"),
            note=note,
        )

    name = segment or "(no segment)"
    if len(obs) < min_customers:
        note = f"not enough data: {len(obs)} answering customers, fewer than {min_customers}"
        return SegmentDrivers(
            name,
            model_segment,
            len(obs),
            None,
            [plain(f, note) for f in FACTORS],
            note,
            compared_with=compared,
        )
    used = [f for f in FACTORS if touched[f] >= min_factor_customers]
    left = {
        f: f"not enough data: touched by {touched[f]} answering customers, fewer than "
        f"{min_factor_customers}: kept as configured"
        for f in FACTORS
        if f not in used
    }
    groups = _groups(used, obs, configured)
    rows = [[1.0, *(_column(g, o, configured) for g in groups), o.answer] for o in obs]
    prods = _products(rows)
    k = len(groups) + 2
    total = [sum(col) for col in zip(*prods, strict=True)]
    fitted = _fit(total, k) if used else None
    if fitted is None:
        note = "no estimate: no factor varies independently enough among these customers"
        return SegmentDrivers(
            name,
            model_segment,
            len(obs),
            None,
            [plain(f, left.get(f, note)) for f in FACTORS],
            compared_with=compared,
        )
    beta, r2 = fitted
    coef = _members(groups, beta[1:], configured)
    positive = {f: max(0.0, c) for f, c in coef.items()}
    if sum(positive.values()) <= 0:
        note = "no factor's gap raises the answer here: nothing to learn"
        return SegmentDrivers(
            name,
            model_segment,
            len(obs),
            r2,
            [plain(f, left.get(f, note)) for f in FACTORS],
            compared_with=compared,
        )
    total_weight = sum(configured[f] for f in used)

    def rescale(pos: Mapping[str, float]) -> float:
        """``S``: the configured total kept, none above 10 (module docstring, step 3)."""
        return min(total_weight / sum(pos.values()), 10.0 / max(pos.values()))

    scale = rescale(positive)
    # The joint test (Lagrange multiplier: n·R² against χ² with one degree of freedom per
    # regressor, 1 %): below it the gaps explain no more of the answers than chance would.
    chance = len(obs) * r2
    critical = CHI2_99[min(len(groups), len(CHI2_99)) - 1]
    explained = chance > critical
    rng = random.Random(seed)
    draws: dict[str, list[float]] = {f: [] for f in used}
    n = len(prods)
    columns = list(zip(*prods, strict=True))
    for _ in range(resamples):
        counts = [0] * n  # how often each customer is drawn
        for i in rng.choices(range(n), k=n):
            counts[i] += 1
        sums = [sum(map(operator.mul, counts, col)) for col in columns]
        again = _fit(sums, k)
        if again is None:
            continue
        pos = {f: max(0.0, b) for f, b in _members(groups, again[0][1:], configured).items()}
        if sum(pos.values()) <= 0:
            continue
        # rescaled within the resample: the scale is estimated from the data too
        s_b = rescale(pos)
        for f, b in pos.items():
            draws[f].append(b * s_b)
    factors = []
    for f in FACTORS:
        if f not in coef:
            factors.append(plain(f, left[f]))
            continue
        d = sorted(draws[f])
        lo = d[int(0.025 * (len(d) - 1))] if d else None
        hi = d[round(0.975 * (len(d) - 1))] if d else None
        group = next(g for g in groups if f in g)
        note = "" if coef[f] > 0 else "its gap does not raise the answer: floor 1"
        if len(group) > 1:
            others = ", ".join(g for g in group if g != f)
            note = (
                f"moves with {others} in these customers' moments: their joint weight is "
                "split as configured"
            )
        uncertain = lo is None or hi is None or hi - lo > max_interval or not explained
        if not explained:
            note = (
                f"the gaps explain no more of the answers than chance (n·R² {chance:.1f}, "
                f"below {critical:g}): kept as configured"
            )
        elif uncertain:
            interval = f"{lo:.1f}–{hi:.1f}" if lo is not None and hi is not None else "unknown"
            note = (
                f"too uncertain: its 95% interval ({interval}) is wider than {max_interval:g} "
                "points: kept as configured"
            )
        base = plain(f, note)
        factors.append(
            FactorDriver(
                **{
                    **{s: getattr(base, s) for s in FactorDriver.__slots__},
                    "coefficient": coef[f],
                    "learnt": positive[f] * scale,
                    "low": lo,
                    "high": hi,
                    "uncertain": uncertain,
                }
            )
        )
    return SegmentDrivers(name, model_segment, len(obs), r2, factors, compared_with=compared)


def learn(
    factor_rows: Iterable[Sequence[Any]],
    answer_rows: Iterable[Sequence[Any]],
    model: ExperienceModel,
    *,
    answer: str = "csat",
    min_customers: int = MIN_CUSTOMERS,
    min_factor_customers: int = MIN_FACTOR_CUSTOMERS,
    resamples: int = RESAMPLES,
    max_interval: float = MAX_INTERVAL,
    seed: int = 0,
) -> list[SegmentDrivers]:
    """Every segment's key drivers, the largest segment first."""
    by_segment = observations(factor_rows, answer_rows, model, answer)
    out = [
        estimate(
            segment,
            obs,
            model,
            min_customers=min_customers,
            min_factor_customers=min_factor_customers,
            resamples=resamples,
            max_interval=max_interval,
            seed=seed,
        )
        for segment, obs in by_segment.items()
    ]
    return sorted(out, key=lambda s: (-s.customers, s.segment))


# -- reading the result -----------------------------------------------------------------

QUADRANTS = {
    (True, True): "fix first",  # important, below expectation
    (True, False): "keep up",  # important, meets it
    (False, True): "improve later",  # less important, below expectation
    (False, False): "maintain",  # less important, meets it (perhaps more than needed)
}


def _importance(f: FactorDriver) -> float:
    return f.learnt if f.learnt is not None else f.configured


def quadrant(seg: SegmentDrivers, f: FactorDriver) -> str | None:
    """Where ``f`` falls in the importance × performance matrix: importance above the
    segment's mean (learnt where learnt, else configured), performance below expectation
    (mean gap < 0)."""
    if f.mean_gap is None:
        return None
    shown = [x for x in seg.factors if x.mean_gap is not None]
    mean = sum(_importance(x) for x in shown) / len(shown)
    return QUADRANTS[_importance(f) > mean, f.mean_gap < 0]


def _free(grid: list[list[str]], r: int, c: int, n: int) -> tuple[int, int]:
    """The nearest place for an ``n``-letter label at (r, c) that covers no other label
    (the axes may be covered): the same row first, then the rows next to it."""
    height, width = len(grid), len(grid[0])
    for dr in (0, -1, 1, -2, 2):
        for dc in (0, n + 1, -(n + 1), 2 * (n + 1), -2 * (n + 1)):
            rr, cc = r + dr, c + dc
            if (
                0 <= rr < height
                and 0 <= cc <= width - n
                and all(
                    grid[rr][cc + i] in " |-+"
                    for i in range(-1 if cc else 0, n + 1 if cc + n < width else n)
                )
            ):
                return rr, cc
    return r, c


def priority_grid(seg: SegmentDrivers, width: int = 60, height: int = 12) -> list[str]:
    """The importance × performance matrix as text: importance up (1..10), mean gap
    across; ``|`` is the expectation (gap 0), ``-`` the segment's mean importance. Each
    factor by its first four letters, in capitals where its importance was learnt (lower
    case: the configured one). The corners name the quadrants where no factor sits."""
    shown = [f for f in seg.factors if f.mean_gap is not None]
    if not shown:
        return ["(no moments to place)"]
    gaps = [f.mean_gap for f in shown if f.mean_gap is not None]
    lo, hi = min(min(gaps), -0.5), max(max(gaps), 0.5)
    span = hi - lo
    grid = [[" "] * width for _ in range(height)]
    zero = round((0 - lo) / span * (width - 1))
    mean = sum(_importance(f) for f in shown) / len(shown)
    mid = height - 1 - round((mean - 1) / 9 * (height - 1))
    for r in range(height):
        grid[r][zero] = "|"
    for c in range(width):
        grid[mid][c] = "+" if c == zero else "-"
    for f in shown:
        assert f.mean_gap is not None
        c = round((f.mean_gap - lo) / span * (width - 1))
        r = height - 1 - round((min(10.0, max(1.0, _importance(f))) - 1) / 9 * (height - 1))
        label = f.factor[:4].upper() if f.learnt is not None else f.factor[:4]
        c = max(0, min(width - len(label), c - len(label) // 2))
        r, c = _free(grid, r, c, len(label))
        for i, ch in enumerate(label):
            grid[r][c + i] = ch
    # The quadrants' names go in the corners a factor leaves free: factors first, since
    # with every gap below expectation they all crowd the left side.
    corners = (
        (0, 0, "fix first"),
        (0, width - 7, "keep up"),
        (height - 1, 0, "improve later"),
        (height - 1, width - 8, "maintain"),
    )
    for r, c, text in corners:
        if all(grid[r][c + i] in " |-+" for i in range(len(text))):
            for i, ch in enumerate(text):
                grid[r][c + i] = ch
    lines = [
        f"{'10' if r == 0 else ' 1' if r == height - 1 else '  '} {''.join(row)}"
        for r, row in enumerate(grid)
    ]
    lines.insert(0, "importance ↑")
    axis = f"mean gap {lo:+.1f}"
    end = f"{hi:+.1f} →"
    lines.append("   " + axis + " " * max(1, width - len(axis) - len(end)) + end)
    return lines


def matrix_svg(results: Sequence[SegmentDrivers], panel: int = 360) -> str:
    """The importance × performance matrices as one SVG picture, a panel per segment:
    importance up (1..10), mean gap across (the dashed line is the expectation, the
    dotted one the segment's mean importance), each factor a dot with its name, filled
    where its importance was learnt, hollow where it is the configured one."""
    from html import escape

    pad, top = 110, 40
    shown = [s for s in results if any(f.mean_gap is not None for f in s.factors)]
    width = max(1, len(shown)) * (panel + pad) + pad
    height = panel + top + pad + 24
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for i, seg in enumerate(shown):
        x0, y0 = pad + i * (panel + pad), top
        factors = [f for f in seg.factors if f.mean_gap is not None]
        gaps = [f.mean_gap for f in factors if f.mean_gap is not None]
        lo, hi = min(min(gaps), -0.5), max(max(gaps), 0.5)
        lo, hi = lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)

        def px(gap: float, lo: float = lo, hi: float = hi, x0: int = x0) -> float:
            return x0 + (gap - lo) / (hi - lo) * panel

        def py(imp: float, y0: int = y0) -> float:
            return y0 + (10.0 - min(10.0, max(1.0, imp))) / 9.0 * panel

        mean = sum(_importance(f) for f in factors) / len(factors)
        r2 = f", R² {seg.r2:.2f}" if seg.r2 is not None else ""
        out += [
            f'<text x="{x0}" y="{y0 - 14}" font-weight="bold">'
            f"{escape(seg.segment)}: {seg.customers} answering customers{r2}</text>",
            f'<rect x="{x0}" y="{y0}" width="{panel}" height="{panel}" fill="none" stroke="#888"/>',
            f'<line x1="{px(0):.1f}" y1="{y0}" x2="{px(0):.1f}" y2="{y0 + panel}" '
            'stroke="#555" stroke-dasharray="6 4"/>',
            f'<line x1="{x0}" y1="{py(mean):.1f}" x2="{x0 + panel}" y2="{py(mean):.1f}" '
            'stroke="#555" stroke-dasharray="2 3"/>',
            f'<text x="{x0 + 4}" y="{y0 + 14}" fill="#b00">fix first</text>',
            f'<text x="{x0 + panel - 4}" y="{y0 + 14}" text-anchor="end" fill="#070">'
            "keep up</text>",
            f'<text x="{x0 + 4}" y="{y0 + panel - 6}" fill="#a60">improve later</text>',
            f'<text x="{x0 + panel - 4}" y="{y0 + panel - 6}" text-anchor="end" '
            'fill="#666">maintain</text>',
            f'<text x="{x0 + panel / 2}" y="{y0 + panel + 30}" text-anchor="middle">'
            f"mean gap ({lo:+.1f} … {hi:+.1f}; dashed: as expected)</text>",
            f'<text x="{x0 - 30}" y="{y0 + panel / 2}" text-anchor="middle" '
            f'transform="rotate(-90 {x0 - 30} {y0 + panel / 2})">importance 1–10</text>',
            f'<text x="{x0 - 4}" y="{y0 + 4}" text-anchor="end">10</text>',
            f'<text x="{x0 - 4}" y="{y0 + panel}" text-anchor="end">1</text>',
        ]
        placed: list[tuple[float, float]] = []
        for f in factors:
            assert f.mean_gap is not None
            cx, cy = px(f.mean_gap), py(_importance(f))
            fill = "#1f5fa8" if f.learnt is not None else "white"
            out.append(
                f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{fill}" stroke="#1f5fa8"/>'
            )
            # the nearest free line for the name: on the dot, else just above or below
            ty = next(
                (
                    cy + 4 + d
                    for d in (0, -13, 13, -26, 26, -39, 39)
                    if not any(abs(cy + 4 + d - y) < 13 and abs(cx - x) < 80 for x, y in placed)
                ),
                cy + 4,
            )
            placed.append((cx, ty))
            out.append(f'<text x="{cx + 8:.1f}" y="{ty:.1f}">{escape(f.factor)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# -- the suggested model file ---------------------------------------------------------

_TOP_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")


def _fmt(v: float | None) -> str:
    return "?" if v is None else f"{v:.1f}"


def factors_block(
    results: Sequence[SegmentDrivers], model: ExperienceModel, header: Sequence[str]
) -> list[str]:
    """The ``factors:`` section of the suggested model: learnt importances where there
    was enough data, the configured ones elsewhere, a comment per segment with n, R² and
    each factor's interval."""
    learnt = {s.model_segment: s for s in results if s.estimated}
    lines = ["factors:", *(f"  # {h}" for h in header), "  importance:"]
    names = sorted(set(model.factors.importance) | set(learnt), key=lambda s: (s != "default", s))
    for name in names:
        seg = learnt.get(name)
        conf = model.factors.importance.get(name, model.factors.importance[DEFAULT_SEGMENT])
        values = conf.as_dict()
        if seg is None:
            lines.append(f"    # {name}: kept as configured (not enough data to learn it)")
        else:
            r2 = f", R² {seg.r2:.2f}" if seg.r2 is not None else ""
            lines.append(f"    # {name}: learnt from {seg.customers} answering customers{r2}")
            for f in seg.factors:
                if f.learnt is not None and not f.uncertain:
                    lines.append(
                        f"    #   {f.factor}: {f.learnt:.1f} [95% CI {_fmt(f.low)}..{_fmt(f.high)}]"
                        f", {f.customers} customers (configured {f.configured:g})"
                    )
                else:
                    lines.append(f"    #   {f.factor}: {f.configured:g} kept ({f.note})")
                values[f.factor] = f.suggested
        body = ", ".join(f"{f}: {round(values[f])}" for f in FACTORS)
        lines.append(f"    {name}: {{{body}}}")
    return lines


def suggested_model(
    text: str,
    results: Sequence[SegmentDrivers],
    model: ExperienceModel,
    header: Sequence[str],
) -> str:
    """``text`` (the model file in use) with its ``factors:`` section replaced by
    ``factors_block``; every other line, comments included, is kept as it was."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"^factors\s*:", line)), None)
    block = factors_block(results, model, header)
    if start is None:
        return "\n".join([*lines, *block]) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if _TOP_KEY.match(lines[i])), len(lines))
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1
    return "\n".join([*lines[:start], *block, *lines[end:]]) + "\n"


def importances_of(results: Iterable[SegmentDrivers]) -> Mapping[str, Mapping[str, float]]:
    """Learnt importances by segment and factor (the estimated ones only)."""
    return {
        s.segment: {f.factor: f.learnt for f in s.factors if f.learnt is not None}
        for s in results
        if s.estimated
    }
