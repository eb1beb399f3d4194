"""Healing ODE: exact homeostasis, stability, published time-course shapes, superposition."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from microneedling.parameters.parameter_set import load_parameters
from microneedling.physics import healing
from microneedling.physics.healing_rhs import (
    IX_BL,
    IX_D,
    IX_F,
    IX_HM,
    IX_I,
    IX_M,
    IX_N1,
    IX_N3,
    IX_NX,
    IX_P,
    IX_R,
    IX_S,
    N_DERMAL,
    N_PARAM,
    N_STATE,
    PARAM_NAMES,
    PIDX,
    baseline_state,
    healing_factor,
    healing_jacobian,
    healing_rhs_py,
    healing_solve,
)
from tests.counting import count_calls

T = np.unique(
    np.concatenate([np.arange(0, 3, 0.02), np.arange(3, 60, 0.25), np.arange(60, 366, 1.0)])
)


def params(n: int = 1, **over: float) -> np.ndarray:
    ps = load_parameters()
    nominal = healing.parameter_vector(ps)
    per = {"g_Q": np.full(n, 0.1), "lesion_drive": np.ones(n)}
    p = healing.parameter_matrix(nominal, n, per)
    for k, v in over.items():
        p[:, PIDX[k]] = v
    return p


def run(p: np.ndarray, phi: np.ndarray, days: np.ndarray) -> np.ndarray:
    """phi: (B, K, 3) injured fractions; days: (B, K)."""
    jumps = healing.session_impulses(phi, np.zeros(days.shape), p[:, PIDX["K_D"]])
    return healing.solve(p, T, days, jumps, rtol=1e-8, atol=1e-12).y


def one(phi_pap: float, days: tuple[float, ...] = (0.0,), **over: float) -> np.ndarray:
    K = len(days)
    phi = np.zeros((1, K, 3))
    phi[0, :, 0] = 2 * phi_pap
    phi[0, :, 1] = phi_pap
    phi[0, :, 2] = phi_pap / 2
    return run(params(**over), phi, np.array([days]))[0]


def test_no_session_stays_exactly_at_baseline() -> None:
    p = params(3)
    y = run(p, np.zeros((3, 1, 3)), np.full((3, 1), np.inf))
    np.testing.assert_array_equal(
        y, np.broadcast_to(baseline_state(np.ones(3))[:, None, :], y.shape)
    )


def test_rhs_is_zero_at_baseline_for_any_parameters() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        p = rng.uniform(0.01, 3.0, N_PARAM)
        y = baseline_state(np.array([p[PIDX["lesion_drive"]]]))[0]
        assert np.all(healing_rhs_py(0.0, y, p) == 0.0)


def test_default_parameters_are_stable_and_return_to_homeostasis() -> None:
    p = params()
    assert healing.fibrosis_margin(p)[0] > 0
    y = one(0.05, days=(0.0, 28.0, 56.0, 84.0, 112.0, 140.0))
    # fibroblasts and MMPs are back at baseline by the horizon (no fibrotic attractor)
    assert abs(y[-1, IX_F] - 1.0) < 1e-3
    assert abs(y[-1, IX_P] - 1.0) < 1e-3


def test_keloid_prone_region_has_a_fibrotic_attractor() -> None:
    strong = params(sigma_TF=0.5)[0, PIDX["sigma_TF"]]
    p = params(sigma_TF=strong)
    assert healing.fibrosis_margin(p)[0] < 0
    y = one(0.02, sigma_TF=strong)
    assert y[-1, IX_F] > 1.5  # stays activated: fibrosis instead of healing


def test_time_course_shapes_follow_the_wound_healing_sequence() -> None:
    y = one(0.01)
    t_peak = {name: T[np.argmax(y[:, ix])] for name, ix in (("I", IX_I), ("M", IX_M), ("F", IX_F))}
    assert 0.4 <= t_peak["I"] <= 1.5  # neutrophils/inflammation peak around day 1
    assert 1.5 <= t_peak["M"] <= 4.0  # macrophages around day 3
    assert 6.0 <= t_peak["F"] <= 15.0  # fibroblasts in one to two weeks
    coll_I = y[:, IX_N1] + y[:, IX_NX]
    assert T[np.argmax(y[:, IX_N3])] < T[np.argmax(coll_I)]  # collagen III before I
    c = coll_I + y[:, IX_N3]
    i30, i90, i365 = np.searchsorted(T, [30.0, 90.0, 365.0])
    nx = y[:, IX_NX]
    # mature collagen still rising months after (at day 30 it is below 0: pre-existing matrix lost
    # to the MMP pulse, booked on the mature state, before maturation catches up)
    assert nx[i365] > nx[i90] > nx[i30]
    assert nx[i365] > 0.5 * c[i30]
    # total collagen (histology) is nearly maintained: the immature share that never matures is
    # turned over (measured 0.965 at the default parameters)
    assert c[i30] > 0 and 0.9 * c[i30] < c[i90] < 1.1 * c[i30]


def test_more_injury_means_more_inflammation_and_collagen() -> None:
    ys = [one(phi) for phi in (0.001, 0.005, 0.02, 0.08)]
    peaks = [y[:, IX_I].max() for y in ys]
    coll = [y[np.searchsorted(T, 90.0), IX_N1] + y[np.searchsorted(T, 90.0), IX_NX] for y in ys]
    assert np.all(np.diff(peaks) > 0)
    assert np.all(np.diff(coll) > 0)


def test_sessions_add_up() -> None:
    single = one(0.003)
    double = one(0.003, days=(0.0, 30.0))
    i = np.searchsorted(T, 120.0)
    gain1 = single[i, IX_N1] + single[i, IX_N3] + single[i, IX_NX]
    gain2 = double[i, IX_N1] + double[i, IX_N3] + double[i, IX_NX]
    assert 1.6 * gain1 < gain2 < 2.2 * gain1  # near-additive, as Zeitter 2014 found in rats


def test_states_stay_in_their_physical_ranges() -> None:
    y = one(0.2, days=(0.0, 7.0, 14.0))
    for o in (0, N_DERMAL):
        assert np.all(y[:, o + IX_D] >= -1e-12)
        assert np.all(y[:, o + IX_I] >= -1e-12)
        assert np.all(y[:, o + IX_F] >= 1.0 - 1e-9)
        assert np.all(y[:, o + IX_P] >= 1.0 - 1e-9)
    assert np.all(np.isfinite(y))


def test_compiled_integrator_matches_scipy_reference() -> None:
    from microneedling.physics.ode.integrate import integrate_reference

    p = params()
    phi = np.array([[[0.02, 0.01, 0.005], [0.02, 0.01, 0.005]]])
    days = np.array([[0.0, 28.0]])
    jumps = healing.session_impulses(phi, np.zeros((1, 2)), p[:, PIDX["K_D"]])
    t = np.array([0.0, 0.5, 1.0, 3.0, 10.0, 28.0, 29.0, 60.0, 200.0])
    ours = healing.solve(p, t, days, jumps, rtol=1e-8, atol=1e-12).y
    ref = integrate_reference(
        healing_rhs_py,
        healing.baseline_state(p[:, PIDX["lesion_drive"]]),
        p,
        t,
        days,
        jumps,
        method="Radau",
        rtol=1e-10,
        atol=1e-13,
    ).y
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", [n for n in PARAM_NAMES if n not in ("EC_A",)])
def test_every_parameter_changes_some_output(name: str) -> None:
    """No parameter is editable but unused (PyBaMM lesson): perturbing it moves the trajectory."""
    p = params(2)
    p[1, PIDX[name]] *= 1.3
    phi = np.zeros((2, 1, 3))
    phi[:, 0] = [0.02, 0.01, 0.005]
    days = np.zeros((2, 1))
    cleft = np.full((2, 1), 0.05)
    jumps = healing.session_impulses(
        phi, np.full((2, 1), 2.0), p[:, PIDX["K_D"]], cleft, p[:, PIDX["rho_B"]]
    )
    y = healing.solve(p, T[::10], days, jumps).y
    assert np.max(np.abs(y[1] - y[0])) > 1e-9, name


def test_state_size_constants() -> None:
    assert N_STATE == 35  # 2 dermal layers x 14 + 7 epidermal
    assert len(PARAM_NAMES) == N_PARAM


def test_session_impulse_saturates_the_recruiting_injury_not_the_injured_volume() -> None:
    """D jumps by the injured fraction; R by K_D·φ/(K_D + φ) (half of K_D at φ = K_D, at most K_D)."""
    phi = np.zeros((3, 1, 3))
    phi[:, 0, 1] = [0.01, 0.02, 0.5]
    phi[:, 0, 2] = [0.0, 0.02, 2.0]
    j = healing.session_impulses(phi, np.zeros((3, 1)), 0.02)
    np.testing.assert_array_equal(j[:, 0, IX_D], phi[:, 0, 1])
    np.testing.assert_array_equal(j[:, 0, N_DERMAL + IX_D], phi[:, 0, 2])
    np.testing.assert_allclose(j[:, 0, IX_R], [0.02 / 3, 0.01, 0.02 * 0.5 / 0.52], rtol=1e-15)
    np.testing.assert_allclose(j[:, 0, N_DERMAL + IX_R], [0.0, 0.01, 0.02 * 2 / 2.02], rtol=1e-15)


def test_session_impulse_puts_the_clefts_blood_into_both_dermal_layers() -> None:
    """Bl jumps by ρ_B·K_D·s(c) in both dermal layers; R and D keep the clean channels' φ."""
    phi = np.zeros((2, 1, 3))
    phi[:, 0, 1] = [0.4, 0.04]
    phi[:, 0, 2] = [0.1, 0.01]
    cleft = np.array([[0.0], [0.1]])
    j = healing.session_impulses(phi, np.zeros((2, 1)), 0.02, cleft, np.array([1.5, 1.5]))
    blood = 1.5 * 0.02 * cleft[:, 0] / (0.02 + cleft[:, 0])
    np.testing.assert_allclose(j[:, 0, IX_BL], blood, rtol=1e-15)
    np.testing.assert_allclose(j[:, 0, N_DERMAL + IX_BL], blood, rtol=1e-15)
    np.testing.assert_allclose(j[:, 0, IX_R], 0.02 * phi[:, 0, 1] / (0.02 + phi[:, 0, 1]))
    np.testing.assert_array_equal(j[:, 0, IX_D], phi[:, 0, 1])
    assert np.all(j[:, 0, IX_HM] == 0.0)  # the blood recruits only once it has lysed
    # no clefts (or no blood ratio) leaves the clean-channel impulse of before
    np.testing.assert_array_equal(
        healing.session_impulses(phi, np.zeros((2, 1)), 0.02),
        healing.session_impulses(phi, np.zeros((2, 1)), 0.02, cleft, 0.0),
    )


def test_retained_blood_inflames_late() -> None:
    """Blood in the clefts lyses before it recruits: its inflammation peaks later than a clean
    session's (48-72 h after a bruise, not ~1 d) and adds a tail, with the clean injury equal."""
    p = params(2)
    phi = np.zeros((2, 1, 3))
    phi[:, 0] = [0.05, 0.04, 0.01]
    cleft = np.array([[0.0], [0.1]])
    jumps = healing.session_impulses(phi, np.zeros((2, 1)), p[:, PIDX["K_D"]], cleft, 1.0)
    only_blood = jumps[1:].copy()
    only_blood[:, :, IX_R] = 0.0
    only_blood[:, :, N_DERMAL + IX_R] = 0.0
    t = np.linspace(0.0, 10.0, 1001)
    y = healing.solve(
        np.concatenate([p, p[:1]]), t, np.zeros((3, 1)), np.concatenate([jumps, only_blood])
    ).y
    inflam = y[:, :, IX_I]
    t_clean = t[np.argmax(inflam[0])]
    t_blood = t[np.argmax(inflam[2])]
    assert t_clean < 1.5 < 2.0 <= t_blood <= 3.0, (t_clean, t_blood)
    assert np.all(inflam[1] >= inflam[0] - 1e-12)
    late = t > 3.0
    assert np.all(inflam[1, late] > 1.2 * inflam[0, late])


def test_density_sets_the_height_of_inflammation_not_its_length() -> None:
    """Per-channel recruitment: 25x the injured fraction of a saturating session raises the
    inflammation peak by at most what the saturation s(φ) allows (less: more inflammation clears
    the channels faster), and its length (time above half its
    own peak) by less than 10% -- the pooled Michaelis-Menten form made it ~2x longer."""
    p = params(2)
    K_D = p[0, PIDX["K_D"]]
    phi = np.zeros((2, 1, 3))
    phi[:, 0, 1] = [2.0 * K_D, 50.0 * K_D]
    y = run(p, phi, np.zeros((2, 1)))
    inflam = y[:, :, IX_I]
    peak = inflam.max(axis=1)
    s = phi[:, 0, 1] / (K_D + phi[:, 0, 1])
    assert 1.2 < peak[1] / peak[0] <= s[1] / s[0]
    above = [(T[i >= 0.5 * i.max()].max() - T[i >= 0.5 * i.max()].min()) for i in inflam]
    assert above[1] / above[0] < 1.1


# ------------------------------------------------------------ analytic Jacobian and G-solve


def random_states(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random states (D, I, ... >= 0 and some negative) and parameters spread over 6 decades."""
    rng = np.random.default_rng(seed)
    out = []
    for r in range(n):
        y = rng.uniform(0.0, 2.0, N_STATE) if r % 2 else rng.uniform(-0.5, 3.0, N_STATE)
        p = np.exp(rng.uniform(-3.0, 3.0, N_PARAM)) * params()[0]
        out.append((y, p))
    return out


def test_analytic_jacobian_equals_complex_step_at_random_states() -> None:
    from microneedling.physics.ode import registry as odes

    worst = 0.0
    work = (np.empty(N_STATE, dtype=np.complex128), np.empty(N_STATE, dtype=np.complex128))
    for y, p in random_states(60, 21):
        j_an, j_cs = np.zeros((N_STATE, N_STATE)), np.empty((N_STATE, N_STATE))
        healing_jacobian(0.0, y, p, j_an)
        odes.jacobian_complex_step(odes.HEALING, 0.0, y, p, j_cs, *work)
        # same structure, same values (relative to each entry, or to the row's largest entry)
        scale = np.maximum(np.abs(j_cs), 1e-300)
        worst = max(worst, float(np.max(np.abs(j_an - j_cs) / scale)))
        np.testing.assert_array_equal(j_an == 0.0, j_cs == 0.0)
        # through the registry: the full Jacobian (re-zeroed), and the per-step update
        j_reg = np.full((N_STATE, N_STATE), 7.0)
        assert odes.jacobian(odes.HEALING, 0.0, y, p, j_reg, *work) == 0
        np.testing.assert_array_equal(j_reg, j_an)
        j_upd = np.zeros((N_STATE, N_STATE))
        assert odes.jacobian_update(odes.HEALING, 0.0, y, p, j_upd, *work) == 0
        np.testing.assert_array_equal(j_upd, j_an)
    assert worst < 1e-10, worst


def test_structured_solve_equals_dense_solve_of_the_iteration_matrix() -> None:
    rng = np.random.default_rng(5)
    for y, p in random_states(40, 9):
        jac = np.zeros((N_STATE, N_STATE))
        healing_jacobian(0.0, y, p, jac)
        fac = float(10.0 ** rng.uniform(-2.0, 4.0))  # 1/(h gamma) for h from 4e-4 to 400 d
        g = fac * np.eye(N_STATE) - jac
        rhs = rng.standard_normal(N_STATE)
        dinv = np.empty(N_STATE)
        assert healing_factor(fac, jac, dinv)
        x = rhs.copy()
        healing_solve(fac, jac, dinv, x)
        np.testing.assert_allclose(g @ x, rhs, rtol=0, atol=1e-10 * np.abs(g).max() * (
            1 + np.abs(x).max()))  # fmt: skip
        np.testing.assert_allclose(x, np.linalg.solve(g, rhs), rtol=1e-8, atol=1e-12)


def test_structured_factor_reports_a_singular_iteration_matrix() -> None:
    y, p = random_states(1, 3)[0]
    jac = np.zeros((N_STATE, N_STATE))
    healing_jacobian(0.0, y, p, jac)
    dinv = np.empty(N_STATE)
    fac = float(jac[IX_M, IX_M])  # fac - J_MM = 0: a zero 1x1 pivot
    assert not healing_factor(fac, jac, dinv)
    jac[IX_R, IX_I] = 0.0
    jac[IX_R, IX_R] = 2.0  # the (R, I) block [[fac - 2, 0], [., .]] singular at fac = 2
    assert not healing_factor(2.0, jac, dinv)


# ------------------------------------------------------------ epidermal pigment and the agent


def _pigment(agent: float, **over: float) -> np.ndarray:
    """(T, N_STATE) after one session with an agent jump ``agent`` (units of its EC50)."""
    p = params(**over)
    phi = np.array([[[0.02, 0.01, 0.005]]])
    jumps = healing.session_impulses(phi, np.full((1, 1), agent), p[:, PIDX["K_D"]])
    return healing.solve(p, T, np.zeros((1, 1)), jumps, rtol=1e-8, atol=1e-12).y[0]


def test_agent_lowers_lesion_pigment_and_pih_pigment_at_every_time() -> None:
    from microneedling.physics.healing_rhs import IX_MP, IX_Q

    without, with_agent = _pigment(0.0), _pigment(3.0)
    assert np.all(with_agent[:, IX_MP] <= without[:, IX_MP] + 1e-12)
    assert np.all(with_agent[:, IX_Q] <= without[:, IX_Q] + 1e-12)
    i = np.searchsorted(T, 10.0)
    assert with_agent[i, IX_Q] < 0.9 * without[i, IX_Q]  # occupancy 3/4 x e_A 0.5 while A lasts
    assert with_agent[i, IX_MP] < without[i, IX_MP]


def test_needling_speeds_pigment_turnover_in_proportion_to_the_baseline_rate() -> None:
    """Mp' = κ_T (L − (1 + β_K K) Mp): the lesion's deficit is K low-pass filtered at κ_T with unit
    gain, so its time integral barely depends on κ_T (exact to first order: β_K ∫K dt) and a
    faster epidermis shows a deeper, shorter dip. The former additive clearance k_mK·K·Mp gave a
    slower epidermis a larger effect (integral ∝ 1/κ_T: ×3 from 1/20 to 1/60 per day)."""
    from microneedling.physics.healing_rhs import IX_MP

    deficit = [1.0 - _pigment(0.0, kappa_T=k)[:, IX_MP] for k in (1 / 60, 1 / 28, 1 / 20)]
    peaks = [d.max() for d in deficit]
    areas = [np.trapezoid(d, T) for d in deficit]
    assert 0 < peaks[0] < peaks[1] < peaks[2]
    assert max(areas) / min(areas) < 1.1  # measured 9.70, 9.24, 9.00 d


def test_pih_pigment_leaves_with_the_needled_epidermis_so_close_sessions_pile_up_less() -> None:
    """Q' = g_Q·I_pap − μ_Q (1 + β_K K) Q: the pigment inflammation adds to the epidermis is shed
    by the same turnover as the lesion's, sped by needling. Twelve weekly sessions then raise the
    peak of Q over three monthly ones less than with a resting epidermis (β_K = 0), and far from
    the sessions (K back at 0) Q fades at μ_Q alone."""
    from microneedling.physics.healing_rhs import IX_K, IX_Q

    t = np.linspace(0.0, 200.0, 2001)
    peak = {}
    for b in (0.0, 1.4):
        weekly = course(12, t, interval=7.0, beta_K=b)
        monthly = course(3, t, interval=28.0, beta_K=b)
        peak[b] = weekly[:, IX_Q].max() / monthly[:, IX_Q].max()
        if b > 0:
            assert weekly[:, IX_Q].max() < course(12, t, interval=7.0, beta_K=0.0)[:, IX_Q].max()
            late = t > 180.0
            assert np.all(np.abs(weekly[late, IX_K]) < 1e-3)
            rate = -np.diff(np.log(weekly[late, IX_Q])) / np.diff(t[late])
            np.testing.assert_allclose(rate, params()[0, PIDX["mu_Q"]], rtol=2e-3)
    assert 1.0 < peak[1.4] < 0.8 * peak[0.0]


# ------------------------------------------------------------ durable collagen (mature state NX)

YEAR = 365.25
#: a 1.5 mm roller session on the cheek (engine: examples/acne-scars-rolling-cheek.toml)
PHI_15 = (0.08, 0.0396, 0.0070)


def course(n_sessions: int, t: np.ndarray, interval: float = 28.0, **over: float) -> np.ndarray:
    """(T, N_STATE) of ``n_sessions`` monthly 1.5 mm-like sessions from day 0."""
    phi = np.zeros((1, n_sessions, 3))
    phi[0, :] = PHI_15
    days = np.array([[interval * k for k in range(n_sessions)]])
    p = params(**over)
    jumps = healing.session_impulses(phi, np.zeros(days.shape), p[:, PIDX["K_D"]])
    return healing.solve(p, t, days, jumps, rtol=1e-8, atol=1e-12).y[0]


def test_mature_collagen_at_12_months_is_at_least_that_at_3_months() -> None:
    """3 monthly sessions: cross-linked new collagen keeps growing after the course while the
    immature part matures (design prototype: papillary 17.9% at +3 months, 27.0% at +12)."""
    last = 56.0
    t = np.array([0.0, last + 90.0, last + 365.0])
    y = course(3, t)
    for o in (0, N_DERMAL):
        nx3, nx12 = y[1, o + IX_NX], y[2, o + IX_NX]
        assert nx3 > 0.01
        assert nx12 >= nx3
    assert y[2, IX_NX] > 1.2 * y[1, IX_NX]


def test_gains_persist_for_years_and_return_to_baseline_on_a_multi_year_horizon() -> None:
    last = 56.0
    t = np.array([0.0, last + YEAR, last + 5 * YEAR, last + 10 * YEAR, last + 60 * YEAR])
    y = course(3, t)
    total = y[:, IX_N1] + y[:, IX_N3] + y[:, IX_NX]
    assert total[2] > 0.7 * total[1]  # 5 years on, most of the 1-year gain is still there
    assert total[1] > total[2] > total[3] > total[4]  # ... and it fades
    assert total[4] < 0.1 * total[1]  # mature turnover (half-life 15 y) returns it to baseline
    for o in (0, N_DERMAL):  # the cascade itself is back at homeostasis to round-off
        assert abs(y[-1, o + IX_F] - 1.0) < 1e-12
        assert abs(y[-1, o + IX_P] - 1.0) < 1e-12
        assert abs(y[-1, o + IX_N1]) < 1e-12 and abs(y[-1, o + IX_N3]) < 1e-12


def test_more_sessions_mean_more_mature_collagen_at_every_later_time() -> None:
    t = np.concatenate([[0.0], np.linspace(200.0, 3 * YEAR, 40)])
    nx = [course(n, t)[1:, IX_NX] for n in (1, 2, 3, 4)]
    for a, b in itertools.pairwise(nx):
        assert np.all(b > a)


def test_released_tethers_stay_released() -> None:
    t = np.linspace(0.0, 3 * YEAR, 400)
    y = course(4, t)
    s_ret = y[:, N_DERMAL + IX_S]
    assert s_ret[-1] < 0.9
    assert np.all(np.diff(s_ret) <= 1e-15)  # S has sink terms only


def test_repeated_cases_are_integrated_once_with_the_numbers_of_a_case_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch that repeats cases integrates each distinct case once, and every case gets the
    numbers it gets in a batch of its own, bit for bit (each case steps on its own)."""
    p = params(3)
    p[1, PIDX["K_D"]] *= 1.5
    p[2, PIDX["g_Q"]] = 0.3
    days = np.array([[0.0, 30.0], [0.0, 30.0], [0.0, 60.0]])
    phi = np.full((3, 2, 3), 0.004)
    jumps = healing.session_impulses(phi, np.zeros(days.shape), p[:, PIDX["K_D"]])
    alone = [healing.solve(p[i : i + 1], T, days[i : i + 1], jumps[i : i + 1]) for i in range(3)]
    order = np.array([2, 0, 2, 1, 0, 2, 1])
    sizes = count_calls(monkeypatch, healing, "integrate", lambda system, y0, *a, **kw: len(y0))
    sol = healing.solve(p[order], T, days[order], jumps[order])
    assert sizes == [3]
    for row, case in enumerate(order):
        assert np.array_equal(sol.y[row], alone[case].y[0])
        assert sol.n_steps[row] == alone[case].n_steps[0]
    distinct, inverse = healing.solve_distinct(p[order], T, days[order], jumps[order])
    assert distinct.y.shape[0] == 3 and np.array_equal(distinct.y[inverse], sol.y)


def test_mature_matrix_loss_stops_when_the_matrix_is_gone() -> None:
    """Excess MMP activity destroys mature type I matrix by mass action in what is left
    (C1_0 + NX), so NX never falls below -C1_0 and total collagen never below -C1_0 of baseline,
    however strong the MMP response: 12 weekly dense sessions with MMP loss at 50 times its upper
    bound, fibroblast-driven MMP at its upper bound and little new collagen. Near baseline the loss
    rate is delta_b (P - 1) C1_0, as the zero-order form gave."""
    c1 = 0.85
    over = {"delta_b": 0.25, "sigma_PF": 0.6, "k_1": 1e-4, "k_3": 1e-4, "C1_0": c1}
    y = one(0.3, days=tuple(7.0 * k for k in range(12)), **over)
    for o in (0, N_DERMAL):
        nx = y[:, o + IX_NX]
        assert nx.min() < -0.9 * c1  # the loss is strong enough to reach the bound ...
        assert nx.min() > -c1  # ... and stops there
        total = y[:, o + IX_N3] + y[:, o + IX_N1] + nx
        assert total.min() > -c1
    # the rate at a state near baseline: delta_b (P - 1) (C1_0 + NX) with NX = 0
    p = params(**over)[0]
    y0 = baseline_state(np.ones(1))[0]
    y0[IX_P] = 1.5
    f = healing_rhs_py(0.0, y0, p)
    expected = -p[PIDX["delta_X"]] * 1.5 * 0.0 - over["delta_b"] * 0.5 * c1
    assert f[IX_NX] == pytest.approx(expected, rel=1e-14)
