"""Homogenised channel model (``transport.py``) against the resolved unit cell (``unitcell.py``).

Both models are built for the same problem: an infinite dose (vehicle held at c_v = 1 kg/m³ on the
whole surface) over stratum corneum / viable epidermis / dermis, channels of radius a and depth d at
puncture density n, the same molecule properties (Renkin-hindered channel diffusivity
D_pore = D_aq·H(λ), tissue diffusivity D_t (Chen 2015), tissue partition K_t, first-order clearance
k_cl in all viable tissue, as ``transport.py`` assumes) and, optionally, first-order channel
closure S(t) = exp(−k_close t). See ``docs/transport.md`` for the equations, the measured range and
why the models part outside it.

Homogenised side. The channel conductance g is that of one channel in its finite cell
(``transport.cell_conductance``, the engine's default) or, with ``cell=False``, of the isolated
channel (the model before the issue-6 follow-up). ``transport.absorb`` only knows a finite-dose vehicle film over a well-mixed
tissue compartment, so it cannot pose the infinite-dose problem; its lower-level pieces are used
directly: ``pore_conductance`` (one leaky channel, g) and the homogenised permeability
P(t) = (1 − ε S)·kp + n g S (``permeability``), whose time integral is the cumulative amount
Q_h(t) = c_v ∫₀ᵗ P dt. With closure the integral is taken over the same piecewise-constant
(staircase) S that the unit cell uses, so the comparison tests the spatial model, not the
quadrature of S; ``Comparison.closure_staircase_error`` reports how far the staircase is from the
continuous exponential.

Resolved side. ``unitcell.UnitCell``: SC with K_sc = 1 and D_sc = kp·L_sc (so its steady
permeability is the Potts–Guy kp; for molecules with kp = 0, a negligible D_sc), viable epidermis
and dermis with D_t, K_t, k_cl, channel filled with vehicle (D_pore, K_ch = 1), zero flux at the
bottom of the dermis (the homogenised tissue compartment loses solute only by clearance).

API::

    compare(n_per_cm2, depth_um, radius_um, molecule="small", hours=(1, 2, 4, 8, 24), *,
            k_close_per_h=None, cell=True, ...) -> Comparison
    sweep(densities, depths, radii, molecules, hours, ...) -> list[Comparison]
    table(comparisons, hour) -> str   (markdown density × depth table of relative differences)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray

from microneedling.parameters.molecules import Molecule, shipped_molecules
from microneedling.parameters.parameter_set import load_parameters
from microneedling.physics.transport import (
    Solute,
    TransportParameters,
    clearance_sensitivity,
    intact_kp,
    permeability,
    pore_conductance,
    renkin_hindrance,
    stokes_einstein_radius,
    tissue_diffusivity,
    transient_rate,
    uptake_flux_factor,
    uptake_shape,
)
from microneedling.physics.unitcell import UnitCell, solve

FloatArray = NDArray[np.float64]

__all__ = [
    "DEFAULT_HOURS",
    "MOLECULES",
    "Comparison",
    "Properties",
    "compare",
    "properties",
    "sweep",
    "table",
]

MOLECULES = {"small": "niacinamide", "large": "insulin"}
"""Probe molecules of the sweep: keys of ``data/molecules.toml`` (122 Da and 5.8 kDa)."""
DEFAULT_HOURS = (1.0, 2.0, 4.0, 8.0, 24.0)
"""Output times [h] of the sweep."""
SC_UM = 16.8
"""Stratum corneum thickness [µm] (skin.sc_thickness, cheek)."""
VE_UM = 54.5
"""Viable epidermis thickness [µm] (skin.viable_epidermis_thickness, cheek)."""
DERMIS_UM = 870.0
"""Dermis thickness [µm] (skin.dermis_thickness_female, cheek)."""
_M_PER_CM2 = 1.0e4  # 1/cm² → 1/m²
_S_PER_H = 3600.0
_KP_NONE = 1.0e-20  # m/s: SC permeability standing in for kp = 0 (UnitCell needs D > 0)


@lru_cache(maxsize=1)
def _parameters() -> TransportParameters:

    return TransportParameters.from_parameters(load_parameters())


@lru_cache(maxsize=1)
def _molecules() -> dict[str, Molecule]:
    return shipped_molecules()


@dataclass(frozen=True)
class Properties:
    """Transport properties of one molecule shared by both models (SI)."""

    name: str
    kp: float  # intact-skin permeability [m/s]
    d_pore: float  # channel diffusivity D_aq·H(λ) [m²/s]
    d_tissue: float  # viable-tissue diffusivity [m²/s]
    k_tissue: float  # tissue/vehicle partition [1]
    clearance: float  # first-order clearance [1/s]


def properties(molecule: str | Molecule, radius_um: float) -> Properties:
    """Properties of ``molecule`` ("small", "large", a key of molecules.toml or a ``Molecule``)
    in a channel of radius ``radius_um`` [µm], from the shipped transport parameters."""
    params = _parameters()
    if isinstance(molecule, str):
        mol = _molecules()[MOLECULES.get(molecule, molecule)]
    else:
        mol = molecule
    sol = Solute.from_molecules([mol])
    kp = float(intact_kp(sol, params)[0])
    r_sol = mol.radius_m
    if math.isnan(r_sol):
        r_sol = float(stokes_einstein_radius(mol.d_aq, params.water_viscosity))
    d_pore = mol.d_aq * float(renkin_hindrance(r_sol / (radius_um * 1e-6)))
    d_t = float(tissue_diffusivity(mol.mw_g_per_mol, params))
    return Properties(mol.key, kp, d_pore, d_t, params.tissue_partition, params.clearance_rate)


@dataclass(frozen=True)
class Comparison:
    """One geometry × molecule: cumulative absorbed amount per skin area [kg/m²] at ``hours``
    for c_v = 1 kg/m³ (numerically, the amount in units of c_v·m)."""

    n_per_cm2: float
    depth_um: float
    radius_um: float
    molecule: str
    k_close_per_h: float | None
    hours: FloatArray
    homogenised: FloatArray
    resolved: FloatArray
    intact_resolved: FloatArray  # the unit cell without channel (same layers)
    flux_homogenised: FloatArray  # c_v·P(t) at ``hours`` [kg/(m² s)]
    flux_resolved: FloatArray  # unit-cell flux through the top surface at ``hours``
    closure_staircase_error: float  # (staircase − exponential)/exponential of Q_h at the end
    mass_balance_residual: float

    @property
    def rel_diff(self) -> FloatArray:
        """(homogenised − resolved)/resolved at each time."""
        return np.asarray((self.homogenised - self.resolved) / self.resolved, dtype=float)

    @property
    def flux_rel_diff(self) -> FloatArray:
        """(homogenised − resolved)/resolved of the instantaneous flux at each time."""
        return np.asarray(
            (self.flux_homogenised - self.flux_resolved) / self.flux_resolved, dtype=float
        )


def _cell(
    n_per_cm2: float,
    depth_um: float,
    radius_um: float,
    p: Properties,
    layers_um: tuple[float, float, float],
    k_close: float,
    nr: int,
    nz: int,
) -> UnitCell:
    sc, ve, de = (x * 1e-6 for x in layers_um)
    kp = p.kp if p.kp > 0 else _KP_NONE
    return UnitCell(
        layer_thickness=(sc, ve, de),
        layer_diffusivity=(kp * sc, p.d_tissue, p.d_tissue),
        layer_partition=(1.0, p.k_tissue, p.k_tissue),
        layer_clearance=(0.0, p.clearance, p.clearance),
        puncture_density=n_per_cm2 * _M_PER_CM2,
        channel_radius=radius_um * 1e-6,
        channel_depth=depth_um * 1e-6,
        channel_diffusivity=p.d_pore,
        channel_partition=1.0,
        vehicle_concentration=1.0,
        bottom="zero_flux",
        closure_rate=k_close,
        nr=nr,
        nz=nz,
    )


def _staircase(k_close: float, t_end: float, step: float) -> FloatArray:
    """Closure switching times [s]: every ``step``·(1/k) until S < 1e-4, within (0, t_end)."""
    t_stop = min(t_end, math.log(1e4) / k_close)
    j = np.arange(1, math.ceil(t_stop * k_close / step) + 1, dtype=float)
    return np.asarray(j * step / k_close, dtype=float)


def _staircase_integral(
    times: FloatArray, closures: FloatArray, k_close: float, rate: float = math.inf
) -> FloatArray:
    """∫₀ᵗ S(τ) φ(τ) dτ for the staircase S = exp(−k t_j) on [t_j, t_{j+1}) (t_0 = 0, S = 1) and
    the charging transient φ = dF/dt of ``transport.uptake_shape`` with ``rate`` (∞: φ = 1, the
    plain ∫S dt)."""
    starts = np.concatenate([[0.0], closures])
    levels = np.exp(-k_close * starts)
    f_start = uptake_shape(starts, rate)
    out = np.empty_like(times)
    for i, t in enumerate(times):
        ends = np.minimum(np.concatenate([closures, [np.inf]]), t)
        gain = np.where(ends > starts, uptake_shape(ends, rate) - f_start, 0.0)
        out[i] = float(np.sum(levels * gain))
    return out


def _closing_uptake(t: float, k_close: float, rate: float) -> float:
    """∫₀ᵗ e^(−k_close τ) φ(τ) dτ in closed form, φ = erf(√(b τ)) + e^(−b τ)/√(π b τ), b = rate."""
    a = k_close
    if not math.isfinite(rate):
        return -math.expm1(-a * t) / a
    b = rate
    e_ab = math.erf(math.sqrt((a + b) * t))
    return (-math.exp(-a * t) * math.erf(math.sqrt(b * t)) + math.sqrt(b / (a + b)) * e_ab) / a + (
        e_ab / math.sqrt(b * (a + b))
    )


def compare(
    n_per_cm2: float,
    depth_um: float,
    radius_um: float,
    molecule: str | Molecule = "small",
    hours: float | Sequence[float] = DEFAULT_HOURS,
    *,
    k_close_per_h: float | None = None,
    layers_um: tuple[float, float, float] = (SC_UM, VE_UM, DERMIS_UM),
    nr: int = 40,
    nz: int = 80,
    dt_s: float = 120.0,
    closure_step: float = 0.05,
    transient: bool = True,
    closure_model: str = "conductance",
    cell: bool = True,
) -> Comparison:
    """Cumulative absorbed amount per area from both models for the same problem.

    n_per_cm2: puncture density [1/cm²]; depth_um, radius_um: channel depth and surface radius
    [µm]; molecule: "small" (niacinamide), "large" (insulin), a key of molecules.toml or a
    ``Molecule``; hours: output times [h]; k_close_per_h: closure rate [1/h] (None: channels stay
    open); layers_um: SC, viable epidermis, dermis thicknesses [µm]; nr × nz: unit-cell grid;
    dt_s: largest unit-cell time step [s]; closure_step: staircase step of the closure in units
    of 1/k_close; transient: include the tissue-charging transient of the channel uptake
    (``transport.uptake_shape``; False: the quasi-steady Q = ∫P dt of the engine before issue 6);
    closure_model: "conductance" (a closing channel conducts like S·vehicle + (1 − S)·host,
    ``pore_conductance(open_fraction=S)``, as in the unit cell) or "number" (the open channels
    drop out, P = (1 − ε S) kp + n g S, the engine's form); cell: the channel in its finite cell
    (``transport.cell_conductance``, the engine's default) or, False, the isolated channel (the
    homogenised model before the issue-6 follow-up).
    Returns a ``Comparison`` (infinite dose, c_v = 1 kg/m³).
    """
    tt = np.atleast_1d(np.asarray(hours, dtype=float)) * _S_PER_H
    p = properties(molecule, radius_um)
    name = molecule if isinstance(molecule, str) else molecule.key
    k_close = 0.0 if k_close_per_h is None else k_close_per_h / _S_PER_H
    n = n_per_cm2 * _M_PER_CM2
    a = radius_um * 1e-6
    density = n if cell else None  # the channel in its finite cell, or isolated
    thickness = (layers_um[1] + layers_um[2]) * 1e-6 if cell else None
    channel = (
        a,
        depth_um * 1e-6,
        layers_um[0] * 1e-6,
        p.d_pore,
        p.d_tissue,
        p.k_tissue,
        p.kp,
        p.clearance,
    )
    g = float(pore_conductance(*channel, density=density, tissue_thickness=thickness))
    # P = (1 − ε S) kp + n g S is affine in S: Q = c_v [P(S=0)·t + (P(S=1) − P(S=0)) ∫S φ dt],
    # φ the charging transient of the channel uptake (1 when quasi-steady)
    if closure_model not in ("conductance", "number"):
        raise ValueError(f"closure_model: got {closure_model!r}; allowed: 'conductance', 'number'")
    p_shut = float(permeability(1.0, p.kp, n, a, g, math.inf))
    p_open = float(permeability(0.0, p.kp, n, a, g, 0.0))
    rate = math.inf
    if transient:
        dg = clearance_sensitivity(*channel, density=density, tissue_thickness=thickness)
        rate = float(transient_rate(g, dg))
    if k_close > 0.0:
        closures = _staircase(k_close, float(tt[-1]), closure_step)
        # snap switching times that fall within 1 s of an output time onto it (no tiny steps)
        near = np.abs(closures[:, None] - tt[None, :]) < 1.0
        closures = np.where(near.any(axis=1), tt[np.argmax(near, axis=1)], closures)
        int_s = _staircase_integral(tt, closures, k_close, rate)
        s_now = np.exp(-k_close * closures[np.searchsorted(closures, tt, side="right") - 1])
        s_now = np.where(tt < closures[0], 1.0, s_now)
        exact = _closing_uptake(float(tt[-1]), k_close, rate)
        stair_err = float(
            (p_shut * tt[-1] + (p_open - p_shut) * int_s[-1])
            / (p_shut * tt[-1] + (p_open - p_shut) * exact)
            - 1.0
        )
        if closure_model == "conductance":

            def g_at(s_open: FloatArray | float) -> FloatArray:
                return pore_conductance(
                    *channel, open_fraction=s_open, density=density, tissue_thickness=thickness
                )

            def q_closing(times: FloatArray, cl: FloatArray) -> FloatArray:
                starts = np.concatenate([[0.0], cl])
                g_j = g_at(np.exp(-k_close * starts)) - g_at(0.0)
                f0 = uptake_shape(starts, rate)
                ends_all = np.concatenate([cl, [np.inf]])
                out = np.empty_like(times)
                for i, t in enumerate(times):
                    ends = np.minimum(ends_all, t)
                    gain = np.where(ends > starts, uptake_shape(ends, rate) - f0, 0.0)
                    out[i] = float(np.sum(g_j * gain))
                return p.kp * times + n * out

            q_stair = q_closing(tt, closures)
            fine = _staircase(k_close, float(tt[-1]), closure_step / 10.0)
            stair_err = float(q_stair[-1] / q_closing(tt[-1:], fine)[0] - 1.0)
            g_now = g_at(s_now) - g_at(0.0)
            flux_now = p.kp + n * g_now * uptake_flux_factor(tt, rate)
    else:
        closures = np.zeros(0)
        int_s = uptake_shape(tt, rate)
        s_now = np.ones_like(tt)
        stair_err = 0.0
    q_h = p_shut * tt + (p_open - p_shut) * int_s
    flux_h = p_shut + (p_open - p_shut) * s_now * uptake_flux_factor(tt, rate)
    if k_close > 0.0 and closure_model == "conductance":
        q_h, flux_h = q_stair, flux_now
    ucell = _cell(n_per_cm2, depth_um, radius_um, p, layers_um, k_close or math.inf, nr, nz)
    sol = solve(ucell, tt, closures if k_close > 0.0 else None, dt=dt_s, store_fields=False)
    intact = _intact(p, layers_um, tuple(float(t) for t in tt), nz, dt_s)
    return Comparison(
        n_per_cm2=n_per_cm2,
        depth_um=depth_um,
        radius_um=radius_um,
        molecule=name,
        k_close_per_h=k_close_per_h,
        hours=tt / _S_PER_H,
        homogenised=np.asarray(q_h),
        resolved=np.asarray(sol.absorbed),
        intact_resolved=intact,
        flux_homogenised=np.asarray(flux_h),
        flux_resolved=np.asarray(sol.flux_top),
        closure_staircase_error=stair_err,
        mass_balance_residual=sol.mass_balance_residual,
    )


@lru_cache(maxsize=32)
def _intact_cached(
    p: Properties,
    layers_um: tuple[float, float, float],
    times: tuple[float, ...],
    nz: int,
    dt_s: float,
) -> tuple[float, ...]:
    cell = _cell(1.0, 0.0, 0.0, p, layers_um, math.inf, 1, nz)
    return tuple(solve(cell, times, dt=dt_s, store_fields=False).absorbed.tolist())


def _intact(
    p: Properties,
    layers_um: tuple[float, float, float],
    times: tuple[float, ...],
    nz: int,
    dt_s: float,
) -> FloatArray:
    return np.asarray(_intact_cached(p, layers_um, times, nz, dt_s))


def sweep(
    densities: ArrayLike = (50.0, 100.0, 200.0, 500.0, 1000.0),
    depths: ArrayLike = (50.0, 100.0, 200.0, 400.0, 600.0),
    radii: ArrayLike = (25.0, 50.0),
    molecules: Sequence[str] = ("small", "large"),
    hours: Sequence[float] = DEFAULT_HOURS,
    *,
    k_close_per_h: float | None = None,
    **grid: int | float | bool,
) -> list[Comparison]:
    """``compare`` over the tensor product densities [1/cm²] × depths [µm] × radii [µm] ×
    molecules, at ``hours`` [h]; ``grid`` is passed on (nr, nz, dt_s, cell, transient)."""
    out: list[Comparison] = []
    for mol in molecules:
        for a in np.atleast_1d(np.asarray(radii, dtype=float)):
            for n in np.atleast_1d(np.asarray(densities, dtype=float)):
                for d in np.atleast_1d(np.asarray(depths, dtype=float)):
                    out.append(
                        compare(
                            float(n),
                            float(d),
                            float(a),
                            mol,
                            hours,
                            k_close_per_h=k_close_per_h,
                            **grid,  # type: ignore[arg-type]
                        )
                    )
    return out


def table(
    comparisons: Sequence[Comparison], hour: float, *, molecule: str, radius_um: float
) -> str:
    """Markdown table of the relative difference (homogenised − resolved)/resolved [%] at ``hour``
    for one molecule and radius: rows puncture density, columns depth."""
    sel = [
        c for c in comparisons if c.molecule == molecule and math.isclose(c.radius_um, radius_um)
    ]
    ns = sorted({c.n_per_cm2 for c in sel})
    ds = sorted({c.depth_um for c in sel})
    lines = [
        "| n [1/cm²] \\ d [µm] | " + " | ".join(f"{d:g}" for d in ds) + " |",
        "|---" * (len(ds) + 1) + "|",
    ]
    for n in ns:
        cells = []
        for d in ds:
            hit = [c for c in sel if c.n_per_cm2 == n and c.depth_um == d]
            if not hit:
                cells.append("–")
                continue
            c = hit[0]
            k = int(np.argmin(np.abs(c.hours - hour)))
            cells.append(f"{100.0 * c.rel_diff[k]:+.1f}")
        lines.append(f"| {n:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
