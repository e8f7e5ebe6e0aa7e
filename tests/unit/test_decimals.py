"""``rounded(x, n)`` is ``round(x, n)``, the very same float (streams/core/decimals.py):
on random values, and on those where a shortcut would go wrong: ties and one ulp either
side of them, zeros of either sign, tiny, huge and non-finite values."""

from __future__ import annotations

import math
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from cxpulse.streams.core.decimals import rounded

PLACES = st.integers(min_value=0, max_value=12)


def same(a: float, b: float) -> bool:
    """Bit for bit: -0.0 is not 0.0 here (msgpack and JSON would tell them apart)."""
    return struct.pack("<d", a) == struct.pack("<d", b)


def check(x: float, places: int) -> None:
    want, got = round(x, places), rounded(x, places)
    assert same(want, got) or (math.isnan(want) and math.isnan(got)), (x, places, want, got)


@settings(max_examples=3000, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), PLACES)
def test_any_float(x: float, places: int) -> None:
    check(x, places)


@settings(max_examples=3000, deadline=None)
@given(st.floats(min_value=-1e4, max_value=1e4), PLACES)
def test_values_the_core_rounds(x: float, places: int) -> None:
    check(x, places)


@settings(max_examples=3000, deadline=None)
@given(st.integers(min_value=-(10**9), max_value=10**9), st.integers(0, 9), st.integers(-3, 3))
def test_ties_and_the_floats_beside_them(k: int, places: int, ulps: int) -> None:
    """``(k + 0.5) / 10**places`` is a tie in decimal, never exactly in binary: which
    way ``round`` goes depends on the last bits, and a few ulps either side too."""
    x = (k + 0.5) / 10**places
    for _ in range(abs(ulps)):
        x = math.nextafter(x, math.inf if ulps > 0 else -math.inf)
    check(x, places)
    check(k / 10**places, places)


def test_known_values() -> None:
    for x in (
        0.0,
        -0.0,
        0.5,
        1.5,
        2.5,
        -0.5,
        -2.5,
        2.675,
        1.005,
        0.125,
        0.375,
        -0.001,
        0.001,
        1e-300,
        -1e-300,
        5e-324,
        4503599627370495.5,
        2.0**52,
        2.0**53 + 2,
        1e300,
        99.995,
        49.995,
        -9.9995,
        0.0005,
        0.0015,
        math.inf,
        -math.inf,
        math.nan,
    ):
        for places in range(13):
            check(x, places)
    assert same(rounded(-0.001, 2), -0.0) and same(rounded(0.001, 2), 0.0)
