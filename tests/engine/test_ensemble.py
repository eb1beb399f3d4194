"""engine.ensemble: percentiles over the ensemble axis, bit-identical to numpy.nanpercentile."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from microneedling.engine.ensemble import nan_percentiles


@pytest.mark.parametrize("members", [1, 2, 3, 8, 33, 257])
def test_equals_numpy_nanpercentile_bit_for_bit(members: int) -> None:
    rng = np.random.default_rng(members)
    a = rng.standard_normal((members, 2, 3, 40)) * rng.lognormal(size=(members, 2, 3, 40))
    a[rng.random(a.shape) < 0.3] = np.nan
    a[:, 0, 0, :5] = np.nan  # read-outs with no valid member
    a[:, 1, 1, 5:8] = 7.0  # constant read-outs
    a[0, 1, 2, 9] = np.inf
    q = [10.0, 90.0, 50.0, 0.0, 100.0, 33.3]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = np.nanpercentile(a, q, axis=0)
    got = nan_percentiles(a, q)
    assert got.shape == ref.shape
    assert np.array_equal(got, ref, equal_nan=True)


def test_no_valid_member_is_nan_without_a_warning() -> None:
    a = np.full((5, 3), np.nan)
    a[:, 1] = [1.0, 2.0, 3.0, 4.0, 5.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo, hi = nan_percentiles(a, (10.0, 90.0))
    assert np.isnan(lo[0]) and np.isnan(hi[2])
    assert lo[1] == pytest.approx(1.4) and hi[1] == pytest.approx(4.6)


@pytest.mark.parametrize("q", [[-1.0], [101.0], [np.nan], [[10.0]]])
def test_bad_percentiles_are_refused(q: object) -> None:
    with pytest.raises(ValueError, match="q: percentiles in"):
        nan_percentiles(np.ones((3, 2)), q)  # type: ignore[arg-type]
