"""The interactive charts of the reports (microneedling.reports.charts)."""

from __future__ import annotations

import numpy as np

from microneedling.reports import charts


def test_chart_numbers_are_six_digits_with_gaps_for_non_finite_values() -> None:
    """charts._values is charts._finite of each element: six significant digits, None for NaN
    and infinities, whatever the shape."""
    rng = np.random.default_rng(0)
    a = rng.lognormal(0.0, 6.0, size=(40, 25)) * rng.choice([-1.0, 1.0], size=(40, 25))
    a[::7, ::3] = np.nan
    a[1, 1], a[2, 2], a[3, 3] = np.inf, -np.inf, -0.0
    got = charts._values(a)
    assert got == [charts._finite(v) for v in a.ravel()]
    assert got[1 * 25 + 1] is None and got[2 * 25 + 2] is None and got[0] is None
    assert charts._values([0.1234567, 123456789.0]) == [0.123457, 123457000.0]
