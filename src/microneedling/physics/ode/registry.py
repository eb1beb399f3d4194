"""Registry of ODE right-hand sides for the compiled integrator, called by integer model id.

Every right-hand side has the signature ``f(t, y, p, out)`` and writes dy/dt into ``out``:

* ``t`` -- float, the time (days for HEALING, the caller's unit otherwise);
* ``y`` -- 1-D array of the state, float64 **or complex128**;
* ``p`` -- 1-D float64 array of parameters (layout per model, below);
* ``out`` -- 1-D array of the same dtype as ``y``.

Working for complex ``y`` is what lets the integrator compute an exact Jacobian by complex-step
differentiation, J[:, k] = Im f(y + i h e_k) / h with h = 1e-30 max(1, |y_k|) (Squire & Trapp, SIAM
Rev. 40(1):110-112, 1998; no subtractive cancellation, so J is exact to round-off). A right-hand
side must therefore use only complex-analytic operations on ``y`` (+, -, *, /, exp, log, powers); no
``abs``, ``max``, ``min`` or comparisons on state values.

Models (integer ids; the integrator dispatches through :func:`rhs`, never through a function
argument, because passing jitted functions as arguments defeats numba's on-disk cache):

``LINEAR``
    dy/dt = A y + b with ``p = [n, A.ravel() (row-major, n*n), b (n)]`` (see :func:`pack_linear`).
    A Bateman decay chain A -> B -> ... is the special case built by :func:`bateman_params`.
``ROBERTSON``
    Robertson's stiff chemical kinetics (Robertson 1966; the classic example of Hairer & Wanner,
    Solving ODEs II, 2nd ed., 1996, §IV.1), n = 3, ``p = [k1, k2, k3]`` (classically 0.04, 3e7,
    1e4)::

        y1' = -k1 y1 + k3 y2 y3
        y2' =  k1 y1 - k3 y2 y3 - k2 y2^2
        y3' =  k2 y2^2
``HEALING``
    The wound-healing model, :func:`microneedling.physics.healing_rhs.healing_rhs` (days), with
    its hand-derived Jacobian (:func:`~microneedling.physics.healing_rhs.healing_jacobian`) and a
    written-out solve of the Rosenbrock iteration matrix
    (:func:`~microneedling.physics.healing_rhs.healing_solve`, see :func:`has_structured_solve`).
``KAPS``
    Kaps' nonlinear test problem (a standard test for Rosenbrock methods), n = 2,
    ``p = [eps]``: y1' = -(2 + 1/eps) y1 + y2^2/eps, y2' = y1 - y2 - y2^2; from y(0) = (1, 1) the
    exact solution is y1 = exp(-2t), y2 = exp(-t) for every eps > 0 (stiff for small eps).
``PROTHERO_ROBINSON``
    Non-autonomous stiff test problem (Prothero & Robinson, Math. Comp. 28:145-162, 1974), applied
    componentwise, ``p = [lam, omega]``: y' = lam (y - sin(omega t)) + omega cos(omega t); exact
    y(t) = sin(omega t) + (y(t0) - sin(omega t0)) exp(lam (t - t0)).

Per model the registry also says whether f depends on t (:func:`is_autonomous`), gives f_t
(:func:`time_derivative`) and, optionally, an analytic Jacobian (:func:`jacobian`,
:func:`has_analytic_jacobian`); otherwise the integrator uses complex steps, compressed by the
sparsity pattern it detects from J at a few points (exact for complex-analytic right-hand sides).
A model may also provide its own factor/solve of G = I/(h gamma) - J
(:func:`has_structured_solve`, :func:`structured_factor`, :func:`structured_solve`).
Adding a model = a new id, a branch in :func:`rhs`, in :func:`is_autonomous` (and
:func:`time_derivative` if it depends on t), and a check in :func:`check_params`.

All jitted functions are ``@njit(cache=True)``. numba's cache only checks the source file of each
cached function, not the files of the functions it calls, so
:func:`microneedling.physics.ode.cache.bind_cache_to_sources` stamps every cached dispatcher here (and
in :mod:`microneedling.physics.ode.integrate`) with a hash of all the source files its compiled code
depends on, including ``healing_rhs.py``: editing the healing model
re-compiles the integrator instead of silently running the stale cached machine code.
"""

from __future__ import annotations

import sys

import numpy as np
from numba import njit

from microneedling.physics.healing_rhs import N_PARAM as HEALING_N_PARAM
from microneedling.physics.healing_rhs import N_STATE as HEALING_N_STATE
from microneedling.physics.healing_rhs import healing_factor as _healing_factor
from microneedling.physics.healing_rhs import healing_jacobian as _healing_jacobian
from microneedling.physics.healing_rhs import healing_rhs as _healing_rhs
from microneedling.physics.healing_rhs import healing_solve as _healing_solve
from microneedling.physics.ode.cache import bind_cache_to_sources, jitted_in, source_files

LINEAR = 0
ROBERTSON = 1
HEALING = 2
KAPS = 3
PROTHERO_ROBINSON = 4

MODEL_NAMES: dict[int, str] = {
    LINEAR: "LINEAR",
    ROBERTSON: "ROBERTSON",
    HEALING: "HEALING",
    KAPS: "KAPS",
    PROTHERO_ROBINSON: "PROTHERO_ROBINSON",
}
"""Model id -> name, for messages."""

COMPLEX_STEP = 1e-30
"""Relative size of the complex step used for Jacobians (h = COMPLEX_STEP * max(1, |y_k|))."""


# ---------------------------------------------------------------------------------------------
# Right-hand sides
# ---------------------------------------------------------------------------------------------


@njit(cache=True, inline="always", error_model="numpy")
def linear_rhs(t, y, p, out):
    """dy/dt = A y + b, p = [n, A (row-major), b]."""
    n = y.shape[0]
    ob = 1 + n * n
    for i in range(n):
        acc = y[0] * 0.0 + p[ob + i]
        row = 1 + i * n
        for j in range(n):
            acc += p[row + j] * y[j]
        out[i] = acc


@njit(cache=True, inline="always", error_model="numpy")
def robertson_rhs(t, y, p, out):
    """Robertson kinetics, p = [k1, k2, k3]."""
    k1 = p[0]
    k2 = p[1]
    k3 = p[2]
    r1 = k1 * y[0]
    r2 = k2 * y[1] * y[1]
    r3 = k3 * y[1] * y[2]
    out[0] = -r1 + r3
    out[1] = r1 - r2 - r3
    out[2] = r2


@njit(cache=True, inline="always", error_model="numpy")
def kaps_rhs(t, y, p, out):
    """Kaps' problem, p = [eps]."""
    inv = 1.0 / p[0]
    out[0] = -(2.0 + inv) * y[0] + inv * y[1] * y[1]
    out[1] = y[0] - y[1] - y[1] * y[1]


@njit(cache=True, inline="always", error_model="numpy")
def prothero_robinson_rhs(t, y, p, out):
    """Prothero-Robinson, componentwise, p = [lam, omega]."""
    lam = p[0]
    om = p[1]
    s = np.sin(om * t)
    c = om * np.cos(om * t)
    for i in range(y.shape[0]):
        out[i] = lam * (y[i] - s) + c


@njit(cache=True, error_model="numpy")
def rhs(model, t, y, p, out):
    """Evaluate the right-hand side of model ``model`` (an integer id) into ``out``."""
    if model == LINEAR:
        linear_rhs(t, y, p, out)
    elif model == ROBERTSON:
        robertson_rhs(t, y, p, out)
    elif model == HEALING:
        _healing_rhs(t, y, p, out)
    elif model == KAPS:
        kaps_rhs(t, y, p, out)
    elif model == PROTHERO_ROBINSON:
        prothero_robinson_rhs(t, y, p, out)
    else:
        raise ValueError("unknown model id")


@njit(cache=True, error_model="numpy")
def is_autonomous(model):
    """True when the model's right-hand side does not depend on t explicitly (f_t = 0).

    HEALING is autonomous (``healing_rhs`` ignores t; a test checks it).
    """
    return model == LINEAR or model == ROBERTSON or model == KAPS or model == HEALING


# ---------------------------------------------------------------------------------------------
# Jacobians
# ---------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy")
def time_derivative(model, t, y, p, ft, fw):
    """f_t = df/dt (t, y) into ``ft``; returns the number of RHS evaluations spent.

    Zero for autonomous models, analytic where the model provides it (PROTHERO_ROBINSON), else a
    central difference with step eps^(1/3) max(1, |t|) (relative error ~1e-10 for smooth
    t-dependence; a new non-autonomous model with stiff t-dependence should add its analytic f_t
    here). ``fw`` is a work array.
    """
    n = y.shape[0]
    if is_autonomous(model):
        for i in range(n):
            ft[i] = 0.0
        return 0
    if model == PROTHERO_ROBINSON:
        lam = p[0]
        om = p[1]
        v = -lam * om * np.cos(om * t) - om * om * np.sin(om * t)
        for i in range(n):
            ft[i] = v
        return 0
    return time_derivative_fd(model, t, y, p, ft, fw)


@njit(cache=True, error_model="numpy")
def time_derivative_fd(model, t, y, p, ft, fw):
    """Central-difference f_t (the fallback of :func:`time_derivative`); returns 2."""
    n = y.shape[0]
    delta = 6.0554544523933395e-06 * max(1.0, abs(t))  # eps^(1/3)
    tp = t + delta
    tm = t - delta
    rhs(model, tp, y, p, ft)
    rhs(model, tm, y, p, fw)
    inv = 1.0 / (tp - tm)
    for i in range(n):
        ft[i] = (ft[i] - fw[i]) * inv
    return 2


@njit(cache=True, error_model="numpy")
def has_analytic_jacobian(model):
    """True when :func:`jacobian` has a hand-written Jacobian for the model (no RHS evaluations)."""
    return (
        model == LINEAR
        or model == ROBERTSON
        or model == KAPS
        or model == PROTHERO_ROBINSON
        or model == HEALING
    )


@njit(cache=True, error_model="numpy")
def jacobian_complex_step(model, t, y, p, jac, yc, fc):
    """J = df/dy by complex-step differentiation (n complex RHS evaluations, exact to round-off).

    ``yc``, ``fc`` are complex128 work arrays of length n. Returns the number of RHS evaluations.
    """
    n = y.shape[0]
    for i in range(n):
        yc[i] = y[i]
    for k in range(n):
        hk = COMPLEX_STEP * max(1.0, abs(y[k]))
        yc[k] = complex(y[k], hk)
        rhs(model, t, yc, p, fc)
        inv = 1.0 / hk
        for i in range(n):
            jac[i, k] = fc[i].imag * inv
        yc[k] = y[k]
    return n


@njit(cache=True, error_model="numpy")
def jacobian(model, t, y, p, jac, yc, fc):
    """J = df/dy: analytic where the model has one (exact), complex step otherwise.

    The analytic Jacobians are checked against :func:`jacobian_complex_step` in the tests (they
    agree to round-off). Returns the number of RHS evaluations spent (0 when analytic).
    """
    n = y.shape[0]
    if model == LINEAR:
        for i in range(n):
            row = 1 + i * n
            for j in range(n):
                jac[i, j] = p[row + j]
        return 0
    elif model == ROBERTSON:
        k1 = p[0]
        k2 = p[1]
        k3 = p[2]
        jac[0, 0] = -k1
        jac[0, 1] = k3 * y[2]
        jac[0, 2] = k3 * y[1]
        jac[1, 0] = k1
        jac[1, 1] = -2.0 * k2 * y[1] - k3 * y[2]
        jac[1, 2] = -k3 * y[1]
        jac[2, 0] = 0.0
        jac[2, 1] = 2.0 * k2 * y[1]
        jac[2, 2] = 0.0
        return 0
    elif model == KAPS:
        inv = 1.0 / p[0]
        jac[0, 0] = -(2.0 + inv)
        jac[0, 1] = 2.0 * inv * y[1]
        jac[1, 0] = 1.0
        jac[1, 1] = -1.0 - 2.0 * y[1]
        return 0
    elif model == PROTHERO_ROBINSON:
        for i in range(n):
            for j in range(n):
                jac[i, j] = 0.0
            jac[i, i] = p[0]
        return 0
    elif model == HEALING:
        for i in range(n):
            for j in range(n):
                jac[i, j] = 0.0
        _healing_jacobian(t, y, p, jac)
        return 0
    return jacobian_complex_step(model, t, y, p, jac, yc, fc)


@njit(cache=True, error_model="numpy")
def has_structured_solve(model):
    """True when the model provides a hand-written factor/solve of G = fac·I − J.

    For such a model (HEALING) the integrator skips its generic block-triangular LU and calls
    :func:`structured_factor` and :func:`structured_solve` (same result up to round-off; a written
    out substitution in the model's fixed dependency order is ~5x cheaper than the generic one).
    """
    return model == HEALING


@njit(cache=True, error_model="numpy")
def structured_factor(model, fac, jac, dinv):
    """Factor G = fac·I − J (J from :func:`jacobian`) into ``dinv``; False if singular."""
    if model == HEALING:
        return _healing_factor(fac, jac, dinv)
    raise ValueError("model has no structured solve")


@njit(cache=True, error_model="numpy")
def structured_solve(model, fac, jac, dinv, x):
    """x <- G^{-1} x with the factors of :func:`structured_factor`."""
    if model == HEALING:
        _healing_solve(fac, jac, dinv, x)
    else:
        raise ValueError("model has no structured solve")


@njit(cache=True, error_model="numpy")
def jacobian_update(model, t, y, p, jac, yc, fc):
    """Like :func:`jacobian`, but for models whose analytic Jacobian writes only its structural
    non-zeros (HEALING) the other entries are not re-zeroed: ``jac`` must hold J (or zeros) from an
    earlier call at any point. The integrator uses this every step. Returns RHS evaluations spent.
    """
    if model == HEALING:
        _healing_jacobian(t, y, p, jac)
        return 0
    return jacobian(model, t, y, p, jac, yc, fc)


# ---------------------------------------------------------------------------------------------
# Parameter packing and checks (plain Python)
# ---------------------------------------------------------------------------------------------


def pack_linear(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Pack A (B, n, n) or (n, n) and b (B, n) or (n,) into LINEAR parameters ``[n, A, b]``.

    Returns (B, 1 + n*n + n), or (1 + n*n + n,) when ``a`` is 2-D.
    """
    a = np.asarray(a, dtype=np.float64)
    single = a.ndim == 2
    if single:
        a = a[None]
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise ValueError(f"a: expected shape (B, n, n) or (n, n), got {np.shape(a)}")
    nb, n, _ = a.shape
    bb = np.zeros((nb, n)) if b is None else np.asarray(b, dtype=np.float64)
    if bb.ndim == 1:
        bb = np.broadcast_to(bb, (nb, n))
    if bb.shape != (nb, n):
        raise ValueError(f"b: expected shape ({nb}, {n}) or ({n},), got {bb.shape}")
    out = np.empty((nb, 1 + n * n + n))
    out[:, 0] = n
    out[:, 1 : 1 + n * n] = a.reshape(nb, n * n)
    out[:, 1 + n * n :] = bb
    return out[0] if single else out


def bateman_params(rates: np.ndarray) -> np.ndarray:
    """LINEAR parameters of a decay chain X0 -> X1 -> ... -> X_{m} with rates k_0..k_{m-1}.

    ``rates`` (B, m) or (m,); the state has n = m + 1 components, the last one absorbing, so the
    total is conserved. Returns (B, 1 + n*n + n) or (1 + n*n + n,).
    """
    k = np.asarray(rates, dtype=np.float64)
    single = k.ndim == 1
    if single:
        k = k[None]
    nb, m = k.shape
    n = m + 1
    a = np.zeros((nb, n, n))
    for i in range(m):
        a[:, i, i] = -k[:, i]
        a[:, i + 1, i] = k[:, i]
    p = pack_linear(a)
    return p[0] if single else p


def check_params(model: int, n: int, params: np.ndarray) -> None:
    """Raise ``ValueError`` when ``params`` (B, n_p) does not fit ``model`` with n states."""
    n_p = params.shape[1]
    name = MODEL_NAMES.get(model, str(model))
    if model == LINEAR:
        need = 1 + n * n + n
        if n_p < need:
            raise ValueError(
                f"params: LINEAR with n={n} needs n_p >= 1 + n*n + n = {need}, got {n_p}"
            )
        if params.shape[0] and not np.all(params[:, 0] == n):
            raise ValueError(f"params: LINEAR needs params[:, 0] == n = {n} (see pack_linear)")
    elif model == ROBERTSON:
        if n != 3 or n_p < 3:
            raise ValueError(f"params/y0: ROBERTSON needs n = 3 and n_p >= 3, got n={n}, n_p={n_p}")
    elif model == KAPS:
        if n != 2 or n_p < 1:
            raise ValueError(f"params/y0: KAPS needs n = 2 and n_p >= 1, got n={n}, n_p={n_p}")
        if np.any(params[:, 0] == 0.0):
            raise ValueError("params: KAPS needs eps = params[:, 0] != 0")
    elif model == PROTHERO_ROBINSON:
        if n_p < 2:
            raise ValueError(f"params: PROTHERO_ROBINSON needs n_p >= 2, got {n_p}")
    elif model == HEALING:
        if n != HEALING_N_STATE or n_p < HEALING_N_PARAM:
            raise ValueError(
                f"params/y0: HEALING needs n = {HEALING_N_STATE} and n_p >= {HEALING_N_PARAM}, "
                f"got n={n}, n_p={n_p}"
            )
    else:
        raise ValueError(f"model: unknown model id {model!r} ({name}); known: {MODEL_NAMES}")


bind_cache_to_sources(jitted_in(__name__, globals()), source_files(sys.modules[__name__]))
