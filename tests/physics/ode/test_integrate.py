"""Batched RODAS4 integrator: exact solutions, order, stiffness, invariants, batching."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st

from microneedling.physics.ode import cache
from microneedling.physics.ode import integrate as integ
from microneedling.physics.ode import registry as odes
from microneedling.physics.ode.integrate import integrate, integrate_reference

ROBERTSON_K = np.array([0.04, 3e7, 1e4])


def no_impulses(nb: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((nb, 1), np.inf), np.zeros((nb, 1, n))


def bateman_b(t: np.ndarray, k1: float, k2: float, a0: float, times: np.ndarray) -> np.ndarray:
    """Exact B(t) of A -> B -> (out) after impulses a0 into A at ``times`` (superposition)."""
    out = np.zeros_like(t)
    for tj in times[np.isfinite(times)]:
        s = np.maximum(t - tj, 0.0)
        out += np.where(t >= tj, a0 * k1 / (k2 - k1) * (np.exp(-k1 * s) - np.exp(-k2 * s)), 0.0)
    return out


def robertson_py(t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    k1, k2, k3 = p[:3]
    return np.array(
        [
            -k1 * y[0] + k3 * y[1] * y[2],
            k1 * y[0] - k3 * y[1] * y[2] - k2 * y[1] ** 2,
            k2 * y[1] ** 2,
        ]
    )


def robertson_jac_py(t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    k1, k2, k3 = p[:3]
    return np.array(
        [
            [-k1, k3 * y[2], k3 * y[1]],
            [k1, -2 * k2 * y[1] - k3 * y[2], -k3 * y[1]],
            [0.0, 2 * k2 * y[1], 0.0],
        ]
    )


# --------------------------------------------------------------------------------------------
# 1. Bateman chain with repeated impulses, in a batch
# --------------------------------------------------------------------------------------------


def bateman_batch(seed: int, nb: int = 8) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    k1 = rng.uniform(0.05, 3.0, nb)
    k2 = k1 * rng.uniform(1.3, 20.0, nb) ** rng.choice([-1.0, 1.0], nb)  # k2 > k1 or k2 < k1
    a0 = rng.uniform(0.5, 2.0, nb)
    kmax = 4
    times = np.full((nb, kmax), np.inf)
    for b in range(nb):
        m = rng.integers(1, kmax + 1)
        ts = np.sort(rng.uniform(0.0, 40.0, m))
        if b % 3 == 0:
            ts[0] = 0.0  # an impulse at t0 is part of y[:, 0]
        times[b, :m] = ts
    return k1, k2, a0, times


@pytest.mark.parametrize("exploit_sparsity", [True, False])
def test_bateman_superposition_matches_exact_solution(exploit_sparsity: bool) -> None:
    k1, k2, a0, times = bateman_batch(0)
    nb = k1.size
    t_out = np.unique(np.concatenate([np.linspace(0.0, 60.0, 241), times[np.isfinite(times)]]))
    y0 = np.zeros((nb, 3))
    jumps = np.zeros((nb, times.shape[1], 3))
    jumps[:, :, 0] = a0[:, None]
    params = odes.bateman_params(np.stack([k1, k2], axis=1))
    sol = integrate(
        odes.LINEAR, y0, params, t_out, times, jumps, rtol=1e-8, atol=1e-14,
        exploit_sparsity=exploit_sparsity,
    )  # fmt: skip
    assert sol.success
    for b in range(nb):
        exact_b = bateman_b(t_out, k1[b], k2[b], a0[b], times[b])
        exact_a = sum(
            np.where(t_out >= tj, a0[b] * np.exp(-k1[b] * np.maximum(t_out - tj, 0)), 0.0)
            for tj in times[b][np.isfinite(times[b])]
        )
        scale = np.max(np.abs(exact_b))
        assert np.max(np.abs(sol.y[b, :, 1] - exact_b)) <= 1e-7 * scale, b
        assert np.max(np.abs(sol.y[b, :, 0] - exact_a)) <= 1e-7 * np.max(exact_a), b
        # the chain conserves A + B + C = sum of the impulses received so far
        received = a0[b] * np.sum(times[b][None, :] <= t_out[:, None], axis=1)
        np.testing.assert_allclose(sol.y[b].sum(axis=1), received, rtol=1e-12, atol=1e-14)


def test_output_at_an_impulse_time_includes_the_jump() -> None:
    t_out = np.array([0.0, 1.0, 2.0, 3.0])
    times = np.array([[0.0, 2.0, 10.0]])  # 10 is after the last output: never applied
    jumps = np.zeros((1, 3, 3))
    jumps[0, :, 0] = [1.0, 5.0, 100.0]
    k1, k2 = 0.7, 1.9
    sol = integrate(
        odes.LINEAR, np.zeros((1, 3)), odes.bateman_params(np.array([[k1, k2]])), t_out, times,
        jumps, rtol=1e-10, atol=1e-14,
    )  # fmt: skip
    a = np.exp(-k1 * t_out) + np.where(t_out >= 2.0, 5.0 * np.exp(-k1 * (t_out - 2.0)), 0.0)
    np.testing.assert_allclose(sol.y[0, :, 0], a, rtol=1e-9)
    assert sol.y[0, 0, 0] == 1.0  # impulse at t0 included at t_out[0]
    assert sol.y[0, :, :].sum(axis=1) == pytest.approx([1.0, 1.0, 6.0, 6.0], rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    k1=st.floats(0.05, 5.0),
    ratio=st.floats(1.2, 50.0),
    invert=st.booleans(),
    gaps=st.lists(st.floats(0.0, 15.0), min_size=1, max_size=4),
)
def test_bateman_property(k1: float, ratio: float, invert: bool, gaps: list[float]) -> None:
    k2 = k1 / ratio if invert else k1 * ratio
    times = np.cumsum(gaps)[None, :]
    t_out = np.linspace(0.0, float(times[0, -1]) + 20.0, 101)
    jumps = np.zeros((1, times.shape[1], 3))
    jumps[0, :, 0] = 1.0
    sol = integrate(
        odes.LINEAR, np.zeros((1, 3)), odes.bateman_params(np.array([[k1, k2]])), t_out, times,
        jumps, rtol=1e-8, atol=1e-14,
    )  # fmt: skip
    exact = bateman_b(t_out, k1, k2, 1.0, times[0])
    assert np.max(np.abs(sol.y[0, :, 1] - exact)) <= 1e-7 * np.max(exact)


def test_reference_integrator_matches_bateman_too() -> None:
    k1, k2, a0, times = bateman_batch(1, nb=3)
    t_out = np.linspace(0.0, 50.0, 51)
    jumps = np.zeros((3, times.shape[1], 3))
    jumps[:, :, 0] = a0[:, None]
    params = odes.bateman_params(np.stack([k1, k2], axis=1))

    def fun(t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
        a = p[1:10].reshape(3, 3)
        return a @ y

    ref = integrate_reference(fun, np.zeros((3, 3)), params, t_out, times, jumps, rtol=1e-11,
                              atol=1e-14)  # fmt: skip
    for b in range(3):
        exact = bateman_b(t_out, k1[b], k2[b], a0[b], times[b])
        assert np.max(np.abs(ref.y[b, :, 1] - exact)) <= 1e-7 * np.max(exact)


# --------------------------------------------------------------------------------------------
# 2. Observed convergence order with fixed steps
# --------------------------------------------------------------------------------------------


def observed_order(errors: list[float], steps: list[float]) -> float:
    return float(np.polyfit(np.log(steps), np.log(errors), 1)[0])


@pytest.mark.parametrize("exploit_sparsity", [True, False])
def test_convergence_order_linear_stiffish(exploit_sparsity: bool) -> None:
    rng = np.random.default_rng(0)
    n = 6
    lam = np.array([-0.5, -1.0, -3.0, -10.0, -30.0, -100.0])  # stiffness ratio 200
    v = np.eye(n) + 0.3 * rng.standard_normal((n, n))
    a = v @ np.diag(lam) @ np.linalg.inv(v)
    a[0, 1] += 2.0  # and a rotation: complex eigenvalues
    a[1, 0] -= 2.0
    b = rng.standard_normal(n)
    y0 = rng.standard_normal(n)
    t_end = 1.0
    shift = np.linalg.solve(a, b)
    exact = scipy.linalg.expm(a * t_end) @ (y0 + shift) - shift
    imp_t, imp_v = no_impulses(1, n)
    steps, errors = [], []
    for m in range(3, 9):
        h = 2.0**-m
        sol = integrate(
            odes.LINEAR, y0[None], odes.pack_linear(a, b)[None], np.array([0.0, t_end]), imp_t,
            imp_v, fixed_step=h, exploit_sparsity=exploit_sparsity,
        )  # fmt: skip
        assert sol.n_steps[0] == round(t_end / h)
        steps.append(h)
        errors.append(float(np.max(np.abs(sol.y[0, -1] - exact))))
    order = observed_order(errors, steps)
    assert abs(order - integ.ORDER) <= 0.1 * integ.ORDER, (order, errors)
    assert errors[-1] < 1e-10


def test_convergence_order_nonlinear_kaps() -> None:
    """Kaps' problem (eps = 1, non-stiff): checks the nonlinear order conditions, exact solution."""
    imp_t, imp_v = no_impulses(1, 2)
    steps, errors = [], []
    for m in range(2, 8):
        h = 2.0**-m
        sol = integrate(
            odes.KAPS, np.array([[1.0, 1.0]]), np.array([[1.0]]), np.array([0.0, 1.0]), imp_t,
            imp_v, fixed_step=h,
        )  # fmt: skip
        steps.append(h)
        errors.append(float(np.max(np.abs(sol.y[0, -1] - [np.exp(-2.0), np.exp(-1.0)]))))
    assert abs(observed_order(errors, steps) - integ.ORDER) <= 0.4


def test_convergence_order_non_autonomous() -> None:
    """Prothero-Robinson (lam = -1): exercises the f_t terms of the method."""
    imp_t, imp_v = no_impulses(1, 1)
    steps, errors = [], []
    for m in range(2, 8):
        h = 2.0**-m
        sol = integrate(
            odes.PROTHERO_ROBINSON, np.array([[0.5]]), np.array([[-1.0, 2.0]]),
            np.array([0.0, 1.0]), imp_t, imp_v, fixed_step=h,
        )  # fmt: skip
        steps.append(h)
        errors.append(abs(sol.y[0, -1, 0] - (np.sin(2.0) + 0.5 * np.exp(-1.0))))
    assert abs(observed_order(errors, steps) - integ.ORDER) <= 0.4


def test_fixed_steps_are_clipped_to_outputs_and_impulses() -> None:
    # outputs at 0.3 and 1.0, impulse at 0.55, h = 0.25: steps end at .25 .3 .55 .8 1.0
    sol = integrate(
        odes.LINEAR, np.array([[1.0, 0.0]]), odes.bateman_params(np.array([[1.0]])),
        np.array([0.0, 0.3, 1.0]), np.array([[0.55]]), np.array([[[1.0, 0.0]]]), fixed_step=0.25,
    )  # fmt: skip
    assert sol.n_steps[0] == 5


def healing_case(nb: int = 1) -> tuple[np.ndarray, ...]:
    from microneedling.parameters.parameter_set import load_parameters
    from microneedling.physics import healing
    from microneedling.physics.healing_rhs import PIDX, baseline_state

    nominal = healing.parameter_vector(load_parameters())
    p = healing.parameter_matrix(
        nominal, nb, {"g_Q": np.full(nb, 0.1), "lesion_drive": np.ones(nb)}
    )
    phi = np.zeros((nb, 2, 3))
    phi[:, :, :] = [0.04, 0.02, 0.01]
    # a roller-like session: clean channels and the blood of its clefts (exercises Bl and Hm)
    jumps = healing.session_impulses(
        phi, np.ones((nb, 2)), p[:, PIDX["K_D"]], np.full((nb, 2), 0.05), p[:, PIDX["rho_B"]]
    )
    days = np.tile([0.0, 3.0], (nb, 1))
    return baseline_state(p[:, PIDX["lesion_drive"]]), p, days, jumps


@pytest.mark.parametrize("exploit_sparsity", [True, False])
def test_convergence_order_healing_model(exploit_sparsity: bool) -> None:
    """The real model, order 4 too: analytic Jacobian with the model's written-out block solve
    (exploit_sparsity) or with the generic dense LU."""
    y0, p, days, jumps = healing_case()
    t_out = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    kw = {"exploit_sparsity": exploit_sparsity}
    fine = integrate(odes.HEALING, y0, p, t_out, days, jumps, fixed_step=2.0**-13, **kw).y[0]
    steps, errors = [], []
    for m in range(6, 10):  # (coarser steps are pre-asymptotic: local slopes 4.5 -> 4.1)
        h = 2.0**-m
        sol = integrate(odes.HEALING, y0, p, t_out, days, jumps, fixed_step=h, **kw)
        steps.append(h)
        errors.append(float(np.max(np.abs(sol.y[0] - fine))))
    assert abs(observed_order(errors, steps) - integ.ORDER) <= 0.1 * integ.ORDER, errors


def test_error_control_rejects_steps_and_tolerance_is_proportional() -> None:
    k = np.array([[1.0, 30.0]])
    times = np.array([[0.0, 7.0]])
    jumps = np.zeros((1, 2, 3))
    jumps[0, :, 0] = 1.0
    t_out = np.array([0.0, 7.0, 20.0])  # few outputs: steps are chosen by error control only
    exact = bateman_b(t_out, 1.0, 30.0, 1.0, times[0])
    errors = []
    for rtol in (1e-4, 1e-6, 1e-8):
        sol = integrate(
            odes.LINEAR, np.zeros((1, 3)), odes.bateman_params(k), t_out, times, jumps,
            rtol=rtol, atol=1e-14, h0=2.0,
        )  # fmt: skip
        assert sol.n_rejected[0] >= 1  # h0 = 2 is far too large for the k2 = 30 transient
        errors.append(float(np.max(np.abs(sol.y[0, :, 1] - exact))))
    assert errors[0] < 1e-4 and errors[1] < 1e-6 and errors[2] < 1e-8
    assert errors[0] > 10 * errors[1] > 100 * errors[2]


# --------------------------------------------------------------------------------------------
# 3. Stiff: Robertson to t = 1e5
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exploit_sparsity", [True, False])
def test_robertson_matches_radau_reference(exploit_sparsity: bool) -> None:
    t_out = np.concatenate([[0.0], np.logspace(-5, 5, 41)])
    y0 = np.array([[1.0, 0.0, 0.0]])
    p = ROBERTSON_K[None]
    imp_t, imp_v = no_impulses(1, 3)
    ref = integrate_reference(
        robertson_py, y0, p, t_out, imp_t, imp_v, method="Radau", rtol=1e-10,
        atol=np.array([1e-14, 1e-18, 1e-14]), jac=robertson_jac_py,
    )  # fmt: skip
    sol = integrate(
        odes.ROBERTSON, y0, p, t_out, imp_t, imp_v, rtol=1e-6, atol=np.array([1e-10, 1e-14, 1e-10]),
        exploit_sparsity=exploit_sparsity,
    )  # fmt: skip
    assert sol.success and np.all(np.isfinite(sol.y))
    rel = np.abs(sol.y[0, 1:] - ref.y[0, 1:]) / np.abs(ref.y[0, 1:])
    assert np.max(rel) < 1e-4
    # y2 really is stiff: it sits at its quasi-steady state ~1e-5 .. 1e-10
    assert 1e-5 < np.max(sol.y[0, :, 1]) < 4e-5
    # linear invariant y1 + y2 + y3 = 1
    assert np.max(np.abs(sol.y[0].sum(axis=1) - 1.0)) < 1e-12


# --------------------------------------------------------------------------------------------
# 4. Conservation of linear invariants
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exploit_sparsity", [True, False])
def test_closed_linear_system_conserves_total(exploit_sparsity: bool) -> None:
    rng = np.random.default_rng(3)
    nb, n = 5, 12
    a = rng.uniform(0.0, 1.0, (nb, n, n)) * (rng.uniform(size=(nb, n, n)) < 0.3)
    a *= 10.0 ** rng.uniform(-2, 3, (nb, n, n))  # rates from 0.01 to 1000: stiff
    for b in range(nb):
        np.fill_diagonal(a[b], 0.0)
        a[b] -= np.diag(a[b].sum(axis=0))  # column sums zero: d(sum y)/dt = 0
    y0 = rng.uniform(0.0, 1.0, (nb, n))
    times = np.array([[2.0, 5.0]] * nb)
    jumps = rng.uniform(0.0, 1.0, (nb, 2, n))
    t_out = np.linspace(0.0, 10.0, 41)
    sol = integrate(
        odes.LINEAR, y0, odes.pack_linear(a), t_out, times, jumps, rtol=1e-6, atol=1e-9,
        exploit_sparsity=exploit_sparsity,
    )  # fmt: skip
    received = (times[:, None, :] <= t_out[None, :, None]).astype(float)
    total = y0.sum(axis=1)[:, None] + np.einsum("btk,bk->bt", received, jumps.sum(axis=2))
    np.testing.assert_allclose(sol.y.sum(axis=2), total, rtol=1e-12, atol=0.0)
    assert np.all(sol.n_steps > 20)  # the test is about an adaptive, non-trivial integration


# --------------------------------------------------------------------------------------------
# 5. Batch = one by one; independent of parallel
# --------------------------------------------------------------------------------------------


def test_batch_equals_cases_one_by_one_and_parallel_is_identical() -> None:
    rng = np.random.default_rng(5)
    nb = 13
    p = np.tile(ROBERTSON_K, (nb, 1)) * rng.uniform(0.5, 2.0, (nb, 3))
    y0 = np.tile([1.0, 0.0, 0.0], (nb, 1))
    times = np.sort(rng.uniform(0.0, 100.0, (nb, 2)), axis=1)
    times[::4, 1] = np.inf
    jumps = np.zeros((nb, 2, 3))
    jumps[:, :, 0] = rng.uniform(0.1, 1.0, (nb, 2))
    t_out = np.concatenate([[0.0], np.logspace(-3, 3, 25)])
    kw = {"rtol": 1e-7, "atol": np.array([1e-10, 1e-14, 1e-10])}
    serial = integrate(odes.ROBERTSON, y0, p, t_out, times, jumps, parallel=False, **kw)
    par = integrate(odes.ROBERTSON, y0, p, t_out, times, jumps, parallel=True, **kw)
    np.testing.assert_array_equal(serial.y, par.y)
    np.testing.assert_array_equal(serial.n_steps, par.n_steps)
    np.testing.assert_array_equal(serial.n_rhs, par.n_rhs)
    assert len(set(serial.n_steps.tolist())) > 3  # cases really take different step sequences
    for b in range(nb):
        one = integrate(
            odes.ROBERTSON, y0[b : b + 1], p[b : b + 1], t_out, times[b : b + 1],
            jumps[b : b + 1], **kw,
        )  # fmt: skip
        np.testing.assert_array_equal(one.y[0], serial.y[b])
        assert one.n_steps[0] == serial.n_steps[b]


# --------------------------------------------------------------------------------------------
# 6. Steady states are exact
# --------------------------------------------------------------------------------------------


def test_zero_rhs_steady_state_is_kept_exactly() -> None:
    rng = np.random.default_rng(7)
    n = 5
    a = rng.integers(-3, 4, (n, n)).astype(float)
    y0 = rng.integers(-5, 6, n).astype(float)
    y0[1] = 0.0
    b = -(a @ y0)  # integers: A y0 + b == 0 exactly in floating point
    t_out = np.linspace(0.0, 100.0, 11)
    imp_t, imp_v = no_impulses(1, n)
    for params in (odes.pack_linear(a, b), odes.pack_linear(np.zeros((n, n)))):
        for atol in (1e-9, 0.0):  # atol = 0 with zero components: 0/0 must not count as error
            sol = integrate(odes.LINEAR, y0[None], params[None], t_out, imp_t, imp_v, atol=atol)
            assert sol.success and np.all(sol.y[0] == y0)
    # Robertson's end state (0, 0, 1) is a fixed point; the complex-step path too (HEALING
    # baseline is tested in test_healing.py)
    sol = integrate(
        odes.ROBERTSON, np.array([[0.0, 0.0, 1.0]]), ROBERTSON_K[None], t_out, *no_impulses(1, 3)
    )
    assert np.all(sol.y[0] == [0.0, 0.0, 1.0])


# --------------------------------------------------------------------------------------------
# 7. Input validation and failure reporting
# --------------------------------------------------------------------------------------------


def good_inputs() -> dict[str, object]:
    return {
        "model": odes.ROBERTSON,
        "y0": np.array([[1.0, 0.0, 0.0]]),
        "params": ROBERTSON_K[None].copy(),
        "t_out": np.array([0.0, 1.0, 2.0]),
        "impulse_times": np.array([[0.5, np.inf]]),
        "impulse_values": np.zeros((1, 2, 3)),
    }


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"model": 99}, "model"),
        ({"model": 1.0}, "model"),
        ({"y0": np.array([1.0, 0.0, 0.0])}, "y0"),
        ({"y0": np.array([[np.nan, 0.0, 0.0]])}, "y0"),
        ({"y0": np.array([[1.0, 0.0]])}, "impulse_values"),
        ({"params": np.zeros((2, 3))}, "params"),
        ({"params": np.array([[0.04, 3e7]])}, "params"),
        ({"params": np.array([[0.04, np.inf, 1e4]])}, "params"),
        ({"t_out": np.array([0.0, 2.0, 1.0])}, "t_out"),
        ({"t_out": np.array([])}, "t_out"),
        ({"t_out": np.array([[0.0, 1.0]])}, "t_out"),
        ({"impulse_times": np.array([[2.0, 1.0]])}, "impulse_times"),
        ({"impulse_times": np.array([[np.nan, np.inf]])}, "impulse_times"),
        ({"impulse_times": np.array([[-1.0, np.inf]])}, "impulse_times"),
        ({"impulse_times": np.array([[0.5]])}, "impulse_values"),
        ({"impulse_values": np.zeros((1, 2, 2))}, "impulse_values"),
        ({"rtol": 0.0}, "rtol"),
        ({"rtol": -1e-6}, "rtol"),
        ({"rtol": np.nan}, "rtol"),
        ({"atol": -1.0}, "atol"),
        ({"atol": np.ones(2)}, "atol"),
        ({"h0": 0.0}, "h0"),
        ({"h_max": -1.0}, "h_max"),
        ({"fixed_step": 0.0}, "fixed_step"),
        ({"max_steps": 0}, "max_steps"),
    ],
)
def test_invalid_inputs_raise_value_errors_naming_the_argument(
    change: dict[str, object], match: str
) -> None:
    kw = good_inputs() | change
    with pytest.raises(ValueError, match=match):
        integrate(**kw)  # type: ignore[arg-type]


def test_linear_params_must_match_the_state_size() -> None:
    with pytest.raises(ValueError, match="params"):
        integrate(
            odes.LINEAR, np.zeros((1, 3)), odes.bateman_params(np.array([[1.0, 2.0, 3.0]])),
            np.array([0.0, 1.0]), *no_impulses(1, 3),
        )  # fmt: skip


def test_failed_cases_are_reported_and_nan_from_the_failure_on() -> None:
    p = np.tile(ROBERTSON_K, (2, 1))
    t_out = np.array([0.0, 1e-6, 1e3, 1e5])
    with pytest.warns(RuntimeWarning, match="1 of 2"):
        sol = integrate(
            odes.ROBERTSON, np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), p, t_out,
            *no_impulses(2, 3), max_steps=20,
        )  # fmt: skip
    assert sol.status.tolist() == [integ.TOO_MANY_STEPS, integ.OK]
    assert not sol.success
    assert np.all(np.isfinite(sol.y[0, :2])) and np.all(np.isnan(sol.y[0, -1]))
    assert sol.n_steps[0] + sol.n_rejected[0] == 20
    assert np.all(sol.y[1] == [0.0, 0.0, 1.0])


# --------------------------------------------------------------------------------------------
# Building blocks: right-hand sides, Jacobians, LU, structure detection, cache stamps
# --------------------------------------------------------------------------------------------


def model_cases() -> list[tuple[int, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    n = 5
    return [
        (odes.LINEAR, rng.standard_normal(n),
         odes.pack_linear(rng.standard_normal((n, n)), rng.standard_normal(n))),
        (odes.ROBERTSON, np.array([0.7, 2e-5, 0.3]), ROBERTSON_K.copy()),
        (odes.KAPS, np.array([0.6, 0.8]), np.array([1e-3])),
        (odes.PROTHERO_ROBINSON, rng.standard_normal(3), np.array([-50.0, 2.0])),
    ]  # fmt: skip


@pytest.mark.parametrize("case", model_cases(), ids=lambda c: odes.MODEL_NAMES[c[0]])
def test_rhs_works_in_complex_and_analytic_jacobian_equals_complex_step(
    case: tuple[int, np.ndarray, np.ndarray],
) -> None:
    model, y, p = case
    n = y.size
    out = np.empty(n)
    odes.rhs(model, 0.3, y, p, out)
    outc = np.empty(n, dtype=np.complex128)
    odes.rhs(model, 0.3, y.astype(np.complex128), p, outc)
    np.testing.assert_array_equal(outc.real, out)
    assert np.all(outc.imag == 0.0)
    j_an, j_cs = np.empty((n, n)), np.empty((n, n))
    work = (np.empty(n, dtype=np.complex128), np.empty(n, dtype=np.complex128))
    assert odes.jacobian(model, 0.3, y, p, j_an, *work) == 0
    assert odes.jacobian_complex_step(model, 0.3, y, p, j_cs, *work) == n
    np.testing.assert_allclose(j_an, j_cs, rtol=1e-14, atol=1e-14 * np.max(np.abs(j_an)))
    # and both equal a central finite difference to its accuracy
    eps = 1e-6
    for k in range(n):
        yp, ym, fp, fm = y.copy(), y.copy(), np.empty(n), np.empty(n)
        d = eps * max(1.0, abs(y[k]))
        yp[k] += d
        ym[k] -= d
        odes.rhs(model, 0.3, yp, p, fp)
        odes.rhs(model, 0.3, ym, p, fm)
        np.testing.assert_allclose(
            j_cs[:, k], (fp - fm) / (2 * d), rtol=1e-5, atol=1e-6 * np.max(np.abs(j_cs))
        )


def test_compressed_jacobian_equals_full_complex_step() -> None:
    y0, p, _, _ = healing_case()
    rng = np.random.default_rng(8)
    cases = [(odes.HEALING, y0[0] * rng.uniform(0.5, 1.5, y0.shape[1]) + 0.01, p[0])]
    cases += [(m, y, q) for m, y, q in model_cases()]
    for model, y, q in cases:
        n = y.size
        jac_full, jac_c = np.empty((n, n)), np.zeros((n, n))
        work = (np.empty(n, dtype=np.complex128), np.empty(n, dtype=np.complex128))
        odes.jacobian_complex_step(model, 0.3, y, q, jac_full, *work)
        col_ptr, col_rows = np.empty(n + 1, dtype=np.int64), np.empty(n * n, dtype=np.int64)
        color_ptr, color_cols = np.empty(n + 1, dtype=np.int64), np.empty(n, dtype=np.int64)
        n_blk, n_col, _ = integ.jacobian_structure(
            model, 0.3, y, q, False, np.zeros((n, n)), *work, np.empty((n, n), dtype=np.bool_),
            np.empty(n, dtype=np.int64), np.empty(n + 1, dtype=np.int64), col_ptr, col_rows,
            color_ptr, color_cols, np.empty(n + 1, dtype=np.int64), np.empty(n * n, dtype=np.int64),
        )  # fmt: skip
        used = integ.jacobian_compressed(
            model, 0.3, y, q, jac_c, *work, col_ptr, col_rows, color_ptr, color_cols, n_col
        )
        assert used == n_col
        np.testing.assert_array_equal(jac_c, jac_full)
        if model == odes.HEALING:
            assert n_col <= 6 and n_blk >= 20  # the structure is actually exploited


def test_time_derivative_analytic_matches_central_difference() -> None:
    y, p = np.array([0.3, -0.2]), np.array([-7.0, 2.0])
    ft, fd, w = np.empty(2), np.empty(2), np.empty(2)
    assert odes.time_derivative(odes.PROTHERO_ROBINSON, 0.8, y, p, ft, w) == 0
    assert odes.time_derivative_fd(odes.PROTHERO_ROBINSON, 0.8, y, p, fd, w) == 2
    np.testing.assert_allclose(fd, ft, rtol=1e-9)
    ft3 = np.ones(3)
    assert odes.time_derivative(odes.ROBERTSON, 0.8, np.ones(3), ROBERTSON_K, ft3, np.empty(3)) == 0
    assert np.all(ft3 == 0.0)


def test_healing_rhs_is_autonomous_and_complex_safe() -> None:
    """The integrator treats HEALING as autonomous (f_t = 0): check that t really is unused."""
    from microneedling.physics.healing_rhs import N_PARAM, N_STATE

    rng = np.random.default_rng(2)
    y = rng.uniform(0.1, 2.0, N_STATE)
    p = rng.uniform(0.1, 2.0, N_PARAM)
    f1, f2 = np.empty(N_STATE), np.empty(N_STATE)
    odes.rhs(odes.HEALING, 0.0, y, p, f1)
    odes.rhs(odes.HEALING, 123.4, y, p, f2)
    np.testing.assert_array_equal(f1, f2)
    assert odes.is_autonomous(odes.HEALING)
    fc = np.empty(N_STATE, dtype=np.complex128)
    odes.rhs(odes.HEALING, 0.0, y.astype(np.complex128), p, fc)
    np.testing.assert_array_equal(fc.real, f1)


def test_lu_with_partial_pivoting_solves_and_detects_singularity() -> None:
    rng = np.random.default_rng(4)
    for n in (2, 7, 30):
        a = rng.standard_normal((n, n))
        a[0, 0] = 0.0  # needs pivoting
        b = rng.standard_normal(n)
        lu, piv, x = a.copy(), np.empty(n, dtype=np.int64), b.copy()
        assert integ.lu_factor(lu, piv, 0, n)
        integ.lu_solve(lu, piv, x, 0, n)
        np.testing.assert_allclose(a @ x, b, atol=1e-12 * np.linalg.cond(a))
    # a diagonal block of a larger matrix, the rest untouched
    a = rng.standard_normal((6, 6))
    lu, piv, x = a.copy(), np.zeros(6, dtype=np.int64), np.arange(6.0)
    assert integ.lu_factor(lu, piv, 2, 5)
    integ.lu_solve(lu, piv, x, 2, 5)
    np.testing.assert_allclose(a[2:5, 2:5] @ x[2:5], [2.0, 3.0, 4.0], atol=1e-12)
    assert np.all(lu[:2] == a[:2]) and x[0] == 0.0 and x[5] == 5.0
    sing = np.array([[1.0, 2.0], [2.0, 4.0]])
    assert not integ.lu_factor(sing, np.empty(2, dtype=np.int64), 0, 2)


def structure_of(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    n = a.shape[0]
    p = odes.pack_linear(a)
    ints = [np.empty(n, dtype=np.int64), np.empty(n + 1, dtype=np.int64)]
    col_ptr, col_rows = np.empty(n + 1, dtype=np.int64), np.empty(n * n, dtype=np.int64)
    color_ptr, color_cols = np.empty(n + 1, dtype=np.int64), np.empty(n, dtype=np.int64)
    off_ptr, off_col = np.empty(n + 1, dtype=np.int64), np.empty(n * n, dtype=np.int64)
    n_blk, n_col, _ = integ.jacobian_structure(
        odes.LINEAR, 0.0, np.ones(n), p, False, np.zeros((n, n)),
        np.empty(n, dtype=np.complex128), np.empty(n, dtype=np.complex128),
        np.empty((n, n), dtype=np.bool_), *ints, col_ptr, col_rows, color_ptr, color_cols,
        off_ptr, off_col,
    )  # fmt: skip
    return ints[0], ints[1], (color_ptr, color_cols), n_blk, n_col  # type: ignore[return-value]


def test_block_triangular_form_and_colouring_are_valid() -> None:
    rng = np.random.default_rng(9)
    for trial in range(30):
        n = int(rng.integers(1, 15))
        a = rng.standard_normal((n, n)) * (rng.uniform(size=(n, n)) < rng.uniform(0.05, 0.4))
        perm, bstart, (color_ptr, color_cols), n_blk, n_col = structure_of(a)
        assert sorted(perm.tolist()) == list(range(n))
        block = np.empty(n, dtype=int)
        for b in range(n_blk):
            block[perm[bstart[b] : bstart[b + 1]]] = b
        rows, cols = np.nonzero(a)
        assert np.all(block[cols] <= block[rows]), trial  # each block needs only earlier ones
        # blocks are strongly connected components: compare with scipy
        from scipy.sparse.csgraph import connected_components

        n_scc, _ = connected_components(a != 0, directed=True, connection="strong")
        assert n_blk == n_scc
        # colouring: columns of one colour share no row
        for c in range(n_col):
            cols_c = color_cols[color_ptr[c] : color_ptr[c + 1]]
            assert np.all((a[:, cols_c] != 0).sum(axis=1) <= 1)
        assert color_ptr[n_col] == n


def test_healing_like_structure_is_exploited() -> None:
    """Bateman chain of 20: lower bidiagonal -> 20 singleton blocks, 2 colours."""
    p = odes.bateman_params(np.linspace(0.1, 2.0, 19))
    a = p[1 : 1 + 400].reshape(20, 20)
    _, _, _, n_blk, n_col = structure_of(a)
    assert (n_blk, n_col) == (20, 2)


def test_sparse_and_dense_paths_agree() -> None:
    rng = np.random.default_rng(12)
    nb, n = 4, 10
    a = -np.eye(n) * rng.uniform(0.1, 100.0, n) + np.tril(rng.uniform(0, 1, (n, n)), -1) * (
        rng.uniform(size=(n, n)) < 0.4
    )
    a[2, 7] = 0.5  # one 2-cycle block (2 <-> 7 via 7 -> 2 and a[7, 2])
    a[7, 2] = 0.5
    params = odes.pack_linear(np.stack([a] * nb), rng.standard_normal((nb, n)))
    y0 = rng.uniform(0, 1, (nb, n))
    t_out = np.linspace(0, 5, 21)
    kw = {"rtol": 1e-9, "atol": 1e-12}
    s1 = integrate(odes.LINEAR, y0, params, t_out, *no_impulses(nb, n), **kw)
    s2 = integrate(odes.LINEAR, y0, params, t_out, *no_impulses(nb, n), exploit_sparsity=False,
                   **kw)  # fmt: skip
    np.testing.assert_allclose(s1.y, s2.y, rtol=1e-10, atol=1e-12)


def test_healing_structured_solve_agrees_with_generic_paths() -> None:
    """HEALING's analytic Jacobian with its written-out block solve, with the generic dense LU,
    and complex-step Jacobians with the generic block LU (the pre-analytic path): same solution
    to round-off (adaptive steps, several cases, real session impulses)."""
    y0, p, days, jumps = healing_case(3)
    p[1, :] *= np.exp(np.random.default_rng(4).uniform(-0.3, 0.3, p.shape[1]))
    p[1, -1] = p[0, -1]
    t_out = np.linspace(0.0, 60.0, 31)
    kw = {"rtol": 1e-8, "atol": 1e-11}
    s1 = integrate(odes.HEALING, y0, p, t_out, days, jumps, **kw)
    s2 = integrate(odes.HEALING, y0, p, t_out, days, jumps, exploit_sparsity=False, **kw)
    assert s1.success and s2.success
    scale = np.abs(s2.y).max(axis=1, keepdims=True) + 1e-12
    assert np.max(np.abs(s1.y - s2.y) / scale) < 1e-9
    s3 = integrate(odes.HEALING, y0, p, t_out, days, jumps, analytic_jacobian=False, **kw)
    assert s3.success
    assert np.max(np.abs(s1.y - s3.y) / scale) < 1e-9
    np.testing.assert_array_equal(s3.n_steps, s1.n_steps)  # round-off does not move the steps
    assert np.all(s3.n_rhs > s1.n_rhs + 3 * s1.n_steps)  # >= 4 complex evaluations per step
    # no Jacobian costs RHS evaluations any more: 1 per step (f at its start) + 5 per attempt
    assert np.all(s1.n_rhs == 6 * s1.n_steps + 5 * s1.n_rejected)


def test_cache_stamp_covers_dependencies(tmp_path: Path) -> None:
    files = cache.source_files(odes)
    assert any(f.endswith("registry.py") for f in files)
    assert any(f.endswith("healing_rhs.py") for f in files)
    f1, f2 = tmp_path / "a.py", tmp_path / "b.py"
    f1.write_text("x = 1\n")
    f2.write_text("y = 2\n")
    s0 = cache.source_stamp([str(f1), str(f2)])
    f2.write_text("y = 3\n")
    assert cache.source_stamp([str(f1), str(f2)]) != s0
    # every cached kernel of the integrator is re-stamped with its dependencies
    for d in cache.jitted_in(integ.__name__, vars(integ)):
        assert d._cache._cache_file._source_stamp != d._cache._impl.locator.get_source_stamp()


def test_integrate_does_not_warn_on_success() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        integrate(odes.ROBERTSON, np.array([[1.0, 0, 0]]), ROBERTSON_K[None],
                  np.array([0.0, 10.0]), *no_impulses(1, 3))  # fmt: skip


def test_an_interrupt_drops_the_chunks_not_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (or SIGTERM) while a parallel batch waits for its chunks: the chunks not started
    are cancelled, so the process does not compute the rest of the batch in the background
    before it can exit (a chunk already running ends on its own)."""
    import threading
    import time

    calls: list[int] = []
    lock = threading.Lock()

    def fake_solve_range(*args: object) -> None:
        lo = int(args[-2])  # type: ignore[call-overload]
        with lock:
            calls.append(lo)
        if lo == 0:
            raise KeyboardInterrupt
        time.sleep(0.05)

    monkeypatch.setattr(integ, "solve_range", fake_solve_range)
    monkeypatch.setattr(integ, "_n_threads", lambda: 2)
    nb = 16  # 4 chunks per thread: 8 chunks of 2 cases
    params = odes.bateman_params(np.tile([[0.7, 1.9]], (nb, 1)))
    with pytest.raises(KeyboardInterrupt):
        integrate(
            odes.LINEAR, np.zeros((nb, 3)), params, np.array([0.0, 1.0]),
            np.full((nb, 1), np.inf), np.zeros((nb, 1, 3)), parallel=True,
        )  # fmt: skip
    time.sleep(0.6)  # long enough for every chunk to have run, had they not been cancelled
    assert len(calls) <= 3, calls  # the interrupted chunk, at most two running ones


@pytest.mark.parametrize("bad", [0, 1, 2])
@pytest.mark.parametrize("kind", ["nan_term", "inf_state"])
def test_a_step_error_is_nan_once_any_term_or_new_state_is_not_finite(bad: int, kind: str) -> None:
    """The error norm of a step (and of each lane of a lockstep group) stays NaN, so the step is
    rejected, whichever component went bad: before, a later finite term replaced a NaN in the
    running max, and a finite |k5| over an infinite new state counted 0 (found by reading the
    code while building the lanes)."""
    from microneedling.physics.ode.integrate import step_error
    from microneedling.physics.ode.lanes import lane_error

    y = np.array([1.0, 2.0, 3.0])
    ynew = y + 1e-3
    k5 = np.array([1e-7, 2e-7, 3e-7])
    atol = np.full(3, 1e-9)
    good = step_error(k5, y, ynew, atol, 1e-6)
    assert np.isfinite(good) and good == pytest.approx(max(k5 / (atol + 1e-6 * ynew)), rel=1e-15)
    if kind == "nan_term":
        k5 = k5.copy()
        k5[bad] = np.nan
    else:
        ynew = ynew.copy()
        ynew[bad] = np.inf
    assert np.isnan(step_error(k5, y, ynew, atol, 1e-6))
    errl = np.zeros(2)
    lane_error(
        np.column_stack([k5, k5]), np.column_stack([y, y]), np.column_stack([ynew, ynew]),
        atol, 1e-6, errl,
    )  # fmt: skip
    assert np.isnan(errl).all()
