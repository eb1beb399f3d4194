"""Lockstep lanes (``integrate(..., lanes=L)``): agreement with the scalar path and exact
solutions, padding, impulses, failing lanes, per-case statistics."""

from __future__ import annotations

import numpy as np
import pytest

from microneedling.physics.ode import integrate as integ
from microneedling.physics.ode import registry as odes
from microneedling.physics.ode.integrate import integrate, integrate_reference
from microneedling.physics.ode.lanes import plan_groups

ROBERTSON_K = np.array([0.04, 3e7, 1e4])
EXAMPLE = "acne-scars-rolling-cheek.toml"


def real_healing_cases(nb: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``nb`` healing cases of a real 4-session course (the acne roller example), every rate
    ±20 % per case: y0, params, t_out (days), session days, jumps."""
    from pathlib import Path

    import microneedling as mn
    from microneedling.engine.batch import session_jumps
    from microneedling.engine.prepare import output_times, prepare
    from microneedling.physics import healing
    from microneedling.physics.healing_rhs import PIDX

    root = Path(__file__).resolve().parents[3]
    course = mn.Course.from_toml(root / "examples" / EXAMPLE)
    prep = prepare(course, mn.load_parameters())
    t = output_times(prep.session_days, float(course.horizon_days))
    rng = np.random.default_rng(seed)
    params = np.repeat(prep.params, nb, axis=0)
    k = PIDX["lesion_drive"]
    params[:, :k] *= rng.uniform(0.8, 1.2, (nb, k))
    days = np.repeat(prep.session_days, nb, axis=0)
    jumps = np.repeat(session_jumps(prep), nb, axis=0) * rng.uniform(0.7, 1.3, (nb, 1, 1))
    return healing.baseline_state(params[:, k]), params, t, days, jumps


def bateman_lanes(nb: int, times: np.ndarray, seed: int = 5) -> tuple[np.ndarray, ...]:
    """A -> B -> (out), impulses a0 into A at ``times`` (shared), as LINEAR parameters."""
    rng = np.random.default_rng(seed)
    k1 = rng.uniform(0.05, 3.0, nb)
    k2 = k1 * rng.uniform(1.3, 20.0, nb)
    a0 = rng.uniform(0.5, 2.0, nb)
    a = np.zeros((nb, 2, 2))
    a[:, 0, 0] = -k1
    a[:, 1, 0] = k1
    a[:, 1, 1] = -k2
    imp_t = np.tile(times, (nb, 1))
    imp_v = np.zeros((nb, times.size, 2))
    imp_v[:, :, 0] = a0[:, None]
    return k1, k2, a0, odes.pack_linear(a), imp_t, imp_v


def exact_b(t: np.ndarray, k1: float, k2: float, a0: float, times: np.ndarray) -> np.ndarray:
    out = np.zeros_like(t)
    for tj in times[np.isfinite(times)]:
        s = np.maximum(t - tj, 0.0)
        out += np.where(t >= tj, a0 * k1 / (k2 - k1) * (np.exp(-k1 * s) - np.exp(-k2 * s)), 0.0)
    return out


def test_plan_groups_pads_the_last_group_and_leaves_small_remainders_to_the_scalar_path() -> None:
    times = np.array([[0.0, 1.0]] * 7 + [[0.0, 2.0]] * 2 + [[0.0, 1.0]] * 3)
    groups, n_real, single = plan_groups(times, 4)
    # 10 cases share [0, 1]: two full groups and a remainder of 2 (>= 4/2: padded); 2 share
    # [0, 2] (>= 4/2: one padded group); nothing left over
    assert groups.shape == (4, 4) and n_real.tolist() == [4, 4, 2, 2] and single.size == 0
    for g, r in zip(groups, n_real, strict=True):
        assert np.all(times[g] == times[g[0]])  # one impulse schedule per group
        assert np.all(g[r:] == g[0])  # padding copies the group's first case
    real = np.concatenate([g[:r] for g, r in zip(groups, n_real, strict=True)])
    assert sorted(real.tolist()) == list(range(12))
    _, _, single = plan_groups(times[:5], 4)  # one group of 4 and a remainder of 1: scalar
    assert single.tolist() == [4]


def test_plan_groups_puts_cases_with_equal_leading_parameters_together() -> None:
    times = np.zeros((8, 1))
    draw = np.array([1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0])  # two parameter draws, interleaved
    params = np.column_stack([draw, np.arange(8.0)])
    groups, n_real, single = plan_groups(times, 4, params)
    assert n_real.tolist() == [4, 4] and single.size == 0
    assert sorted(groups[0].tolist()) == [0, 2, 4, 6] and sorted(groups[1].tolist()) == [1, 3, 5, 7]


@pytest.mark.parametrize("lanes", [4, 8])
def test_lanes_agree_with_the_scalar_path_on_real_healing_cases(lanes: int) -> None:
    """Each lane's error against a tight reference is no worse than the scalar path's at the
    same tolerances (a shared step is never longer than the step the lane would take alone, up
    to the step-size history), and both are within the tolerance."""
    y0, p, t, days, jumps = real_healing_cases(2 * lanes + lanes // 2)  # two full, one padded
    args = (odes.HEALING, y0, p, t, days, jumps)
    ref = integrate(*args, rtol=1e-10, atol=1e-14)
    scalar = integrate(*args, rtol=1e-6, atol=1e-8)
    lane = integrate(*args, rtol=1e-6, atol=1e-8, lanes=lanes)
    assert lane.success and scalar.success
    scale = 1e-8 + 1e-6 * np.abs(ref.y)
    err_lane = np.max(np.abs(lane.y - ref.y) / scale, axis=(1, 2))
    err_scalar = np.max(np.abs(scalar.y - ref.y) / scale, axis=(1, 2))
    assert np.max(err_lane) < 1.0 and np.max(err_scalar) < 1.0
    assert np.max(err_lane) <= np.max(err_scalar)
    assert np.median(err_lane) <= np.median(err_scalar)
    # a group takes at least as many steps as any of its cases alone
    groups, n_real, _ = plan_groups(days, lanes, p)  # as integrate groups them
    for g, r in zip(groups, n_real, strict=True):
        assert np.all(lane.n_steps[g[:r]] == lane.n_steps[g[0]])
        assert lane.n_steps[g[0]] >= np.min(scalar.n_steps[g[:r]])


def test_lanes_match_exact_solution_of_linear_chain_with_impulses() -> None:
    times = np.array([0.0, 5.0, 12.5])
    k1, k2, a0, p, imp_t, imp_v = bateman_lanes(11, times)  # 8 + 3 (padded)
    t_out = np.linspace(0.0, 40.0, 81)  # 5.0 and 12.5 are outputs: right-continuous jumps
    y0 = np.zeros((11, 2))
    sol = integrate(odes.LINEAR, y0, p, t_out, imp_t, imp_v, rtol=1e-8, atol=1e-12, lanes=8)
    assert sol.success
    for b in range(11):
        exact = exact_b(t_out, k1[b], k2[b], a0[b], times)
        assert np.max(np.abs(sol.y[b, :, 1] - exact)) < 1e-6 * max(1.0, np.max(exact))
        assert sol.y[b, 10, 0] >= a0[b]  # t = 5: the output includes the jump
    scalar = integrate(odes.LINEAR, y0, p, t_out, imp_t, imp_v, rtol=1e-8, atol=1e-12)
    assert np.allclose(sol.y, scalar.y, rtol=1e-6, atol=1e-10)


def test_lanes_on_robertson_match_radau_reference() -> None:
    t_out = np.concatenate([[0.0], np.logspace(-5, 5, 41)])
    y0 = np.array([[1.0, 0.0, 0.0], [0.9, 0.0, 0.1], [0.5, 1e-6, 0.5]])
    p = np.tile(ROBERTSON_K, (3, 1))
    imp_t = np.full((3, 1), np.inf)
    imp_v = np.zeros((3, 1, 3))
    atol = np.array([1e-10, 1e-14, 1e-10])
    sol = integrate(odes.ROBERTSON, y0, p, t_out, imp_t, imp_v, rtol=1e-6, atol=atol, lanes=4)
    assert sol.success and np.all(sol.n_steps == sol.n_steps[0])  # one padded group of 3

    def f(t: float, y: np.ndarray, k: np.ndarray) -> np.ndarray:
        return np.array([
            -k[0] * y[0] + k[2] * y[1] * y[2],
            k[0] * y[0] - k[2] * y[1] * y[2] - k[1] * y[1] ** 2,
            k[1] * y[1] ** 2,
        ])  # fmt: skip

    ref = integrate_reference(
        f, y0, p, t_out, imp_t, imp_v, method="Radau", rtol=1e-10,
        atol=np.array([1e-14, 1e-18, 1e-14]),
    )  # fmt: skip
    rel = np.abs(sol.y[:, 1:] - ref.y[:, 1:]) / np.maximum(np.abs(ref.y[:, 1:]), 1e-30)
    assert np.max(rel) < 1e-4
    assert np.max(np.abs(sol.y.sum(axis=2) - y0.sum(axis=1)[:, None])) < 1e-12


def test_cases_with_different_impulse_times_are_grouped_apart() -> None:
    y0, p, t, days, jumps = real_healing_cases(12, seed=3)
    days[6:] += 7.0  # a second schedule, one week later (cases 6-11)
    args = (odes.HEALING, y0, p, t, days, jumps)
    lane = integrate(*args, rtol=1e-6, atol=1e-8, lanes=4)
    scalar = integrate(*args, rtol=1e-6, atol=1e-8)
    ref = integrate(*args, rtol=1e-10, atol=1e-14)
    scale = 1e-8 + 1e-6 * np.abs(ref.y)
    assert np.max(np.abs(lane.y - ref.y) / scale) < 1.0
    assert np.max(np.abs(scalar.y - ref.y) / scale) < 1.0
    # steps of a group are shared; the two schedules' groups differ
    assert len(set(lane.n_steps[:6].tolist())) <= 2 and lane.n_steps[0] != lane.n_steps[6]


def test_a_failing_lane_does_not_change_the_other_cases() -> None:
    """A lane whose state blows up makes its group fail; the group's cases are then solved one by
    one, so the other cases get exactly the scalar path's result and the failing one its own
    status and NaN outputs."""
    nb = 4
    a = np.tile(-np.eye(2), (nb, 1, 1))
    a[2] = [[800.0, 0.0], [0.0, 800.0]]  # grows like e^(800 t): overflows before t = 1
    p = odes.pack_linear(a)
    y0 = np.ones((nb, 2))
    t_out = np.array([0.0, 0.5, 2.0])
    imp_t = np.full((nb, 1), np.inf)
    imp_v = np.zeros((nb, 1, 2))
    with pytest.warns(RuntimeWarning, match="1 of 4"):
        lane = integrate(odes.LINEAR, y0, p, t_out, imp_t, imp_v, lanes=4)
    with pytest.warns(RuntimeWarning, match="1 of 4"):
        scalar = integrate(odes.LINEAR, y0, p, t_out, imp_t, imp_v)
    assert lane.status.tolist() == scalar.status.tolist() and lane.status[2] != integ.OK
    ok = [0, 1, 3]
    assert np.array_equal(lane.y[ok], scalar.y[ok])
    assert np.array_equal(lane.n_steps[ok], scalar.n_steps[ok])
    assert np.all(np.isnan(lane.y[2, -1]))


def test_lanes_one_is_the_scalar_path_and_bad_lane_counts_raise() -> None:
    y0, p, t, days, jumps = real_healing_cases(3)
    args = (odes.HEALING, y0, p, t, days, jumps)
    a = integrate(*args, lanes=1)
    b = integrate(*args)
    assert np.array_equal(a.y, b.y) and np.array_equal(a.n_steps, b.n_steps)
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="lanes"):
            integrate(*args, lanes=bad)  # type: ignore[arg-type]


def test_parallel_lanes_give_the_same_bits() -> None:
    y0, p, t, days, jumps = real_healing_cases(20, seed=7)
    args = (odes.HEALING, y0, p, t, days, jumps)
    a = integrate(*args, lanes=4, parallel=False)
    b = integrate(*args, lanes=4, parallel=True)
    assert np.array_equal(a.y, b.y) and np.array_equal(a.n_steps, b.n_steps)
