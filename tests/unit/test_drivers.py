"""Key drivers (``cxpulse drivers``): known importances come back from simulated answers.

A simulated population (8,000 customers over three days, ~32,000 events) runs through the
worker's own core in process; each customer with two moments or more answers one CSAT
question generated from TRUE importances × their factor gaps plus noise
(``cxpulse.streams.dev.simulate.answers``). The analysis must find TRUE again.

The tolerance comes from measurements: over six seeds (1, 2, 3, 5, 7, 11) of this
population, the largest error of a learnt importance against the truth on the same scale
was 1.76 (retail's price, seed 7: price and brand share the product page), most were
below 0.8, and the mean absolute error per segment 0.22..0.74. Since routine moments are
a gap of 0 (2026-12-04) and the answers follow ``7.5 + 3·v`` (answers.py), the same six
seeds give a largest error of 2.52 (retail's price, seed 2; 2.31 with seed 7) and means
of 0.21..1.15; seed 3, the test's, a largest error of 1.45 and means of 0.58 and 0.37.
The bounds are set so all six seeds meet them (checked on 2026-12-04, the test runs
seed 3): every factor within 2.6, the mean error within 1.2, the order of every two
factors whose true importances differ by 3 or more kept, and the truth inside at least
9 of the 12 95 % intervals (seeds 1, 2 and 11 have 9: the bootstrap intervals are too
narrow for a linear model of answers that are not quite linear, docs/drivers.md).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from cxpulse.streams.analysis.drivers import (
    SegmentDrivers,
    learn,
    matrix_svg,
    priority_grid,
    quadrant,
    suggested_model,
)
from cxpulse.streams.dev.simulate import generate
from cxpulse.streams.dev.simulate.answers import answers_from_importance, drivers_rows
from cxpulse.streams.model_check import DEFAULT_MODEL_PATH, check_model_file, load_model

#: Deliberately unlike the shipped model's (retail_banking 6/9/7/8/5/5, retail 9/6/4/8/6/8).
TRUE = {
    "retail_banking": {
        "product": 3,
        "service": 9,
        "relationship": 5,
        "convenience": 6,
        "brand": 5,
        "price": 5,
    },
    "retail": {
        "product": 8,
        "service": 3,
        "relationship": 2,
        "convenience": 9,
        "brand": 5,
        "price": 7,
    },
}
TOLERANCE = 2.6
MEAN_TOLERANCE = 1.2
START = datetime(2026, 11, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def rows() -> tuple[list[Any], list[Any]]:
    events = list(generate(8_000, seed=3, duration=timedelta(days=3), start=START))
    answered = answers_from_importance(events, TRUE, seed=3)
    return drivers_rows(answered)


@pytest.fixture(scope="module")
def results(rows: tuple[list[Any], list[Any]]) -> list[SegmentDrivers]:
    return learn(*rows, load_model(), seed=3)


def on_truth_scale(seg: SegmentDrivers) -> dict[str, tuple[float, float]]:
    """(learnt, truth) per estimated factor, the truth scaled to the learnt total: only
    the ratios of importances mean anything (the valence divides by their sum)."""
    used = [f for f in seg.factors if f.learnt is not None]
    truth = TRUE[seg.segment]
    k = sum(f.learnt for f in used if f.learnt is not None) / sum(truth[f.factor] for f in used)
    return {f.factor: (f.learnt, truth[f.factor] * k) for f in used if f.learnt is not None}


def test_known_importances_come_back(results: list[SegmentDrivers]) -> None:
    assert [s.segment for s in results] == ["retail_banking", "retail"]
    inside = total = 0
    for seg in results:
        assert seg.estimated and seg.customers > 2_500, seg
        assert seg.r2 is not None and seg.r2 > 0.5, seg
        pairs = on_truth_scale(seg)
        assert set(pairs) == set(TRUE[seg.segment]), seg  # all six estimated
        errors = {f: learnt - truth for f, (learnt, truth) in pairs.items()}
        assert max(abs(e) for e in errors.values()) <= TOLERANCE, (seg.segment, errors)
        assert sum(abs(e) for e in errors.values()) / len(errors) <= MEAN_TOLERANCE, errors
        truth = TRUE[seg.segment]
        for a in truth:
            for b in truth:
                if truth[a] - truth[b] >= 3:
                    assert pairs[a][0] > pairs[b][0], (seg.segment, a, b, pairs)
        for f in seg.factors:
            assert f.low is not None and f.high is not None and f.learnt is not None
            assert f.low <= f.learnt <= f.high, f
            total += 1
            inside += f.low <= pairs[f.factor][1] <= f.high
    assert inside >= total - 3, (inside, total)


def test_factors_that_move_together_share_their_weight(results: list[SegmentDrivers]) -> None:
    """Banking customers meet brand and price only on the product page, together: no data
    can tell them apart, so they enter as one and split as configured (5 and 5)."""
    bank = next(s for s in results if s.segment == "retail_banking")
    brand, price = (next(f for f in bank.factors if f.factor == n) for n in ("brand", "price"))
    assert brand.learnt == price.learnt and "moves with price" in brand.note
    retail = next(s for s in results if s.segment == "retail")
    assert all(not f.note for f in retail.factors)


def test_a_small_segment_says_not_enough_data(rows: tuple[list[Any], list[Any]]) -> None:
    factor_rows, answer_rows = rows
    few = {r[0] for r in answer_rows[:150]}
    small = learn([r for r in factor_rows if r[1] in few], answer_rows, load_model())
    assert small and all(not s.estimated for s in small)
    for seg in small:
        assert seg.note.startswith("not enough data:") and "fewer than 200" in seg.note
        assert all(f.learnt is None and f.suggested == f.configured for f in seg.factors)


def test_a_factor_few_touched_keeps_its_configured_importance(
    rows: tuple[list[Any], list[Any]],
) -> None:
    factor_rows, answer_rows = rows
    (seg,) = [
        s
        for s in learn(factor_rows, answer_rows, load_model(), min_factor_customers=1_000)
        if s.segment == "retail"
    ]
    kept = {f.factor for f in seg.factors if f.learnt is None}
    assert kept and all("kept as configured" in f.note for f in seg.factors if f.factor in kept), (
        seg
    )


def test_the_matrix_places_every_factor(results: list[SegmentDrivers]) -> None:
    for seg in results:
        text = "\n".join(priority_grid(seg))
        for f in seg.factors:
            assert f.factor[:4].upper() in text, (f.factor, text)
            assert quadrant(seg, f) in {"fix first", "keep up", "improve later", "maintain"}
        # the most important factor sits above every other one (on the top row only when
        # its learnt importance rounds to 10 there)
        rows = priority_grid(seg)[1:-1]
        row = {
            f.factor: next(i for i, r in enumerate(rows) if f.factor[:4].upper() in r)
            for f in seg.factors
        }
        top = max(seg.factors, key=lambda f: f.learnt or 0)
        assert row[top.factor] == min(row.values()), text


def test_the_suggested_model_checks_and_keeps_the_rest(
    results: list[SegmentDrivers], tmp_path: Path
) -> None:
    model = load_model()
    original = DEFAULT_MODEL_PATH.read_text()
    text = suggested_model(original, results, model, ["learnt in a test"])
    path = tmp_path / "suggested.yaml"
    path.write_text(text)
    assert check_model_file(path).startswith("model ok:")
    learnt = load_model(path).factors.importance
    for seg in results:
        for f in seg.factors:
            assert getattr(learnt[seg.segment], f.factor) == f.suggested
            assert 1 <= f.suggested <= 10
    # the segment nobody answered for is kept, said so; n and intervals are comments
    assert learnt["default"] == model.factors.importance["default"]
    assert "# default: kept as configured" in text
    assert re.search(r"# retail: learnt from \d+ answering customers, R² 0\.\d\d", text)
    assert re.search(r"#   service: \d+\.\d \[95% CI \d+\.\d\.\.\d+\.\d\]", text)
    # every line outside the factors section is as it was, comments included
    assert _outside_factors(text) == _outside_factors(original)


def _outside_factors(text: str) -> Sequence[str]:
    lines = text.splitlines()
    start = lines.index("factors:")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("expectations:"))
    while lines[end - 1].startswith("#") or not lines[end - 1].strip():
        end -= 1
    return lines[:start] + lines[end:]


def test_an_uncertain_importance_is_reported_but_not_suggested(
    rows: tuple[list[Any], list[Any]],
) -> None:
    uncertain = 0
    for seg in learn(*rows, load_model(), max_interval=0.5, resamples=50):
        for f in seg.factors:
            assert f.learnt is not None and f.low is not None and f.high is not None
            assert f.uncertain == (f.high - f.low > 0.5), f
            if f.uncertain:
                uncertain += 1
                assert f.suggested == f.configured and f.note.startswith("too uncertain:"), f
    assert uncertain >= 8


def test_answers_unrelated_to_the_gaps_suggest_nothing(
    rows: tuple[list[Any], list[Any]],
) -> None:
    """The same customers with their answers shuffled among them: whatever the regression
    finds is chance, and the joint test says so. (It is a test at 1 %: over twelve
    shuffles n·R² was 1.4..8.1 but for one 13.9 and one 17.2, the latter above its line.)"""
    factor_rows, answer_rows = rows
    shuffled = [r[1:] for r in answer_rows]
    random.Random(0).shuffle(shuffled)
    answers = [(r[0], *other) for r, other in zip(answer_rows, shuffled, strict=True)]
    for seg in learn(factor_rows, answers, load_model(), resamples=50):
        assert seg.r2 is not None and seg.r2 < 0.01, seg
        for f in seg.factors:
            assert f.uncertain and f.suggested == f.configured, f
            assert "no more of the answers than chance" in f.note, f


def test_the_matrix_as_svg_has_a_dot_and_a_name_per_factor(
    results: list[SegmentDrivers],
) -> None:
    root = ElementTree.fromstring(matrix_svg(results))
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text or "" for t in root.iter(f"{ns}text")]
    dots = list(root.iter(f"{ns}circle"))
    assert len(dots) == sum(len(s.factors) for s in results) == 12
    assert all(d.get("fill") == "#1f5fa8" for d in dots)  # all learnt: filled
    for seg in results:
        assert any(t.startswith(f"{seg.segment}: {seg.customers} answering") for t in texts)
        for f in seg.factors:
            assert f.factor in texts
    assert {"fix first", "keep up", "improve later", "maintain"} <= set(texts)


def test_a_segment_the_model_does_not_list_is_learnt_as_a_new_one(
    rows: tuple[list[Any], list[Any]], tmp_path: Path
) -> None:
    """It is scored with the default importances, so it is compared with them, and the
    suggested model gets a segment of its own; default stays as configured."""
    factor_rows, answer_rows = rows
    renamed = [("private_banking", *r[1:]) if r[0] == "retail" else r for r in factor_rows]
    model = load_model()
    results = learn(renamed, answer_rows, model, resamples=50)
    new = next(s for s in results if s.segment == "private_banking")
    assert new.model_segment == "private_banking" and new.compared_with == "default"
    assert [f.configured for f in new.factors] == list(
        model.factors.importance["default"].as_dict().values()
    )
    path = tmp_path / "suggested.yaml"
    path.write_text(suggested_model(DEFAULT_MODEL_PATH.read_text(), results, model, ["t"]))
    learnt = load_model(path).factors.importance
    assert learnt["default"] == model.factors.importance["default"]
    assert [getattr(learnt["private_banking"], f.factor) for f in new.factors] == [
        f.suggested for f in new.factors
    ]
