"""Topical absorption of a course, session by session: the engine's homogenised model beside the
resolved unit cell for the same case, with the concentration map and cumulative-absorption curves.

For every session that applies a topical product:

* **homogenised** (the engine's numbers): ``simulation.prepare`` → ``transport.absorb`` — amount
  delivered into the skin during the contact time [µg/cm²], by entry layer (epidermis, which also
  takes everything entering through intact stratum corneum, papillary and reticular dermis), the
  same through intact skin, and the enhancement ratio; with ``draws`` > 0 the 10th–90th percentile
  over parameter draws (``simulation.sample_parameter_sets``, the same draws and percentiles as
  ``simulate``, so the numbers equal ``simulate``'s ``absorbed_amount``).
* **resolved** (``physics.unitcell``): one channel in its cylindrical cell for the same case —
  skin layers of the site (stratum corneum, viable epidermis, papillary, reticular dermis), the
  session's puncture density, channel depth and surface radius (``physics.needles``), the product
  as a finite vehicle film (thickness = applied volume per area) that the skin depletes, the
  channel closing as in the engine (S = exp(−k_close t), held piecewise constant at its interval
  mean on intervals of ``CLOSURE_STEP``/k_close), first-order clearance in all viable tissue, no
  flux through the bottom of the dermis (as the homogenised tissue compartment). Properties as
  ``transport.absorb`` uses them: stratum corneum K = 1, D = kp·L_sc (steady permeability kp,
  Potts–Guy; 1e-20 m/s where kp = 0), channel D_aq·H(λ) (Renkin), tissue D_t (Chen 2015) and
  partition K_t. The same cell without the channel gives the intact-skin amount.

Definitions. "absorbed" is the amount that has left the vehicle by the end of the contact time. In
the resolved model part of it still sits in the stratum corneum and in the channel fluid; both are
reported separately (``resolved_sc_ug_cm2``, ``resolved_channel_ug_cm2``), and the per-layer
amounts (stored + cleared) are for the viable layers. The homogenised model has no stratum-corneum
storage (a membrane of zero capacity) and splits by entry layer, so its per-layer split is not the
same quantity as the resolved one; the totals are. ``difference_pct`` = 100 (homogenised −
resolved)/resolved of the total. ``docs/transport.md`` says where the homogenised model is within
5% of the resolved one (and where not); ``docs/absorb.md`` describes this module and the command.

API::

    topical_sessions(course, ps) -> list[SessionCase]        (InputError when there is none)
    homogenised(course, ps, cases, draws, seed) -> dict[str, ndarray]
    resolve(case, ps, *, molecules=None, n_out=48) -> Resolved
    absorption_table(course, ps, *, draws=32, seed=None, resolved=True) -> (DataFrame, {key: Resolved})
    plot_map(resolved, path, *, title) / plot_curves(resolved, path, *, title) -> Path   (PNG, atomic)
    write_report(out_dir, table, figures, course_name) -> Path                           (HTML, atomic)

Units: amounts in µg/cm² in tables (1 kg/m² = 1e5 µg/cm²); SI inside.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from microneedling.about import DISCLAIMER
from microneedling.engine.prepare import prepare
from microneedling.errors import InputError
from microneedling.io import atomic_path, write_text_atomic
from microneedling.parameters.molecules import shipped_molecules
from microneedling.parameters.parameter_set import load_parameters
from microneedling.parameters.sampling import sample_parameter_sets
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
    "plot_curves",
    "plot_map",
    "resolve",
    "topical_sessions",
    "write_report",
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
            )
        )
    return out


# ----------------------------------------------------------------------------- homogenised
def homogenised(
    course: Course, ps: ParameterSet, cases: Sequence[SessionCase], draws: int, seed: int
) -> dict[str, np.ndarray]:
    """The engine's numbers per case (arrays (C,), by-layer (C, 3)) [µg/cm²], nominal and, with
    ``draws`` > 0, ``<name>_low``/``<name>_high`` (10th/90th percentiles over the draws)."""

    bi = np.array([c.b for c in cases])
    ki = np.array([c.k for c in cases])

    def pick(prep: Any) -> dict[str, np.ndarray]:
        return {
            "absorbed": prep.absorbed_ug_cm2[bi, ki],
            "intact": prep.absorbed_intact_ug_cm2[bi, ki],
            "enhancement": prep.enhancement[bi, ki],
            "by_layer": prep.absorbed_by_layer_ug_cm2[bi, ki],
        }

    out = pick(prepare(course, ps))
    if draws > 0:
        runs = [pick(prepare(course, s)) for s in sample_parameter_sets(ps, draws, seed)]
        for name in list(out):
            stack = np.stack([r[name] for r in runs])
            with np.errstate(all="ignore"):
                lo, hi = np.nanpercentile(stack, PERCENTILES, axis=0)
            out[f"{name}_low"], out[f"{name}_high"] = lo, hi
    return out


# ----------------------------------------------------------------------------- resolved
@dataclass(frozen=True)
class Resolved:
    """The resolved unit cell for one case, with and without the channel (SI inside).

    ``hours`` (T,) output times; ``with_channel``/``intact`` the ``UnitCellSolution``s (amounts per
    skin area, kg/m²); ``cell``: the ``UnitCell`` with the channel; ``k_close`` [1/s]; ``dose``
    [kg/m²]; ``homogenised_hours``/``homogenised_curve`` [h, µg/cm²]: the engine's delivered
    amount had the product been removed at each of those times (one batched ``transport.absorb``).
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

    mols = shipped_molecules() if molecules is None else molecules
    mol = mols[case.product]
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
    k_close = params.k_close_occluded if case.occluded else params.k_close_open
    lay = tuple(x * 1e-6 for x in case.layers_um)
    d_sc = (kp if kp > 0 else KP_NONE) * lay[0]
    t_end = case.contact_hours * 3600.0
    base: dict[str, Any] = dict(
        layer_thickness=lay,
        layer_diffusivity=(d_sc, d_t, d_t, d_t),
        layer_partition=(1.0, k_t, k_t, k_t),
        layer_clearance=(0.0, k_cl, k_cl, k_cl),
        puncture_density=case.puncture_density_cm2 * 1e4,
        channel_diffusivity=d_pore,
        channel_partition=1.0,
        vehicle_concentration=case.concentration_mg_ml,
        vehicle_thickness=case.film_thickness_m,
        bottom="zero_flux",
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
    # the engine's curve: absorb() with the product removed at each output time (one batch)
    hh = np.linspace(0.0, case.contact_hours, 25)[1:]
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
        params,
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
        mols = shipped_molecules()
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
            for tag in ("", "_low", "_high"):
                if name + tag in hom:
                    row[col + tag] = float(hom[name + tag][i])
        for j, layer in enumerate(ENGINE_LAYERS):
            for tag in ("", "_low", "_high"):
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
            row["difference_pct"] = 100.0 * (row["absorbed_ug_cm2"] - tot * u) / (tot * u)
            row["figures"] = rv.case.stem  # the first session of this distinct case
            row["resolved_mass_balance_residual"] = max(
                w.mass_balance_residual, it.mass_balance_residual
            )
        rows.append(row)
    return pd.DataFrame(rows), solved


# ----------------------------------------------------------------------------- figures
def _save(fig: Any, path: Path) -> Path:

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _frames(rv: Resolved) -> list[int]:
    """Output indices shown on the map: about 30 min (or a quarter of the contact) and the end."""
    h = rv.hours
    early = int(np.searchsorted(h, min(0.5, 0.25 * h[-1])))
    return sorted({min(early, len(h) - 1), len(h) - 1})


def plot_map(rv: Resolved, path: str | Path, *, title: str | None = None) -> Path:
    """Concentration map (r–z, mirrored about the channel axis; log colour scale) at ~30 min and at
    the end of the contact time, with the layer boundaries and the channel outline. PNG, atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    sol = rv.with_channel
    conc = sol.concentration
    if conc is None:
        raise ValueError("plot_map: the solution holds no concentration fields")
    rf = sol.r_faces * 1e6
    zf = sol.z_faces * 1e6
    xf = np.concatenate([-rf[::-1], rf[1:]])
    frames = _frames(rv)
    top = float(np.nanmax(conc[frames]))
    vmin = max(top * 1e-5, 1e-30)
    norm = LogNorm(vmin=vmin, vmax=max(top, 1e-29))
    fig, axes = plt.subplots(1, len(frames), figsize=(5.2 * len(frames), 4.6), squeeze=False)
    c = rv.case
    a, d = c.channel_radius_um, c.channel_depth_um
    bounds = np.cumsum((0.0, *c.layers_um))
    for ax, k in zip(axes[0], frames, strict=True):
        field = conc[k]
        full = np.concatenate([field[:, ::-1], field], axis=1)
        mesh = ax.pcolormesh(
            xf, zf, np.maximum(full, vmin), norm=norm, cmap="magma", shading="flat"
        )
        for zb, name in zip(bounds[1:-1], SKIN_LAYER_NAMES[1:], strict=True):
            ax.axhline(zb, color="white", lw=0.7, ls="--")
            ax.text(xf[0] * 0.97, zb + 8, name.replace("_", " "), color="white", fontsize=7)
        ax.plot([-a, -a, a, a], [0, d, d, 0], color="cyan", lw=1.2, label="channel")
        ax.set_ylim(zf[-1], 0.0)
        ax.set_xlabel("r [µm] (mirrored about the channel axis)")
        ax.set_ylabel("depth [µm]")
        ax.set_title(f"t = {rv.hours[k]:.2g} h", fontsize=10)
        fig.colorbar(mesh, ax=ax, label="tissue concentration [mg/mL]", shrink=0.85)
    fig.suptitle(
        (title or f"{c.product}: {c.label}")
        + f"\n{c.puncture_density_cm2:.0f} channels/cm², {d:.0f} µm deep, radius {a:.0f} µm",
        fontsize=10,
    )
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_curves(rv: Resolved, path: str | Path, *, title: str | None = None) -> Path:
    """Cumulative absorption over the contact time: total with channels (resolved and the engine's
    homogenised model) and through intact skin (left); per layer, with (solid) and without
    (dashed) channels (right, log scale). PNG, atomic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    u = KG_M2_TO_UG_CM2
    w, it, h = rv.with_channel, rv.intact, rv.hours
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.3))
    ax1.plot(h, w.absorbed * u, color="C0", lw=2, label="with channels (resolved)")
    ax1.plot(
        rv.homogenised_hours,
        rv.homogenised_curve,
        color="C1",
        ls="-.",
        marker="o",
        ms=3,
        label="with channels (engine, homogenised)",
    )
    ax1.plot(h, it.absorbed * u, color="C7", ls="--", label="intact skin (resolved)")
    ax1.set_xlabel("time after application [h]")
    ax1.set_ylabel("absorbed [µg/cm²]")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    q_r, q_h = w.absorbed[-1] * u, rv.homogenised_curve[-1]
    ax1.set_title(
        f"total at {h[-1]:.3g} h: resolved {q_r:.3g}, homogenised {q_h:.3g} µg/cm² "
        f"({100 * (q_h - q_r) / q_r:+.1f}%)",
        fontsize=9,
    )
    floor = 1e-6 * max(float(w.absorbed[-1]) * u, 1e-30)
    series: list[tuple[str, np.ndarray, np.ndarray | None]] = [
        ("channel fluid", w.stored_channel, None)
    ]
    for j, name in enumerate(SKIN_LAYER_NAMES):
        series.append(
            (name.replace("_", " "), w.absorbed_by_layer[:, j], it.absorbed_by_layer[:, j])
        )
    for i, (name, y_ch, y_in) in enumerate(series):
        col = f"C{i}"
        ax2.plot(h, np.maximum(y_ch * u, floor), color=col, lw=1.8, label=name)
        if y_in is not None:
            ax2.plot(h, np.maximum(y_in * u, floor), color=col, lw=1.0, ls="--")
    ax2.set_yscale("log")
    ax2.set_ylim(bottom=floor)
    ax2.set_xlabel("time after application [h]")
    ax2.set_ylabel("stored + cleared [µg/cm²]")
    ax2.set_title("per layer: solid with channels, dashed intact skin", fontsize=9)
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3, which="both")
    c = rv.case
    fig.suptitle(title or f"{c.product}: {c.label}", fontsize=10)
    fig.tight_layout()
    return _save(fig, Path(path))


# ----------------------------------------------------------------------------- report
def _fmt(v: Any) -> str:
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, float | np.floating):
        if not math.isfinite(float(v)):
            return "∞" if float(v) > 0 else "—"
        return f"{float(v):.3g}"
    return html.escape(str(v))


def _interval(row: Mapping[str, Any], col: str) -> str:
    v = _fmt(row[col])
    if f"{col}_low" in row and f"{col}_high" in row:
        return f"{v} <small>({_fmt(row[f'{col}_low'])}–{_fmt(row[f'{col}_high'])})</small>"
    return v


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:0.85em}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f3f3f3}"
    "td:first-child{text-align:left}.disclaimer{background:#fff4d6;border:1px solid #e0b84c;"
    "padding:0.7em 1em;font-weight:600}img{max-width:100%}small{color:#666}"
)


def write_report(
    out_dir: str | Path,
    table: pd.DataFrame,
    figures: Mapping[str, Sequence[Path]],
    course_name: str,
) -> Path:
    """A self-contained ``report.html`` (figures embedded as base64 PNG) with the disclaimer,
    written atomically into ``out_dir``. ``figures``: row label → PNG paths."""

    head = ["session", "product", "dose", "engine absorbed", "engine intact", "engine ER"]
    resolved = "resolved_absorbed_ug_cm2" in table.columns
    if resolved:
        head += ["resolved absorbed", "of which SC", "resolved intact", "resolved ER", "Δ %"]
    rows = []
    for _, r in table.iterrows():
        label = f"{html.escape(str(r['site']))} #{r['session']} (day {r['day']:g})"
        cells = [
            label,
            html.escape(str(r["product"])),
            _fmt(r["dose_ug_cm2"]),
            _interval(r, "absorbed_ug_cm2"),
            _interval(r, "intact_ug_cm2"),
            _interval(r, "enhancement_ratio"),
        ]
        if resolved:
            cells += [
                _fmt(r["resolved_absorbed_ug_cm2"]),
                _fmt(r["resolved_sc_ug_cm2"]),
                _fmt(r["resolved_intact_ug_cm2"]),
                _fmt(r["resolved_enhancement_ratio"]),
                f"{float(r['difference_pct']):+.1f}",
            ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    layer_rows = []
    for _, r in table.iterrows():
        label = f"{html.escape(str(r['site']))} #{r['session']}"
        cells = [label] + [_interval(r, f"absorbed_{n}_ug_cm2") for n in ENGINE_LAYERS]
        if resolved:
            cells += [_fmt(r[f"resolved_{n}_ug_cm2"]) for n in SKIN_LAYER_NAMES[1:]]
            cells += [_fmt(r["resolved_channel_ug_cm2"])]
        layer_rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    layer_head = [
        "session",
        "engine: epidermis (incl. intact-SC route)",
        "engine: papillary",
        "engine: reticular",
    ]
    if resolved:
        layer_head += ["resolved: viable epidermis", "papillary", "reticular", "channel fluid"]
    figs = []
    for label, paths in figures.items():
        imgs = "".join(
            f'<img alt="{html.escape(p.stem)}" '
            f'src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode("ascii")}">'
            for p in paths
        )
        figs.append(f"<h3>{html.escape(label)}</h3>{imgs}")
    intervals = "absorbed_ug_cm2_low" in table.columns
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Absorption: {html.escape(course_name)}</title>
<style>{_CSS}</style></head><body>
<h1>Topical absorption: {html.escape(course_name)}</h1>
<p class="disclaimer">{html.escape(DISCLAIMER)}</p>
<p>Amounts in µg/cm² of skin absorbed during the contact time of each session. <b>Engine</b>: the
homogenised channel model that <code>microneedling simulate</code> uses{
        " (in brackets: 10th–90th percentile over parameter draws)" if intervals else ""
    }. <b>Resolved</b>: one channel in its cylindrical unit cell (finite vehicle film, channel closing
at the engine's resealing rate, clearance in viable tissue). "Absorbed" is what left the vehicle; in
the resolved model part of it is still in the stratum corneum (column "of which SC") or in the
channel fluid; the engine has no stratum-corneum storage. ER: enhancement ratio, absorbed with
channels / through intact skin (∞ where the engine has no intact-skin path for the molecule,
e.g. hyaluronan, larger than the polar pores; see <code>physics/transport.py</code>). Δ %: engine − resolved, relative to resolved; <code>docs/transport.md</code> gives the
range where the two agree within 5%.</p>
<table><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr>{"".join(rows)}</table>
<h2>Per layer</h2>
<p>Engine: amount by <i>entry</i> layer. Resolved: amount stored or cleared in each viable layer at
the end of the contact time.</p>
<table><tr>{"".join(f"<th>{h}</th>" for h in layer_head)}</tr>{"".join(layer_rows)}</table>
<h2>Concentration maps and absorption curves</h2>{"".join(figs) or "<p>(no resolved model run)</p>"}
<p class="disclaimer">{html.escape(DISCLAIMER)}</p>
</body></html>
"""
    path = Path(out_dir) / "report.html"
    return write_text_atomic(doc, path)
