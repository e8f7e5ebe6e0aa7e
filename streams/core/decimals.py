"""Numbers rounded to a few decimals, as the core keeps them: ``rounded(x, n)`` is
``round(x, n)``, the very same float, without the decimal string.

The core rounds some twenty numbers an event (readings, gaps, impacts and the valence to
thousandths, as the state stores them; the score and the sub-scores to hundredths), and
builtin ``round`` with digits formats the number as a decimal string and parses it back
(``_Py_dg_dtoa``, ``snprintf``, ``_Py_dg_strtod``): a tenth of a compiled call late in the
day, more than any one step of the core.

Why it is the same float. ``round(x, n)`` is the double nearest to ``q / 10**n``, where
``q`` is the integer nearest to the exact ``x * 10**n`` (a tie to the even one). The
product ``y = x * 10**n`` in floating point is within half an ulp of the exact one, so
unless ``y`` is that close to a half-integer, ``q`` is the integer nearest to ``y``; and
``q / 10**n`` in floating point is the double nearest to the quotient (IEEE division
rounds correctly, and ``q`` and ``10**n`` are exact). Near a half-integer, beyond 2**52,
for infinities and NaN it is ``round`` itself. A zero keeps the sign of ``x``, as
``round`` keeps it. ``tests/unit/test_decimals.py`` compares the two on random and on
adversarial values (ties, one ulp either side of them, tiny, huge, negative, non-finite).
"""

from __future__ import annotations

import math
from typing import Final

#: ``10.0 ** n``, exact for every ``n`` here (a tuple of any length: mypyc leaves a
#: fixed-length tuple of floats unset).
_SCALE: Final[tuple[float, ...]] = tuple(10.0**n for n in range(13))
#: Beyond this a double has no fraction to round.
_EXACT: Final = 2.0**52
#: Twice the relative error of one multiplication, the margin kept around a tie.
_ERROR: Final = 2.0**-52


def rounded(x: float, places: int) -> float:
    """``round(x, places)`` for ``0 <= places <= 12``, the same float, a tenth the cost."""
    scale = _SCALE[places]
    y = x * scale
    if -_EXACT < y < _EXACT:  # False for infinities and NaN too
        whole = float(math.floor(y))
        fraction = y - whole
        if abs(fraction - 0.5) > abs(y) * _ERROR:
            q = whole + 1.0 if fraction > 0.5 else whole
            return q / scale if q != 0.0 else 0.0 * x  # round(-0.001, 2) is -0.0
    return round(x, places)
