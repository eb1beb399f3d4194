"""Transport: a topical product × open microchannels (resealing) → amount absorbed per layer.

First-level, homogenised model (models.md B, C.4, Stage 3; docs/transport.md), SI units (m, s,
kg), batch-first.

Intact skin (``intact_kp``)
    Potts–Guy (lipid pathway), log10(kp / (cm/s)) = −6.3 + 0.71 log10 Kow − 0.0061 MW
    (``potts_guy_kp``, returned in m/s; niacinamide 4.9e-8 cm/s = 1.8e-4 cm/h), for neutral
    molecules up to ``transport.intact_mw_limit`` (500 Da) with a log Kow. Outside that domain
    (heavier, ions or zwitterions at pH 5.5, no log Kow) the polar (aqueous pore) pathway of the SC
    instead (``polar_kp``): kp = c·MW^(−1/2)·H(r_s/r_pore), ten Berge's coefficient
    c = ``transport.polar_pathway_coefficient`` (1.519e-4 cm/h) times the Renkin hindrance H of a
    solute of radius r_s (the molecule's, or its Stokes–Einstein radius) in pores of radius
    ``transport.polar_pore_radius`` (2 nm). Small and finite for peptides, proteins, ionised actives
    and calcein; 0 for molecules as large as the pores (hyaluronan), which then do not cross intact
    skin. ``dermwin_kp`` (DERMWIN/RAGS-E) is kept for comparison; the model does not use it.

One channel (a "leaky pore", ``pore_conductance``)
    A channel of surface radius a and depth d, filled with the vehicle, crosses the stratum corneum
    (thickness L_sc) and then runs through viable tissue. Solute diffuses down the channel (axial
    conductance K_ax = π a² D_pore, D_pore = D_aq·H(λ), Renkin H, λ = r_solute/a), leaves through
    its wall into the tissue (conductance per length h_w) and through its tip (G_tip = 4 a D_t K_t,
    the disk access of models.md D.4, plus π a² K_t √(D_t k_cl), the planar flux into clearing
    tissue, when the wall exchanges). For the part below the SC this is the classical fin with a
    conducting tip, solved exactly:

        G_fin = (h_w T + G_tip) / (1 + G_tip T / K_ax),   T = tanh(m ℓ)/m,  m = √(h_w/K_ax),
        1/g   = min(d, L_sc)/K_ax + (L_sc − d)₊/(π a² kp L_sc) + 1/G_fin,   ℓ = (d − L_sc)₊.

    h_w = 2π D_t K_t · x K1(x)/K0(x), x = a √(k_cl/D_t): steady radial diffusion from a long
    cylinder into tissue with first-order clearance k_cl (exact; models.md D.7 in cylindrical form;
    ``wall_conductance``). With ``wall_exchange=False`` (h_w = 0, G_tip = 4 a D_t K_t) and
    d ≥ L_sc this is exactly the series form of models.md C.4, 1/g = d/(π a² D_pore) +
    1/(4 a D_t K_t). That form makes g *decrease* with depth (the whole channel is in series),
    contrary to Davidson 2008 ("the depth of penetration … is the most important factor"); with
    the wall exchange a deeper channel delivers more whenever the channel conducts better than the
    tissue it replaces (about D_pore > 3 D_t K_t at the default clearance; true for every shipped
    molecule), and the gain saturates beyond ~1/m (~0.1–0.2 mm). The residual-SC term makes g
    continuous for channels that stop inside the SC. g is never taken below π a² kp, the
    conductance of the intact patch the channel replaces (the SC around and beneath a channel is
    still a path), so channels never make skin less permeable and d = 0 gives back intact skin
    exactly; this floor matters only for very lipophilic solutes whose Potts–Guy kp exceeds what
    the aqueous channel and tissue carry (retinol, shallow channels). ``open_fraction`` S closes a
    channel by its conductivity (D_pore → S D_pore + (1 − S)·host), as in the resolved unit cell.

One channel in its cell (``cell_conductance``; the default of ``absorb``)
    The same channel, one of n per area, in its cylinder of radius R = 1/√(π n) of viable tissue
    of thickness H (zero flux at r = R, under the SC and at the bottom). Fourier–Bessel modes
    J0(α_m r), J1(α_m R) = 0, times closed-form slab Green's functions (decay √(α_m² + k_cl/D_t));
    ring sources on the channel wall and a disc at the tip, collocated with a finite-volume
    channel. Neighbours that share the tissue (dense pores) and 3-D spreading from channels
    shorter than the clearance length come out of it; it tends to the fin above for a lone long
    channel and to the 1-D slab for dense ones (docs/transport.md). Channels that overlap
    (n π a² ≥ 1, R ≤ a: a pen at many passes) take the slab limit itself,
    ``overlapping_channel_permeability`` / n: the surface is open to the channel depth and the
    viable tissue below it limits the uptake, however many punctures there are.

Homogenised skin: closure and the charging transient (``absorb``)
    P(t) = kp + n·(g(S(t)) − g(0))·φ(t),  S(t) = exp(−k_close (t + delay)) (``resealing``),
    k_close = ``transport.k_close_open`` (≈0.7 /h; humans recover barrier within 2 h, Gupta 2011)
    or ``k_close_occluded`` (≈0.03 /h; naltrexone delivery held ≥ 48 h under occlusion). Channels
    close by conductance, g(S) (in the cell: the isolated g(S) times the cell/isolated ratio,
    interpolated between ``CELL_OPEN_NODES`` open fractions). φ = ``uptake_flux_factor``: the
    tissue starts empty and first takes up more than the steady flux, with the Danckwerts shape
    of one rate k_e = g/(2 ∂g/∂k_cl) (``transient_rate``, ``clearance_sensitivity``) that gives
    the exact late-time excess ∂g/∂k_cl. ``quasi_steady=True`` gives the earlier model,
    P(t) = (1 − ε S)·kp + n g S with ε = n π a² (``permeability``), for comparison.

Finite dose
    A well-mixed vehicle film (thickness h = volume per area, concentration c0; dose c0·h) over a
    well-mixed viable-tissue compartment (capacity K_t·H_t, H_t = viable epidermis + dermis) with
    first-order clearance k_cl to the blood:

        dv/dt = −P(t) (v/h − m_t/(K_t H_t)),   dm_t/dt = −dv/dt − k_cl m_t,   dc/dt = k_cl m_t.

    No evaporation of the vehicle is modelled. ``absorb`` takes the step averages of the channel
    term over ``steps`` quadratically graded steps of the resealing window (then one step for the
    rest; ``channel_profile_means``, Gauss–Legendre in √t, which removes φ's 1/√t) and advances the
    compartments by the exact exponential of each step's averaged generator
    (``finite_dose_steps``: exact for constant P; 64 steps are within 1e-5 of the dose of 1024).
    ``finite_dose`` is the fourth-order Magnus integrator for P(t) = kp (1 − ε S) + n g S (the
    exact integral of P and the exact second Magnus term, a commutator of the exchange and
    clearance generators, in closed form; < 1e-6 of the dose at 64 steps, tested against Radau);
    ``absorb`` uses it for intact skin (constant P: exact) and with ``quasi_steady=True``. Every
    step matrix is non-negative with unit column sums, so vehicle + tissue + cleared = dose to
    round-off.

Per layer
    Solute entering through intact SC goes to the epidermis; solute leaving a channel is split among
    epidermis / papillary / reticular dermis by the exact outflow profile of the leaky channel
    (``channel_outflow_split``: wall outflow inside each layer plus the tip outflow in the layer
    holding the tip).

Top-level call (used by the simulation)::

    absorb(solute: Solute, c0 [kg/m³], film_thickness [m], contact_time [s],
           n [1/m²], a [m], depth [m], layers (B, 4) [m] | SkinLayers, occluded [bool],
           params: TransportParameters, *, delay=0.0 [s], wall_exchange=True, steps=64,
           quasi_steady=False, cell=True)
        -> Absorption(total, intact, enhancement, by_layer (B, 3), retained, cleared, vehicle,
                      dose, kp, pore_conductance, area_fraction)        amounts in kg/m²

    ``total`` is the net amount that crossed from the vehicle into the skin during the contact time
    (retained + cleared); ``intact`` the same through intact skin (n = 0); ``enhancement`` =
    (total + f·dose)/(intact + f·dose) with f = ``transport.enhancement_floor_fraction`` (1e-6), so
    an impermeable control gives a large but finite ratio and 0/0 gives 1.

``absorb_session(molecule, concentration_kg_m3, film_thickness_m, contact_time_s, occluded,
channels, skin, ps)`` is the one-case convenience wrapper. Molecules come from
:mod:`microneedling.parameters.molecules` (this module reads no file); ``Solute.from_molecules``
stacks them into arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import erf, i0e, i1e, j0, j1, jn_zeros, k0e, k1e

from microneedling.parameters.molecules import Molecule
from microneedling.physics.needles import Channels, SkinLayers, power
from microneedling.physics.percase import distinct_rows
from microneedling.units import conversion_factor

if TYPE_CHECKING:  # pragma: no cover
    from microneedling.parameters.parameter_set import ParameterSet

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

K_BOLTZMANN = 1.380649e-23
"""Boltzmann constant [J/K] (exact, SI definition)."""
T_REFERENCE = 298.15
"""Temperature [K] of the aqueous diffusivities in ``molecules.toml`` (25 °C)."""
TAU_MAX = 40.0
"""Closure progress k·t after which the channels count as shut (S = e⁻⁴⁰ ≈ 4e-18)."""
_CM_S_TO_M_S = conversion_factor("cm/s", "m/s")
_CM_H_TO_M_S = conversion_factor("cm/h", "m/s")


def _f(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=float)


# ----------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class TransportParameters:
    """``transport.*`` in SI (rates in 1/s, viscosity in Pa·s, MW limit in g/mol)."""

    potts_guy_intercept: float
    potts_guy_logkow_slope: float
    potts_guy_mw_slope: float
    dermwin_intercept: float
    dermwin_logkow_slope: float
    dermwin_mw_slope: float
    intact_mw_limit: float
    k_close_open: float
    k_close_occluded: float
    clearance_rate: float
    tissue_partition: float
    dve_intercept: float
    dve_mw_exponent: float
    water_viscosity: float
    enhancement_floor_fraction: float
    polar_pathway_coefficient: float = 0.0
    polar_pore_radius: float = math.inf
    # issue 10: intact pathways, closure by size, vehicle film, SC reservoir, follicles
    ion_pair_drop: float = math.inf
    skin_surface_ph: float = 5.5
    closure_size_exponent: float = 0.0
    closure_reference_radius: float = 50e-6
    follicular_kp_ref: float = 0.0
    follicular_reference_diffusivity: float = 7.0e-10
    channel_fill_fraction: float = 1.0
    water_evaporation: float = 0.0
    volatile_fraction: float = 0.0
    dry_deposit_availability: float = 1.0
    superficial_sc: float = 0.0
    superficial_sc_time: float = 360.0
    sc_partition_lipid_coefficient: float = 0.0506
    sc_partition_lipid_exponent: float = 0.69
    sc_partition_protein_coefficient: float = 2.28
    sc_partition_protein_exponent: float = 0.31
    sc_partition_water: float = 0.55

    @classmethod
    def from_parameters(cls, ps: ParameterSet) -> TransportParameters:
        """Read ``transport.*`` from a ParameterSet, converting to SI."""
        v = ps.value
        return cls(
            potts_guy_intercept=v("transport.potts_guy_intercept", "1"),
            potts_guy_logkow_slope=v("transport.potts_guy_logkow_slope", "1"),
            potts_guy_mw_slope=v("transport.potts_guy_mw_slope", "1"),
            dermwin_intercept=v("transport.dermwin_intercept", "1"),
            dermwin_logkow_slope=v("transport.dermwin_logkow_slope", "1"),
            dermwin_mw_slope=v("transport.dermwin_mw_slope", "1"),
            intact_mw_limit=v("transport.intact_mw_limit", "g/mol"),
            k_close_open=v("transport.k_close_open", "1/s"),
            k_close_occluded=v("transport.k_close_occluded", "1/s"),
            clearance_rate=v("transport.clearance_rate", "1/s"),
            tissue_partition=v("transport.tissue_partition", "1"),
            dve_intercept=v("transport.dve_intercept", "1"),
            dve_mw_exponent=v("transport.dve_mw_exponent", "1"),
            water_viscosity=v("transport.water_viscosity", "kg/m/s"),
            enhancement_floor_fraction=v("transport.enhancement_floor_fraction", "1"),
            polar_pathway_coefficient=v("transport.polar_pathway_coefficient", "m/s"),
            polar_pore_radius=v("transport.polar_pore_radius", "m"),
            ion_pair_drop=v("transport.ion_pair_drop", "1"),
            skin_surface_ph=v("transport.skin_surface_ph", "1"),
            closure_size_exponent=v("transport.closure_size_exponent", "1"),
            closure_reference_radius=v("transport.closure_reference_radius", "m"),
            follicular_kp_ref=v("transport.follicular_kp_ref", "m/s"),
            follicular_reference_diffusivity=v(
                "transport.follicular_reference_diffusivity", "m^2/s"
            ),
            channel_fill_fraction=v("transport.channel_fill_fraction", "1"),
            water_evaporation=v("transport.water_evaporation", "kg/m^2/s"),
            volatile_fraction=v("transport.volatile_fraction", "1"),
            dry_deposit_availability=v("transport.dry_deposit_availability", "1"),
            superficial_sc=v("transport.superficial_sc", "m"),
            superficial_sc_time=v("transport.superficial_sc_time", "s"),
            sc_partition_lipid_coefficient=v("transport.sc_partition_lipid_coefficient", "1"),
            sc_partition_lipid_exponent=v("transport.sc_partition_lipid_exponent", "1"),
            sc_partition_protein_coefficient=v("transport.sc_partition_protein_coefficient", "1"),
            sc_partition_protein_exponent=v("transport.sc_partition_protein_exponent", "1"),
            sc_partition_water=v("transport.sc_partition_water", "1"),
        )


NEUTRAL, ACID, BASE, ZWITTERION, ION = 0, 1, 2, 3, 4
"""Ionisation codes of ``Solute.ionisation``: neutral, weak acid, weak base (both with a pKa),
zwitterion (net charge 0 at skin pH), permanent ion (charged, no pKa given)."""
_IONISATION_CODES = {"neutral": NEUTRAL, "acid": ACID, "base": BASE, "zwitterion": ZWITTERION}


def ionisation_code(molecule: Molecule) -> int:
    """Ionisation code of a molecule: its ``ionisation`` field, or from its charge when absent."""
    if molecule.ionisation:
        return _IONISATION_CODES[molecule.ionisation]
    if molecule.zwitterion:
        return ZWITTERION
    return ION if abs(molecule.charge) >= 0.5 else NEUTRAL


@dataclass(frozen=True)
class Solute:
    """Molecular properties of each case as arrays (B,): SI (MW in g/mol), radius NaN → Stokes–Einstein.

    ``ionisation`` (codes ``NEUTRAL`` … ``ION``), ``pka``, ``sc_partition`` (NaN: from log Kow) and
    ``vehicle_ph`` (NaN: skin surface pH) are optional (None: as an ``ionic`` flag implies).
    """

    mw_g_per_mol: FloatArray
    log_kow: FloatArray
    d_aq: FloatArray
    radius_m: FloatArray
    ionic: BoolArray
    ionisation: NDArray[np.int64] | None = None
    pka: FloatArray | None = None
    sc_partition: FloatArray | None = None
    vehicle_ph: FloatArray | None = None

    @classmethod
    def from_molecules(cls, molecules: Sequence[Molecule]) -> Solute:
        """Stack molecules (one per case) into arrays."""
        return cls(
            mw_g_per_mol=np.array([m.mw_g_per_mol for m in molecules], dtype=float),
            log_kow=np.array([m.log_kow for m in molecules], dtype=float),
            d_aq=np.array([m.d_aq for m in molecules], dtype=float),
            radius_m=np.array([m.radius_m for m in molecules], dtype=float),
            ionic=np.array([m.ionic for m in molecules], dtype=bool),
            ionisation=np.array([ionisation_code(m) for m in molecules], dtype=np.int64),
            pka=np.array([m.pka for m in molecules], dtype=float),
            sc_partition=np.array([m.sc_partition for m in molecules], dtype=float),
            vehicle_ph=np.array([m.vehicle_ph for m in molecules], dtype=float),
        )

    def broadcast(self, bsz: int) -> Solute:
        """Every field as a (bsz,) array (optional fields filled from ``ionic``)."""

        def b(x: ArrayLike, dtype: type = float) -> NDArray[Any]:
            return np.broadcast_to(np.asarray(x, dtype=dtype), (bsz,)).copy()

        ionic = b(self.ionic, bool)
        code = (
            np.where(ionic, ION, NEUTRAL).astype(np.int64)
            if self.ionisation is None
            else b(self.ionisation, np.int64)
        )
        nan = np.full(bsz, np.nan)
        return Solute(
            b(self.mw_g_per_mol),
            b(self.log_kow),
            b(self.d_aq),
            b(self.radius_m),
            ionic,
            code,
            nan if self.pka is None else b(self.pka),
            nan if self.sc_partition is None else b(self.sc_partition),
            nan if self.vehicle_ph is None else b(self.vehicle_ph),
        )


# ------------------------------------------------------------------------ intact skin, D, H
def potts_guy_kp(
    log_kow: ArrayLike, mw_g_per_mol: ArrayLike, params: TransportParameters
) -> FloatArray:
    """Potts & Guy 1992 permeability coefficient of intact skin [m/s].

    log10(kp / (cm/s)) = −6.3 + 0.71 log10 Kow − 0.0061 MW (MW in g/mol); converted from cm/s
    (niacinamide, MW 122.1, log Kow −0.37: 4.9e-8 cm/s = 1.8e-4 cm/h = 4.9e-10 m/s).
    """
    p = params
    log_kp = (
        p.potts_guy_intercept
        + p.potts_guy_logkow_slope * _f(log_kow)
        - (p.potts_guy_mw_slope * _f(mw_g_per_mol))
    )
    return np.asarray(10.0**log_kp * _CM_S_TO_M_S)


def dermwin_kp(
    log_kow: ArrayLike, mw_g_per_mol: ArrayLike, params: TransportParameters
) -> FloatArray:
    """DERMWIN/RAGS-E permeability [m/s]: log10(kp / (cm/h)) = −2.80 + 0.66 log Kow − 0.0056 MW."""
    p = params
    log_kp = (
        p.dermwin_intercept
        + p.dermwin_logkow_slope * _f(log_kow)
        - (p.dermwin_mw_slope * _f(mw_g_per_mol))
    )
    return np.asarray(10.0**log_kp * _CM_H_TO_M_S)


def polar_kp(
    mw_g_per_mol: ArrayLike, radius_m: ArrayLike, params: TransportParameters
) -> FloatArray:
    """Intact-skin permeability [m/s] of the polar (aqueous pore) pathway of the SC.

    kp_pol = c·(MW / (g/mol))^(−1/2)·H(r_s/r_pore): the polar pathway of ten Berge's skin
    permeation model (IH SkinPerm; c = ``transport.polar_pathway_coefficient``, 1.519e-4 cm/h),
    times the Renkin hindrance ``renkin_hindrance`` of a solute of radius r_s in the hydrated
    pores of the SC (radius r_pore = ``transport.polar_pore_radius``, ~2 nm, Peck et al. 1994), so
    that solutes as large as the pores (hyaluronan) get 0. Used only outside the Potts–Guy domain
    (``intact_kp``).
    """
    mw = np.maximum(_f(mw_g_per_mol), 1e-30)
    lam = _f(radius_m) / params.polar_pore_radius
    return np.asarray(params.polar_pathway_coefficient / np.sqrt(mw) * renkin_hindrance(lam))


@dataclass(frozen=True)
class IntactPathways:
    """Intact-skin permeability by pathway [m/s], arrays (B,), and what sets them.

    ``lipid``: the lipid (Potts–Guy) route of the neutral fraction plus the ion pairs;
    ``polar``: the hindered aqueous-pore route; ``total`` = lipid + polar (parallel paths);
    ``neutral_fraction`` at the vehicle pH; ``log_d``: log10 of the distribution coefficient that
    sets the stratum-corneum partition; ``ph``: the vehicle pH used.
    """

    lipid: FloatArray
    polar: FloatArray
    neutral_fraction: FloatArray
    log_d: FloatArray
    ph: FloatArray

    @property
    def total(self) -> FloatArray:
        return np.asarray(self.lipid + self.polar)


def neutral_fraction(code: ArrayLike, pka: ArrayLike, ph: ArrayLike) -> FloatArray:
    """Un-ionised fraction at ``ph`` (Henderson–Hasselbalch): acid 1/(1 + 10^(pH − pKa)), base
    1/(1 + 10^(pKa − pH)); 1 for neutral molecules and zwitterions (no net charge), 0 for
    permanent ions."""
    c = np.asarray(code)
    pk, p = np.broadcast_arrays(_f(pka), _f(ph))
    with np.errstate(over="ignore", invalid="ignore"):
        acid = 1.0 / (1.0 + 10.0 ** np.clip(p - pk, -300, 300))
        base = 1.0 / (1.0 + 10.0 ** np.clip(pk - p, -300, 300))
    out = np.select([c == ACID, c == BASE, c == ION], [acid, base, 0.0], 1.0)
    return np.asarray(out, dtype=float)


def intact_pathways(
    solute: Solute, params: TransportParameters, ph: ArrayLike | None = None
) -> IntactPathways:
    """Intact-skin permeability by pathway [m/s] at the vehicle pH (parallel routes).

    Lipid route (pH partition and ion pairs): kp_lipid = f_n·PG(log P) + (1 − f_n)·PG(log P − Δ),
    PG = ``potts_guy_kp``, f_n the neutral fraction at the vehicle pH (``neutral_fraction``),
    Δ = ``transport.ion_pair_drop`` (an ion crosses the lipids as an ion pair, its octanol
    partition Δ decades below the neutral form's); zwitterions take PG of their log Kow (their
    distribution coefficient). Only inside the Potts–Guy domain (MW ≤ ``intact_mw_limit`` with a
    finite log Kow); 0 outside. Polar route: ``polar_kp`` (hindered aqueous pores; 0 for solutes
    as large as the pores). ``ph``: per case (NaN or None → the molecule's ``vehicle_ph`` → the
    skin surface pH ``transport.skin_surface_ph``).
    """
    sol = solute.broadcast(np.atleast_1d(solute.mw_g_per_mol).shape[0])
    bsz = sol.mw_g_per_mol.shape[0]
    p = np.full(bsz, np.nan) if ph is None else np.broadcast_to(_f(ph), (bsz,)).astype(float)
    assert sol.vehicle_ph is not None and sol.ionisation is not None and sol.pka is not None
    p = np.where(np.isfinite(p), p, sol.vehicle_ph)
    p = np.where(np.isfinite(p), p, params.skin_surface_ph)
    fn = neutral_fraction(sol.ionisation, sol.pka, p)
    inside = (sol.mw_g_per_mol <= params.intact_mw_limit) & np.isfinite(sol.log_kow)
    lk = np.where(inside, sol.log_kow, 0.0)
    neutral = potts_guy_kp(lk, sol.mw_g_per_mol, params)
    drop = params.ion_pair_drop
    paired = potts_guy_kp(lk - drop, sol.mw_g_per_mol, params) if np.isfinite(drop) else 0.0
    lipid = np.where(inside, fn * neutral + (1.0 - fn) * paired, 0.0)
    with np.errstate(divide="ignore"):
        log_d = np.where(
            np.isfinite(sol.log_kow),
            np.log10(
                fn * 10.0**sol.log_kow
                + (1.0 - fn) * (10.0 ** (sol.log_kow - drop) if np.isfinite(drop) else 0.0)
            ),
            np.nan,
        )
    radius = np.where(
        np.isnan(sol.radius_m),
        stokes_einstein_radius(sol.d_aq, params.water_viscosity),
        sol.radius_m,
    )
    polar = polar_kp(sol.mw_g_per_mol, radius, params)
    return IntactPathways(np.asarray(lipid), polar, fn, np.asarray(log_d), p)


def intact_kp(
    solute: Solute, params: TransportParameters, ph: ArrayLike | None = None
) -> FloatArray:
    """Intact-skin permeability [m/s] used by the model: the lipid and polar routes of
    ``intact_pathways`` in parallel (the follicular shunt of ``follicular_kp`` acts only while the
    film is liquid and is added by ``absorb``)."""
    return intact_pathways(solute, params, ph).total


def sc_partition(log_d: ArrayLike, params: TransportParameters) -> FloatArray:
    """Stratum corneum / water partition K_sc = a_lip·K^b_lip + a_pro·K^b_pro + φ_w, K = 10^log D
    (lipid, protein and water domains of the SC: Wang, Chen, Lian & Han 2010, Eq. 10, as
    implemented in httk); NaN log D → K = 1."""
    k = 10.0 ** np.where(np.isfinite(_f(log_d)), _f(log_d), 0.0)
    p = params
    return np.asarray(
        p.sc_partition_lipid_coefficient * k**p.sc_partition_lipid_exponent
        + p.sc_partition_protein_coefficient * k**p.sc_partition_protein_exponent
        + p.sc_partition_water
    )


def follicular_kp(
    d_aq: ArrayLike, radius: ArrayLike, site_factor: ArrayLike, params: TransportParameters
) -> FloatArray:
    """Follicular shunt permeability [m/s] while the film is liquid.

    kp_f = kp_f,ref·m_site·(D_aq/D_ref)·H(r/r_pore)/H(r_ref/r_pore): the reference shunt of
    caffeine (``transport.follicular_kp_ref``, D_ref; r_ref its Stokes–Einstein radius) scaled by the site's follicle factor,
    the solute's aqueous diffusivity and its hindrance in the polar pores (so that solutes as
    large as the pores, e.g. hyaluronan, get 0, as on the polar route).
    """
    p = params
    r_ref = stokes_einstein_radius(p.follicular_reference_diffusivity, p.water_viscosity)
    h_ref = float(renkin_hindrance(r_ref / p.polar_pore_radius))
    h = renkin_hindrance(_f(radius) / p.polar_pore_radius)
    return np.asarray(
        p.follicular_kp_ref
        * np.maximum(_f(site_factor), 0.0)
        * _f(d_aq)
        / p.follicular_reference_diffusivity
        * h
        / h_ref
    )


@dataclass(frozen=True)
class ClosureParameters:
    """The four numbers of ``closure_rate`` (SI), for callers that need no other transport
    parameter (a course without a topical still reports its channels' closure time)."""

    k_close_open: float
    k_close_occluded: float
    closure_reference_radius: float
    closure_size_exponent: float

    @classmethod
    def from_parameters(cls, ps: ParameterSet) -> ClosureParameters:
        v = ps.value
        return cls(
            k_close_open=v("transport.k_close_open", "1/s"),
            k_close_occluded=v("transport.k_close_occluded", "1/s"),
            closure_reference_radius=v("transport.closure_reference_radius", "m"),
            closure_size_exponent=v("transport.closure_size_exponent", "1"),
        )


def closure_rate(
    a: ArrayLike, occluded: ArrayLike, params: TransportParameters | ClosureParameters
) -> FloatArray:
    """Channel resealing rate [1/s] by channel size: k = k_ref·(a_ref/a)^β.

    k_ref is ``k_close_open`` or ``k_close_occluded`` (occluded), a_ref =
    ``transport.closure_reference_radius``, β = ``transport.closure_size_exponent`` (wider
    channels close more slowly; Kalluri 2011: 12 h for 370 µm vs 18 h for 770 µm needles). a ≤ 0
    (no channel) takes the reference rate.
    """
    occ = np.asarray(occluded, dtype=bool)
    k_ref = np.where(occ, params.k_close_occluded, params.k_close_open)
    a_ = _f(a)
    ratio = np.divide(
        params.closure_reference_radius, a_, out=np.ones_like(a_, dtype=float), where=a_ > 0.0
    )
    return np.asarray(k_ref * power(ratio, params.closure_size_exponent))


def closure_time(
    a: ArrayLike,
    occluded: ArrayLike,
    params: TransportParameters | ClosureParameters,
    closed_fraction: float = 0.95,
) -> FloatArray:
    """Time [s] for the channels to close to ``closed_fraction`` of their conductance:
    −ln(1 − f)/k (``closure_rate``)."""
    if not 0.0 < closed_fraction < 1.0:
        raise ValueError(f"closed_fraction {closed_fraction!r}; allowed: 0 < f < 1")
    return np.asarray(-math.log(1.0 - closed_fraction) / closure_rate(a, occluded, params))


def renkin_hindrance(lam: ArrayLike) -> FloatArray:
    """Renkin centre-line hindrance H(λ) = (1 − λ)²(1 − 2.104λ + 2.09λ³ − 0.95λ⁵), 0 for λ ≥ 1.

    λ = solute radius / pore radius; D_pore = D_aq·H (Renkin 1954; H(0.1) = 0.641, H(0.2) = 0.381).
    """
    x = np.clip(_f(lam), 0.0, 1.0)
    h = (1.0 - x) ** 2 * (1.0 - 2.104 * x + 2.09 * x**3 - 0.95 * x**5)
    return np.asarray(np.where(x < 1.0, np.maximum(h, 0.0), 0.0))


def stokes_einstein_radius(d_aq: ArrayLike, viscosity: float) -> FloatArray:
    """Hydrodynamic radius r = k_B T / (6 π η D) [m] at T = 298.15 K (η in Pa·s, D in m²/s)."""
    return np.asarray(K_BOLTZMANN * T_REFERENCE / (6.0 * np.pi * viscosity * _f(d_aq)))


def tissue_diffusivity(mw_g_per_mol: ArrayLike, params: TransportParameters) -> FloatArray:
    """Diffusivity in viable tissue [m²/s], Chen 2015 Eq. 15 for an unbound hydrophilic solute:
    log10 D = −8.5 − 0.655 log10 MW (e.g. niacinamide 1.4e-10, insulin 1.1e-11 m²/s)."""
    mw = np.maximum(_f(mw_g_per_mol), 1e-30)
    return np.asarray(10.0 ** (params.dve_intercept - params.dve_mw_exponent * np.log10(mw)))


# ------------------------------------------------------------------------ one leaky channel
def wall_conductance(
    a: ArrayLike, d_tissue: ArrayLike, k_tissue: ArrayLike, clearance: ArrayLike
) -> FloatArray:
    """Exchange conductance per channel length h_w [m²/s] of a channel wall of radius a [m].

    Steady diffusion from a long cylinder (held at the vehicle concentration) into tissue with
    diffusivity D_t, partition K_t and first-order clearance k_cl: h_w = 2π D_t K_t · x K1(x)/K0(x),
    x = a √(k_cl/D_t). It vanishes as k_cl → 0 (no steady radial state without a sink).
    """
    a_, dt, kt, kc = np.broadcast_arrays(_f(a), _f(d_tissue), _f(k_tissue), _f(clearance))
    ok = (a_ > 0.0) & (dt > 0.0) & (kc > 0.0)
    x = np.where(ok, a_ * np.sqrt(np.where(ok, kc, 1.0) / np.where(ok, dt, 1.0)), 1.0)
    ratio = x * k1e(x) / k0e(x)
    return np.asarray(np.where(ok, 2.0 * np.pi * dt * kt * ratio, 0.0))


def _tanhc(y: FloatArray) -> FloatArray:
    """tanh(y)/y, 1 at y = 0."""
    safe = np.where(y > 1e-6, y, 1.0)
    return np.asarray(np.where(y > 1e-6, np.tanh(safe) / safe, 1.0 - y * y / 3.0))


@dataclass(frozen=True)
class _Fin:
    k_ax: FloatArray
    h_w: FloatArray
    g_tip: FloatArray
    m: FloatArray
    length: FloatArray


def _fin(
    a: FloatArray,
    depth: FloatArray,
    sc: FloatArray,
    d_pore: FloatArray,
    d_tissue: FloatArray,
    k_tissue: FloatArray,
    clearance: FloatArray,
    wall_exchange: bool,
) -> _Fin:
    k_ax = np.pi * a**2 * d_pore
    h_w = wall_conductance(a, d_tissue, k_tissue, clearance) if wall_exchange else np.zeros_like(a)
    m = np.sqrt(np.divide(h_w, k_ax, out=np.zeros_like(a), where=k_ax > 0.0))
    g_tip = 4.0 * a * d_tissue * k_tissue
    if wall_exchange:
        # disc tip in clearing tissue: 4 a D K (small disc, exact) + π a² K √(D k) (large disc,
        # the planar 1-D flux), added as for a sphere, where 4π r D K (1 + r/λ) is exact
        g_tip = g_tip + np.pi * a**2 * k_tissue * np.sqrt(d_tissue * np.maximum(clearance, 0.0))
    return _Fin(k_ax, h_w, g_tip, m, np.maximum(depth - sc, 0.0))


def pore_conductance(
    a: ArrayLike,
    depth: ArrayLike,
    sc_thickness: ArrayLike,
    d_pore: ArrayLike,
    d_tissue: ArrayLike,
    k_tissue: ArrayLike,
    kp: ArrayLike,
    clearance: ArrayLike,
    *,
    wall_exchange: bool = True,
    open_fraction: ArrayLike = 1.0,
    density: ArrayLike | None = None,
    tissue_thickness: ArrayLike | None = None,
) -> FloatArray:
    """Conductance of one open channel g [m³/s] (flux per channel per vehicle concentration).

    With ``density`` n [1/m²] and ``tissue_thickness`` H [m] (viable tissue below the SC) given
    (and ``wall_exchange``), the channel in its finite cell: ``cell_conductance`` (neighbours
    share the tissue; 3-D spreading from a channel shorter than the clearance length). Without
    them, the isolated channel below.

    Parameters: channel radius a [m], depth d [m], SC thickness [m], diffusivity in the channel
    D_pore = D_aq·H(λ) [m²/s], tissue diffusivity D_t [m²/s] and tissue/vehicle partition K_t [1],
    intact-skin kp [m/s] (for channels ending inside the SC), clearance k_cl [1/s] (sets the wall
    exchange). See the module docstring for the formula; with ``wall_exchange=False`` and d ≥ L_sc,
    1/g = d/(π a² D_pore) + 1/(4 a D_t K_t) exactly (models.md C.4). Floored at π a² kp.

    ``open_fraction`` S (0–1) is a partly resealed channel: its contents conduct like the vehicle
    over a fraction S of the cross-section and like the host tissue over the rest, D_pore·S +
    (1 − S)·kp·L_sc inside the SC and D_pore·S + (1 − S)·D_t·K_t below it (the closure of the
    resolved unit cell, ``unitcell.py``). g(S) falls less than in proportion to S where the
    tissue, not the channel, limits the uptake.
    """
    if wall_exchange and density is not None and tissue_thickness is not None:
        return cell_conductance(
            a,
            depth,
            sc_thickness,
            d_pore,
            d_tissue,
            k_tissue,
            kp,
            clearance,
            density,
            tissue_thickness,
            open_fraction=open_fraction,
        )
    arrs = np.broadcast_arrays(
        _f(a),
        _f(depth),
        _f(sc_thickness),
        _f(d_pore),
        _f(d_tissue),
        _f(k_tissue),
        _f(kp),
        _f(clearance),
        _f(open_fraction),
    )
    a_, d, sc, dp, dt, kt, kp_, kc, s_open = (np.asarray(x, dtype=float) for x in arrs)
    s_open = np.clip(s_open, 0.0, 1.0)
    dp_sc = s_open * dp + (1.0 - s_open) * np.maximum(kp_, 0.0) * sc
    fin = _fin(a_, d, sc, s_open * dp + (1.0 - s_open) * dt * kt, dt, kt, kc, wall_exchange)
    with np.errstate(divide="ignore", invalid="ignore"):
        top = np.minimum(d, sc)
        r_top = np.where(top > 0.0, top / (np.pi * a_**2 * dp_sc), 0.0)
        resid = np.maximum(sc - d, 0.0)
        r_res = np.where(resid > 0.0, resid / (np.pi * a_**2 * kp_ * sc), 0.0)
        t_len = fin.length * _tanhc(fin.m * fin.length)
        cross = np.where(fin.g_tip > 0.0, fin.g_tip * t_len / fin.k_ax, 0.0)
        g_fin = (fin.h_w * t_len + fin.g_tip) / (1.0 + cross)
        r_fin = 1.0 / g_fin
        total = r_top + r_res + r_fin
        g = np.where(np.isfinite(total) & (total > 0.0), 1.0 / total, 0.0)
    g = np.nan_to_num(g, nan=0.0)
    # never below the intact patch it replaces: the SC around and under the channel stays a path
    return np.asarray(np.maximum(g, np.pi * a_**2 * np.maximum(kp_, 0.0)))


# ------------------------------------------------------------ one channel in its finite cell
CELL_SEGMENTS = 24
"""Wall segments of the channel below the SC in ``cell_conductance`` (numerical resolution)."""
CELL_FIN_LENGTHS = 6.0
"""Depth, in fin lengths √(K_ax/h_w) of the 2-D cell wall exchange, beyond which a channel is
left out of ``cell_conductance`` (its concentration there is ~e⁻⁶ of the vehicle's)."""
CELL_MODES = 96
"""Radial Fourier–Bessel modes of ``cell_conductance`` beyond the uniform one (numerical
resolution; the truncated tail of the wall self-potential is added in closed form)."""
CELL_OPEN_NODES = 9
"""Open fractions (uniform on [0, 1]) at which ``absorb`` evaluates the cell/isolated ratio of a
closing channel's conductance (numerical resolution; interpolated linearly in between)."""
_J1_ZEROS = np.concatenate([[0.0], jn_zeros(1, 1024)])


def _abs_exp_integral(x1: FloatArray, x2: FloatArray, kap: FloatArray) -> FloatArray:
    """∫ from x1 to x2 of e^(−κ|x|) dx (x1 ≤ x2, κ > 0)."""

    def prim(x: FloatArray) -> FloatArray:
        return np.asarray(np.sign(x) * (-np.expm1(-kap * np.abs(x))) / kap)

    return np.asarray(prim(x2) - prim(x1))


def _slab_green_segment(
    zeta: FloatArray, s1: FloatArray, s2: FloatArray, length: FloatArray, kap: FloatArray
) -> FloatArray:
    """∫ over ζ' in [s1, s2] of the Green's function of (d²/dζ² − κ²) on (0, L), zero flux at both
    ends: g(ζ, ζ') = [e^(−κ|ζ−ζ'|) + e^(−κ(ζ+ζ')) + e^(−κ(2L−ζ−ζ')) + e^(−κ(2L−|ζ−ζ'|))] /
    (2κ (1 − e^(−2κL))) (method of images; every term bounded, no overflow)."""
    w = -np.expm1(-kap * (s2 - s1)) / kap
    t1 = _abs_exp_integral(zeta - s2, zeta - s1, kap)
    t2 = np.exp(-kap * (zeta + s1)) * w
    t3 = np.exp(-kap * (2.0 * length - zeta - s2)) * w

    def prim4(x: FloatArray) -> FloatArray:  # e^(−2κL)·∫₀ˣ e^(κ|u|) du
        return np.asarray(
            np.sign(x)
            * (np.exp(kap * (np.abs(x) - 2.0 * length)) - np.exp(-2.0 * kap * length))
            / kap
        )

    t4 = prim4(zeta - s1) - prim4(zeta - s2)
    return np.asarray((t1 + t2 + t3 + t4) / (2.0 * kap * -np.expm1(-2.0 * kap * length)))


def _slab_green_point(
    zeta: FloatArray, zp: FloatArray, length: FloatArray, kap: FloatArray
) -> FloatArray:
    """g(ζ, ζ') of ``_slab_green_segment`` at a point source."""
    d = np.abs(zeta - zp)
    num = (
        np.exp(-kap * d)
        + np.exp(-kap * (zeta + zp))
        + np.exp(-kap * (2.0 * length - zeta - zp))
        + np.exp(-kap * (2.0 * length - d))
    )
    return np.asarray(num / (2.0 * kap * -np.expm1(-2.0 * kap * length)))


def cell_wall_conductance(
    a: ArrayLike, radius: ArrayLike, d_tissue: ArrayLike, k_tissue: ArrayLike, clearance: ArrayLike
) -> FloatArray:
    """Wall exchange per channel length [m²/s] of a long channel of radius a in a cell of radius R.

    Steady radial diffusion with clearance in a < r < R, zero flux at R (2-D, exact):
    h = 2π D_t K_t x [I1(X) K1(x) − K1(X) I1(x)] / [I1(X) K0(x) + K1(X) I0(x)], x = a/λ, X = R/λ,
    λ = √(D_t/k_cl). R → ∞ gives ``wall_conductance``; R → a the clearance of the annulus,
    π (R² − a²) K_t k_cl.
    """
    arr = np.broadcast_arrays(_f(a), _f(radius), _f(d_tissue), _f(k_tissue), _f(clearance))
    a_, r_, dt, kt, kc = (np.asarray(v, dtype=float) for v in arr)
    ok = (a_ > 0.0) & (r_ > a_) & (dt > 0.0) & (kc > 0.0)
    inv_lam = np.sqrt(np.where(ok, kc, 1.0) / np.where(ok, dt, 1.0))
    x = np.where(ok, a_, 1.0) * inv_lam
    xr = np.where(ok, r_, 2.0) * inv_lam
    e = np.exp(2.0 * (x - xr))
    num = i1e(xr) * k1e(x) - k1e(xr) * i1e(x) * e
    den = i1e(xr) * k0e(x) + k1e(xr) * i0e(x) * e
    return np.asarray(np.where(ok, 2.0 * np.pi * dt * kt * x * num / den, 0.0))


@dataclass(frozen=True)
class _CellTissue:
    """Tissue response of a cell to the channel's wall and tip sources (per case, (B, ...))."""

    wall: (
        FloatArray  # (B, N, N) wall potential at segment centres per wall flux per length [s/m³·m]
    )
    wall_tip: FloatArray  # (B, N) wall potential per tip flux
    tip_wall: FloatArray  # (B, N) tip (disc-mean) potential per wall flux per length
    tip: FloatArray  # (B,) tip potential per tip flux
    inner_sink: FloatArray  # (B,) clearance per length inside r < a counted by the Green's function


def _cell_tissue(
    a: FloatArray,
    ell: FloatArray,
    radius: FloatArray,
    thickness: FloatArray,
    d_tissue: FloatArray,
    k_tissue: FloatArray,
    clearance: FloatArray,
    segments: int,
    modes: int,
) -> _CellTissue:
    sig = d_tissue * k_tissue
    z = _J1_ZEROS[: modes + 1]
    alpha = z[None, :] / radius[:, None]
    kap0sq = clearance / d_tissue
    kap = np.sqrt(alpha**2 + kap0sq[:, None])
    norm = 0.5 * radius[:, None] ** 2 * j0(z)[None, :] ** 2
    x = alpha * a[:, None]
    w_ring = j0(x)
    w_disc = np.where(x > 0.0, 2.0 * j1(x) / np.where(x > 0.0, x, 1.0), 1.0)
    coef = 1.0 / (2.0 * np.pi * norm * sig[:, None])
    h = ell / segments
    i = np.arange(segments, dtype=float)
    zc = (i[None, :] + 0.5) * h[:, None]
    s1 = i[None, :] * h[:, None]
    s2 = s1 + h[:, None]
    # uniform segments: the direct and the |ζ − ζ'| image terms depend on i − j, the other two
    # images on i + j, so each mode needs 2(2N − 1) segment integrals, not N²
    kk = kap[:, None, :]
    hk = h[:, None, None]
    ll = thickness[:, None, None]
    den = 2.0 * kk * -np.expm1(-2.0 * kk * ll)

    def prim(x: FloatArray) -> FloatArray:  # ∫₀ˣ e^(−κ|u|) du + e^(−2κL)·∫₀ˣ e^(κ|u|) du
        ax = np.abs(x)
        return np.asarray(
            np.sign(x)
            * (-np.expm1(-kk * ax) + np.exp(kk * (ax - 2.0 * ll)) - np.exp(-2.0 * kk * ll))
            / kk
        )

    lag = np.arange(-(segments - 1), segments, dtype=float)[None, :, None]
    t_diff = (prim((lag + 0.5) * hk) - prim((lag - 0.5) * hk)) / den
    tot = np.arange(2 * segments - 1, dtype=float)[None, :, None]
    w = -np.expm1(-kk * hk) / kk
    t_sum = (np.exp(-kk * (tot + 0.5) * hk) + np.exp(-kk * (2.0 * ll - (tot + 1.5) * hk))) * w / den
    cw = coef * w_ring * w_ring
    w_diff = np.einsum("bm,bdm->bd", cw, t_diff)
    w_sum = np.einsum("bm,bdm->bd", cw, t_sum)
    ii, jj = np.meshgrid(np.arange(segments), np.arange(segments), indexing="ij")
    wall = w_diff[:, ii - jj + segments - 1] + w_sum[:, ii + jj]
    # truncated radial tail of the self-potential: the 2-D ring self-potential in the cell is
    # known in closed form, [I0 K0 + I0² K1(κR)/I1(κR)](κa)/(2πσ); high modes act only locally
    x0 = a * np.sqrt(kap0sq)
    xr = radius * np.sqrt(kap0sq)
    i0 = i0e(x0)
    exact2d = (i0 * k0e(x0) + i0 * i0 * np.exp(2.0 * x0 - 2.0 * xr) * k1e(xr) / i1e(xr)) / (
        2.0 * np.pi * sig
    )
    trunc2d = np.sum(coef * w_ring * w_ring / kap**2, axis=-1)
    wall = wall + np.maximum(exact2d - trunc2d, 0.0)[:, None, None] * np.eye(segments)[None]
    zt = ell[:, None, None]
    wall_tip = np.sum(
        (coef * w_ring * w_disc)[:, None, :]
        * _slab_green_point(zc[:, :, None], zt, thickness[:, None, None], kap[:, None, :]),
        axis=-1,
    )
    tip_wall = np.sum(
        (coef * w_ring * w_disc)[:, None, :]
        * _slab_green_segment(
            zt, s1[:, :, None], s2[:, :, None], thickness[:, None, None], kap[:, None, :]
        ),
        axis=-1,
    )
    tip = np.sum(
        coef
        * w_disc
        * w_disc
        * _slab_green_point(ell[:, None], ell[:, None], thickness[:, None], kap),
        axis=-1,
    )
    # inside the ring the Green's function puts clearing tissue where the channel is; its uptake
    # per length, 2πσ x I1(x)/I0(x) (x = a/λ, the inner side of a 2-D ring), is taken off again
    inner = 2.0 * np.pi * sig * x0 * i1e(x0) / i0
    return _CellTissue(wall, wall_tip, tip_wall, tip, inner)


def cell_conductance(
    a: ArrayLike,
    depth: ArrayLike,
    sc_thickness: ArrayLike,
    d_pore: ArrayLike,
    d_tissue: ArrayLike,
    k_tissue: ArrayLike,
    kp: ArrayLike,
    clearance: ArrayLike,
    density: ArrayLike,
    tissue_thickness: ArrayLike,
    *,
    open_fraction: ArrayLike = 1.0,
    segments: int = CELL_SEGMENTS,
    modes: int = CELL_MODES,
) -> FloatArray:
    """Steady conductance g [m³/s] of one channel in its cell (modal solution, issue 6 follow-up).

    The channel (radius a, depth d; arguments as ``pore_conductance``) is one of n per unit area
    (``density`` [1/m²]); it owns the cylinder of radius R = 1/√(π n) of viable tissue (thickness
    ``tissue_thickness`` H [m] below the SC, zero flux at r = R, under the SC and at the bottom,
    as in the resolved unit cell). In the tissue, σ(∇²u − u/λ²) = −s (σ = D_t K_t, λ² = D_t/k_cl,
    u = C/K_t). Its Green's function is a Fourier–Bessel series, u = Σ_m J0(α_m r) U_m(z),
    J1(α_m R) = 0 (α_0 = 0: the uniform mode, the 1-D slab), each mode solving
    σ(U'' − κ_m² U) = −s_m with κ_m² = α_m² + 1/λ² in closed form (images in the slab).
    The channel wall below the SC carries ring sources q_i on ``segments`` equal segments and the
    tip a uniform disc source; the wall potential at each segment centre and the mean tip potential
    equal the channel's concentration there (collocation). Inside the channel, finite-volume axial
    diffusion (conductance π a² D_pore, the SC part in series) links the segments to the vehicle
    (c_v = 1). The radial tail beyond ``modes`` is added to the self-potential from the closed-form
    2-D ring potential in the cell; the Green's function's clearance inside r < a (where the
    channel is) is removed. Exact limits: far from neighbours and for long channels the fin of
    ``pore_conductance`` (2-D wall exchange K1/K0); dense channels, the 1-D slab
    σ[ℓ (1 − ε)/λ² + tanh((H − ℓ)/λ)/λ] per area (channel at c_v). ``open_fraction`` closes the
    channel's conductivity as in ``pore_conductance``. All arguments broadcast; cases are solved
    in chunks, cost ~ segments²·modes per case. The segment discretisation (second order) is
    extrapolated (Richardson) from ``segments`` and ``segments // 2``. Requires k_cl > 0, ℓ = d − L_sc > 0 and R > a;
    elsewhere ``pore_conductance`` (isolated channel) is returned, except for overlapping
    channels (R ≤ a, n π a² ≥ 1: ``overlapping_channel_permeability`` / n, the dense limit). ℓ is capped at H (a channel
    through all the viable tissue ends on its zero-flux bottom).
    """
    arrs = np.broadcast_arrays(
        *(
            _f(x)
            for x in (
                a,
                depth,
                sc_thickness,
                d_pore,
                d_tissue,
                k_tissue,
                kp,
                clearance,
                density,
                tissue_thickness,
                open_fraction,
            )
        )
    )
    shape = arrs[0].shape
    flat = [np.ascontiguousarray(x, dtype=float).ravel() for x in arrs]
    a_, d, sc, dp, dt, kt, kp_, kc, n, hh, s_open = flat
    s_open = np.clip(s_open, 0.0, 1.0)
    iso = pore_conductance(a_, d, sc, dp, dt, kt, kp_, kc, open_fraction=s_open)
    radius = 1.0 / np.sqrt(np.pi * np.maximum(n, 1e-300))
    # a channel cannot reach past the tissue: one through all of it ends on the zero-flux bottom
    ell = np.minimum(d - sc, hh)
    # below CELL_FIN_LENGTHS fin lengths (2-D cell wall exchange) the channel carries ~nothing
    # (e^-6); the segments cover only the part that conducts
    h_cell = cell_wall_conductance(a_, radius, dt, kt, kc)
    k_ax = np.pi * a_**2 * np.maximum(dp, dt * kt)  # the longer of open and closed: S-independent
    with np.errstate(divide="ignore", invalid="ignore"):
        fin_len = CELL_FIN_LENGTHS * np.sqrt(k_ax / h_cell)
    ell = np.where(np.isfinite(fin_len), np.minimum(ell, fin_len), ell)
    ok = (kc > 0.0) & (ell > 0.0) & (n > 0.0) & (radius > a_) & (dt > 0.0) & (kt > 0.0)
    ok &= (a_ > 0.0) & (dp > 0.0)
    if segments < 4 or segments % 2:
        raise ValueError(f"segments: got {segments}; allowed: an even number >= 4")
    out = iso.copy()
    # channels that overlap (R ≤ a: n π a² ≥ 1) have no cell of their own; the cell model's own
    # dense limit (R → a) is the whole area open to the channel depth: per area the open column
    # in series with the clearing slab below it (``overlapping_channel_permeability``), shared
    # by the n channels. Without it the isolated channel's g would be counted n times over
    dense = _overlapping(n, a_, d, sc, dt, kt, kc)
    if np.any(dense):
        p_dense = overlapping_channel_permeability(
            d[dense], sc[dense], dp[dense], dt[dense], kt[dense], kp_[dense], kc[dense],
            hh[dense], s_open[dense],
        )  # fmt: skip
        out[dense] = p_dense / n[dense]
    acc = np.zeros_like(out)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return np.asarray(out.reshape(shape))
    # the tissue response does not depend on the open fraction: build it once per distinct cell
    keys = np.stack([a_, ell, radius, hh, dt, kt, kc], axis=1)[idx]
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    chunk = 256
    for nseg, weight in ((segments, 4.0 / 3.0), (segments // 2, -1.0 / 3.0)):
        parts = []
        for u in range(0, len(uniq), chunk):
            c = uniq[u : u + chunk]
            parts.append(
                _cell_tissue(
                    c[:, 0], c[:, 1], c[:, 2], c[:, 3], c[:, 4], c[:, 5], c[:, 6], nseg, modes
                )
            )
        tissue = _CellTissue(
            *(
                np.concatenate([getattr(t, f) for t in parts])
                for f in _CellTissue.__dataclass_fields__
            )
        )
        for start in range(0, idx.size, chunk):
            sel = idx[start : start + chunk]
            tis = _CellTissue(
                *(
                    getattr(tissue, f)[inverse[start : start + chunk]]
                    for f in _CellTissue.__dataclass_fields__
                )
            )
            chan = (a_[sel], ell[sel], sc[sel], dp[sel], dt[sel], kt[sel], kp_[sel], s_open[sel])
            # the segment discretisation is second order: Richardson extrapolation, N and N/2
            acc[sel] += weight * _cell_solve(tis, *chan, nseg)
    out[idx] = np.maximum(acc[idx], np.pi * a_[idx] ** 2 * np.maximum(kp_[idx], 0.0))
    return np.asarray(out.reshape(shape))


def _overlapping(
    n: FloatArray,
    a: FloatArray,
    depth: FloatArray,
    sc: FloatArray,
    d_tissue: FloatArray,
    k_tissue: FloatArray,
    clearance: FloatArray,
) -> NDArray[np.bool_]:
    """The cases whose channels overlap (their cell radius 1/√(π n) ≤ a: n π a² ≥ 1) and reach
    past the stratum corneum into tissue that takes up and clears: those that take
    :func:`overlapping_channel_permeability` (``cell_conductance`` and the closing channel of
    ``absorb`` alike)."""
    with np.errstate(divide="ignore"):
        cell_r = 1.0 / np.sqrt(np.pi * np.where(n > 0.0, n, np.inf))
    out: NDArray[np.bool_] = (n > 0.0) & (a > 0.0) & (cell_r <= a) & (depth > sc)
    return out & (clearance > 0.0) & (d_tissue > 0.0) & (k_tissue > 0.0)


def overlapping_channel_permeability(
    depth: ArrayLike,
    sc_thickness: ArrayLike,
    d_pore: ArrayLike,
    d_tissue: ArrayLike,
    k_tissue: ArrayLike,
    kp: ArrayLike,
    clearance: ArrayLike,
    tissue_thickness: ArrayLike,
    open_fraction: ArrayLike = 1.0,
) -> FloatArray:
    """Permeability per skin area [m/s] of channels that overlap (n π a² ≥ 1), all arrays (B,).

    When the punctures' mouths cover the surface, no channel has a cell of its own and the
    skin is open over its whole area to the channel depth d. This is the limit R → a of
    ``cell_conductance`` (docs/transport.md, "Exact limits": n g → σ[ℓ(1 − ε)/λ² +
    tanh((H − ℓ)/λ)/λ] for a perfectly conducting channel), with the open column's own
    resistance in series:

        1/P = L_sc/c_sc + ℓ/c_col + λ/(σ tanh((H − ℓ)/λ)),   ℓ = min(d − L_sc, H),
        c_sc = S D_pore + (1 − S) kp L_sc,  c_col = S D_pore + (1 − S) σ,  σ = D_t K_t,
        λ = √(D_t/k_cl)

    (S: the open fraction, as in ``pore_conductance``). It is what an SC-free surface can take:
    the uptake is then limited by the viable tissue (clearance in vivo, the path to the receptor
    in vitro), not by the number of punctures. No parameter.
    """
    arr = np.broadcast_arrays(
        *(
            _f(x)
            for x in (
                depth, sc_thickness, d_pore, d_tissue, k_tissue, kp, clearance, tissue_thickness,
                open_fraction,
            )
        )
    )  # fmt: skip
    d, sc, dp, dt, kt, kp_, kc, hh, s = (np.asarray(x, dtype=float) for x in arr)
    s = np.clip(s, 0.0, 1.0)
    sig = dt * kt
    ell = np.clip(d - sc, 0.0, hh)
    with np.errstate(divide="ignore", invalid="ignore"):
        lam = np.sqrt(dt / kc)
        c_sc = s * dp + (1.0 - s) * np.maximum(kp_, 0.0) * sc
        c_col = s * dp + (1.0 - s) * sig
        r_sc = np.where(sc > 0.0, sc / c_sc, 0.0)
        r_col = np.where(ell > 0.0, ell / c_col, 0.0)
        r_slab = lam / (sig * np.tanh((hh - ell) / lam))
        p = 1.0 / (r_sc + r_col + r_slab)
    return np.asarray(np.nan_to_num(np.where(np.isfinite(p), p, 0.0), nan=0.0))


def _cell_solve(
    tis: _CellTissue,
    a: FloatArray,
    ell: FloatArray,
    sc: FloatArray,
    d_pore: FloatArray,
    d_tissue: FloatArray,
    k_tissue: FloatArray,
    kp: FloatArray,
    s_open: FloatArray,
    segments: int,
) -> FloatArray:
    """Channel balance + collocation: unknowns c_0..c_{N−1}, c_tip, q_0..q_{N−1}, Q_tip."""
    bsz, nseg = a.shape[0], segments
    d_sc = s_open * d_pore + (1.0 - s_open) * np.maximum(kp, 0.0) * sc
    d_ch = s_open * d_pore + (1.0 - s_open) * d_tissue * k_tissue
    area = np.pi * a**2
    k_ax = area * d_ch
    h = ell / nseg
    with np.errstate(divide="ignore"):
        r_top = np.where(sc > 0.0, sc / (area * d_sc), 0.0)
    g_top = 1.0 / (r_top + h / (2.0 * k_ax))
    g_ax = k_ax / h
    size = 2 * nseg + 2
    mat = np.zeros((bsz, size, size))
    rhs = np.zeros((bsz, size))
    c_tip, q0, q_tip = nseg, nseg + 1, 2 * nseg + 1
    rows = np.arange(nseg)
    # axial balance of segment i: F_i − F_{i+1} − h (q_i − sink·c_i) = 0
    mat[:, rows, q0 + rows] = -h[:, None]
    mat[:, rows, rows] = (h * tis.inner_sink)[:, None]
    mat[:, 0, 0] -= g_top
    rhs[:, 0] = -g_top
    for i in range(1, nseg):
        mat[:, i, i - 1] += g_ax
        mat[:, i, i] -= g_ax
        mat[:, i - 1, i - 1] -= g_ax
        mat[:, i - 1, i] += g_ax
    mat[:, nseg - 1, q_tip] -= 1.0
    # tip flux through the last half segment
    mat[:, c_tip, q_tip] = 1.0
    mat[:, c_tip, nseg - 1] = -2.0 * g_ax
    mat[:, c_tip, c_tip] = 2.0 * g_ax
    # collocation: wall potential = channel concentration; tip disc mean = tip concentration
    mat[:, q0 + rows, rows] = 1.0
    mat[:, q0 : q0 + nseg, q0 : q0 + nseg] = -tis.wall
    mat[:, q0 : q0 + nseg, q_tip] = -tis.wall_tip
    mat[:, q_tip, c_tip] = 1.0
    mat[:, q_tip, q0 : q0 + nseg] = -tis.tip_wall
    mat[:, q_tip, q_tip] = -tis.tip
    sol = np.linalg.solve(mat, rhs[..., None])[..., 0]
    return np.asarray(g_top * (1.0 - sol[:, 0]))


def channel_outflow_split(
    a: ArrayLike,
    depth: ArrayLike,
    layers: ArrayLike,
    d_pore: ArrayLike,
    d_tissue: ArrayLike,
    k_tissue: ArrayLike,
    clearance: ArrayLike,
    *,
    wall_exchange: bool = True,
) -> FloatArray:
    """Fraction of a channel's outflow entering each model layer, (B, 3), rows summing to 1.

    Layers: epidermis (viable epidermis; the channel wall inside the SC exchanges nothing),
    papillary, reticular dermis. The concentration along the leaky channel below the SC falls as
    c(p) ∝ cosh(m p) + β sinh(m p) (p = distance above the tip, β = G_tip/(m K_ax)), so the share of
    the outflow leaving within p of the tip (tip included) is
    W(p) = [cosh(m p)/cosh(m ℓ)]·(h_w T(p) + G_tip)/(h_w T(ℓ) + G_tip), T(p) = tanh(m p)/m;
    the tip flux goes to the layer holding the tip (the deeper one at a boundary).
    """
    t = _f(layers)
    a_, d, dp, dt, kt, kc = (
        np.asarray(x, dtype=float)
        for x in np.broadcast_arrays(
            _f(a), _f(depth), _f(d_pore), _f(d_tissue), _f(k_tissue), _f(clearance)
        )
    )
    sc = t[..., 0]
    z1 = sc + t[..., 1]
    z2 = z1 + t[..., 2]
    fin = _fin(a_, d, sc, dp, dt, kt, kc, wall_exchange)
    m, ell = fin.m, fin.length
    denom = fin.h_w * ell * _tanhc(m * ell) + fin.g_tip

    def w_of(p: FloatArray) -> FloatArray:
        pp = np.clip(p, 0.0, ell)
        cosh_ratio = (
            np.exp(m * (pp - ell)) * (1.0 + np.exp(-2.0 * m * pp)) / (1.0 + np.exp(-2.0 * m * ell))
        )
        num = fin.h_w * pp * _tanhc(m * pp) + fin.g_tip
        val = cosh_ratio * np.divide(num, denom, out=np.zeros_like(num), where=denom > 0.0)
        return np.asarray(np.where(p >= 0.0, np.clip(val, 0.0, 1.0), 0.0))

    w1 = w_of(d - z1)
    w2 = np.minimum(w_of(d - z2), w1)
    return np.stack([1.0 - w1, w1 - w2, w2], axis=-1)


# ------------------------------------------------------------------ tissue-charging transient
def clearance_sensitivity(
    a: ArrayLike,
    depth: ArrayLike,
    sc_thickness: ArrayLike,
    d_pore: ArrayLike,
    d_tissue: ArrayLike,
    k_tissue: ArrayLike,
    kp: ArrayLike,
    clearance: ArrayLike,
    *,
    rel_step: float = 1e-4,
    density: ArrayLike | None = None,
    tissue_thickness: ArrayLike | None = None,
) -> FloatArray:
    """∂g/∂k_cl [m³] of ``pore_conductance`` (same arguments), by a central difference.

    It sets the charging transient of the tissue around an open channel (``transient_rate``):
    when every storing tissue clears at the same rate k, the step response of the channel flux has
    the Laplace transform g(k + s)/s, so the cumulative uptake tends to g·t + ∂g/∂k (the amount by
    which an initially empty tissue takes up more than the steady flux predicts).
    """
    kc = _f(clearance)
    h = rel_step * kc
    args = (a, depth, sc_thickness, d_pore, d_tissue, k_tissue, kp)
    up = pore_conductance(*args, kc + h, density=density, tissue_thickness=tissue_thickness)
    down = pore_conductance(
        *args, np.maximum(kc - h, 0.0), density=density, tissue_thickness=tissue_thickness
    )
    return np.asarray(np.divide(up - down, 2.0 * h, out=np.zeros_like(up), where=h > 0.0))


def transient_rate(g: ArrayLike, dg_dk: ArrayLike) -> FloatArray:
    """Effective charging rate k_e = g / (2 ∂g/∂k) [1/s] of the open-channel uptake.

    Chosen so that ``uptake_shape`` has the exact late-time offset ∂g/∂k (see
    ``clearance_sensitivity``); it equals the clearance rate itself for 1-D uptake into a
    semi-infinite clearing tissue (Danckwerts, g ∝ √k). Infinite where g does not depend on k
    (then the uptake is quasi-steady, Q = g·t).
    """
    g_, s_ = np.broadcast_arrays(_f(g), _f(dg_dk))
    return np.asarray(
        np.divide(g_, 2.0 * s_, out=np.full(g_.shape, np.inf), where=(s_ > 0.0) & (g_ > 0.0))
    )


def uptake_shape(t: ArrayLike, rate: ArrayLike) -> FloatArray:
    """Cumulative uptake per unit steady flux F(t) [s] after a step in the vehicle concentration.

    F(t) = (t + 1/(2k)) erf(√(k t)) + √(t/(π k)) e^(−k t) (Danckwerts 1951: absorption with
    first-order reaction; Crank 1975 eq. 14.12), k = ``transient_rate``: F ≈ 2√(t/(πk)) early,
    F → t + 1/(2k) late, F = t for k = ∞. Its derivative, the flux over the steady flux, is
    erf(√(k t)) + e^(−k t)/√(π k t).
    """
    t_, k_ = np.broadcast_arrays(np.maximum(_f(t), 0.0), _f(rate))
    fin = np.isfinite(k_) & (k_ > 0.0)
    ks = np.where(fin, k_, 1.0)
    x = ks * t_
    out = (t_ + 0.5 / ks) * erf(np.sqrt(x)) + np.sqrt(t_ / (np.pi * ks)) * np.exp(-x)
    return np.asarray(np.where(fin, out, t_))


def uptake_flux_factor(t: ArrayLike, rate: ArrayLike) -> FloatArray:
    """dF/dt of ``uptake_shape``: flux over steady flux, erf(√(k t)) + e^(−k t)/√(π k t) (≥ 1;
    ∞ at t = 0; 1 for k = ∞)."""
    t_, k_ = np.broadcast_arrays(np.maximum(_f(t), 0.0), _f(rate))
    fin = np.isfinite(k_) & (k_ > 0.0)
    x = np.where(fin, k_, 1.0) * t_
    with np.errstate(divide="ignore"):
        out = erf(np.sqrt(x)) + np.exp(-x) / np.sqrt(np.pi * x)
    return np.asarray(np.where(fin, out, 1.0))


# --------------------------------------------------------------------- resealing, permeability
def resealing(t: ArrayLike, k_close: ArrayLike) -> FloatArray:
    """Open fraction of the channels S(t) = exp(−k_close·t) (t [s] since needling, k [1/s])."""
    return np.asarray(np.exp(-_f(k_close) * np.maximum(_f(t), 0.0)))


def permeability(
    t: ArrayLike, kp: ArrayLike, n: ArrayLike, a: ArrayLike, g: ArrayLike, k_close: ArrayLike
) -> FloatArray:
    """Homogenised skin permeability P(t) = (1 − ε S)·kp + n·g·S [m/s], ε = min(n π a², 1).

    Reduces to kp when n = 0 or once the channels are closed.
    """
    s = resealing(t, k_close)
    eps = np.minimum(_f(n) * np.pi * _f(a) ** 2, 1.0)
    return np.asarray((1.0 - eps * s) * _f(kp) + _f(n) * _f(g) * s)


# --------------------------------------------------------------------------- finite dose
def _expm_compartments(
    o00: FloatArray, o01: FloatArray, o10: FloatArray, o11: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """exp of the 2×2 block [[o00, o01], [o10, o11]] of a compartment generator, in closed form.

    The block is Metzler (o01, o10 ≥ 0) with non-positive column sums, so its eigenvalues
    λ± = μ ± δ are real and ≤ 0 (μ = trace/2, η = (o00 − o11)/2, δ² = η² + o01·o10). With
    ψ(x) = (1 − e^(−x))/x, e = e^(−2δ) and r = o01·o10/(δ + |η|) (= δ − |η|, no cancellation):
    exp = e^(λ+)·[[D00, ψ(2δ) o01], [ψ(2δ) o10, D11]], where the diagonal entry on the side of
    the larger diagonal element of the block is 1 − ψ(2δ) r and the other e + ψ(2δ) r. This is
    free of overflow and cancellation (λ+ = det/λ−), and exact 1 / e^(o) for a diagonal block.
    """
    mu = 0.5 * (o00 + o11)
    eta = 0.5 * (o00 - o11)
    prod = np.maximum(o01 * o10, 0.0)
    delta = np.sqrt(eta * eta + prod)
    det = np.maximum(o00 * o11 - o01 * o10, 0.0)
    lam_minus = mu - delta
    lam_plus = np.divide(det, lam_minus, out=np.zeros_like(det), where=lam_minus < 0.0)
    e_plus = np.exp(np.minimum(lam_plus, 0.0))
    e = np.exp(-2.0 * delta)
    s = _psi(2.0 * delta)
    dd = delta + np.abs(eta)
    r = np.divide(prod, dd, out=np.zeros_like(prod), where=dd > 0.0)
    big = e_plus * (1.0 - s * r)
    small = e_plus * (e + s * r)
    e00 = np.where(eta >= 0.0, big, small)
    e11 = np.where(eta >= 0.0, small, big)
    return e00, e_plus * s * o01, e_plus * s * o10, e11


def _psi(x: FloatArray) -> FloatArray:
    """(1 − e^(−x))/x = ∫₀¹ e^(−x u) du, 1 at x = 0 (x ≥ −50)."""
    xx = np.maximum(x, -50.0)
    big = np.abs(xx) > 1e-8
    safe = np.where(big, xx, 1.0)
    return np.asarray(np.where(big, -np.expm1(-safe) / safe, 1.0 - xx / 2.0))


def _time_grid(active: FloatArray, tc: FloatArray, steps: int) -> FloatArray:
    """Nodes (B, steps + 2): ``steps`` quadratically graded steps over [0, active], then to tc."""
    j = (np.arange(steps + 1) / steps) ** 2
    return np.concatenate([active[:, None] * j[None, :], tc[:, None]], axis=1)


_F2_SERIES = tuple((-1.0) ** n * n / (math.factorial(n) * (n + 1) * (n + 2)) for n in range(1, 10))


def _f2(x: ArrayLike) -> FloatArray:
    """∫₀¹ (2u − 1) e^(−x u) du (= −x/6 + x²/24 − …; series for |x| < 0.1)."""
    x = _f(x)
    small = np.abs(x) < 0.1
    xs = np.where(small, x, 0.0)
    series = np.zeros_like(x)
    for c in reversed(_F2_SERIES):
        series = (series + c) * xs
    xl = np.where(small, 1.0, np.maximum(x, -50.0))
    direct = 2.0 * (-np.expm1(-xl) - xl * np.exp(-xl)) / xl**2 + np.expm1(-xl) / xl
    return np.asarray(np.where(small, series, direct))


@dataclass(frozen=True)
class FiniteDose:
    """Amounts per skin area [kg/m²] at the end of the contact time, arrays (B,)."""

    vehicle: FloatArray
    tissue: FloatArray
    cleared: FloatArray
    delivered: FloatArray
    via_channels: FloatArray


_FD_FIELDS = ("vehicle", "tissue", "cleared", "delivered", "via_channels")


def finite_dose(
    dose: ArrayLike,
    film_thickness: ArrayLike,
    contact_time: ArrayLike,
    kp: ArrayLike,
    n_g: ArrayLike,
    eps: ArrayLike,
    k_close: ArrayLike,
    capacity: ArrayLike,
    clearance: ArrayLike,
    *,
    delay: ArrayLike = 0.0,
    steps: int = 64,
) -> FiniteDose:
    """Finite dose from a well-mixed vehicle into a well-mixed viable compartment with clearance.

    Parameters (arrays (B,), SI)
    ----------------------------
    dose: applied amount c0·h [kg/m²]; film_thickness: h [m]; contact_time: T [s];
    kp: intact-skin permeability [m/s]; n_g: n·g, channel permeability while open [m/s];
    eps: open area fraction ε; k_close: resealing rate [1/s]; capacity: K_t·H_t [m] (inf = sink);
    clearance: k_cl [1/s]; delay: time from needling to application [s].
    P(t) = kp·(1 − ε S) + n_g·S, S = exp(−k_close (t + delay)).

    Returns the amounts left in the vehicle, in the tissue and cleared at T, the net amount
    delivered (sum of the vehicle losses) and the part of it that went through the channels (per
    step, the exchange is split in proportion to ∫P_ch·D dt : ∫P·D dt with the driving force D
    taken as exponential between its end values). ``steps`` steps (quadratically graded) cover
    min(T, TAU_MAX/k_close), one step the rest (fourth-order Magnus; see the module docstring).
    """
    arrs = np.broadcast_arrays(
        _f(dose),
        _f(film_thickness),
        _f(contact_time),
        _f(kp),
        _f(n_g),
        _f(eps),
        _f(k_close),
        _f(capacity),
        _f(clearance),
        _f(delay),
    )
    m0, h, tc, kp_, ng, ep, kcl_close, cap, kcl, dl = (
        np.atleast_1d(np.asarray(x, dtype=float)) for x in arrs
    )
    bsz = m0.shape[0]
    h_safe = np.where(h > 0.0, h, 1.0)
    active = np.where(
        kcl_close > 0.0,
        np.minimum(tc, TAU_MAX / np.where(kcl_close > 0.0, kcl_close, 1.0)),
        tc,
    )
    nodes = _time_grid(active, tc, steps)
    s0 = np.exp(-kcl_close * np.maximum(dl, 0.0))
    y = np.zeros((bsz, 3))
    y[:, 0] = np.where(h > 0.0, m0, 0.0)
    via = np.zeros(bsz)
    delivered = np.zeros(bsz)
    inv_cap = np.divide(1.0, cap, out=np.zeros_like(cap), where=np.isfinite(cap) & (cap > 0.0))
    for j in range(nodes.shape[1] - 1):
        t0, t1 = nodes[:, j], nodes[:, j + 1]
        dt = np.maximum(t1 - t0, 0.0)
        s_start = s0 * np.exp(-kcl_close * t0)
        s_bar = s_start * _psi(kcl_close * dt)
        p_sc = kp_ * (1.0 - ep * s_bar)
        p_ch = ng * s_bar
        p = p_sc + p_ch
        alpha = p / h_safe
        beta = p * inv_cap
        # Ω = ∫A dt over the step, A = P(t)·E + C (E exchange, C clearance); cleared row from the
        # zero column sums
        o00 = -alpha * dt
        o01 = beta * dt
        o10 = alpha * dt
        o11 = -(beta + kcl) * dt
        # second Magnus term ½ ∫∫_{s<t} [A(t), A(s)] ds dt = ½ I2 [E, C] with
        # [E, C] = k_cl [[0, -1/KH, 0], [1/h, 0, 0], [-1/h, 1/KH, 0]] (zero column sums) and
        # I2 = ∫∫_{s<t} (P(t) - P(s)) = (n_g - kp eps) S(t0) dt² f2(k dt). The correction is
        # scaled down (theta) where it would make an off-diagonal entry negative, so that the step
        # matrix stays non-negative (a compartmental generator).
        i2 = (ng - kp_ * ep) * s_start * dt**2 * _f2(kcl_close * dt)
        q = 0.5 * i2 * kcl
        with np.errstate(divide="ignore", invalid="ignore"):
            lim = np.minimum(p * dt / -q, kcl * dt / (-q * inv_cap))
            theta = np.where(q < 0.0, np.minimum(1.0, np.nan_to_num(lim, nan=1.0)), 0.0)
        q = theta * q
        o01 = o01 - q * inv_cap
        o10 = o10 + q / h_safe
        e00, e01, e10, e11 = _expm_compartments(o00, o01, o10, o11)
        v, m = y[:, 0], y[:, 1]
        y_new = np.empty_like(y)
        y_new[:, 0] = e00 * v + e01 * m
        y_new[:, 1] = e10 * v + e11 * m
        y_new[:, 2] = (
            y[:, 2] + np.maximum(1.0 - e00 - e10, 0.0) * v + np.maximum(1.0 - e01 - e11, 0.0) * m
        )
        exchange = y[:, 0] - y_new[:, 0]
        # route split of the step's exchange: ∫P_ch·D dt / ∫P·D dt with the driving force
        # D = v/h − m/(K H) taken as exponential between its end values (rate lam)
        d0 = y[:, 0] / h_safe - y[:, 1] * inv_cap
        d1 = y_new[:, 0] / h_safe - y_new[:, 1] * inv_cap
        ok = (d0 > 0.0) & (d1 > 0.0) & (dt > 0.0)
        lam = np.where(
            ok, np.log(np.where(ok, d0, 1.0) / np.where(ok, d1, 1.0)) / np.where(ok, dt, 1.0), 0.0
        )
        w_s = s_start * _psi((kcl_close + lam) * dt)
        w_1 = _psi(lam * dt)
        den = kp_ * w_1 + (ng - kp_ * ep) * w_s
        share = np.divide(ng * w_s, den, out=np.zeros_like(den), where=den > 0.0)
        share = np.clip(share, 0.0, 1.0)
        via += exchange * share
        delivered += exchange
        y = y_new
    return FiniteDose(
        vehicle=y[:, 0], tissue=y[:, 1], cleared=y[:, 2], delivered=delivered, via_channels=via
    )


_GL_X, _GL_W = np.polynomial.legendre.leggauss(6)
_GL_X = 0.5 * (_GL_X + 1.0)  # nodes on (0, 1)
_GL_W = 0.5 * _GL_W


def channel_profile_means(
    nodes: ArrayLike,
    g_of_s: Callable[[FloatArray], FloatArray],
    k_close: ArrayLike,
    rate: ArrayLike,
    *,
    delay: ArrayLike = 0.0,
) -> FloatArray:
    """Step averages (B, M) of g(S(t + delay))·φ(t) over the steps of ``nodes`` (B, M + 1) [s].

    ``g_of_s`` maps open fractions (B, M, q) to the channel conductance term (same shape) [m/s];
    S = exp(−k_close t) (``resealing``), φ = ``uptake_flux_factor`` with ``rate``. Six-point
    Gauss–Legendre in w with t = t₀ + Δ w², which removes the 1/√t singularity of φ at t = 0.
    """
    nd = _f(nodes)
    t0, dt = nd[:, :-1, None], np.diff(nd, axis=1)[:, :, None]
    w = _GL_X[None, None, :]
    t = t0 + dt * w * w
    kc = _f(k_close).reshape(-1, 1, 1)
    s_open = np.exp(-kc * (t + _f(delay).reshape(-1, 1, 1)))
    phi = uptake_flux_factor(t, _f(rate).reshape(-1, 1, 1))
    vals = g_of_s(s_open) * phi * 2.0 * w
    return np.asarray(np.sum(vals * _GL_W[None, None, :], axis=-1))


def finite_dose_steps(
    dose: ArrayLike,
    film_thickness: ArrayLike,
    nodes: ArrayLike,
    p_sc: ArrayLike,
    p_channel: ArrayLike,
    capacity: ArrayLike,
    clearance: ArrayLike,
) -> FiniteDose:
    """Finite dose (the compartments of ``finite_dose``) with a permeability given per step.

    nodes (B, M + 1) [s]: step boundaries from the application; p_sc (B,) [m/s]: the intact-skin
    path (constant); p_channel (B, M) [m/s]: the channel path averaged over each step (e.g.
    ``channel_profile_means``). Each step is the exact exponential of the step-averaged generator
    (first Magnus term; the commutator term of ``finite_dose`` is left out, an error of second
    order in the step that the graded steps keep below ~1e-5 of the dose, tested against Radau).
    The step's exchange is split between the routes in proportion to their permeabilities.
    Vehicle + tissue + cleared = dose to round-off.
    """
    nd = np.atleast_2d(_f(nodes))
    bsz = nd.shape[0]

    def b(x: ArrayLike) -> FloatArray:
        return np.broadcast_to(_f(x), (bsz,)).astype(float)

    m0, h, kp_, cap, kcl = b(dose), b(film_thickness), b(p_sc), b(capacity), b(clearance)
    pch = np.broadcast_to(_f(p_channel), (bsz, nd.shape[1] - 1))
    h_safe = np.where(h > 0.0, h, 1.0)
    inv_cap = np.divide(1.0, cap, out=np.zeros_like(cap), where=np.isfinite(cap) & (cap > 0.0))
    y = np.zeros((bsz, 3))
    y[:, 0] = np.where(h > 0.0, m0, 0.0)
    via = np.zeros(bsz)
    delivered = np.zeros(bsz)
    for j in range(nd.shape[1] - 1):
        dt = np.maximum(nd[:, j + 1] - nd[:, j], 0.0)
        p = kp_ + pch[:, j]
        e00, e01, e10, e11 = _expm_compartments(
            -p / h_safe * dt, p * inv_cap * dt, p / h_safe * dt, -(p * inv_cap + kcl) * dt
        )
        v, m = y[:, 0], y[:, 1]
        y_new = np.empty_like(y)
        y_new[:, 0] = e00 * v + e01 * m
        y_new[:, 1] = e10 * v + e11 * m
        y_new[:, 2] = (
            y[:, 2] + np.maximum(1.0 - e00 - e10, 0.0) * v + np.maximum(1.0 - e01 - e11, 0.0) * m
        )
        exchange = y[:, 0] - y_new[:, 0]
        share = np.divide(pch[:, j], p, out=np.zeros_like(p), where=p > 0.0)
        via += exchange * share
        delivered += exchange
        y = y_new
    return FiniteDose(
        vehicle=y[:, 0], tissue=y[:, 1], cleared=y[:, 2], delivered=delivered, via_channels=via
    )


# --------------------------------------------------- vehicle film, SC reservoir, follicles
SC_NODES = 10
"""Stratum-corneum nodes of the reservoir model (geometrically graded, finest at both faces)."""
SC_GRADING = 1.5
"""Ratio of neighbouring SC node thicknesses from each face towards the middle."""


@dataclass(frozen=True)
class Vehicle:
    """Conditions of the applied product per case, arrays (B,) (``absorb``'s ``vehicle``).

    ph: vehicle pH (NaN: the molecule's usual formulation pH, else the skin surface pH);
    volatile_fraction: share of the film that evaporates (water) when the skin is open;
    fill_fraction: share of the channels the product reaches (``transport.channel_fill_fraction``
    for a product applied after needling); follicle_factor: follicular orifice factor of the site
    (``transport.follicular_site_factor``); in_vitro: a diffusion cell (no blood clearance: the
    viable tissue drains to the receptor below the dermis at its slowest diffusion mode).
    """

    ph: FloatArray
    volatile_fraction: FloatArray
    fill_fraction: FloatArray
    follicle_factor: FloatArray
    in_vitro: BoolArray

    @classmethod
    def default(
        cls,
        bsz: int,
        params: TransportParameters,
        *,
        ph: ArrayLike = np.nan,
        follicle_factor: ArrayLike = 1.0,
        in_vitro: ArrayLike = False,
        fill_fraction: ArrayLike | None = None,
        volatile_fraction: ArrayLike | None = None,
    ) -> Vehicle:
        """A batch of ``bsz`` with the shipped defaults (fill and volatile fractions from
        ``params``) unless given."""

        def b(x: ArrayLike, dtype: type = float) -> NDArray[Any]:
            return np.broadcast_to(np.asarray(x, dtype=dtype), (bsz,)).copy()

        return cls(
            ph=b(ph),
            volatile_fraction=b(
                params.volatile_fraction if volatile_fraction is None else volatile_fraction
            ),
            fill_fraction=b(
                params.channel_fill_fraction if fill_fraction is None else fill_fraction
            ),
            follicle_factor=b(follicle_factor),
            in_vitro=b(in_vitro, bool),
        )

    def broadcast(self, bsz: int) -> Vehicle:
        def b(x: ArrayLike, dtype: type = float) -> NDArray[Any]:
            return np.broadcast_to(np.asarray(x, dtype=dtype), (bsz,)).copy()

        return Vehicle(
            b(self.ph),
            b(self.volatile_fraction),
            b(self.fill_fraction),
            b(self.follicle_factor),
            b(self.in_vitro, bool),
        )


@dataclass(frozen=True)
class Reservoir:
    """Amounts per skin area [kg/m²] at the end of the contact time, arrays (B,), of
    ``reservoir_dose``: vehicle left, stratum corneum (superficial layer + slab), viable tissue,
    cleared (blood, or receptor in vitro); delivered = tissue + cleared (into the viable skin);
    the part of it by route (channels, follicles, through the SC); wet_time [s]: how long the
    film stayed liquid."""

    vehicle: FloatArray
    stratum_corneum: FloatArray
    tissue: FloatArray
    cleared: FloatArray
    via_channels: FloatArray
    via_follicles: FloatArray
    via_sc: FloatArray
    wet_time: FloatArray

    @property
    def delivered(self) -> FloatArray:
        return np.asarray(self.tissue + self.cleared)

    @property
    def in_skin(self) -> FloatArray:
        """Stratum corneum + viable tissue (what imaging of the skin sees; not the cleared part)."""
        return np.asarray(self.stratum_corneum + self.tissue)


def sc_grid(thickness: ArrayLike, nodes: int = SC_NODES, grading: float = SC_GRADING) -> FloatArray:
    """Node thicknesses (B, nodes) [m] of the SC slab, geometrically graded from both faces."""
    half = np.arange(nodes)
    w = grading ** np.minimum(half, nodes - 1 - half).astype(float)
    w = w / w.sum()
    return np.asarray(_f(thickness)[..., None] * w)


def _film_inverse_mean(
    h0: FloatArray, rate: FloatArray, t0: FloatArray, t1: FloatArray
) -> FloatArray:
    """Mean of 1/h over [t0, t1] for a film thinning linearly, h = h0 − rate·t."""
    h_a = h0 - rate * t0
    h_b = h0 - rate * t1
    dt = t1 - t0
    ok = (rate > 0.0) & (dt > 0.0) & (h_b > 0.0)
    num = np.log(np.where(ok, h_a / np.where(ok, h_b, 1.0), 1.0))
    den = np.where(ok, rate * dt, 1.0)
    return np.asarray(np.where(ok, num / den, 1.0 / np.maximum(h_a, 1e-300)))


class _StepEigh:
    """``np.linalg.eigh`` of a batch of symmetric matrices step after step, decomposing again only
    the matrices that changed (bit for bit) since the step before: the same eigenpairs as calling
    ``eigh`` every step, since a matrix's decomposition does not depend on the others of the
    batch."""

    def __init__(self, count: int, n: int) -> None:
        self.sym = np.full((count, n, n), np.nan)
        self.w = np.empty((count, n))
        self.q = np.empty((count, n, n))
        self.known = False

    def decompose(
        self, sym: FloatArray, inverse: NDArray[np.intp]
    ) -> tuple[FloatArray, FloatArray]:
        """Eigenvalues (B, n) and eigenvectors (B, n, n) of ``sym[inverse]`` (``sym`` distinct)."""
        if not self.known:
            changed = np.ones(sym.shape[0], dtype=bool)
        else:
            bits, old = sym.view(np.int64), self.sym.view(np.int64)
            changed = np.any(bits != old, axis=(1, 2))
        if np.all(changed):
            self.w, self.q = np.linalg.eigh(sym)
        elif np.any(changed):
            self.w[changed], self.q[changed] = np.linalg.eigh(sym[changed])
        self.sym = sym
        self.known = True
        return self.w[inverse], self.q[inverse]


def reservoir_dose(
    dose: ArrayLike,
    film_thickness: ArrayLike,
    nodes: ArrayLike,
    wet_time: ArrayLike,
    thinning_rate: ArrayLike,
    p_channel: ArrayLike,
    kp_follicle: ArrayLike,
    supply: ArrayLike,
    kp_sc: ArrayLike,
    k_sc: ArrayLike,
    sc_thickness: ArrayLike,
    superficial: ArrayLike,
    superficial_time: float,
    dry_availability: float,
    capacity: ArrayLike,
    clearance: ArrayLike,
    *,
    sc_nodes: int = SC_NODES,
) -> Reservoir:
    """Finite dose from a drying film into a stratum-corneum reservoir and the viable skin.

    Compartments per area: the vehicle film (thickness h(t) = h0 − r·t while liquid, until
    ``wet_time``; then a dried deposit), a superficial SC layer (thickness ``superficial``,
    partition K_sc) that equilibrates with the vehicle in ``superficial_time``, the SC slab
    (``sc_nodes`` graded nodes, D_sc = kp_sc·L_sc/K_sc so its steady permeability is kp_sc), the
    well-mixed viable tissue (capacity K_t·H_t) with first-order clearance, and what was cleared.
    While the film is liquid the vehicle also exchanges directly with the viable tissue through
    the channels (``p_channel`` per step [m/s], in series with the lateral supply through the
    film to the channel mouths, ``supply``·h [m/s]; inf: no supply limit) and the follicles
    (``kp_follicle``); a dried
    deposit feeds only the SC, at ``dry_availability`` × its original concentration v/h0.

    Every exchange is a conductance times a difference of vehicle-equivalent concentrations
    (amount / capacity), so each step's generator is similar to a symmetric matrix: it is
    exponentiated exactly through a symmetric eigendecomposition, and vehicle + SC + tissue +
    cleared = dose to round-off. nodes (B, M + 1) [s] must contain ``wet_time`` where it is
    inside the contact time (the film is wet on a step when the step ends by ``wet_time``).
    The route split of each step's viable gain uses the trapezoidal fluxes of the step.
    """
    nd = np.atleast_2d(_f(nodes))
    bsz, m1 = nd.shape

    def b(x: ArrayLike) -> FloatArray:
        return np.broadcast_to(_f(x), (bsz,)).astype(float)

    m0, h0, tw, rate = b(dose), b(film_thickness), b(wet_time), b(thinning_rate)
    kpf, kpsc, ksc, lsc, lsup = b(kp_follicle), b(kp_sc), b(k_sc), b(sc_thickness), b(superficial)
    cap, kcl, sup = b(capacity), b(clearance), b(supply)
    pch = np.broadcast_to(_f(p_channel), (bsz, m1 - 1))
    h_safe = np.maximum(h0, 1e-300)
    dx = sc_grid(lsc, sc_nodes)  # (B, N)
    d_sc = np.divide(kpsc * lsc, ksc, out=np.zeros_like(ksc), where=ksc > 0.0)
    n = sc_nodes + 3  # vehicle, superficial, SC nodes, tissue
    iv, isup, it = 0, 1, sc_nodes + 2
    # static conductances [m/s] and capacities [m] (vehicle-equivalent concentration = x/V)
    cond_sup = np.divide(lsup * ksc, superficial_time, out=np.zeros_like(lsup), where=lsup > 0.0)
    face = d_sc * ksc / (0.5 * dx[:, 0])
    inner = d_sc[:, None] * ksc[:, None] / (0.5 * (dx[:, :-1] + dx[:, 1:]))
    bottom = d_sc * ksc / (0.5 * dx[:, -1])
    vol = np.empty((bsz, n))
    vol[:, isup] = np.maximum(lsup * ksc, 1e-30)
    vol[:, 2:it] = np.maximum(ksc[:, None] * dx, 1e-30)
    vol[:, it] = cap
    lap0 = np.zeros((bsz, n, n))

    def link(lap: FloatArray, i: int, j: int, c: FloatArray) -> None:
        lap[:, i, i] += c
        lap[:, j, j] += c
        lap[:, i, j] -= c
        lap[:, j, i] -= c

    link(lap0, iv, isup, cond_sup)
    link(lap0, iv, 2, face)
    for k in range(sc_nodes - 1):
        link(lap0, 2 + k, 3 + k, inner[:, k])
    link(lap0, it - 1, it, bottom)
    x = np.zeros((bsz, n))
    x[:, iv] = np.where(h0 > 0.0, m0, 0.0)
    total0 = x.sum(axis=1)
    via = {"ch": np.zeros(bsz), "fo": np.zeros(bsz), "sc": np.zeros(bsz)}
    # the generator does not depend on the dose: cases that differ only in it (or not at all)
    # share one eigendecomposition per step, and a case whose generator is bit for bit that of
    # the step before keeps its decomposition (the dried film; an occluded film on intact skin)
    gen = np.column_stack([nd, pch, h0, tw, rate, kpf, kpsc, ksc, lsc, lsup, cap, kcl, sup])
    first, inverse = distinct_rows(gen)
    eig = _StepEigh(first.size, n)
    lap0_u, kcl_u = lap0[first], kcl[first]
    # what does not depend on the amounts, for every step at once (B, M)
    t0, t1 = nd[:, :-1], nd[:, 1:]
    dts = np.maximum(t1 - t0, 0.0)
    wet = t1 <= (tw * (1.0 + 1e-12) + 1e-9)[:, None]
    col = (slice(None), None)
    inv_h = np.where(
        wet, _film_inverse_mean(h0[col], rate[col], t0, t1), (dry_availability / h_safe)[col]
    )
    vol_film = 1.0 / np.maximum(inv_h, 1e-300)
    h_mean = np.where(wet, h0[col] - rate[col] * 0.5 * (t0 + t1), h0[col])
    # the film's conductance; no film left conducts nothing (also when sup is infinite)
    g_film = np.multiply(sup[col], h_mean, out=np.zeros_like(h_mean), where=h_mean > 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        series = np.where(np.isfinite(g_film), pch * g_film / (pch + g_film), pch)
    p_chs = np.where(wet & (pch > 0.0), np.nan_to_num(series), 0.0)
    p_fos = np.where(wet, kpf[col], 0.0)
    p_direct = p_chs + p_fos
    shares_ch = np.divide(p_chs, p_direct, out=np.zeros_like(p_chs), where=p_direct > 0.0)
    for j in range(m1 - 1):
        dt = dts[:, j]
        vol[:, iv] = vol_film[:, j]
        lap = lap0_u.copy()
        link(lap, iv, it, p_direct[first, j])
        sq = np.sqrt(vol)
        sq_u = sq[first]
        sym = lap / (sq_u[:, :, None] * sq_u[:, None, :])
        sym[:, it, it] += kcl_u
        w, q = eig.decompose(sym, inverse)  # symmetric PSD: exp(−sym·dt)
        ex = np.exp(-np.maximum(w, 0.0) * dt[:, None])
        y = np.einsum("bij,bj->bi", q.transpose(0, 2, 1), x / sq)
        x_new = sq * np.einsum("bij,bj->bi", q, ex * y)
        # route split of the viable gain: trapezoidal fluxes over the step
        c0, c1 = x / vol, x_new / vol
        cm = 0.5 * (c0 + c1)
        f_direct = p_direct[:, j] * np.maximum(cm[:, iv] - cm[:, it], 0.0)
        f_sc = bottom * np.maximum(cm[:, it - 1] - cm[:, it], 0.0)
        gain = (x_new[:, it] - x[:, it]) + (x.sum(axis=1) - x_new.sum(axis=1))
        tot = f_direct + f_sc
        share_d = np.divide(f_direct, tot, out=np.zeros_like(tot), where=tot > 0.0)
        share_ch = shares_ch[:, j]
        via["ch"] += gain * share_d * share_ch
        via["fo"] += gain * share_d * (1.0 - share_ch)
        via["sc"] += gain * (1.0 - share_d)
        x = x_new
    cleared = total0 - x.sum(axis=1)
    return Reservoir(
        vehicle=x[:, iv],
        stratum_corneum=x[:, isup:it].sum(axis=1),
        tissue=x[:, it],
        cleared=cleared,
        via_channels=via["ch"],
        via_follicles=via["fo"],
        via_sc=via["sc"],
        wet_time=tw,
    )


# ---------------------------------------------------------------------------------- absorb
@dataclass(frozen=True)
class Absorption:
    """Result of ``absorb`` (amounts in kg/m², arrays (B,) unless noted).

    total: net amount delivered into the skin during the contact time (= retained + cleared);
    intact: the same through intact skin; enhancement: (total + f·dose)/(intact + f·dose);
    by_layer (B, 3): ``total`` by entry layer (epidermis, papillary, reticular dermis);
    retained: in the viable tissue at the end; cleared: removed to the blood; vehicle: left on the
    skin; dose: applied; kp [m/s]; pore_conductance g [m³/s]; area_fraction ε.

    With a ``Vehicle`` (the reservoir model) also: stratum_corneum (held in the SC at the end, not
    delivered); in_skin = stratum corneum + viable tissue, intact_in_skin the same on intact
    skin and enhancement_skin their ratio (what imaging of the skin compares); via_channels and
    via_follicles (parts of ``total``); kp_follicle [m/s]; k_close [1/s] (by channel size);
    wet_time [s] (how long the film stayed liquid; inf: it did not dry). None otherwise.
    """

    total: FloatArray
    intact: FloatArray
    enhancement: FloatArray
    by_layer: FloatArray
    retained: FloatArray
    cleared: FloatArray
    vehicle: FloatArray
    dose: FloatArray
    kp: FloatArray
    pore_conductance: FloatArray
    area_fraction: FloatArray
    stratum_corneum: FloatArray | None = None
    in_skin: FloatArray | None = None
    intact_in_skin: FloatArray | None = None
    enhancement_skin: FloatArray | None = None
    via_channels: FloatArray | None = None
    via_follicles: FloatArray | None = None
    kp_follicle: FloatArray | None = None
    k_close: FloatArray | None = None
    wet_time: FloatArray | None = None

    def squeeze(self) -> Absorption:
        """The single case of a batch of one, as 0-d arrays (``by_layer`` shape (3,))."""
        vals: dict[str, Any] = {
            k: None if v is None else np.asarray(v)[0] for k, v in self.__dict__.items()
        }
        return Absorption(**vals)


def _profile_terms(
    geo: tuple[FloatArray, ...],
    g: FloatArray,
    n_pos: FloatArray,
    lay: FloatArray,
    use_cell: bool,
    wall_exchange: bool,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(charging rate (B,), cell/isolated ratio (B, CELL_OPEN_NODES), g(0) (B,)) of
    ``_channel_profile``."""
    bsz = g.shape[0]
    dens = n_pos if use_cell else None
    thick = lay[:, 1:].sum(axis=1) if use_cell else None
    rate = transient_rate(g, clearance_sensitivity(*geo, density=dens, tissue_thickness=thick))
    ratio = np.ones((bsz, CELL_OPEN_NODES))
    if use_cell:
        s_nodes = np.linspace(0.0, 1.0, CELL_OPEN_NODES)[None, :]
        col = (slice(None), None)
        g_iso = pore_conductance(*(x[col] for x in geo), open_fraction=s_nodes)
        g_cell = pore_conductance(
            *(x[col] for x in geo),
            open_fraction=s_nodes,
            density=n_pos[col],
            tissue_thickness=lay[:, 1:].sum(axis=1)[col],
        )
        ratio = np.divide(g_cell, g_iso, out=np.ones_like(g_cell), where=g_iso > 0.0)
    g_shut = pore_conductance(*geo, wall_exchange=wall_exchange, open_fraction=0.0) * ratio[:, 0]
    return np.asarray(rate), ratio, np.asarray(g_shut)


def _channel_profile(
    geo: tuple[FloatArray, ...],
    g: FloatArray,
    n_pos: FloatArray,
    lay: FloatArray,
    use_cell: bool,
    wall_exchange: bool,
) -> tuple[FloatArray, Callable[[FloatArray], FloatArray]]:
    """The charging rate and the closing-channel term n·(g(S) − g(0)) of ``absorb``.

    ``geo`` = (a, d, L_sc, D_pore, D_t, K_t, kp, k_cl), arrays (B,). For the cell model, g(S) is
    the isolated g(S) times the cell/isolated ratio interpolated between ``CELL_OPEN_NODES``.
    """
    bsz = g.shape[0]
    # cases with the same channel and skin (a batch often differs only in the dose) share the
    # cell solves: computed once per distinct row, each row on its own
    key = np.column_stack([*(np.broadcast_to(x, (bsz,)) for x in geo), g, n_pos, lay])
    first, inverse = distinct_rows(key)
    if first.size < bsz:
        rate, ratio, g_shut = (
            x[inverse]
            for x in _profile_terms(
                tuple(np.broadcast_to(x, (bsz,))[first] for x in geo),
                g[first],
                n_pos[first],
                lay[first],
                use_cell,
                wall_exchange,
            )
        )
    else:
        rate, ratio, g_shut = _profile_terms(geo, g, n_pos, lay, use_cell, wall_exchange)

    # channels that overlap (R ≤ a) take the closed-form dense limit (``cell_conductance``)
    geo_b = [np.broadcast_to(x, (bsz,)) for x in geo]
    thick_all = lay[:, 1:].sum(axis=1)
    a_b, d_b, sc_b, _, dt_b, kt_b, _, kc_b = geo_b
    dense = use_cell & _overlapping(n_pos, a_b, d_b, sc_b, dt_b, kt_b, kc_b)

    def g_of_s(s_open: FloatArray) -> FloatArray:
        ex = (slice(None), None, None)
        gs = pore_conductance(
            *(x[ex] for x in geo), wall_exchange=wall_exchange, open_fraction=s_open
        )
        if use_cell:
            pos = np.clip(s_open, 0.0, 1.0) * (CELL_OPEN_NODES - 1)
            j = np.minimum(np.floor(pos).astype(int), CELL_OPEN_NODES - 2)
            frac = pos - j
            flat = j.reshape(bsz, -1)
            lo = np.take_along_axis(ratio, flat, axis=1).reshape(j.shape)
            hi = np.take_along_axis(ratio, flat + 1, axis=1).reshape(j.shape)
            gs = gs * (lo * (1.0 - frac) + hi * frac)
        term = n_pos[ex] * np.maximum(gs - g_shut[ex], 0.0)
        if np.any(dense):
            # overlapping channels: the dense limit is closed form in S, and far from linear in
            # it (the SC column limits it only below S ~ L_sc P/D_pore): exact, not interpolated
            sel = (dense, *ex[1:])
            d_, sc_, dp_, dt_, kt_, kp_, kc_ = (x[sel] for x in geo_b[1:8])
            p_s = overlapping_channel_permeability(
                d_, sc_, dp_, dt_, kt_, kp_, kc_, thick_all[sel], s_open[dense]
            )
            term[dense] = np.maximum(p_s - n_pos[dense][:, None, None] * g_shut[sel], 0.0)
        return np.asarray(term)

    return rate, g_of_s


WATER_DENSITY = 997.05
"""Density of liquid water at 25 °C [kg/m³] (converts the evaporation flux to film thinning)."""


def _absorb_reservoir(
    sol: Solute,
    paths: IntactPathways,
    veh: Vehicle,
    c0: FloatArray,
    h: FloatArray,
    tc: FloatArray,
    n_pos: FloatArray,
    a: FloatArray,
    d: FloatArray,
    lay: FloatArray,
    occ: BoolArray,
    params: TransportParameters,
    g: FloatArray,
    d_pore: FloatArray,
    d_t: FloatArray,
    k_t: float,
    kcl: ArrayLike,
    k_close: FloatArray,
    capacity: FloatArray,
    dose: FloatArray,
    eps: FloatArray,
    delay: ArrayLike,
    wall_exchange: bool,
    use_cell: bool,
    steps: int,
) -> Absorption:
    """The reservoir model of ``absorb`` (a ``Vehicle`` given): see ``reservoir_dose``."""
    bsz = g.shape[0]
    kcl_b = np.broadcast_to(_f(kcl), (bsz,)).astype(float)
    kp = paths.total
    geo = (a, d, lay[:, 0], d_pore, d_t, np.full(bsz, k_t), kp, kcl_b)
    rate, g_of_s = _channel_profile(geo, g, n_pos, lay, use_cell, wall_exchange)
    p = params
    evaporates = (~occ) & (~veh.in_vitro) & (veh.volatile_fraction > 0.0)
    thinning = np.where(evaporates, p.water_evaporation / WATER_DENSITY, 0.0)
    with np.errstate(divide="ignore"):
        wet_time = np.where(
            thinning > 0.0,
            np.clip(veh.volatile_fraction, 0.0, 1.0) * h / np.where(thinning > 0, thinning, 1.0),
            np.inf,
        )
    t_wet = np.minimum(wet_time, tc)
    active = np.minimum(t_wet, TAU_MAX / k_close)
    j = (np.arange(steps + 1) / steps) ** 2
    nodes = np.concatenate([active[:, None] * j[None, :], t_wet[:, None], tc[:, None]], axis=1)
    p_ch = channel_profile_means(nodes, g_of_s, k_close, rate, delay=delay)
    p_ch = p_ch * np.clip(veh.fill_fraction, 0.0, 1.0)[:, None]
    radius = np.where(
        np.isnan(sol.radius_m), stokes_einstein_radius(sol.d_aq, p.water_viscosity), sol.radius_m
    )
    kp_f = follicular_kp(sol.d_aq, radius, veh.follicle_factor, p)
    # lateral supply through the film to the channel mouths: steady radial diffusion in a film of
    # thickness h from the cell edge R = 1/√(π n) to a sink of radius a, per area n·2π h D/ln(R/a)
    with np.errstate(divide="ignore", invalid="ignore"):
        cell_r = 1.0 / np.sqrt(np.pi * np.where(n_pos > 0.0, n_pos, 1.0))
        log_ratio = np.log(np.maximum(cell_r / np.where(a > 0.0, a, 1.0), 1.0 + 1e-3))
        supply = np.where(
            (n_pos > 0.0) & (a > 0.0), n_pos * 2.0 * np.pi * sol.d_aq / log_ratio, np.inf
        )
    assert sol.sc_partition is not None
    k_sc = np.where(np.isfinite(sol.sc_partition), sol.sc_partition, sc_partition(paths.log_d, p))

    def two(x: ArrayLike) -> FloatArray:
        arr = np.broadcast_to(_f(x), (bsz,))
        return np.concatenate([arr, arr])

    res = reservoir_dose(
        two(dose),
        two(h),
        np.concatenate([nodes, nodes]),
        two(wet_time),
        two(thinning),
        np.concatenate([p_ch, np.zeros_like(p_ch)]),
        two(kp_f),
        two(supply),
        two(kp),
        two(k_sc),
        two(lay[:, 0]),
        np.full(2 * bsz, p.superficial_sc),
        p.superficial_sc_time,
        p.dry_deposit_availability,
        two(capacity),
        two(kcl_b),
    )
    w = slice(0, bsz)
    i = slice(bsz, 2 * bsz)
    total = res.delivered[w]
    intact = res.delivered[i]
    split = channel_outflow_split(a, d, lay, d_pore, d_t, k_t, kcl_b, wall_exchange=wall_exchange)
    by_layer = res.via_channels[w][:, None] * split
    by_layer[:, 0] += res.via_sc[w] + res.via_follicles[w]
    floor = p.enhancement_floor_fraction * dose
    enhancement = np.divide(
        np.maximum(total, 0.0) + floor,
        np.maximum(intact, 0.0) + floor,
        out=np.ones_like(total),
        where=(np.maximum(intact, 0.0) + floor) > 0.0,
    )
    skin_w, skin_i = res.in_skin[w], res.in_skin[i]
    enh_skin = np.divide(
        np.maximum(skin_w, 0.0) + floor,
        np.maximum(skin_i, 0.0) + floor,
        out=np.ones_like(skin_w),
        where=(np.maximum(skin_i, 0.0) + floor) > 0.0,
    )
    return Absorption(
        total=total,
        intact=intact,
        enhancement=enhancement,
        by_layer=by_layer,
        retained=res.tissue[w],
        cleared=res.cleared[w],
        vehicle=res.vehicle[w],
        dose=dose,
        kp=kp,
        pore_conductance=g,
        area_fraction=eps,
        stratum_corneum=res.stratum_corneum[w],
        in_skin=skin_w,
        intact_in_skin=skin_i,
        enhancement_skin=enh_skin,
        via_channels=res.via_channels[w],
        via_follicles=res.via_follicles[w],
        kp_follicle=kp_f,
        k_close=k_close,
        wet_time=wet_time,
    )


def absorb(
    solute: Solute,
    c0: ArrayLike,
    film_thickness: ArrayLike,
    contact_time: ArrayLike,
    n: ArrayLike,
    a: ArrayLike,
    depth: ArrayLike,
    layers: ArrayLike | SkinLayers,
    occluded: ArrayLike,
    params: TransportParameters,
    *,
    delay: ArrayLike = 0.0,
    wall_exchange: bool = True,
    steps: int = 64,
    quasi_steady: bool = False,
    cell: bool = True,
    vehicle: Vehicle | None = None,
) -> Absorption:
    """Absorption of a topical product applied on needled skin, batched over cases.

    Parameters
    ----------
    solute: molecular properties per case (``Solute``, arrays (B,)).
    c0: product concentration [kg/m³] (mg/mL); film_thickness: applied volume per area [m];
    contact_time: time on the skin [s]; n: puncture density [1/m²]; a: channel surface radius [m];
    depth: channel depth [m]; layers: thicknesses (B, 4) [m] (SC, viable epidermis, papillary,
    reticular) or ``SkinLayers``; occluded: True where the product is occluded (slow resealing);
    params: ``TransportParameters``; delay: time from needling to application [s];
    wall_exchange: False gives the pure series pore model of models.md C.4 (for comparison);
    steps: time steps of the integrator over the resealing window; quasi_steady: True gives the
    model before issue 6 (P = (1 − ε S) kp + n g S from t = 0, channels closing in number) for
    comparison. The default adds the tissue-charging transient φ(t) of the open-channel uptake and
    closes each channel by its conductance, g(S) (``pore_conductance(open_fraction=S)``):
    P(t) = kp + n·(g(S(t)) − g(0))·φ(t), as in the resolved unit cell (docs/transport.md).
    cell: g of one channel in its finite cell of radius 1/√(π n) over the viable tissue
    (``cell_conductance``, the default); False: the isolated channel (``pore_conductance`` without
    density, the model before the issue-6 follow-up). ``quasi_steady=True`` implies the isolated
    channel. For a closing channel, g(S) of the cell is the isolated g(S) times the ratio
    cell/isolated interpolated linearly between ``CELL_OPEN_NODES`` open fractions.

    vehicle: the conditions of the product (``Vehicle``: pH, drying, channel filling, follicles,
    in vitro): the reservoir model of issue 10 (``reservoir_dose``: a drying film, a
    stratum-corneum reservoir, the follicular shunt, the fraction of channels filled, the lateral
    supply through the film, closure by channel size ``closure_rate``); the engine always gives
    one. None: the film model before issue 10 (a film that stays liquid, a membrane SC of zero
    capacity, every channel filled, one closure rate per occlusion state), for comparison.

    Returns an ``Absorption`` (see there). Intact skin is ``kp`` = ``intact_kp``: the lipid route
    (pH partition and ion pairs, inside the Potts–Guy domain) and the polar route in parallel.
    """
    lay = layers.stack() if isinstance(layers, SkinLayers) else _f(layers)
    lay = np.atleast_2d(lay)
    bsz = lay.shape[0]

    def b(x: ArrayLike) -> FloatArray:
        return np.broadcast_to(_f(x), (bsz,)).astype(float)

    c0_, h, tc, n_, a_, d = b(c0), b(film_thickness), b(contact_time), b(n), b(a), b(depth)
    occ = np.broadcast_to(np.asarray(occluded, dtype=bool), (bsz,))
    sol = solute.broadcast(bsz)
    mw = sol.mw_g_per_mol
    d_aq = sol.d_aq
    veh = None if vehicle is None else vehicle.broadcast(bsz)
    paths = intact_pathways(sol, params, None if veh is None else veh.ph)
    kp = paths.total
    radius = np.where(
        np.isnan(sol.radius_m), stokes_einstein_radius(d_aq, params.water_viscosity), sol.radius_m
    )
    lam = np.divide(radius, a_, out=np.ones_like(radius), where=a_ > 0.0)
    d_pore = d_aq * renkin_hindrance(lam)
    d_t = tissue_diffusivity(mw, params)
    k_t = params.tissue_partition
    kcl: ArrayLike = params.clearance_rate
    if veh is not None:
        # a diffusion cell has no blood flow: the viable tissue drains to the receptor below the
        # dermis at the slowest diffusion mode of a slab with a sink, π² D_t/(4 H²)
        h_t = np.maximum(lay[:, 1:].sum(axis=1), 1e-12)
        kcl = np.where(veh.in_vitro, np.pi**2 * d_t / (4.0 * h_t**2), params.clearance_rate)
    use_cell = cell and wall_exchange and not quasi_steady
    dens = np.maximum(n_, 0.0) if use_cell else None
    thick = lay[:, 1:].sum(axis=1) if use_cell else None
    g = pore_conductance(
        a_,
        d,
        lay[:, 0],
        d_pore,
        d_t,
        k_t,
        kp,
        kcl,
        wall_exchange=wall_exchange,
        density=dens,
        tissue_thickness=thick,
    )
    n_pos = np.maximum(n_, 0.0)
    eps = np.minimum(n_pos * np.pi * a_**2, 1.0)
    if veh is None:
        k_close = np.where(occ, params.k_close_occluded, params.k_close_open)
    else:
        # a diffusion cell: the donor chamber covers the skin and excised skin does not heal, so
        # its channels close at the occluded rate (as the delivery validation rows, occluded)
        k_close = closure_rate(a_, occ | veh.in_vitro, params)
    capacity = k_t * (lay[:, 1] + lay[:, 2] + lay[:, 3])
    h_pos = np.maximum(h, 0.0)
    dose = np.maximum(c0_, 0.0) * h_pos
    if veh is not None:
        if quasi_steady:
            raise ValueError("absorb: the reservoir model (vehicle) has no quasi_steady form")
        return _absorb_reservoir(
            sol,
            paths,
            veh,
            c0_,
            h_pos,
            tc,
            n_pos,
            a_,
            d,
            lay,
            occ,
            params,
            g,
            d_pore,
            d_t,
            k_t,
            kcl,
            k_close,
            capacity,
            dose,
            eps,
            delay,
            wall_exchange,
            use_cell,
            steps,
        )
    if quasi_steady:
        with_ch = finite_dose(
            dose, h_pos, tc, kp, n_pos * g, eps, k_close, capacity, kcl, delay=delay, steps=steps
        )
    else:
        geo = (a_, d, lay[:, 0], d_pore, d_t, b(k_t), kp, b(kcl))
        rate, g_of_s = _channel_profile(geo, g, n_pos, lay, use_cell, wall_exchange)
        active = np.minimum(tc, TAU_MAX / k_close)
        nodes = _time_grid(active, tc, steps)
        p_ch = channel_profile_means(nodes, g_of_s, k_close, rate, delay=delay)
        with_ch = finite_dose_steps(dose, h_pos, nodes, kp, p_ch, capacity, kcl)
    intact = finite_dose(dose, h_pos, tc, kp, 0.0, 0.0, 0.0, capacity, kcl, steps=1)
    if not quasi_steady:
        # no channel path at all (n = 0, or channels that stay in the SC): exactly intact skin,
        # without the round-off of summing many small step exchanges
        none = np.all(p_ch <= 0.0, axis=1)
        if np.any(none):
            with_ch = FiniteDose(
                *(np.where(none, getattr(intact, f), getattr(with_ch, f)) for f in _FD_FIELDS)
            )
    split = channel_outflow_split(a_, d, lay, d_pore, d_t, k_t, kcl, wall_exchange=wall_exchange)
    via_sc = with_ch.delivered - with_ch.via_channels
    by_layer = with_ch.via_channels[:, None] * split
    by_layer[:, 0] += via_sc
    floor = params.enhancement_floor_fraction * dose
    num = np.maximum(with_ch.delivered, 0.0) + floor
    den = np.maximum(intact.delivered, 0.0) + floor
    enhancement = np.divide(num, den, out=np.ones_like(num), where=den > 0.0)
    return Absorption(
        total=with_ch.delivered,
        intact=intact.delivered,
        enhancement=enhancement,
        by_layer=by_layer,
        retained=with_ch.tissue,
        cleared=with_ch.cleared,
        vehicle=with_ch.vehicle,
        dose=dose,
        kp=kp,
        pore_conductance=g,
        area_fraction=eps,
    )


def absorb_session(
    molecule: Molecule,
    concentration_kg_m3: float,
    film_thickness_m: float,
    contact_time_s: float,
    occluded: bool,
    channels: Channels,
    skin: SkinLayers,
    ps: ParameterSet,
    *,
    delay_s: float = 0.0,
) -> Absorption:
    """One case: ``molecule`` applied after the needling ``channels`` (batch of one) on ``skin``
    (batch of one). Returns a squeezed Absorption (0-d amounts in kg/m², ``by_layer`` shape (3,))."""
    if len(channels) != 1 or len(skin) != 1:
        raise ValueError(
            f"absorb_session takes one case (batches of one); got {len(channels)} channel cases "
            f"and {len(skin)} skin cases: use absorb() for batches"
        )
    ch, sk = channels, skin
    res = absorb(
        Solute.from_molecules([molecule]),
        concentration_kg_m3,
        film_thickness_m,
        contact_time_s,
        np.atleast_1d(ch.density_m2),
        np.atleast_1d(ch.surface_radius_m),
        np.atleast_1d(ch.depth_m),
        np.atleast_2d(sk.stack()),
        occluded,
        TransportParameters.from_parameters(ps),
        delay=delay_s,
    )
    return res.squeeze()
