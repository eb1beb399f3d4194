"""Code verification: the package's solvers against problems whose answer is known.

Each check runs the package's own numerics (the RODAS4 integrator, the healing model, the
homogenised transport, the resolved unit cell) on a problem with an exact or reference solution,
measures one number (an observed order of convergence, a relative error, a residual) and compares
it with a stated tolerance. It returns a :class:`CheckResult`: what was verified, the measured
quantity, the expected value, the tolerance, passed, and the source of the exact solution.
:func:`run_verification` runs them all in process (a few seconds) for the credibility report; it
needs no test files, so it works in an installed package.

Checks (exact solution in brackets):

* ``rodas4_order_linear``: observed order 4 ± 0.4 of fixed-step RODAS4 on a stiff linear system with
  complex eigenvalues and a forcing term (matrix exponential).
* ``rodas4_order_kaps``: the same on Kaps' nonlinear problem (y = (e^-2t, e^-t)).
* ``rodas4_order_prothero_robinson``: the same on the non-autonomous Prothero–Robinson problem
  (y = sin ωt + (y0 − sin ωt0) e^(λ(t − t0))), which exercises the f_t terms.
* ``rodas4_order_healing``: the same on the real healing model with two sessions (self-convergence
  against a 2^-13-day fixed-step solution; no exact solution exists).
* ``integrator_bateman``: adaptive RODAS4 on the decay chain A → B → ∘ with repeated impulses
  (Bateman's solution, superposed).
* ``integrator_robertson``: Robertson's stiff kinetics to t = 1e5 against SciPy's Radau at
  rtol 1e-10.
* ``integrator_conservation``: a closed stiff linear system (column sums zero) with impulses keeps
  its total to round-off.
* ``healing_baseline``: with no session the healing model stays at its homeostatic state exactly.
* ``transport_potts_guy``: the intact-skin permeability of niacinamide equals Potts & Guy's
  formula with the published coefficients, in m/s (a cm/s ↔ cm/h slip cannot pass).
* ``transport_mass_balance``: vehicle + retained + cleared = dose for every shipped molecule, open
  and occluded.
* ``unitcell_crank_amount`` and ``unitcell_crank_lag_time``: the cumulative amount through a
  membrane and its lag time L²/6D (Crank 1975 eq. 4.24a).
* ``unitcell_erfc_profile`` and ``unitcell_erfc_uptake``: a deep layer under a constant surface
  concentration, C = C0 erfc(z/2√(Dt)) and M = 2 C0 √(Dt/π) (Crank 1975 eq. 2.45).
* ``unitcell_spatial_order``: observed spatial order 2 ± 0.2 of the finite-volume grid (Crank's
  series at t = L²/D).
* ``unitcell_mass_balance``: the 2-D layered cell with a closing channel and clearance balances
  its mass to 1e-10.
* ``unitcell_laminate``: steady flux through a three-layer laminate, J = c_v / Σ L_i/(K_i D_i).

The SBML export is not cross-checked here: that needs libSBML and libRoadRunner (optional) and an
example course (``tests/studies/test_sbml.py`` does it).

Every check takes keyword arguments whose defaults are the verified setting; the tests pass a wrong
exact solution or too coarse steps to show that each check can fail.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import scipy.linalg
from scipy.special import erfc

from microneedling.parameters.molecules import shipped_molecules
from microneedling.parameters.parameter_set import load_parameters
from microneedling.physics import healing
from microneedling.physics import transport as tr
from microneedling.physics.healing_rhs import PIDX, baseline_state
from microneedling.physics.ode import integrate as integ
from microneedling.physics.ode import registry as odes
from microneedling.physics.ode.integrate import integrate, integrate_reference
from microneedling.physics.unitcell import UnitCell, solve
from microneedling.units import conversion_factor

__all__ = [
    "CHECKS",
    "CheckResult",
    "bateman_exact",
    "crank_membrane_amount",
    "erfc_profile",
    "healing_baseline",
    "integrator_bateman",
    "integrator_conservation",
    "integrator_robertson",
    "kaps_exact",
    "laminate_permeability",
    "linear_exact",
    "observed_order",
    "prothero_robinson_exact",
    "rodas4_order_healing",
    "rodas4_order_kaps",
    "rodas4_order_linear",
    "rodas4_order_prothero_robinson",
    "run_verification",
    "transport_mass_balance",
    "transport_potts_guy",
    "unitcell_crank_amount",
    "unitcell_crank_lag_time",
    "unitcell_erfc_profile",
    "unitcell_erfc_uptake",
    "unitcell_laminate",
    "unitcell_mass_balance",
    "unitcell_spatial_order",
]

FloatArray = np.ndarray


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one verification check.

    ``passed`` is ``|measured − expected| <= tolerance`` (False when ``measured`` is not finite).
    """

    name: str
    """Short identifier (the function's name)."""
    verifies: str
    """What the check verifies, in one sentence."""
    quantity: str
    """The measured quantity, in words, with its unit."""
    measured: float
    expected: float
    tolerance: float
    passed: bool
    exact_solution: str
    """Source of the exact (or reference) solution."""
    seconds: float = 0.0
    detail: str = ""
    """Further numbers behind the measurement (e.g. the errors an order was fitted to)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (a non-finite number becomes ``None``, ``"inf"`` or ``"-inf"``)."""

        def clean(x: Any) -> Any:
            if isinstance(x, float) and not math.isfinite(x):
                return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
            return x

        return {k: clean(v) for k, v in asdict(self).items()}


def _result(
    name: str,
    verifies: str,
    quantity: str,
    measured: float,
    expected: float,
    tolerance: float,
    exact_solution: str,
    t0: float,
    detail: str = "",
) -> CheckResult:
    m = float(measured)
    return CheckResult(
        name=name,
        verifies=verifies,
        quantity=quantity,
        measured=m,
        expected=float(expected),
        tolerance=float(tolerance),
        passed=bool(math.isfinite(m) and abs(m - expected) <= tolerance),
        exact_solution=exact_solution,
        seconds=round(time.perf_counter() - t0, 3),
        detail=detail,
    )


def observed_order(steps: Sequence[float], errors: Sequence[float]) -> float:
    """Least-squares slope of log(error) against log(step): the observed order of convergence."""
    with np.errstate(divide="ignore", invalid="ignore"):
        x, y = np.log(np.asarray(steps, float)), np.log(np.asarray(errors, float))
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        return math.nan
    return float(np.polyfit(x, y, 1)[0])


def _errors(errors: Sequence[float]) -> str:
    return "errors " + ", ".join(f"{e:.3g}" for e in errors)


def _no_impulses(nb: int, n: int) -> tuple[FloatArray, FloatArray]:
    return np.full((nb, 1), np.inf), np.zeros((nb, 1, n))


_HALVINGS_LINEAR = tuple(2.0**-m for m in range(3, 9))
_HALVINGS_SMALL = tuple(2.0**-m for m in range(2, 8))
_HALVINGS_HEALING = tuple(2.0**-m for m in range(6, 10))  # coarser: pre-asymptotic (slopes 4.5)


# ------------------------------------------------------------------------------ exact solutions
def linear_exact(a: FloatArray, b: FloatArray, y0: FloatArray, t: float) -> FloatArray:
    """y(t) of y' = A y + b, y(0) = y0: e^(At)(y0 + A⁻¹b) − A⁻¹b (A invertible)."""
    shift = np.linalg.solve(a, b)
    return np.asarray(scipy.linalg.expm(a * t) @ (y0 + shift) - shift)


def kaps_exact(t: float) -> FloatArray:
    """Kaps' problem from y(0) = (1, 1): y = (e^(−2t), e^(−t)) for every ε > 0."""
    return np.array([math.exp(-2.0 * t), math.exp(-t)])


def prothero_robinson_exact(lam: float, omega: float, y0: float, t: float) -> float:
    """Prothero & Robinson 1974 from y(0) = y0: sin ωt + (y0 − sin 0) e^(λt)."""
    return math.sin(omega * t) + y0 * math.exp(lam * t)


def bateman_exact(
    t: FloatArray, k1: float, k2: float, a0: float, times: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """A(t), B(t) of A → B → ∘ (rates k1, k2) after impulses a0 into A at ``times`` (Bateman 1910,
    superposed over the impulses)."""
    a = np.zeros_like(t)
    b = np.zeros_like(t)
    for tj in times[np.isfinite(times)]:
        s = np.maximum(t - tj, 0.0)
        on = t >= tj
        a += np.where(on, a0 * np.exp(-k1 * s), 0.0)
        b += np.where(on, a0 * k1 / (k2 - k1) * (np.exp(-k1 * s) - np.exp(-k2 * s)), 0.0)
    return a, b


def crank_membrane_amount(t: float, d: float, ell: float, c1: float = 1.0) -> float:
    """Cumulative amount [kg/m²] out at x = ℓ of a membrane, C(0) = c1, C(ℓ) = 0, C(x, 0) = 0.

    Crank 1975 eq. 4.24a: Q = ℓ c1 [D t/ℓ² − 1/6 − (2/π²) Σ (−1)ⁿ/n² exp(−D n² π² t/ℓ²)]
    (400 terms; accurate for D t/ℓ² ≥ 0.1). The late-time asymptote crosses Q = 0 at the lag time
    ℓ²/(6D).
    """
    n = np.arange(1, 401)
    s = np.sum((-1.0) ** n / n**2 * np.exp(-d * n**2 * np.pi**2 * t / ell**2))
    return float(ell * c1 * (d * t / ell**2 - 1.0 / 6.0 - 2.0 / np.pi**2 * s))


def erfc_profile(z: FloatArray, t: float, d: float, c0: float = 1.0) -> FloatArray:
    """C(z, t) = C0 erfc(z / 2√(Dt)) in a semi-infinite medium (Crank 1975 eq. 2.45)."""
    return np.asarray(c0 * erfc(z / (2.0 * math.sqrt(d * t))))


# ------------------------------------------------------------------------------ integrator
def _stiff_linear_problem() -> tuple[FloatArray, FloatArray, FloatArray]:
    """A (stiffness ratio 200, a rotation), b, y0 of n = 6 (fixed seed)."""
    rng = np.random.default_rng(0)
    n = 6
    lam = np.array([-0.5, -1.0, -3.0, -10.0, -30.0, -100.0])
    v = np.eye(n) + 0.3 * rng.standard_normal((n, n))
    a = v @ np.diag(lam) @ np.linalg.inv(v)
    a[0, 1] += 2.0
    a[1, 0] -= 2.0
    return a, rng.standard_normal(n), rng.standard_normal(n)


def rodas4_order_linear(
    *,
    steps: Sequence[float] = _HALVINGS_LINEAR,
    exact: Callable[[FloatArray, FloatArray, FloatArray, float], FloatArray] = linear_exact,
) -> CheckResult:
    """Observed order of fixed-step RODAS4 on y' = A y + b at t = 1 (expected 4 ± 0.4)."""
    t0 = time.perf_counter()
    a, b, y0 = _stiff_linear_problem()
    t_end = 1.0
    ref = exact(a, b, y0, t_end)
    imp_t, imp_v = _no_impulses(1, y0.size)
    errors = []
    for h in steps:
        sol = integrate(
            odes.LINEAR, y0[None], odes.pack_linear(a, b)[None], np.array([0.0, t_end]), imp_t,
            imp_v, fixed_step=h,
        )  # fmt: skip
        errors.append(float(np.max(np.abs(sol.y[0, -1] - ref))))
    return _result(
        "rodas4_order_linear",
        "RODAS4 converges at its classical order on a stiff linear system with forcing",
        "observed order (slope of log max error vs log step, t = 1)",
        observed_order(steps, errors),
        integ.ORDER,
        0.1 * integ.ORDER,
        "matrix exponential: y = e^(At)(y0 + A⁻¹b) − A⁻¹b (scipy.linalg.expm)",
        t0,
        _errors(errors),
    )


def rodas4_order_kaps(
    *,
    steps: Sequence[float] = _HALVINGS_SMALL,
    exact: Callable[[float], FloatArray] = kaps_exact,
) -> CheckResult:
    """Observed order of fixed-step RODAS4 on Kaps' problem (ε = 1) at t = 1 (4 ± 0.4)."""
    t0 = time.perf_counter()
    ref = exact(1.0)
    imp_t, imp_v = _no_impulses(1, 2)
    errors = []
    for h in steps:
        sol = integrate(
            odes.KAPS, np.array([[1.0, 1.0]]), np.array([[1.0]]), np.array([0.0, 1.0]), imp_t,
            imp_v, fixed_step=h,
        )  # fmt: skip
        errors.append(float(np.max(np.abs(sol.y[0, -1] - ref))))
    return _result(
        "rodas4_order_kaps",
        "RODAS4 meets its nonlinear order conditions",
        "observed order (slope of log max error vs log step, t = 1)",
        observed_order(steps, errors),
        integ.ORDER,
        0.1 * integ.ORDER,
        "Kaps' problem, exact y = (e^(−2t), e^(−t)) (Hairer & Wanner, Solving ODEs II, §IV.7)",
        t0,
        _errors(errors),
    )


def rodas4_order_prothero_robinson(
    *,
    steps: Sequence[float] = _HALVINGS_SMALL,
    exact: Callable[[float, float, float, float], float] = prothero_robinson_exact,
) -> CheckResult:
    """Observed order of fixed-step RODAS4 on Prothero–Robinson (λ = −1, ω = 2) at t = 1."""
    t0 = time.perf_counter()
    lam, omega, y0 = -1.0, 2.0, 0.5
    ref = exact(lam, omega, y0, 1.0)
    imp_t, imp_v = _no_impulses(1, 1)
    errors = []
    for h in steps:
        sol = integrate(
            odes.PROTHERO_ROBINSON, np.array([[y0]]), np.array([[lam, omega]]),
            np.array([0.0, 1.0]), imp_t, imp_v, fixed_step=h,
        )  # fmt: skip
        errors.append(float(abs(sol.y[0, -1, 0] - ref)))
    return _result(
        "rodas4_order_prothero_robinson",
        "RODAS4 keeps its order on a non-autonomous problem (the f_t terms of the method)",
        "observed order (slope of log error vs log step, t = 1)",
        observed_order(steps, errors),
        integ.ORDER,
        0.1 * integ.ORDER,
        "Prothero & Robinson, Math. Comp. 28:145-162 (1974): y = sin ωt + y0 e^(λt)",
        t0,
        _errors(errors),
    )


def _healing_case() -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """One case of the healing model with the shipped parameters and two sessions (days 0, 3)."""
    nominal = healing.parameter_vector(load_parameters())
    p = healing.parameter_matrix(nominal, 1, {"g_Q": np.full(1, 0.1), "lesion_drive": np.ones(1)})
    phi = np.zeros((1, 2, 3))
    phi[:, :, :] = [0.04, 0.02, 0.01]
    jumps = healing.session_impulses(phi, np.ones((1, 2)), p[:, PIDX["K_D"]])
    days = np.array([[0.0, 3.0]])
    return baseline_state(p[:, PIDX["lesion_drive"]]), p, days, jumps


def rodas4_order_healing(
    *, steps: Sequence[float] = _HALVINGS_HEALING, fine_step: float = 2.0**-13
) -> CheckResult:
    """Observed order of fixed-step RODAS4 on the healing model over days 0-5 (4 ± 0.4)."""
    t0 = time.perf_counter()
    y0, p, days, jumps = _healing_case()
    t_out = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    fine = integrate(odes.HEALING, y0, p, t_out, days, jumps, fixed_step=fine_step).y[0]
    errors = []
    for h in steps:
        sol = integrate(odes.HEALING, y0, p, t_out, days, jumps, fixed_step=h)
        errors.append(float(np.max(np.abs(sol.y[0] - fine))))
    return _result(
        "rodas4_order_healing",
        "RODAS4 keeps order 4 on the wound-healing model with session impulses",
        "observed order (slope of log max error over days 0-5 vs log step)",
        observed_order(steps, errors),
        integ.ORDER,
        0.1 * integ.ORDER,
        f"self-convergence: the same model at a fixed step of {fine_step:g} d",
        t0,
        _errors(errors),
    )


def integrator_bateman(
    *,
    rtol: float = 1e-8,
    exact: Callable[..., tuple[FloatArray, FloatArray]] = bateman_exact,
) -> CheckResult:
    """Adaptive RODAS4 on A → B → ∘ with repeated impulses, 8 cases in one batch: the largest error
    relative to each case's largest B (tolerance 1e-7)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    nb, kmax = 8, 4
    k1 = rng.uniform(0.05, 3.0, nb)
    k2 = k1 * rng.uniform(1.3, 20.0, nb) ** rng.choice([-1.0, 1.0], nb)
    a0 = rng.uniform(0.5, 2.0, nb)
    times = np.full((nb, kmax), np.inf)
    for b in range(nb):
        m = rng.integers(1, kmax + 1)
        ts = np.sort(rng.uniform(0.0, 40.0, m))
        if b % 3 == 0:
            ts[0] = 0.0
        times[b, :m] = ts
    t_out = np.unique(np.concatenate([np.linspace(0.0, 60.0, 241), times[np.isfinite(times)]]))
    jumps = np.zeros((nb, kmax, 3))
    jumps[:, :, 0] = a0[:, None]
    sol = integrate(
        odes.LINEAR, np.zeros((nb, 3)), odes.bateman_params(np.stack([k1, k2], axis=1)), t_out,
        times, jumps, rtol=rtol, atol=1e-14,
    )  # fmt: skip
    worst = 0.0
    for b in range(nb):
        ea, eb = exact(t_out, k1[b], k2[b], a0[b], times[b])
        worst = max(
            worst,
            float(np.max(np.abs(sol.y[b, :, 0] - ea)) / np.max(np.abs(ea))),
            float(np.max(np.abs(sol.y[b, :, 1] - eb)) / np.max(np.abs(eb))),
        )
    return _result(
        "integrator_bateman",
        "adaptive RODAS4 with impulses (sessions) in a batch follows an exact linear solution",
        f"max error / max amount over 8 cases, rtol {rtol:g}",
        worst,
        0.0,
        1e-7,
        "Bateman's decay-chain solution, superposed over the impulses",
        t0,
    )


def _robertson_py(t: float, y: FloatArray, p: FloatArray) -> FloatArray:
    k1, k2, k3 = p[:3]
    return np.array(
        [
            -k1 * y[0] + k3 * y[1] * y[2],
            k1 * y[0] - k3 * y[1] * y[2] - k2 * y[1] ** 2,
            k2 * y[1] ** 2,
        ]
    )


def _robertson_jac_py(t: float, y: FloatArray, p: FloatArray) -> FloatArray:
    k1, k2, k3 = p[:3]
    return np.array(
        [
            [-k1, k3 * y[2], k3 * y[1]],
            [k1, -2 * k2 * y[1] - k3 * y[2], -k3 * y[1]],
            [0.0, 2 * k2 * y[1], 0.0],
        ]
    )


def integrator_robertson(*, rtol: float = 1e-6, reference_rtol: float = 1e-10) -> CheckResult:
    """Robertson's kinetics (k = 0.04, 3e7, 1e4) to t = 1e5, 41 log-spaced outputs: largest relative
    difference from SciPy's Radau (tolerance 1e-4 at rtol 1e-6)."""
    t0 = time.perf_counter()
    t_out = np.concatenate([[0.0], np.logspace(-5, 5, 41)])
    y0 = np.array([[1.0, 0.0, 0.0]])
    p = np.array([[0.04, 3e7, 1e4]])
    imp_t, imp_v = _no_impulses(1, 3)
    ref = integrate_reference(
        _robertson_py, y0, p, t_out, imp_t, imp_v, method="Radau", rtol=reference_rtol,
        atol=np.array([1e-14, 1e-18, 1e-14]), jac=_robertson_jac_py,
    )  # fmt: skip
    sol = integrate(
        odes.ROBERTSON, y0, p, t_out, imp_t, imp_v, rtol=rtol, atol=np.array([1e-10, 1e-14, 1e-10])
    )
    rel = float(np.max(np.abs(sol.y[0, 1:] - ref.y[0, 1:]) / np.abs(ref.y[0, 1:])))
    invariant = float(np.max(np.abs(sol.y[0].sum(axis=1) - 1.0)))
    return _result(
        "integrator_robertson",
        "adaptive RODAS4 on a very stiff nonlinear problem (Robertson, to t = 1e5)",
        f"max relative difference of all states, rtol {rtol:g}",
        rel,
        0.0,
        1e-4,
        f"SciPy Radau IIA at rtol {reference_rtol:g} (Hairer & Wanner, Solving ODEs II, §IV.1)",
        t0,
        f"linear invariant y1 + y2 + y3 = 1 kept to {invariant:.2g}",
    )


def integrator_conservation(*, leak: float = 0.0) -> CheckResult:
    """A closed stiff linear system (rates 0.01-1000; columns of A sum to −``leak``, 0: closed)
    with two impulses: max |total − (initial + received)| / total, tolerance 1e-12 (5 cases,
    adaptive steps)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(3)
    nb, n = 5, 12
    a = rng.uniform(0.0, 1.0, (nb, n, n)) * (rng.uniform(size=(nb, n, n)) < 0.3)
    a *= 10.0 ** rng.uniform(-2, 3, (nb, n, n))
    for b in range(nb):
        np.fill_diagonal(a[b], 0.0)
        a[b] -= np.diag(a[b].sum(axis=0) + leak)
    y0 = rng.uniform(0.0, 1.0, (nb, n))
    times = np.array([[2.0, 5.0]] * nb)
    jumps = rng.uniform(0.0, 1.0, (nb, 2, n))
    t_out = np.linspace(0.0, 10.0, 41)
    sol = integrate(odes.LINEAR, y0, odes.pack_linear(a), t_out, times, jumps, rtol=1e-6, atol=1e-9)
    received = (times[:, None, :] <= t_out[None, :, None]).astype(float)
    total = y0.sum(axis=1)[:, None] + np.einsum("btk,bk->bt", received, jumps.sum(axis=2))
    worst = float(np.max(np.abs(sol.y.sum(axis=2) - total) / total))
    return _result(
        "integrator_conservation",
        "the integrator keeps linear invariants (total amount of a closed system) to round-off",
        "max relative change of the total (minus the impulses received)",
        worst,
        0.0,
        1e-12,
        "conservation: d(Σy)/dt = 0 when the columns of A sum to zero",
        t0,
        f"{int(sol.n_steps.min())}-{int(sol.n_steps.max())} adaptive steps per case",
    )


def healing_baseline(*, injured_fraction: float = 0.0, days: float = 365.0) -> CheckResult:
    """No session (``injured_fraction`` 0): every state of the healing model stays at baseline over
    ``days`` (3 cases; max |y − baseline|, tolerance 0: exact)."""
    t0 = time.perf_counter()
    nominal = healing.parameter_vector(load_parameters())
    p = healing.parameter_matrix(nominal, 3, {"g_Q": np.full(3, 0.1), "lesion_drive": np.ones(3)})
    t_out = np.linspace(0.0, days, 74)
    phi = np.full((3, 1, 3), injured_fraction)
    at = np.zeros((3, 1)) if injured_fraction else np.full((3, 1), np.inf)
    jumps = healing.session_impulses(phi, np.zeros((3, 1)), p[:, PIDX["K_D"]])
    y = healing.solve(p, t_out, at, jumps, rtol=1e-8, atol=1e-12).y
    base = baseline_state(np.ones(3))[:, None, :]
    return _result(
        "healing_baseline",
        "the untreated healing model is at a fixed point: homeostasis is kept exactly",
        f"max |state − baseline| over {days:g} days, no session",
        float(np.max(np.abs(y - base))),
        0.0,
        0.0,
        "the homeostatic state (F = P = S = 1, Mp = lesion drive, the rest 0) is a zero of the "
        "right-hand side",
        t0,
    )


# ------------------------------------------------------------------------------ transport
def transport_potts_guy(
    *, log_kow: float = -0.37, mw: float = 122.1, expected_m_s: float | None = None
) -> CheckResult:
    """``potts_guy_kp`` of niacinamide (log Kow −0.37, MW 122.1) against the published formula in
    cm/s converted to m/s; relative difference, tolerance 1e-3 (a cm/s ↔ cm/h slip is 3600×)."""
    t0 = time.perf_counter()
    tp = tr.TransportParameters.from_parameters(load_parameters())
    if expected_m_s is None:
        expected_m_s = 10.0 ** (-6.3 + 0.71 * log_kow - 0.0061 * mw) * conversion_factor(
            "cm/s", "m/s"
        )
    kp = float(tr.potts_guy_kp(log_kow, mw, tp))
    return _result(
        "transport_potts_guy",
        "intact-skin permeability: Potts-Guy coefficients and units (cm/s to m/s)",
        "relative difference of kp (niacinamide)",
        abs(kp / expected_m_s - 1.0),
        0.0,
        1e-3,
        "Potts & Guy, Pharm. Res. 9:663 (1992): log10 kp[cm/s] = −6.3 + 0.71 log Kow − 0.0061 MW",
        t0,
        f"kp = {kp:.4g} m/s",
    )


def transport_mass_balance(
    *, parts: Sequence[str] = ("vehicle", "retained", "cleared"), hours: float = 8.0
) -> CheckResult:
    """``absorb`` for every shipped molecule, open and occluded, 1.5 mm-like channels on cheek
    layers: max |Σ parts − dose| / dose (tolerance 1e-12)."""
    t0 = time.perf_counter()
    tp = tr.TransportParameters.from_parameters(load_parameters())
    mols = list(shipped_molecules().values())
    nb = 2 * len(mols)
    ab = tr.absorb(
        tr.Solute.from_molecules(mols + mols),
        np.full(nb, 50.0),
        np.full(nb, 50e-6),
        np.full(nb, hours * 3600.0),
        np.full(nb, 229.0e4),
        np.full(nb, 63e-6),
        np.full(nb, 500e-6),
        np.tile([16.8e-6, 54.5e-6, 174e-6, 696e-6], (nb, 1)),
        np.repeat([False, True], len(mols)),
        tp,
    )
    total = sum(np.asarray(getattr(ab, k), dtype=float) for k in parts)
    worst = float(np.max(np.abs(total - ab.dose) / ab.dose))
    return _result(
        "transport_mass_balance",
        "the transport model conserves the applied dose (vehicle, skin and clearance)",
        f"max |{' + '.join(parts)} − dose| / dose over {nb} cases",
        worst,
        0.0,
        1e-12,
        "conservation of mass: every step matrix of the finite-dose integrator has unit column sums",
        t0,
    )


# ------------------------------------------------------------------------------ unit cell
_L = 1.0e-4  # m, membrane thickness
_D = 1.0e-10  # m²/s
_TD = _L * _L / _D  # s, diffusion time (100 s)
_CRANK_TIMES = _TD * np.array([0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0])


def _membrane(nz: int) -> UnitCell:
    return UnitCell((_L,), (_D,), (1.0,), nr=1, nz=nz)


def unitcell_crank_amount(
    *,
    nz: int = 40,
    dt: float = _TD / 400,
    exact: Callable[[float, float, float], float] = crank_membrane_amount,
) -> CheckResult:
    """Cumulative amount through a membrane (t = 0.2 … 3 L²/D): max relative error (≤ 1%)."""
    t0 = time.perf_counter()
    sol = solve(_membrane(nz), _CRANK_TIMES, dt=dt)
    ref = np.array([exact(t, _D, _L) for t in _CRANK_TIMES])
    return _result(
        "unitcell_crank_amount",
        "the resolved unit cell reproduces transient diffusion through a membrane",
        f"max relative error of the cumulative amount, {nz} cells",
        float(np.max(np.abs(sol.passed_bottom - ref) / ref)),
        0.0,
        0.01,
        "Crank, The Mathematics of Diffusion (1975), eq. 4.24a",
        t0,
    )


def unitcell_crank_lag_time(*, nz: int = 40, dt: float = _TD / 400) -> CheckResult:
    """Lag time of the membrane from the late-time asymptote of the cumulative amount:
    relative error against L²/(6D) (≤ 1%)."""
    t0 = time.perf_counter()
    sol = solve(_membrane(nz), _CRANK_TIMES, dt=dt)
    q, t = sol.passed_bottom, _CRANK_TIMES
    slope = (q[-1] - q[-2]) / (t[-1] - t[-2])
    lag = t[-1] - q[-1] / slope
    exact = _L * _L / (6.0 * _D)
    return _result(
        "unitcell_crank_lag_time",
        "the resolved unit cell gives the membrane's lag time and steady flux",
        f"relative error of the lag time, {nz} cells",
        abs(lag / exact - 1.0),
        0.0,
        0.01,
        "Crank (1975) eq. 4.24a, late-time asymptote Q = (D c1/L)(t − L²/6D)",
        t0,
        f"lag {lag:.4g} s (exact {exact:.4g} s); steady flux / (D c1/L) = {slope / (_D / _L):.5f}",
    )


def _erfc_solution(nz: int, dt: float) -> tuple[Any, FloatArray]:
    cell = UnitCell((1.0e-3,), (_D,), (1.0,), nr=1, nz=nz, bottom="zero_flux")
    times = np.array([25.0, 50.0, 100.0])
    return solve(cell, times, dt=dt), times


def unitcell_erfc_profile(
    *,
    nz: int = 200,
    dt: float = 0.1,
    exact: Callable[[FloatArray, float, float], FloatArray] = erfc_profile,
) -> CheckResult:
    """A 1 mm layer (10 diffusion lengths) under a constant surface concentration C0 = 1, at
    t = 25, 50, 100 s: max |C − C0 erfc(z/2√(Dt))| / C0 (≤ 2e-3)."""
    t0 = time.perf_counter()
    sol, times = _erfc_solution(nz, dt)
    assert sol.concentration is not None
    worst = max(
        float(np.max(np.abs(sol.concentration[k, :, 0] - exact(sol.z, t, _D))))
        for k, t in enumerate(times)
    )
    return _result(
        "unitcell_erfc_profile",
        "the resolved unit cell reproduces the constant-surface diffusion profile",
        f"max |C − exact| / C0 over depth and 3 times, {nz} cells",
        worst,
        0.0,
        2e-3,
        "Crank (1975) eq. 2.45: C = C0 erfc(z / 2√(Dt))",
        t0,
    )


def unitcell_erfc_uptake(*, nz: int = 200, dt: float = 0.1) -> CheckResult:
    """Uptake of the same deep layer: max relative error against 2 C0 √(Dt/π) (≤ 0.5%)."""
    t0 = time.perf_counter()
    sol, times = _erfc_solution(nz, dt)
    exact = 2.0 * np.sqrt(_D * times / math.pi)
    return _result(
        "unitcell_erfc_uptake",
        "the resolved unit cell's surface uptake in a semi-infinite medium",
        f"max relative error of the amount taken up, {nz} cells",
        float(np.max(np.abs(sol.absorbed / exact - 1.0))),
        0.0,
        5e-3,
        "Crank (1975) eq. 2.45 integrated: M = 2 C0 √(Dt/π)",
        t0,
    )


def unitcell_spatial_order(
    *,
    cells: Sequence[int] = (10, 20, 40, 80),
    exact: Callable[[float, float, float], float] = crank_membrane_amount,
) -> CheckResult:
    """Observed spatial order of the finite-volume grid from the membrane's cumulative amount at
    t = L²/D (BDF2 with 4000 steps, so the time error is negligible): 2 ± 0.2."""
    t0 = time.perf_counter()
    ref = exact(_TD, _D, _L)
    errors = []
    for nz in cells:
        sol = solve(_membrane(nz), [_TD], dt=_TD / 4000)
        errors.append(abs(float(sol.passed_bottom[0]) - ref) / ref)
    h = [_L / nz for nz in cells]
    return _result(
        "unitcell_spatial_order",
        "the unit cell's finite-volume discretisation is second order in space",
        "observed order (slope of log relative error vs log cell size)",
        observed_order(h, errors),
        2.0,
        0.2,
        "Crank (1975) eq. 4.24a",
        t0,
        _errors(errors),
    )


def unitcell_mass_balance(
    *,
    parts: Sequence[str] = ("absorbed_by_layer", "stored_channel", "passed_bottom"),
    method: Literal["bdf2", "euler"] = "bdf2",
) -> CheckResult:
    """The 2-D layered cell (SC, viable epidermis, dermis with clearance; a 400 µm channel closing
    over 16 levels), 0.5-6 h: the larger of the solver's own mass-balance residual and
    max |uptake − Σ ``parts``| / uptake (≤ 1e-10)."""
    t0 = time.perf_counter()
    cell = UnitCell(
        layer_thickness=(15e-6, 85e-6, 900e-6),
        layer_diffusivity=(1e-14, 1e-10, 2e-10),
        layer_partition=(5.0, 0.8, 0.8),
        layer_clearance=(0.0, 0.0, 1e-3),
        puncture_density=1.0e6,
        channel_radius=25e-6,
        channel_depth=400e-6,
        channel_diffusivity=5e-10,
        vehicle_concentration=10.0,
        closure_rate=0.7 / 3600,
        nr=16,
        nz=40,
    )
    times = np.linspace(0.5, 6.0, 12) * 3600
    closures = np.linspace(0.25, 4.0, 16) * 3600
    sol = solve(cell, times, closures, dt=90.0, method=method, store_fields=False)
    total = sum(np.asarray(getattr(sol, k), dtype=float).reshape(times.size, -1).sum(axis=1)
                for k in parts)  # fmt: skip
    split = float(np.max(np.abs(total - sol.absorbed) / sol.absorbed))
    return _result(
        "unitcell_mass_balance",
        "the 2-D unit cell with a closing channel and clearance conserves mass",
        f"max(solver residual, |uptake − {' + '.join(parts)}| / uptake)",
        max(sol.mass_balance_residual, split),
        0.0,
        1e-10,
        "conservation of mass (finite-volume fluxes telescope)",
        t0,
        f"solver residual {sol.mass_balance_residual:.2g}; parts {split:.2g}",
    )


def laminate_permeability(
    thickness: Sequence[float], diffusivity: Sequence[float], partition: Sequence[float]
) -> float:
    """Permeability of layers in series: 1/P = Σ L_i/(K_i D_i) (models.md D.3)."""
    return 1.0 / sum(
        ell / (k * d) for ell, d, k in zip(thickness, diffusivity, partition, strict=True)
    )


def unitcell_laminate(
    *,
    nz: int = 30,
    exact: Callable[[Sequence[float], Sequence[float], Sequence[float]], float] = (
        laminate_permeability
    ),
) -> CheckResult:
    """Steady flux through three layers (10, 50, 100 µm; D K = 5e-12, 1e-10, 2.1e-10 m²/s) under
    c_v = 3: relative error of the bottom flux against c_v·P (≤ 1e-9)."""
    t0 = time.perf_counter()
    thick, diff, part = (10e-6, 50e-6, 100e-6), (1e-12, 1e-10, 3e-10), (5.0, 1.0, 0.7)
    cell = UnitCell(thick, diff, part, vehicle_concentration=3.0, nr=1, nz=nz)
    sol = solve(cell, [1e5], dt=1e3, method="euler")
    flux = 3.0 * exact(thick, diff, part)
    return _result(
        "unitcell_laminate",
        "the unit cell's layer interfaces (partition, continuity of C/K) at steady state",
        "relative error of the steady flux",
        abs(float(sol.flux_bottom[-1]) / flux - 1.0),
        0.0,
        1e-9,
        "resistances in series: 1/P = Σ L_i/(K_i D_i) (models.md D.3)",
        t0,
    )


# ------------------------------------------------------------------------------ all checks
CHECKS: tuple[Callable[[], CheckResult], ...] = (
    rodas4_order_linear,
    rodas4_order_kaps,
    rodas4_order_prothero_robinson,
    rodas4_order_healing,
    integrator_bateman,
    integrator_robertson,
    integrator_conservation,
    healing_baseline,
    transport_potts_guy,
    transport_mass_balance,
    unitcell_crank_amount,
    unitcell_crank_lag_time,
    unitcell_erfc_profile,
    unitcell_erfc_uptake,
    unitcell_spatial_order,
    unitcell_mass_balance,
    unitcell_laminate,
)
"""Every check, in the order of the report."""


def run_verification(checks: Sequence[Callable[[], CheckResult]] = CHECKS) -> list[CheckResult]:
    """Run ``checks`` in process. A check that raises is a failed result naming the exception."""
    out = []
    for check in checks:
        t0 = time.perf_counter()
        try:
            out.append(check())
        except Exception as exc:  # a crash is a failed check, reported, never hidden
            name = getattr(check, "__name__", repr(check))
            out.append(
                _result(
                    name,
                    (check.__doc__ or name).strip().splitlines()[0],
                    "(not measured: the check raised)",
                    math.nan,
                    0.0,
                    0.0,
                    "",
                    t0,
                    f"{type(exc).__name__}: {exc}",
                )
            )
    return out
