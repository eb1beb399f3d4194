"""Topical absorption of a course, session by session: the engine's homogenised model beside the
resolved unit cell for the same case (the data behind the concentration maps and cumulative-absorption
curves that :mod:`microneedling.reports.absorb` draws).

For every session that applies a topical product:

* **homogenised** (the engine's numbers): ``engine.prepare`` → ``transport.absorb`` with the
  product's ``Vehicle`` (the reservoir model: a drying film, the stratum-corneum reservoir, the
  follicular shunt, the share of channels filled, closure by channel size) — amount delivered into
  the viable skin during the contact time [µg/cm²], by entry layer (epidermis, which also takes
  everything entering through intact stratum corneum and the follicles, papillary and reticular
  dermis), the same through intact skin, and the enhancement ratio; with ``draws`` > 0 the
  10th–90th percentile over parameter draws (``microneedling.parameters.sampling
  .sample_parameter_sets``, the same draws and percentiles as ``simulate``, so the numbers equal
  ``simulate``'s ``absorbed_amount``).
* **channel model** (``channel_model_ug_cm2``): the same homogenised channel transport without the
  vehicle-film pieces (``transport.absorb`` without a ``Vehicle``: a film that stays liquid, every
  channel filled, no follicles, a membrane stratum corneum), closing at the case's rate: the
  problem the resolved cell poses, so ``difference_pct`` compares like with like.
* **resolved** (``physics.unitcell``): one channel in its cylindrical cell for the same case —
  skin layers of the site (stratum corneum, viable epidermis, papillary, reticular dermis), the
  session's puncture density, channel depth and surface radius (``physics.needles``), the product
  as a finite vehicle film (thickness = applied volume per area) that the skin depletes, the
  channel closing as in the engine (S = exp(−k_close t), k_close by channel size
  ``transport.closure_rate``, held piecewise constant at its interval mean on intervals of
  ``CLOSURE_STEP``/k_close), first-order clearance in all viable tissue, no
  flux through the bottom of the dermis (as the homogenised tissue compartment); for a topical
  ``in_vitro`` (an excised skin in a diffusion cell) no clearance, a perfect sink below the skin
  (the receptor) and the occluded closure, the channel model with the engine's lumped drain
  π² D_t/(4 H²) as its clearance. Properties as
  ``transport.absorb`` uses them: stratum corneum K = 1, D = kp·L_sc (steady permeability kp,
  Potts–Guy; 1e-20 m/s where kp = 0), channel D_aq·H(λ) (Renkin), tissue D_t (Chen 2015) and
  partition K_t. The same cell without the channel gives the intact-skin amount.

Definitions. "absorbed" is the amount that has left the vehicle by the end of the contact time. In
the resolved model part of it still sits in the stratum corneum and in the channel fluid; both are
reported separately (``resolved_sc_ug_cm2``, ``resolved_channel_ug_cm2``), and the per-layer
amounts (stored + cleared) are for the viable layers. The channel model has no stratum-corneum
storage (a membrane of zero capacity) and splits by entry layer, so its per-layer split is not the
same quantity as the resolved one; the totals are. ``difference_pct`` = 100 (channel model −
resolved)/resolved of the total. ``docs/transport.md`` says where the homogenised model is within
5% of the resolved one (and where not); ``docs/absorb.md`` describes this module and the command.

API::

    topical_sessions(course, ps) -> list[SessionCase]        (InputError when there is none)
    homogenised(course, ps, cases, draws, seed) -> dict[str, ndarray]
    resolve(case, ps, *, molecules=None, n_out=48) -> Resolved
    absorption_table(course, ps, *, draws=32, seed=None, resolved=True) -> (DataFrame, {key: Resolved})

The figures (concentration map, cumulative curves) and the HTML report are
:mod:`microneedling.reports.absorb`'s job.

Units: amounts in µg/cm² in tables (1 kg/m² = 1e5 µg/cm²); SI inside.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from microneedling.engine.prepare import prepare
from microneedling.errors import InputError
from microneedling.parameters.molecules import in_scope
from microneedling.parameters.parameter_set import load_parameters
from microneedling.parameters.sampling import posterior_nominal, sample_parameter_sets
from microneedling.physics import needles, transport
from microneedling.physics.unitcell import UnitCell, solve

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from microneedling.course.model import Course
    from microneedling.parameters.molecules import Molecule
    from microneedling.parameters.parameter_set import ParameterSet
    from microneedling.physics.unitcell import UnitCell, UnitCellSolution

__all__ = [
    "CLOSURE_STEP",
    "RESOLVED_GRID",
    "Resolved",
    "SessionCase",
    "absorption_table",
    "homogenised",
    "resolve",
    "topical_sessions",
]

KG_M2_TO_UG_CM2 = 1.0e5
"""1 kg/m² = 1e9 µg / 1e4 cm²."""
RESOLVED_GRID = (40, 80)
"""Unit-cell grid nr × nz: ``docs/transport.md`` measured ≤ 0.7% error of the absorbed amount
against the 2× refined grid on this size."""
CLOSURE_STEP = 0.1
"""Closure staircase interval in units of 1/k_close (interval-mean open fraction on each)."""
CLOSURE_FLOOR = 1.0e-4
"""Open fraction below which the channel counts as closed (S = 0 from then on)."""
KP_NONE = 1.0e-20
"""SC permeability [m/s] standing in for kp = 0 (the unit cell needs D > 0); negligible."""
RESOLVED_STEPS = 200
"""Time steps of the resolved solve over the contact time (plus closure breakpoints)."""
PERCENTILES = (10.0, 90.0)
"""Interval of the homogenised numbers over parameter draws (as ``simulate``)."""
SKIN_LAYER_NAMES = ("stratum_corneum", "viable_epidermis", "papillary_dermis", "reticular_dermis")
ENGINE_LAYERS = ("epidermis", "papillary_dermis", "reticular_dermis")


# ----------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class SessionCase:
    """One session with a topical: its inputs and channel geometry (units in the names)."""

    site: str
    session: int  # index among the site's sessions (0-based)
    day: float
    product: str
    concentration_mg_ml: float  # = kg/m³
    volume_ul_cm2: float
    contact_hours: float
    occluded: bool
    needle_length_mm: float
    puncture_density_cm2: float
    channel_depth_um: float
    channel_radius_um: float
    layers_um: tuple[float, float, float, float]  # SC, viable epidermis, papillary, reticular
    b: int  # case (site) index in ``simulation.prepare``
    k: int  # session index in ``simulation.prepare``
    in_vitro: bool = False  # an excised skin in a diffusion cell (the topical's ``in_vitro``)

    @property
    def film_thickness_m(self) -> float:
        """Applied volume per area as a film thickness [m] (1 µL/cm² = 1e-5 m)."""
        return self.volume_ul_cm2 * 1e-9 / 1e-4

    @property
    def dose_ug_cm2(self) -> float:
        """Applied amount c0·h [µg/cm²]."""
        return self.concentration_mg_ml * self.film_thickness_m * KG_M2_TO_UG_CM2

    @property
    def resolved_key(self) -> tuple[Any, ...]:
        """Everything the resolved cell depends on (identical sessions share one solve)."""
        return (
            self.product,
            self.concentration_mg_ml,
            self.volume_ul_cm2,
            self.contact_hours,
            self.occluded,
            self.in_vitro,
            self.puncture_density_cm2,
            self.channel_depth_um,
            self.channel_radius_um,
            self.layers_um,
        )

    @property
    def stem(self) -> str:
        """File-name stem of this session's figures: ``<site>_s<session number>``."""
        return f"{self.site}_s{self.session + 1}"

    @property
    def label(self) -> str:
        return f"{self.site}, session {self.session + 1} (day {self.day:g})"


def topical_sessions(course: Course, ps: ParameterSet) -> list[SessionCase]:
    """Every session of ``course`` with a topical, with its channel geometry and skin layers.

    The layout (case per site, sessions per site) and the needle physics are those of
    ``simulation.prepare`` (a test keeps the two equal). Raises ``InputError`` when no session
    applies a topical product.
    """

    sites = [s.name for s in course.sites]
    per_site = [course.sessions_for(s) for s in sites]
    picks = [(b, k, s) for b, sess in enumerate(per_site) for k, s in enumerate(sess) if s.topical]
    if not picks:
        raise InputError(
            "sessions[].topical",
            None,
            "at least one session with a topical product (a [sessions.topical] table with "
            "product, concentration_mg_ml, volume_ul_cm2, contact_hours): this course applies none, "
            "so there is no absorption to report",
        )
    pat = course.patient
    skin = needles.skin_layers_batch(sites, pat.age_years, pat.sex, ps)
    stack = np.atleast_2d(skin.stack())
    bi = np.array([b for b, _, _ in picks])
    geo = needles.DeviceGeometry.from_fields(course.device.model_dump())
    ch = needles.channels(
        geo,
        needle_length_m=np.array([s.needle_length_mm * 1e-3 for _, _, s in picks]),
        passes=np.array([float(s.passes) for _, _, s in picks]),
        pen_speed_m_s=np.array(
            [math.nan if s.pen_speed_cm_s is None else s.pen_speed_cm_s * 1e-2 for _, _, s in picks]
        ),
        skin=needles.SkinLayers.from_stack(stack[bi]),
        params=needles.NeedleParameters.from_parameters(ps),
    )
    out = []
    for i, (b, k, s) in enumerate(picks):
        top = s.topical
        assert top is not None
        out.append(
            SessionCase(
                site=sites[b],
                session=k,
                day=float(s.day),
                product=top.product,
                concentration_mg_ml=float(top.concentration_mg_ml),
                volume_ul_cm2=float(top.volume_ul_cm2),
                contact_hours=float(top.contact_hours),
                occluded=bool(s.occlusion),
                needle_length_mm=float(s.needle_length_mm),
                puncture_density_cm2=float(ch.density_m2[i]) * 1e-4,
                channel_depth_um=float(ch.depth_m[i]) * 1e6,
                channel_radius_um=float(ch.surface_radius_m[i]) * 1e6,
                layers_um=tuple(float(x) * 1e6 for x in stack[b]),  # type: ignore[arg-type]
                b=b,
                k=k,
                in_vitro=bool(top.in_vitro),
            )
        )
    return out


# ----------------------------------------------------------------------------- homogenised
def homogenised(
    course: Course, ps: ParameterSet, cases: Sequence[SessionCase], draws: int, seed: int
) -> dict[str, np.ndarray]:
    """The engine's numbers per case (arrays (C,), by-layer (C, 3)) [µg/cm²], nominal (at the
    median parameters) and, with ``draws`` > 0, ``<name>_low``/``<name>_high`` (10th/90th
    percentiles over the draws) and ``<name>_median`` (their median: with few draws the nominal
    value can lie outside the 10–90% interval, the median never does)."""

    bi = np.array([c.b for c in cases])
    ki = np.array([c.k for c in cases])

    def pick(prep: Any) -> dict[str, np.ndarray]:
        return {
            "absorbed": prep.absorbed_ug_cm2[bi, ki],
            "intact": prep.absorbed_intact_ug_cm2[bi, ki],
            "enhancement": prep.enhancement[bi, ki],
            "by_layer": prep.absorbed_by_layer_ug_cm2[bi, ki],
        }

    out = pick(prepare(course, posterior_nominal(ps)))  # the centre of the draws' posterior
    if draws > 0:
        runs = [pick(prepare(course, s)) for s in sample_parameter_sets(ps, draws, seed)]
        for name in list(out):
            stack = np.stack([r[name] for r in runs])
            with np.errstate(all="ignore"):
                lo, med, hi = np.nanpercentile(
                    stack, (PERCENTILES[0], 50.0, PERCENTILES[1]), axis=0
                )
            out[f"{name}_low"], out[f"{name}_high"] = lo, hi
            out[f"{name}_median"] = med
    return out


# ----------------------------------------------------------------------------- resolved
@dataclass(frozen=True)
class Resolved:
    """The resolved unit cell for one case, with and without the channel (SI inside).

    ``hours`` (T,) output times; ``with_channel``/``intact`` the ``UnitCellSolution``s (amounts per
    skin area, kg/m²); ``cell``: the ``UnitCell`` with the channel; ``k_close`` [1/s]; ``dose``
    [kg/m²]; ``homogenised_hours``/``homogenised_curve`` [h, µg/cm²]: the channel model's
    delivered amount had the product been removed at each of those times (one batched
    ``transport.absorb`` without a vehicle, closing at ``k_close``: like for like with the cell).
    """

    case: SessionCase
    cell: UnitCell
    hours: np.ndarray
    with_channel: UnitCellSolution
    intact: UnitCellSolution
    k_close: float
    dose: float
    homogenised_hours: np.ndarray
    homogenised_curve: np.ndarray

    def total_ug_cm2(self, channel: bool = True) -> float:
        """Amount that left the vehicle by the end of the contact time [µg/cm²]."""
        sol = self.with_channel if channel else self.intact
        return float(sol.absorbed[-1]) * KG_M2_TO_UG_CM2


def _closure(k_close: float, t_end: float) -> tuple[np.ndarray, np.ndarray]:
    """Switching times [s] from 0 and interval-mean open fractions of S = exp(−k t)."""
    if not k_close > 0:
        return np.zeros(0), np.zeros(0)
    step = min(CLOSURE_STEP / k_close, t_end / 20.0)
    t_stop = min(t_end, math.log(1.0 / CLOSURE_FLOOR) / k_close)
    starts = np.arange(0.0, t_stop, step)
    ends = np.minimum(starts + step, t_stop)
    mean = (np.exp(-k_close * starts) - np.exp(-k_close * ends)) / (k_close * (ends - starts))
    if t_stop < t_end:  # closed from here on
        starts = np.append(starts, t_stop)
        mean = np.append(mean, 0.0)
    return starts, mean


def resolve(
    case: SessionCase,
    ps: ParameterSet,
    *,
    molecules: Mapping[str, Molecule] | None = None,
    n_out: int = 48,
    grid: tuple[int, int] = RESOLVED_GRID,
) -> Resolved:
    """Solve the unit cell for ``case`` with and without the channel (see the module docstring)."""

    mol = (in_scope([case.product]) if molecules is None else molecules)[case.product]
    params = transport.TransportParameters.from_parameters(ps)
    sol_props = transport.Solute.from_molecules([mol])
    kp = float(transport.intact_kp(sol_props, params)[0])
    a = case.channel_radius_um * 1e-6
    d = case.channel_depth_um * 1e-6
    r_solute = mol.radius_m
    if math.isnan(r_solute):
        r_solute = float(transport.stokes_einstein_radius(mol.d_aq, params.water_viscosity))
    d_pore = mol.d_aq * float(transport.renkin_hindrance(r_solute / a)) if a > 0 else mol.d_aq
    d_t = float(transport.tissue_diffusivity(mol.mw_g_per_mol, params))
    k_t, k_cl = params.tissue_partition, params.clearance_rate
    # a diffusion cell (the engine's Vehicle.in_vitro): the donor chamber covers the skin (occluded
    # closure), no blood clearance, the receptor a perfect sink below the skin (exact here; the
    # engine lumps it as a drain of the viable tissue at π² D_t/(4 H²))
    k_close = float(transport.closure_rate(a, case.occluded or case.in_vitro, params))
    lay = tuple(x * 1e-6 for x in case.layers_um)
    k_cl_tissue = 0.0 if case.in_vitro else k_cl
    d_sc = (kp if kp > 0 else KP_NONE) * lay[0]
    t_end = case.contact_hours * 3600.0
    base: dict[str, Any] = dict(
        layer_thickness=lay,
        layer_diffusivity=(d_sc, d_t, d_t, d_t),
        layer_partition=(1.0, k_t, k_t, k_t),
        layer_clearance=(0.0, k_cl_tissue, k_cl_tissue, k_cl_tissue),
        puncture_density=case.puncture_density_cm2 * 1e4,
        channel_diffusivity=d_pore,
        channel_partition=1.0,
        vehicle_concentration=case.concentration_mg_ml,
        vehicle_thickness=case.film_thickness_m,
        bottom="sink" if case.in_vitro else "zero_flux",
        closure_rate=k_close,
        nr=grid[0],
        nz=grid[1],
    )
    if not (0 < d < sum(lay)) or not a > 0:
        raise InputError(
            f"{case.label}: channel",
            f"depth {case.channel_depth_um:.1f} um, radius {case.channel_radius_um:.1f} um",
            "a channel of positive radius and depth shallower than the skin for the resolved cell",
        )
    try:
        cell = UnitCell(channel_radius=a, channel_depth=d, **base)
    except ValueError as exc:
        raise InputError(
            f"{case.label}: channel",
            f"radius {case.channel_radius_um:.1f} um at {case.puncture_density_cm2:.0f} /cm^2",
            f"a channel narrower than its unit cell for the resolved model ({exc})",
        ) from exc
    times = np.linspace(t_end / n_out, t_end, n_out)
    closures, levels = _closure(k_close, t_end)
    dt = t_end / RESOLVED_STEPS
    with_ch = solve(cell, times, closures, closure_levels=levels, dt=dt)
    intact_cell = UnitCell(**{**base, "nr": 1, "nz": grid[1]})
    intact = solve(intact_cell, times, dt=dt)
    # the channel model's curve: absorb() without a vehicle, closing at this case's rate, with the
    # product removed at each output time (one batch)
    hh = np.linspace(0.0, case.contact_hours, 25)[1:]
    same_closure = dataclasses.replace(params, k_close_open=k_close, k_close_occluded=k_close)
    if case.in_vitro:  # the engine's lumped drain to the receptor, as transport.absorb in vitro
        h_t = sum(lay[1:])
        same_closure = dataclasses.replace(
            same_closure, clearance_rate=math.pi**2 * d_t / (4.0 * h_t**2)
        )
    ab = transport.absorb(
        transport.Solute.from_molecules([mol] * len(hh)),
        case.concentration_mg_ml,
        case.film_thickness_m,
        hh * 3600.0,
        case.puncture_density_cm2 * 1e4,
        a,
        d,
        np.tile(np.asarray(lay), (len(hh), 1)),
        case.occluded,
        same_closure,
    )
    return Resolved(
        case=case,
        cell=cell,
        hours=times / 3600.0,
        with_channel=with_ch,
        intact=intact,
        k_close=k_close,
        dose=case.concentration_mg_ml * case.film_thickness_m,
        homogenised_hours=hh,
        homogenised_curve=np.asarray(ab.total) * KG_M2_TO_UG_CM2,
    )


# ----------------------------------------------------------------------------- table
def _enhancement(total: float, intact: float, dose: float, floor: float) -> float:
    """(total + f·dose)/(intact + f·dose) as ``transport.absorb``; inf where intact-skin uptake is
    below 1e-9 of the dose (no intact-skin path, e.g. hyaluronan), as ``simulation.prepare``
    reports it."""
    if intact <= 1e-9 * dose:
        return math.inf
    return (max(total, 0.0) + floor * dose) / (max(intact, 0.0) + floor * dose)


def absorption_table(
    course: Course,
    ps: ParameterSet | None = None,
    *,
    draws: int = 32,
    seed: int | None = None,
    resolved: bool = True,
) -> tuple[pd.DataFrame, dict[tuple[Any, ...], Resolved]]:
    """One row per topical session: inputs, channel geometry, the engine's amounts (with
    intervals) and, with ``resolved``, the unit cell's amounts and the difference. Returns the
    table and the resolved solutions (one per distinct case, keyed by ``SessionCase.resolved_key``).
    """
    import pandas as pd

    ps = ps or load_parameters()
    seed = course.seed if seed is None else seed
    cases = topical_sessions(course, ps)
    hom = homogenised(course, ps, cases, draws, seed)
    floor = transport.TransportParameters.from_parameters(ps).enhancement_floor_fraction
    solved: dict[tuple[Any, ...], Resolved] = {}
    if resolved:
        mols = in_scope({c.product for c in cases})  # shipped and user molecules in scope
        for c in cases:
            if c.resolved_key not in solved:
                solved[c.resolved_key] = resolve(c, ps, molecules=mols)
    rows = []
    for i, c in enumerate(cases):
        row: dict[str, Any] = {
            "site": c.site,
            "session": c.session + 1,
            "day": c.day,
            "product": c.product,
            "concentration_mg_ml": c.concentration_mg_ml,
            "volume_ul_cm2": c.volume_ul_cm2,
            "dose_ug_cm2": c.dose_ug_cm2,
            "contact_hours": c.contact_hours,
            "occluded": c.occluded,
            "in_vitro": c.in_vitro,
            "needle_length_mm": c.needle_length_mm,
            "puncture_density_cm2": c.puncture_density_cm2,
            "channel_depth_um": c.channel_depth_um,
            "channel_radius_um": c.channel_radius_um,
        }
        for name, col in (
            ("absorbed", "absorbed_ug_cm2"),
            ("intact", "intact_ug_cm2"),
            ("enhancement", "enhancement_ratio"),
        ):
            for tag in ("", "_low", "_high", "_median"):
                if name + tag in hom:
                    row[col + tag] = float(hom[name + tag][i])
        for j, layer in enumerate(ENGINE_LAYERS):
            for tag in ("", "_low", "_high", "_median"):
                if "by_layer" + tag in hom:
                    row[f"absorbed_{layer}_ug_cm2{tag}"] = float(hom["by_layer" + tag][i, j])
        rv = solved.get(c.resolved_key)
        if rv is not None:
            w, it = rv.with_channel, rv.intact
            tot, tot_i = float(w.absorbed[-1]), float(it.absorbed[-1])
            u = KG_M2_TO_UG_CM2
            row["resolved_absorbed_ug_cm2"] = tot * u
            row["resolved_intact_ug_cm2"] = tot_i * u
            row["resolved_enhancement_ratio"] = _enhancement(tot, tot_i, rv.dose, floor)
            row["resolved_sc_ug_cm2"] = float(w.absorbed_by_layer[-1, 0]) * u
            row["resolved_channel_ug_cm2"] = float(w.stored_channel[-1]) * u
            for j, layer in enumerate(SKIN_LAYER_NAMES[1:], start=1):
                row[f"resolved_{layer}_ug_cm2"] = float(w.absorbed_by_layer[-1, j]) * u
            row["resolved_cleared_ug_cm2"] = float(w.cleared_by_layer[-1].sum()) * u
            row["resolved_vehicle_left_ug_cm2"] = float(w.vehicle[-1]) * u
            channel_model = float(rv.homogenised_curve[-1])
            row["channel_model_ug_cm2"] = channel_model
            row["difference_pct"] = 100.0 * (channel_model - tot * u) / (tot * u)
            row["figures"] = rv.case.stem  # the first session of this distinct case
            row["resolved_mass_balance_residual"] = max(
                w.mass_balance_residual, it.mass_balance_residual
            )
        rows.append(row)
    return pd.DataFrame(rows), solved
