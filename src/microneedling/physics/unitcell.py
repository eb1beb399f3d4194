"""Resolved unit-cell solver: one microneedle channel in its cylindrical cell (axisymmetric r–z).

Stage 3 "resolved unit-cell PDE" of ``shared/research/models.md`` (verification and maps for the
homogenised model in ``transport.py``). SI units throughout: m, s, kg; concentrations in kg/m³.

Geometry
    Punctures at areal density n [1/m²] tile the skin; each owns a disc of equal area, replaced by
    the cylinder of radius R = 1/√(π n) [m] (zero flux at r = R by symmetry, and at r = 0 on the
    axis). The skin is a stack of layers (top to bottom, e.g. stratum corneum, viable epidermis,
    dermis) of thickness L_l [m], diffusivity D_l [m²/s], partition coefficient K_l (tissue/vehicle,
    dimensionless) and first-order clearance k_l [1/s] (normally only the dermis). The channel, of
    radius a [m] and depth d [m] from the surface, is filled with a vehicle-like aqueous medium
    (diffusivity D_ch, partition K_ch = 1 by default). With a = 0 there is no channel and the cell
    degenerates to the 1-D layered membrane (R is then arbitrary).

Equations
    ∂C/∂t = ∇·(D ∇C) − k C inside each material, with C/K and the normal flux continuous across
    interfaces. Written in the vehicle-equivalent potential u = C/K (continuous everywhere):
    K ∂u/∂t = ∇·(D K ∇u) − k K u. Boundary conditions: u = c_v (infinite dose of vehicle at
    concentration c_v) on the whole top surface z = 0 (channel mouth and intact SC) or, with a
    finite ``vehicle_thickness`` h, a well-mixed vehicle film of concentration v(t), v(0) = c_v,
    h πR² dv/dt = −(flux into the skin) (finite dose: one more unknown, coupled to the top cells
    by the same face conductances, so the system stays symmetric); zero flux at
    r = 0 and r = R; at the bottom z = H either a perfect sink (u = 0) or zero flux.

Discretisation
    Cell-centred finite volumes on a tensor grid (faces aligned with the layer interfaces, the channel
    wall r = a and the channel floor z = d; default faces from ``build_grid``, or given explicitly).
    Exact cylindrical face areas (2π r_f Δz, π(r_e² − r_w²)) and volumes π(r_e² − r_w²)Δz. Face
    conductance between cells p, q (distances h_p, h_q from the centres to the face)
    G = A / (h_p/(D_p K_p) + h_q/(D_q K_q)) — the harmonic mean including partitioning, which makes
    the steady flux through any laminate exact (models.md D.3). Dirichlet faces use the half-cell
    distance. The semi-discrete system M u' = −A u + b (M = diag(V K), A symmetric) is stepped
    implicitly: backward Euler or variable-step BDF2 (first step and any step-ratio jump > 2 by
    backward Euler). The matrix a₀M/Δt + A (symmetric positive definite) is assembled once per
    distinct (coefficients, Δt, a₀) — coefficients change only at closure times. Default direct
    solver (``direct="separable"``, ``_Separable``): inside the channel columns and outside them
    every coefficient depends on z only, so each column block is diagonalised by its radial modes
    (a weighted tridiagonal eigenproblem of the geometry) into one tridiagonal system in z per mode;
    the blocks are joined through the potential on the faces between them by a dense nz × nz Schur
    complement, obtained in closed form from the eigenpairs of the axial operator. Per step: two
    dense radial transforms and two tridiagonal sweeps, no fill (200 × 400 grid: ~2.3 ms per solve
    and ~25 ms per matrix, against ~5.5 ms and ~0.24 s for sparse LU). ``direct="lu"`` keeps the
    solver before issue 15: a matrix used for many steps is LU-factored
    (``scipy.sparse.linalg.splu``, MMD ordering on AᵀA + A); one used for a few steps only (the
    backward-Euler start, step-ratio jumps, short closure levels) is solved by conjugate gradients
    preconditioned with the LU of the nearest factored matrix, within an iteration budget of about
    one factorization, else factored (``_Linear``). Both give the same answer to round-off.

Closure (resealing)
    ``solve(..., closure_times=[t_1, t_2, ...])``: on [t_j, t_{j+1}) the open fraction is held at
    S_j = exp(−k_close t_j), or ``closure_levels[j]`` when given (``UnitCell.closure_rate`` =
    k_close [1/s]; the default ∞ makes the channel close completely at t_1). Channel cells keep their storage K_ch (so mass is conserved
    exactly) while their conductivity and clearance move to those of the host layer:
    D K = S D_ch K_ch + (1 − S) D_l K_l, k = (1 − S) k_l.

Mass balance
    The cumulative amounts entering at the top, leaving at the bottom and cleared are accumulated with
    the quadrature that the time scheme itself implies (for BDF2: e_{n+1} = (Δt φ_{n+1} + a₂ e_n)/a₀),
    so in − out − cleared − stored vanishes to round-off (reported as ``mass_balance_residual``).

Sources for the verification (tests/physics/test_unitcell.py, test_unitcell_exact.py): Crank J.,
The Mathematics of Diffusion, 2nd ed., Oxford 1975 — membrane uptake eq. 4.24a and lag time L²/6D
(§4.3.2), uptake from a well-stirred solution of limited volume eq. 4.37 (finite dose),
semi-infinite erfc profile eq. 2.45 (§2.5); laminate 1/P = Σ L_i/(K_i D_i) (Crank §12.2; models.md
D.3).

API::

    UnitCell(layer_thickness, layer_diffusivity, layer_partition, layer_clearance=None,
             puncture_density=1e6, channel_radius=0.0, channel_depth=0.0, channel_diffusivity=0.0,
             channel_partition=1.0, vehicle_concentration=1.0, vehicle_thickness=inf,
             bottom="sink", closure_rate=inf,
             nr=40, nz=80, r_faces=None, z_faces=None)
    solve(cell, times, closure_times=None, *, closure_levels=None, dt=None, method="bdf2",
          store_fields=True, direct="separable")
        -> UnitCellSolution (per unit skin area = per π R²: absorbed, absorbed_by_layer, stored_*,
           cleared_*, passed_bottom, flux_top, flux_bottom [kg/m², kg/(m² s)], vehicle [kg/m²],
           concentration fields [kg/m³], mass_balance_residual, n_factorizations, n_iterative)
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.linalg import cho_factor, cho_solve, eigh_tridiagonal
from scipy.linalg.lapack import dpttrf, dpttrs
from scipy.optimize import brentq
from scipy.sparse.linalg import splu
from threadpoolctl import threadpool_limits

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]

__all__ = ["UnitCell", "UnitCellSolution", "build_grid", "solve"]


@dataclass(frozen=True)
class UnitCell:
    """Geometry and properties of one axisymmetric unit cell (SI).

    Layers are listed top to bottom. ``layer_thickness`` [m], ``layer_diffusivity`` [m²/s],
    ``layer_partition`` [1] (tissue/vehicle), ``layer_clearance`` [1/s] (None: no clearance).
    ``puncture_density`` n [1/m²] sets the cell radius R = 1/√(π n); ``channel_radius`` a [m] and
    ``channel_depth`` d [m] (a = 0 or d = 0: no channel, the 1-D layered membrane);
    ``channel_diffusivity`` D_ch [m²/s], ``channel_partition`` K_ch [1];
    ``vehicle_concentration`` c_v [kg/m³] (initial concentration of a finite film);
    ``vehicle_thickness`` h [m]: inf holds c_v fixed (infinite dose), a finite h is a well-mixed
    film of h·πR² per cell that the skin depletes (finite dose); ``bottom`` "sink" (C = 0) or "zero_flux";
    ``closure_rate`` k_close [1/s] (see module docstring); grid: ``nr`` × ``nz`` cells, or explicit
    face coordinates ``r_faces``/``z_faces`` [m] (0 … R and 0 … Σ L_l, increasing).
    """

    layer_thickness: tuple[float, ...]
    layer_diffusivity: tuple[float, ...]
    layer_partition: tuple[float, ...]
    layer_clearance: tuple[float, ...] | None = None
    puncture_density: float = 1.0e6
    channel_radius: float = 0.0
    channel_depth: float = 0.0
    channel_diffusivity: float = 0.0
    channel_partition: float = 1.0
    vehicle_concentration: float = 1.0
    vehicle_thickness: float = math.inf
    bottom: Literal["sink", "zero_flux"] = "sink"
    closure_rate: float = math.inf
    nr: int = 40
    nz: int = 80
    r_faces: tuple[float, ...] | None = None
    z_faces: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        nl = len(self.layer_thickness)
        if nl == 0:
            raise ValueError("layer_thickness: at least one layer is required")
        for name in ("layer_diffusivity", "layer_partition", "layer_clearance"):
            v = getattr(self, name)
            if v is not None and len(v) != nl:
                raise ValueError(f"{name}: expected {nl} values (one per layer), got {len(v)}")
        if min(self.layer_thickness) <= 0 or min(self.layer_diffusivity) <= 0:
            raise ValueError("layer thicknesses and diffusivities must be > 0")
        if min(self.layer_partition) <= 0:
            raise ValueError("layer_partition must be > 0")
        if self.layer_clearance is not None and min(self.layer_clearance) < 0:
            raise ValueError("layer_clearance must be >= 0")
        if not self.puncture_density > 0:
            raise ValueError("puncture_density must be > 0 [1/m²]")
        if self.channel_radius < 0 or self.channel_depth < 0:
            raise ValueError("channel_radius and channel_depth must be >= 0")
        if self.has_channel:
            if self.channel_radius >= self.cell_radius:
                raise ValueError(
                    f"channel_radius {self.channel_radius} must be < cell radius {self.cell_radius}"
                )
            if self.channel_depth >= self.depth:
                raise ValueError("channel_depth must be < total skin depth")
            if self.channel_diffusivity <= 0 or self.channel_partition <= 0:
                raise ValueError("channel_diffusivity and channel_partition must be > 0")
        if self.bottom not in ("sink", "zero_flux"):
            raise ValueError(f"bottom: {self.bottom!r} not in ('sink', 'zero_flux')")
        if not self.vehicle_thickness > 0:
            raise ValueError("vehicle_thickness must be > 0 [m] (inf: infinite dose)")
        if not self.closure_rate >= 0:
            raise ValueError("closure_rate must be >= 0 [1/s]")
        if self.nr < 1 or self.nz < 1:
            raise ValueError("nr and nz must be >= 1")

    @property
    def cell_radius(self) -> float:
        """R = 1/√(π n) [m]: radius of the disc of equal area owned by one puncture."""
        return 1.0 / math.sqrt(math.pi * self.puncture_density)

    @property
    def cell_area(self) -> float:
        """π R² = 1/n [m²]: skin area per puncture."""
        return math.pi * self.cell_radius**2

    @property
    def depth(self) -> float:
        """Total skin depth H = Σ L_l [m]."""
        return float(sum(self.layer_thickness))

    @property
    def has_channel(self) -> bool:
        """True when a > 0 and d > 0."""
        return self.channel_radius > 0 and self.channel_depth > 0

    @property
    def interfaces(self) -> FloatArray:
        """Depths [m] of the layer boundaries, 0 … H (length n_layers + 1)."""
        return np.concatenate([[0.0], np.cumsum(self.layer_thickness)])

    def laminate_permeability(self) -> float:
        """Steady permeability of the intact laminate [m/s]: 1/P = Σ L_l/(K_l D_l) (D.3)."""
        return 1.0 / sum(
            L / (K * D)
            for L, K, D in zip(
                self.layer_thickness, self.layer_partition, self.layer_diffusivity, strict=True
            )
        )


# ----------------------------------------------------------------------------- grid
def _split(breaks: Sequence[float], n: int, min_cells: int = 2) -> FloatArray:
    """Faces on [breaks[0], breaks[-1]] with every break a face; cells per segment ∝ √length."""
    b = np.asarray(breaks, dtype=float)
    seg = np.diff(b)
    ns = len(seg)
    n = max(n, min_cells * ns)
    w = np.sqrt(seg)
    cnt = np.maximum(min_cells, np.floor(n * w / w.sum()).astype(int))
    while cnt.sum() < n:
        cnt[np.argmax(seg / cnt)] += 1
    while cnt.sum() > n:
        k = np.argmin(np.where(cnt > min_cells, seg / cnt, np.inf))
        cnt[k] -= 1
    parts = [np.linspace(b[i], b[i + 1], cnt[i] + 1)[:-1] for i in range(ns)]
    return np.concatenate([*parts, b[-1:]])


def _graded(x0: float, x1: float, h0: float, m: int) -> FloatArray:
    """m cells on [x0, x1], geometric from first width h0 (uniform when that is coarser)."""
    span = x1 - x0
    if m * h0 >= span:
        return np.linspace(x0, x1, m + 1)
    q = brentq(lambda q: h0 * (q**m - 1.0) / (q - 1.0) - span, 1.0 + 1e-12, 10.0)
    w = h0 * q ** np.arange(m)
    f = x0 + np.concatenate([[0.0], np.cumsum(w)])
    f[-1] = x1
    return f


def build_grid(cell: UnitCell) -> tuple[FloatArray, FloatArray]:
    """Face coordinates (r_faces [m], z_faces [m]) for ``cell``.

    r: uniform inside the channel (⌈nr/4⌉ cells, at least 2), then geometric growth from the
    channel-wall spacing out to R; z: every layer interface and the channel floor are faces, cells
    per segment ∝ √(segment length), at least 2, uniform within a segment. Explicit ``r_faces`` /
    ``z_faces`` on the cell override these.
    """
    R, H = cell.cell_radius, cell.depth
    if cell.r_faces is not None:
        rf = np.asarray(cell.r_faces, dtype=float)
    elif cell.has_channel:
        n_in = min(max(2, math.ceil(cell.nr / 4)), cell.nr - 1) if cell.nr > 2 else 1
        a = cell.channel_radius
        inner = np.linspace(0.0, a, n_in + 1)
        outer = _graded(a, R, a / n_in, cell.nr - n_in)
        rf = np.concatenate([inner[:-1], outer])
    else:
        rf = np.linspace(0.0, R, cell.nr + 1)
    if cell.z_faces is not None:
        zf = np.asarray(cell.z_faces, dtype=float)
    else:
        br = set(cell.interfaces.tolist())
        if cell.has_channel:
            br.add(cell.channel_depth)
        zf = _split(sorted(br), cell.nz, min_cells=1 if cell.nz < 2 * len(br) else 2)
    for name, f, hi in (("r_faces", rf, R), ("z_faces", zf, H)):
        if f[0] != 0.0 or not math.isclose(f[-1], hi, rel_tol=1e-12) or np.any(np.diff(f) <= 0):
            raise ValueError(f"{name}: must increase strictly from 0 to {hi}")
    rf[-1], zf[-1] = R, H
    return rf, zf


# ----------------------------------------------------------------------------- solution
@dataclass(frozen=True)
class UnitCellSolution:
    """Result of ``solve``. Amounts are per unit skin area (divided by π R²) [kg/m²].

    ``times`` (T,) [s]; ``r``/``z`` cell centres and ``r_faces``/``z_faces`` [m];
    ``concentration`` (T, nz, nr) tissue concentration C = K u [kg/m³] (None if not stored);
    ``absorbed`` (T,): cumulative amount in through the top surface; ``absorbed_by_layer`` (T, L):
    stored + cleared in each layer (tissue cells only); ``stored_channel`` (T,): amount in the
    channel cells; ``stored_by_layer``/``cleared_by_layer`` (T, L); ``passed_bottom`` (T,):
    cumulative amount out through the bottom, so absorbed = Σ absorbed_by_layer + stored_channel +
    passed_bottom up to ``mass_balance_residual`` (max over T of |in − out − cleared − stored| / in);
    ``flux_top``/``flux_bottom`` (T,) [kg/(m² s)] at the end of the step reaching each time;
    ``vehicle`` (T,): amount left in the vehicle film (finite dose; inf for an infinite dose);
    ``n_factorizations``: number of step matrices factored (LU) or set up (separable solver);
    ``n_iterative``: number of steps solved by preconditioned CG instead (see ``_Linear``).
    """

    times: FloatArray
    r: FloatArray
    z: FloatArray
    r_faces: FloatArray
    z_faces: FloatArray
    concentration: FloatArray | None
    absorbed: FloatArray
    absorbed_by_layer: FloatArray
    stored_by_layer: FloatArray
    stored_channel: FloatArray
    cleared_by_layer: FloatArray
    passed_bottom: FloatArray
    flux_top: FloatArray
    flux_bottom: FloatArray
    vehicle: FloatArray
    mass_balance_residual: float
    n_factorizations: int
    n_iterative: int = 0


@dataclass(frozen=True)
class _Mesh:
    rf: FloatArray
    zf: FloatArray
    vol: FloatArray  # (nz, nr)
    K: FloatArray  # (nz, nr) storage partition
    dk_tissue: FloatArray  # (nz, nr) D K of the host layer
    k_tissue: FloatArray  # (nz, nr) clearance of the host layer
    layer: IntArray  # (nz, nr)
    channel: BoolArray  # (nz, nr)


def _mesh(cell: UnitCell) -> _Mesh:
    rf, zf = build_grid(cell)
    zc = 0.5 * (zf[:-1] + zf[1:])
    rc = 0.5 * (rf[:-1] + rf[1:])
    nl = len(cell.layer_thickness)
    lay = np.clip(np.searchsorted(cell.interfaces, zc, side="right") - 1, 0, nl - 1)
    D = np.asarray(cell.layer_diffusivity)[lay]
    K = np.asarray(cell.layer_partition)[lay]
    kc = np.zeros(nl) if cell.layer_clearance is None else np.asarray(cell.layer_clearance)
    shape = (len(zc), len(rc))
    layer = np.broadcast_to(lay[:, None], shape).astype(np.int64)
    ring = np.pi * np.diff(rf**2)
    vol = np.diff(zf)[:, None] * ring[None, :]
    if cell.has_channel:
        channel = (zc[:, None] < cell.channel_depth) & (rc[None, :] < cell.channel_radius)
    else:
        channel = np.zeros(shape, dtype=bool)
    Kc = np.broadcast_to(K[:, None], shape).copy()
    Kc[channel] = cell.channel_partition
    return _Mesh(
        rf=rf,
        zf=zf,
        vol=vol,
        K=Kc,
        dk_tissue=np.broadcast_to((D * K)[:, None], shape).copy(),
        k_tissue=np.broadcast_to(kc[lay][:, None], shape).copy(),
        layer=layer,
        channel=channel,
    )


def _coefficients(cell: UnitCell, mesh: _Mesh, s_open: float) -> tuple[FloatArray, FloatArray]:
    """(D K, clearance k) per cell (nz, nr) at open fraction ``s_open`` of the channel."""
    dk = mesh.dk_tissue.copy()
    kcl = mesh.k_tissue.copy()
    if cell.has_channel:
        ch = mesh.channel
        dk_ch = cell.channel_diffusivity * cell.channel_partition
        dk[ch] = s_open * dk_ch + (1.0 - s_open) * mesh.dk_tissue[ch]
        kcl[ch] = (1.0 - s_open) * mesh.k_tissue[ch]
    return dk, kcl


def _boundary(
    cell: UnitCell, mesh: _Mesh, dk: FloatArray, kcl: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Top conductances G_t (nr,), bottom G_b (nr,; 0 for zero flux), clearance rate k V K (nz, nr)."""
    rf, zf = mesh.rf, mesh.zf
    nr = mesh.vol.shape[1]
    ring = np.pi * np.diff(rf**2)
    g_top = ring / ((0.5 * (zf[0] + zf[1]) - zf[0]) / dk[0, :])
    g_bot = (
        ring / ((zf[-1] - 0.5 * (zf[-2] + zf[-1])) / dk[-1, :])
        if cell.bottom == "sink"
        else np.zeros(nr)
    )
    return g_top, g_bot, kcl * mesh.vol * mesh.K


def _operator(
    cell: UnitCell, mesh: _Mesh, s_open: float
) -> tuple[sp.csc_matrix, FloatArray, FloatArray, FloatArray, FloatArray]:
    """A (symmetric, M u' = −A u + b), top conductances G_t, bottom G_b, clearance rate k V K."""
    rf, zf = mesh.rf, mesh.zf
    nz, nr = mesh.vol.shape
    dk, kcl = _coefficients(cell, mesh, s_open)
    rc = 0.5 * (rf[:-1] + rf[1:])
    zc = 0.5 * (zf[:-1] + zf[1:])
    dz = np.diff(zf)
    ring = np.pi * np.diff(rf**2)
    idx = np.arange(nz * nr).reshape(nz, nr)
    rows: list[IntArray] = []
    cols: list[IntArray] = []
    vals: list[FloatArray] = []
    # radial faces between (j, i-1) and (j, i)
    if nr > 1:
        area = 2.0 * np.pi * rf[1:-1][None, :] * dz[:, None]
        h1 = (rf[1:-1] - rc[:-1])[None, :]
        h2 = (rc[1:] - rf[1:-1])[None, :]
        g = area / (h1 / dk[:, :-1] + h2 / dk[:, 1:])
        p, q = idx[:, :-1].ravel(), idx[:, 1:].ravel()
        gv = g.ravel()
        rows += [p, q, p, q]
        cols += [p, q, q, p]
        vals += [gv, gv, -gv, -gv]
    # axial faces between (j-1, i) and (j, i)
    if nz > 1:
        h1 = (zf[1:-1] - zc[:-1])[:, None]
        h2 = (zc[1:] - zf[1:-1])[:, None]
        g = ring[None, :] / (h1 / dk[:-1, :] + h2 / dk[1:, :])
        p, q = idx[:-1, :].ravel(), idx[1:, :].ravel()
        gv = g.ravel()
        rows += [p, q, p, q]
        cols += [p, q, q, p]
        vals += [gv, gv, -gv, -gv]
    g_top, g_bot, kvk = _boundary(cell, mesh, dk, kcl)
    clear = kvk.ravel()
    diag = clear.copy()
    diag[idx[0, :]] += g_top
    diag[idx[-1, :]] += g_bot
    rows.append(idx.ravel())
    cols.append(idx.ravel())
    vals.append(diag)
    A = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(nz * nr,) * 2
    )
    return A, g_top, g_bot, kvk, idx


# ----------------------------------------------------------------------------- linear solves
_FACTOR_COST_SOLVES = 40
"""Cost of one sparse LU factorization in triangular solves (measured ~40-50 on the 200 × 400 cell:
factor ~0.2 s, solve ~5 ms). A matrix used for fewer than this many solves' worth of PCG
iterations is solved iteratively, preconditioned by an existing factorization."""
_SETUP_COST_SOLVES = 10
"""The same for ``_Separable`` (measured on the 200 × 400 cell: setup ~20-25 ms, solve ~2.3 ms)."""
_PCG_ITERS_EXPECTED = 12
"""Typical PCG iterations with a neighbouring factorization as preconditioner (BE start step:
κ ≤ 1.5 → ~10; a closure level: ~10-25)."""
_PCG_TOL = 1.0e-13
"""Stop when max|P⁻¹ r| ≤ tol · max|u| (P⁻¹ r approximates the error of the iterate)."""


@dataclass(frozen=True)
class _Op:
    A: sp.csc_matrix | None  # symmetric operator, M u' = −A u + b (built when first needed)
    g_top: FloatArray  # (nr,) conductance of the top faces [m³/s]
    g_bot: FloatArray  # (nr,) conductance of the bottom faces (0 for zero flux)
    kvk: FloatArray  # (nz nr,) clearance k V K [m³/s]


def _dot(x: FloatArray, y: FloatArray) -> float:
    """x·y without BLAS threads (see ``_pcg``)."""
    return float(np.einsum("i,i->", x, y))


def _pcg(
    B: sp.csc_matrix,
    b: FloatArray,
    x0: FloatArray,
    prec: Callable[[FloatArray], FloatArray],
    maxiter: int = 60,
) -> tuple[FloatArray, bool]:
    """Preconditioned conjugate gradients for SPD ``B`` (``prec`` ≈ B⁻¹, SPD). (x, converged).

    Inner products by ``_dot`` (not BLAS ``@``: a multithreaded BLAS dot on a busy machine can cost
    ~16 ms instead of ~0.02 ms, measured with OpenBLAS under a load of 10 on 2 cores)."""
    x = x0.copy()
    r = b - B @ x
    z = prec(r)
    p = z.copy()
    rz = _dot(r, z)
    for _ in range(maxiter):
        if np.max(np.abs(z)) <= _PCG_TOL * max(np.max(np.abs(x)), np.finfo(float).tiny):
            return x, True
        q = B @ p
        pq = _dot(p, q)
        if not pq > 0:
            return x, False
        alpha = rz / pq
        x += alpha * p
        r -= alpha * q
        z = prec(r)
        rz_new = _dot(r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, False


def _tridiag_eig(
    diag: FloatArray, off: FloatArray, weight: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Eigenpairs of the weighted problem T v = λ diag(weight) v, T symmetric tridiagonal with
    diagonal ``diag`` and off-diagonal ``off``: (λ, V) with Vᵀ diag(weight) V = I, Vᵀ T V = diag(λ)."""
    s = 1.0 / np.sqrt(weight)
    if diag.size == 1:
        return diag * s * s, s[:, None].copy()
    lam, q = eigh_tridiagonal(diag * s * s, off * s[:-1] * s[1:])
    return lam, q * s[:, None]


@dataclass(frozen=True)
class _Block:
    """One block of columns c0 … c1 − 1 of the grid in which every coefficient depends on z only.

    Its step matrix is kron(T_z, diag(ring)) + kron(diag(w_z), L_r) (rows z, columns r): L_r holds
    the geometric factors of the radial faces (2π r_f/(r_i − r_{i−1}); at an interface the half-cell
    factor 2π r_f/h to the face), w_z = Δz D K, ring = π(r_e² − r_w²); T_z is the axial operator per
    unit ring area (face conductances, clearance, storage a₀ K Δz/Δt, top and bottom faces). With
    L_r V = diag(ring) V diag(μ), Vᵀ diag(ring) V = I, the block decouples into one tridiagonal system
    T_z + μ_m diag(w_z) per radial mode m (factored together: ``pt_d``, ``pt_e`` of LAPACK dpttrf)."""

    c0: int
    c1: int
    V: FloatArray  # (m, m) radial modes
    pt_d: FloatArray  # (m nz,) dpttrf of the mode-major block-diagonal tridiagonal
    pt_e: FloatArray  # (m nz − 1,)
    g: FloatArray  # (nz,) conductance from the interface column to the interface face (or empty)
    vb: FloatArray  # (m,) the radial modes at the interface column (or empty)


class _Separable:
    """Direct solver of one step matrix a₀ M/Δt + A that uses the structure of the grid.

    Inside the channel columns (r < a) and outside them every coefficient (D K, K, clearance) depends
    on z only, so each of the two column blocks is separable (``_Block``): dense radial transforms
    and tridiagonal solves, O(nz nr²) per solve with small constants, no fill. The blocks are joined
    through the potential on the faces between them (nz unknowns): block-side conductances
    g_in = 2π a Δz D_in K_in / h_in and g_out likewise (their series value is the harmonic face
    conductance of ``_operator``), flux continuity (g_in + g_out) φ = g_in u_in + g_out u_out, and the
    dense Schur complement S = diag(g_in + g_out) − Σ_b diag(g_b) P_b diag(g_b), P_b the block's
    inverse on its interface column, Σ_m vb_m² (T_z + μ_m W)⁻¹, computed in closed form from the
    eigenpairs of T_z in the metric W = diag(w_z) (one tridiagonal eigenproblem and two nz × nz
    products per block). A finite vehicle film (one more unknown coupled to the top cells) is a
    bordered system: one extra solve per matrix. Exact up to round-off (tested against ``splu``).
    """

    def __init__(
        self,
        cell: UnitCell,
        mesh: _Mesh,
        s_open: float,
        shift: float,
        radial: dict[tuple[int, int], tuple[FloatArray, FloatArray]],
        film: float | None,
    ) -> None:
        rf, zf = mesh.rf, mesh.zf
        nz, nr = mesh.vol.shape
        self.nz, self.nr = nz, nr
        rc = 0.5 * (rf[:-1] + rf[1:])
        zc = 0.5 * (zf[:-1] + zf[1:])
        dz = np.diff(zf)
        ring = np.pi * np.diff(rf**2)
        dk, kcl = _coefficients(cell, mesh, s_open)
        n_in = int(np.count_nonzero(mesh.channel.any(axis=0)))
        cuts = [0, n_in, nr] if 0 < n_in < nr else [0, nr]
        two = len(cuts) == 3
        h1 = zf[1:-1] - zc[:-1]
        h2 = zc[1:] - zf[1:-1]
        blocks: list[_Block] = []
        axial: list[tuple[FloatArray, FloatArray, FloatArray]] = []
        for b, (c0, c1) in enumerate(itertools.pairwise(cuts)):
            dks, ks, Ks = dk[:, c0], kcl[:, c0], mesh.K[:, c0]
            m = c1 - c0
            key = (c0, c1)
            if key not in radial:  # geometry only: shared by every matrix of the cell
                w = 2.0 * np.pi * rf[c0 + 1 : c1] / (rc[c0 + 1 : c1] - rc[c0 : c1 - 1])
                dr = np.zeros(m)
                dr[:-1] += w
                dr[1:] += w
                if two and b == 0:
                    dr[-1] += 2.0 * np.pi * rf[c1] / (rf[c1] - rc[c1 - 1])
                elif two:
                    dr[0] += 2.0 * np.pi * rf[c0] / (rc[c0] - rf[c0])
                radial[key] = _tridiag_eig(dr, -w, ring[c0:c1])
            mu, V = radial[key]
            wz = dz * dks
            c = 1.0 / (h1 / dks[:-1] + h2 / dks[1:])
            tz = (ks + shift) * Ks * dz
            tz[0] += dks[0] / (zc[0] - zf[0])
            if cell.bottom == "sink":
                tz[-1] += dks[-1] / (zf[-1] - zc[-1])
            tz[:-1] += c
            tz[1:] += c
            axial.append((wz, c, tz))
            off = np.zeros((m, nz))
            off[:, :-1] = -c
            # LAPACK's wrapper wants an off-diagonal of length >= 1 even for a 1 × 1 system
            pt_d, pt_e, info = dpttrf(
                (tz[None, :] + mu[:, None] * wz[None, :]).ravel(),
                off.ravel()[:-1] if m * nz > 1 else np.zeros(1),
            )
            if info != 0:
                raise np.linalg.LinAlgError(
                    f"unit cell: step matrix not positive definite ({info})"
                )
            g = vb = np.zeros(0)
            if two:
                col = c1 - 1 if b == 0 else c0
                face = rf[c1] if b == 0 else rf[c0]
                g = wz * 2.0 * np.pi * face / abs(face - rc[col])
                vb = V[col - c0].copy()
            blocks.append(_Block(c0, c1, V, pt_d, pt_e, g, vb))
        self.blocks = blocks
        self.schur: Any = None
        if two:
            S = np.diag(blocks[0].g + blocks[1].g)
            for blk, (wz, c, tz) in zip(blocks, axial, strict=True):
                mu = radial[(blk.c0, blk.c1)][0]
                # P = Σ_m vb_m² (T_z + μ_m W)⁻¹ = W^-½ Q diag(Σ_m vb_m²/(λ + μ_m)) Qᵀ W^-½
                lam, Q = _tridiag_eig(tz, -c, wz)  # Q already carries W^-½
                sig = (blk.vb**2)[None, :] / (lam[:, None] + mu[None, :])
                Qg = Q * blk.g[:, None]
                S -= (Qg * sig.sum(axis=1)[None, :]) @ Qg.T
            self.schur = cho_factor(0.5 * (S + S.T), check_finite=False)
        # finite dose: bordered system [[B, col], [colᵀ, γ]] with col = −g_top on the top cells
        self.film = film is not None
        if film is not None:
            g_top = _boundary(cell, mesh, dk, kcl)[0]
            self.col = np.zeros(nz * nr)
            self.col[:nr] = -g_top
            self.w = self._solve(self.col)
            self.gamma = float(g_top.sum()) + film
            self.denom = self.gamma - _dot(self.col[:nr], self.w[:nr])

    def _solve(self, f: FloatArray) -> FloatArray:
        nz, nr = self.nz, self.nr
        F = f.reshape(nz, nr)
        xs = []
        for blk in self.blocks:
            fh = blk.V.T @ F[:, blk.c0 : blk.c1].T  # (m, nz): rows are radial modes
            x, _ = dpttrs(blk.pt_d, blk.pt_e, fh.ravel())
            xs.append(x.reshape(blk.c1 - blk.c0, nz))
        if self.schur is not None:
            rhs = sum(blk.g * (blk.vb @ x) for blk, x in zip(self.blocks, xs, strict=True))
            phi = cho_solve(self.schur, rhs, check_finite=False)
            for k, blk in enumerate(self.blocks):
                corr, _ = dpttrs(blk.pt_d, blk.pt_e, np.outer(blk.vb, blk.g * phi).ravel())
                xs[k] = xs[k] + corr.reshape(blk.c1 - blk.c0, nz)
        u = np.empty((nz, nr))
        for blk, x in zip(self.blocks, xs, strict=True):
            u[:, blk.c0 : blk.c1] = x.T @ blk.V.T
        return u.ravel()

    def solve(self, rhs: FloatArray) -> FloatArray:
        if not self.film:
            return self._solve(rhs)
        nn = self.nz * self.nr
        x0 = self._solve(rhs[:nn])
        v = (rhs[nn] - _dot(self.col[: self.nr], x0[: self.nr])) / self.denom
        return np.append(x0 - v * self.w, v)


class _Linear:
    """Operators and linear solves of one ``solve`` call.

    Every step solves (a₀ M/Δt + A) u = rhs for a key (closure level, Δt, a₀). With the default
    ``direct="separable"`` every key gets its own ``_Separable`` (its setup costs ~10 solves, less
    than the ~12 PCG iterations a rarely used key needs, so no key is solved iteratively) and the
    sparse matrix is never assembled. With ``direct="lu"``: a key used for many steps gets its own
    LU (``splu``, MMD ordering on AᵀA + A: half the fill of COLAMD). A key used for only a few steps (the backward-Euler start step, step-ratio jumps, short closure levels) is
    solved by preconditioned CG with the LU of a neighbouring key (the matrix is symmetric positive
    definite: A is symmetric and M diagonal positive): ~10-25 triangular solves instead of a ~40-solve
    factorization. The iterations a key may spend are capped at ``_FACTOR_COST_SOLVES`` / (its
    number of steps), so a key costs at most about one factorization more than factoring it
    outright; a key whose CG did not converge within that is factored (and serves as preconditioner
    for the keys after it: successive closure levels are close to each other).
    """

    def __init__(
        self,
        cell: UnitCell,
        mesh: _Mesh,
        mvec: FloatArray,
        s_of: Callable[[int], float],
        uses: Counter[tuple[int, float, float]],
        direct: Literal["separable", "lu"] = "separable",
    ) -> None:
        self.cell, self.mesh, self.mvec, self.s_of, self.uses = cell, mesh, mvec, s_of, uses
        self.direct = direct
        self.radial: dict[tuple[int, int], tuple[FloatArray, FloatArray]] = {}
        self.ops: dict[int, _Op] = {}
        self.mats: dict[tuple[int, float, float], sp.csc_matrix] = {}
        self.lus: dict[tuple[int, float, float], Any] = {}
        self.n_factorizations = 0
        self.n_iterative = 0
        self.cost = _FACTOR_COST_SOLVES if direct == "lu" else _SETUP_COST_SOLVES
        self.big = [k for k, c in uses.items() if c * _PCG_ITERS_EXPECTED > self.cost]
        self.failed: set[tuple[int, float, float]] = set()

    def operator(self, lev: int, assemble: bool = False) -> _Op:
        """Level ``lev``'s face vectors; with ``assemble`` (or the LU solver) also its matrix A."""
        op = self.ops.get(lev)
        if op is not None and (op.A is not None or not assemble):
            return op
        if self.direct == "separable" and not assemble:
            dk, kcl = _coefficients(self.cell, self.mesh, self.s_of(lev))
            g_top, g_bot, kvk2 = _boundary(self.cell, self.mesh, dk, kcl)
            kvk = kvk2.ravel()
            if math.isfinite(self.cell.vehicle_thickness):
                kvk = np.append(kvk, 0.0)
            op = self.ops[lev] = _Op(None, g_top, g_bot, kvk)
            return op
        A, g_top, g_bot, kvk, _ = _operator(self.cell, self.mesh, self.s_of(lev))
        kvk = kvk.ravel()
        if math.isfinite(self.cell.vehicle_thickness):
            # finite dose: the film is one more unknown v; the top faces couple it to the top
            # cells (their diagonal already holds g_top), keeping the matrix symmetric
            nn, nr = A.shape[0], len(g_top)
            col = sp.csc_matrix((-g_top, (np.arange(nr), np.zeros(nr, dtype=int))), (nn, 1))
            A = sp.csc_matrix(sp.bmat([[A, col], [col.T, [[float(g_top.sum())]]]]))
            kvk = np.append(kvk, 0.0)
        op = self.ops[lev] = _Op(A, g_top, g_bot, kvk)
        return op

    def matrix(self, key: tuple[int, float, float]) -> sp.csc_matrix:
        B = self.mats.get(key)
        if B is None:
            lev, h, a0 = key
            A = self.operator(lev, assemble=True).A
            B = self.mats[key] = sp.csc_matrix(A + sp.diags(a0 * self.mvec / h))
        return B

    def factor(self, key: tuple[int, float, float]) -> Any:
        lu = self.lus.get(key)
        if lu is None:
            if self.direct == "separable":
                lev, h, a0 = key
                finite = math.isfinite(self.cell.vehicle_thickness)
                lu = _Separable(
                    self.cell,
                    self.mesh,
                    self.s_of(lev),
                    a0 / h,
                    self.radial,
                    film=a0 * float(self.mvec[-1]) / h if finite else None,
                )
            else:
                lu = splu(
                    self.matrix(key), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0
                )  # diagonal pivots: the matrix is SPD and diagonally dominant
            self.lus[key] = lu
            self.n_factorizations += 1
        return lu

    def _preconditioner(self, key: tuple[int, float, float]) -> tuple[int, float, float] | None:
        """The factored (or to-be-factored) key nearest to ``key``: nearest closure level, then
        nearest a₀/Δt, factored before not yet factored."""
        cands = list(self.lus) + [k for k in self.big if k not in self.lus]
        if not cands:
            return None
        lev, h, a0 = key
        return min(
            cands,
            key=lambda k: (
                abs(k[0] - lev),
                abs(math.log(k[2] / k[1] * h / a0)),
                k not in self.lus,
                -self.uses[k],
            ),
        )

    def solve(
        self, key: tuple[int, float, float], rhs: FloatArray, guess: FloatArray
    ) -> FloatArray:
        lu = self.lus.get(key)
        if lu is None and key not in self.big and key not in self.failed:
            pk = self._preconditioner(key)
            # an unfactored candidate at another closure level would be factored only to serve as
            # a poor preconditioner: factor this key instead
            if pk is not None and (pk in self.lus or pk[0] == key[0]):
                plu = self.factor(pk)
                budget = max(4, self.cost // self.uses[key])
                x, ok = _pcg(self.matrix(key), rhs, guess, plu.solve, maxiter=budget)
                if ok:
                    self.n_iterative += 1
                    return x
                self.failed.add(key)
        return np.asarray(self.factor(key).solve(rhs), dtype=float)


def _step_plan(
    times: FloatArray, closures: FloatArray, dt: float
) -> tuple[FloatArray, IntArray, IntArray]:
    """Step end times, closure level index per step, and output index (−1 if none) per step."""
    t_end = float(times[-1])
    bps = np.unique(np.concatenate([[0.0], times, closures[closures < t_end]]))
    # merge breakpoints closer than 1e-9 t_end (a closure time that coincides with an output time
    # up to round-off would otherwise make a step of ~0 length)
    keep = np.concatenate([[True], np.diff(bps) > 1e-9 * max(t_end, 1.0)])
    keep[-1] = True
    bps = bps[keep]
    if len(bps) > 2 and bps[-1] - bps[-2] <= 1e-9 * max(t_end, 1.0):
        bps = np.delete(bps, -2)
    ends: list[float] = []
    for t0, t1 in itertools.pairwise(bps):
        m = max(1, math.ceil((t1 - t0) / dt * (1.0 - 1e-12)))
        ends.extend((t0 + (t1 - t0) * np.arange(1, m + 1) / m).tolist())
    end = np.asarray(ends)
    end[np.searchsorted(end, bps[1:] - 1e-12 * max(t_end, 1.0))] = bps[1:]
    mid = 0.5 * (np.concatenate([[0.0], end[:-1]]) + end)
    level = np.searchsorted(closures, mid, side="right").astype(np.int64)
    out = np.full(len(end), -1, dtype=np.int64)
    pos = np.searchsorted(end, times - 1e-12 * max(t_end, 1.0))
    out[pos] = np.arange(len(times))
    return end, level, out


def solve(
    cell: UnitCell,
    times: ArrayLike,
    closure_times: ArrayLike | None = None,
    *,
    closure_levels: ArrayLike | None = None,
    dt: float | None = None,
    method: Literal["bdf2", "euler"] = "bdf2",
    store_fields: bool = True,
    direct: Literal["separable", "lu"] = "separable",
) -> UnitCellSolution:
    """Solve the unit cell from C = 0 at t = 0 to the output ``times`` [s] (increasing, > 0).

    ``closure_times`` [s]: switching times of the piecewise-constant channel closure (module
    docstring). ``closure_levels``: open fraction S_j in [0, 1] from each closure time on (same length
    as ``closure_times``; default exp(−k_close t_j), see the module docstring). ``dt`` [s]: largest
    time step (default ``times[-1]/200``); every output and closure time is hit exactly (intervals
    split into equal steps). ``method``: "bdf2" (second order, L-stable) or "euler" (backward Euler,
    first order). ``direct``: the direct solver of the step matrices, "separable" (``_Separable``:
    the grid's column blocks, BLAS limited to one thread during the call) or "lu" (``splu``, the
    solver before issue 15; the same answer to round-off). Returns a ``UnitCellSolution``.
    """
    if direct not in ("separable", "lu"):
        raise ValueError(f"direct: {direct!r} not in ('separable', 'lu')")
    args = (cell, times, closure_times, closure_levels, dt, method, store_fields, direct)
    if direct == "lu":
        return _solve(*args)
    # small dense products: a second BLAS thread costs more than it gains on a busy machine
    # (150 × 150 × 400 product 0.5 ms on one thread, 5 ms on two under a load of 6)
    with threadpool_limits(limits=1, user_api="blas"):
        return _solve(*args)


def _solve(
    cell: UnitCell,
    times: ArrayLike,
    closure_times: ArrayLike | None,
    closure_levels: ArrayLike | None,
    dt: float | None,
    method: Literal["bdf2", "euler"],
    store_fields: bool,
    direct: Literal["separable", "lu"],
) -> UnitCellSolution:
    tt = np.asarray(times, dtype=float).ravel()
    if tt.size == 0 or np.any(tt <= 0) or np.any(np.diff(tt) <= 0):
        raise ValueError("times: must be a non-empty strictly increasing sequence of values > 0")
    cl = np.sort(np.asarray([] if closure_times is None else closure_times, dtype=float).ravel())
    if np.any(cl < 0):
        raise ValueError("closure_times: must be >= 0")
    levels_s: FloatArray | None = None
    if closure_levels is not None:
        raw_cl = np.asarray([] if closure_times is None else closure_times, dtype=float).ravel()
        levels_s = np.asarray(closure_levels, dtype=float).ravel()
        if levels_s.shape != raw_cl.shape or np.any(np.diff(raw_cl) <= 0):
            raise ValueError(
                "closure_levels: one open fraction per closure time (closure_times increasing)"
            )
        if np.any(~((levels_s >= 0) & (levels_s <= 1))):
            raise ValueError("closure_levels: open fractions must lie in [0, 1]")
    if method not in ("bdf2", "euler"):
        raise ValueError(f"method: {method!r} not in ('bdf2', 'euler')")
    step = float(tt[-1] / 200.0 if dt is None else dt)
    if not step > 0:
        raise ValueError("dt must be > 0")
    mesh = _mesh(cell)
    nz, nr = mesh.vol.shape
    nl = len(cell.layer_thickness)
    area = cell.cell_area
    cv = cell.vehicle_concentration
    nn = nz * nr
    finite = math.isfinite(cell.vehicle_thickness)
    mvec = (mesh.vol * mesh.K).ravel()
    if finite:  # the vehicle film: storage h πR² (partition 1: u = v is its concentration)
        mvec = np.append(mvec, cell.vehicle_thickness * area)
    ends, level, out = _step_plan(tt, cl, step)
    lay = mesh.layer.ravel()
    tissue = ~mesh.channel.ravel()
    # storage bins: layer index for tissue cells, nl for channel cells (one bincount per output)
    store_bin = np.where(tissue, lay, nl)
    top = np.arange(nr)
    bottom = np.arange((nz - 1) * nr, nz * nr)

    def s_of(lev: int) -> float:
        if lev == 0:
            return 1.0
        if levels_s is not None:
            return float(levels_s[lev - 1])
        if math.isinf(cell.closure_rate):
            return 0.0
        return math.exp(-cell.closure_rate * float(cl[lev - 1]))

    # pre-pass: Δt, BDF coefficients and matrix key of every step (known from the plan alone)
    steps: list[tuple[float, float, float, float, tuple[int, float, float]]] = []
    dt_keys: list[float] = []
    t_now, dt_prev = 0.0, 0.0
    for n, t_next in enumerate(ends):
        h = float(t_next - t_now)
        # reuse a Δt that agrees to 1e-9 (the step then advances by that Δt)
        for d in dt_keys:
            if abs(d - h) <= 1e-9 * h:
                h = d
                break
        else:
            dt_keys.append(h)
        if method == "euler" or n == 0 or h / dt_prev > 2.0:
            a0, a1, a2 = 1.0, 1.0, 0.0
        else:
            w = h / dt_prev
            a0, a1, a2 = (1 + 2 * w) / (1 + w), 1 + w, w * w / (1 + w)
        steps.append((h, a0, a1, a2, (int(level[n]), h, a0)))
        dt_prev, t_now = h, float(t_next)
    uses = Counter(k for *_, k in steps)
    lin = _Linear(cell, mesh, mvec, s_of, uses, direct)

    u = np.zeros(mvec.size)
    if finite:
        u[nn] = cv
    u_prev = u.copy()
    # cumulative amounts [kg] and previous increments (BDF2 quadrature)
    e_prev = np.zeros(2 + nl)  # in, out, cleared per layer
    cum = np.zeros(2 + nl)
    nt = len(tt)
    res_fields = np.zeros((nt, nz, nr)) if store_fields else None
    absorbed = np.zeros(nt)
    passed = np.zeros(nt)
    cleared = np.zeros((nt, nl))
    stored = np.zeros((nt, nl))
    stored_ch = np.zeros(nt)
    f_top = np.zeros(nt)
    f_bot = np.zeros(nt)
    veh = np.full(nt, np.inf)
    phi = np.empty(2 + nl)
    for n, (h, a0, a1, a2, key) in enumerate(steps):
        op = lin.operator(key[0])
        rhs = mvec * (a1 * u - a2 * u_prev) / h
        if not finite:
            rhs[top] += op.g_top * cv
        # initial guess for an iterative solve: linear extrapolation from the last two steps
        guess = u + (u - u_prev) * (h / dt_prev) if n > 1 else u
        u_new = lin.solve(key, rhs, guess)
        v_top = u_new[nn] if finite else cv
        phi[0] = _dot(op.g_top, v_top - u_new[top])
        phi[1] = _dot(op.g_bot, u_new[bottom])
        phi[2:] = np.bincount(lay, weights=op.kvk[:nn] * u_new[:nn], minlength=nl)[:nl]
        e = (h * phi + a2 * e_prev) / a0
        cum += e
        e_prev = e
        u_prev, u = u, u_new
        dt_prev = h
        k = int(out[n])
        if k >= 0:
            amount = np.bincount(store_bin, weights=mvec[:nn] * u[:nn], minlength=nl + 1)
            if finite:
                veh[k] = mvec[nn] * u[nn] / area
            absorbed[k] = cum[0] / area
            passed[k] = cum[1] / area
            cleared[k] = cum[2:] / area
            stored[k] = amount[:nl] / area
            stored_ch[k] = amount[nl] / area
            f_top[k] = phi[0] / area
            f_bot[k] = phi[1] / area
            if res_fields is not None:
                res_fields[k] = (mesh.K.ravel() * u[:nn]).reshape(nz, nr)
    total_out = passed + cleared.sum(axis=1) + stored.sum(axis=1) + stored_ch
    scale = np.maximum(np.abs(absorbed), np.finfo(float).tiny)
    residual = float(np.max(np.abs(absorbed - total_out) / scale))
    return UnitCellSolution(
        times=tt,
        r=0.5 * (mesh.rf[:-1] + mesh.rf[1:]),
        z=0.5 * (mesh.zf[:-1] + mesh.zf[1:]),
        r_faces=mesh.rf,
        z_faces=mesh.zf,
        concentration=res_fields,
        absorbed=absorbed,
        absorbed_by_layer=stored + cleared,
        stored_by_layer=stored,
        stored_channel=stored_ch,
        cleared_by_layer=cleared,
        passed_bottom=passed,
        flux_top=f_top,
        flux_bottom=f_bot,
        vehicle=veh,
        mass_balance_residual=residual,
        n_factorizations=lin.n_factorizations,
        n_iterative=lin.n_iterative,
    )
