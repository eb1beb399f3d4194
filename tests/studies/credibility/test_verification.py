"""The credibility report's code-verification checks: each passes with its defaults, and each fails
when given a wrong exact solution, too coarse a discretisation or a broken balance (so a passing
check means something)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest
import scipy.linalg

from microneedling.studies.credibility import verification as v
from microneedling.units import conversion_factor

ORDER_CHECKS = {
    "rodas4_order_linear",
    "rodas4_order_kaps",
    "rodas4_order_prothero_robinson",
    "rodas4_order_healing",
    "unitcell_spatial_order",
}


@pytest.fixture(scope="module")
def results() -> dict[str, v.CheckResult]:
    return {r.name: r for r in v.run_verification()}


def test_every_check_runs_and_passes(results: dict[str, v.CheckResult]) -> None:
    assert list(results) == [c.__name__ for c in v.CHECKS]
    for name, r in results.items():
        assert r.passed, (name, r.measured, r.expected, r.tolerance, r.detail)
        assert math.isfinite(r.measured), name
        assert r.verifies and r.quantity and r.exact_solution, name
        assert abs(r.measured - r.expected) <= r.tolerance, name


def test_orders_are_the_methods_orders(results: dict[str, v.CheckResult]) -> None:
    for name in ORDER_CHECKS:
        r = results[name]
        assert r.expected == (2.0 if name.startswith("unitcell") else 4.0), name
        assert r.tolerance == pytest.approx(0.1 * r.expected), name
    # the reported detail carries the errors the order was fitted to
    assert results["rodas4_order_linear"].detail.startswith("errors ")


def test_results_are_json_and_timed(results: dict[str, v.CheckResult]) -> None:
    """Results serialise to JSON with their fields; each records its run time (reported, not
    asserted: the time depends on the machine's load, and timings belong to benchmarks/)."""
    data = [r.to_dict() for r in results.values()]
    assert json.loads(json.dumps(data)) == data
    assert set(data[0]) >= {
        "name",
        "verifies",
        "quantity",
        "measured",
        "tolerance",
        "passed",
        "exact_solution",
    }
    assert all(r.seconds >= 0.0 and math.isfinite(r.seconds) for r in results.values())


def _linear_without_forcing(a: np.ndarray, b: np.ndarray, y0: np.ndarray, t: float) -> np.ndarray:
    return np.asarray(scipy.linalg.expm(a * t) @ y0)  # forgets the forcing b


BROKEN: dict[str, Callable[[], v.CheckResult]] = {
    "linear: exact solution without the forcing": lambda: v.rodas4_order_linear(
        exact=_linear_without_forcing
    ),
    "linear: exact solution off by 1e-9 (an error floor)": lambda: v.rodas4_order_linear(
        exact=lambda a, b, y0, t: v.linear_exact(a, b, y0, t) + 1e-9
    ),
    "kaps: components swapped": lambda: v.rodas4_order_kaps(exact=lambda t: v.kaps_exact(t)[::-1]),
    "kaps: steps too coarse (pre-asymptotic)": lambda: v.rodas4_order_kaps(steps=(1.0, 0.5, 0.25)),
    "prothero-robinson: transient dropped": lambda: v.rodas4_order_prothero_robinson(
        exact=lambda lam, om, y0, t: math.sin(om * t)
    ),
    "healing: reference no finer than the steps": lambda: v.rodas4_order_healing(fine_step=2.0**-7),
    "bateman: loose tolerance": lambda: v.integrator_bateman(rtol=1e-4),
    "bateman: rates swapped in the exact solution": lambda: v.integrator_bateman(
        exact=lambda t, k1, k2, a0, times: v.bateman_exact(t, k2, k1, a0, times)
    ),
    "robertson: loose tolerance": lambda: v.integrator_robertson(rtol=1e-1),
    "robertson: loose reference": lambda: v.integrator_robertson(reference_rtol=1e-3),
    "conservation: a leaking system": lambda: v.integrator_conservation(leak=1e-3),
    "healing baseline: a session": lambda: v.healing_baseline(injured_fraction=1e-3),
    "potts-guy: cm/h taken for cm/s": lambda: v.transport_potts_guy(
        expected_m_s=10 ** (-7.3075) * conversion_factor("cm/h", "m/s")
    ),
    "transport mass balance: clearance left out": lambda: v.transport_mass_balance(
        parts=("vehicle", "retained")
    ),
    "crank amount: lag term left out": lambda: v.unitcell_crank_amount(
        exact=lambda t, d, ell: d * t / ell
    ),
    "crank lag time: 4 cells": lambda: v.unitcell_crank_lag_time(nz=4),
    "erfc profile: diffusion length off by sqrt 2": lambda: v.unitcell_erfc_profile(
        exact=lambda z, t, d: v.erfc_profile(z, t, 2.0 * d)
    ),
    "erfc uptake: 20 cells": lambda: v.unitcell_erfc_uptake(nz=20),
    "spatial order: reference off by 1e-4": lambda: v.unitcell_spatial_order(
        exact=lambda t, d, ell: v.crank_membrane_amount(t, d, ell) * (1 + 1e-4)
    ),
    "unit cell mass balance: bottom outflow left out": lambda: v.unitcell_mass_balance(
        parts=("absorbed_by_layer", "stored_channel")
    ),
    "laminate: partition left out": lambda: v.unitcell_laminate(
        exact=lambda th, di, pa: v.laminate_permeability(th, di, (1.0, 1.0, 1.0))
    ),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_broken_input_fails_the_check(case: str) -> None:
    r = BROKEN[case]()
    assert not r.passed, (case, r.measured, r.tolerance, r.detail)


def test_every_check_has_a_failing_case() -> None:
    prefixes = {
        "rodas4_order_linear": "linear",
        "rodas4_order_kaps": "kaps",
        "rodas4_order_prothero_robinson": "prothero-robinson",
        "rodas4_order_healing": "healing:",
        "integrator_bateman": "bateman",
        "integrator_robertson": "robertson",
        "integrator_conservation": "conservation",
        "healing_baseline": "healing baseline",
        "transport_potts_guy": "potts-guy",
        "transport_mass_balance": "transport mass balance",
        "unitcell_crank_amount": "crank amount",
        "unitcell_crank_lag_time": "crank lag time",
        "unitcell_erfc_profile": "erfc profile",
        "unitcell_erfc_uptake": "erfc uptake",
        "unitcell_spatial_order": "spatial order",
        "unitcell_mass_balance": "unit cell mass balance",
        "unitcell_laminate": "laminate",
    }
    assert set(prefixes) == {c.__name__ for c in v.CHECKS}
    for name, prefix in prefixes.items():
        assert any(case.startswith(prefix) for case in BROKEN), name


def test_a_check_that_raises_is_reported_as_failed() -> None:
    def exploding() -> v.CheckResult:
        """A check whose solver crashes."""
        raise RuntimeError("boom")

    (r,) = v.run_verification([exploding])
    assert r.name == "exploding" and not r.passed
    assert math.isnan(r.measured) and "RuntimeError: boom" in r.detail
    assert r.to_dict()["measured"] is None


def test_observed_order_of_exact_powers() -> None:
    h = [0.1, 0.05, 0.025]
    assert v.observed_order(h, [x**3 for x in h]) == pytest.approx(3.0)
    assert math.isnan(v.observed_order(h, [1e-3, 0.0, 1e-5]))
