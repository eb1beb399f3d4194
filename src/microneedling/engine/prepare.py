"""A course laid out as arrays, and the physics that runs before the healing ODE.

:func:`prepare` turns one validated course under one parameter set into a :class:`Prepared`: one
*case* per treated site, sessions padded to a common count, with the outputs of needles, injury
and topical transport and the per-case healing parameters. Several :class:`Prepared` stack into one
batch with :func:`concat_prepared`; :func:`take_prepared` selects cases back out. The same courses
under several parameter sets (an ensemble) are prepared in one pass by :func:`prepare_sets`, and
many courses each under its own set (a trial chunk) by :func:`prepare_pairs`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from microneedling.course.model import (
    AcneScar,
    Hyperpigmentation,
    Photoaging,
    Pores,
    Striae,
    Wrinkles,
)
from microneedling.parameters.molecules import in_scope
from microneedling.parameters.parameter_set import ParameterSet
from microneedling.parameters.sampling import (
    Posterior,
    posterior_nominal,
    shipped_calibration,
    shipped_posterior,
)
from microneedling.physics import (
    healing,
    injury,
    needles,
    observe,
    percase,
    pigment,
    scars,
    transport,
)
from microneedling.physics.healing_rhs import PIDX
from microneedling.units import conversion_factor
from microneedling.vocabulary import DEPRESSION_PROFILES, roman

if TYPE_CHECKING:  # pragma: no cover
    from microneedling.course.model import Course

T = TypeVar("T")

__all__ = [
    "Prepared",
    "concat_prepared",
    "nominal_set",
    "output_times",
    "prepare",
    "prepare_many",
    "prepare_pairs",
    "prepare_sets",
    "setting_values",
    "take_prepared",
]

#: times after each session (d) at which outputs are stored: 2-hourly for 2 days, 6-hourly to
#: day 8, daily to day 28 (downtime is read off these)
#: hours after each session at which outputs are stored (fine early: downtime is read off these)
_POST_SESSION_DAYS = np.unique(
    np.concatenate(
        [np.arange(0.0, 2.0, 1.0 / 12.0), np.arange(2.0, 8.0, 0.25), np.arange(8.0, 29.0, 1.0)]
    )
)


# ----------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class Prepared:
    """Everything the ODE and the observation maps need, as arrays over cases (B) and sessions (K)."""

    session_days: np.ndarray  # (B, K) d, inf padded
    session_mask: np.ndarray  # (B, K) bool
    needle_length_mm: np.ndarray  # (B, K)
    puncture_density_cm2: np.ndarray  # (B, K)
    penetration_depth_um: np.ndarray  # (B, K)
    closure_hours: np.ndarray  # (B, K) time to 95% channel closure
    reaches_capillaries: np.ndarray  # (B, K) float 0/1
    injured_fraction: np.ndarray  # (B, K, 3)
    cleft_fraction: np.ndarray  # (B, K) dermis cut by a roller's clefts (0 for pens, stamps)
    absorbed_ug_cm2: np.ndarray  # (B, K)
    absorbed_intact_ug_cm2: np.ndarray  # (B, K)
    enhancement: np.ndarray  # (B, K)
    absorbed_by_layer_ug_cm2: np.ndarray  # (B, K, 3)
    agent_effect: np.ndarray  # (B, K)
    params: np.ndarray  # (B, N_PARAM) healing
    baseline: Any  # observe.Baseline
    observe: Any  # observe.ObserveParameters
    fitzpatrick: np.ndarray  # (B,)
    # injury of the floor of each depressed feature (B, K, 3), NaN where a site has none
    scar_injured_fraction: np.ndarray
    wrinkle_injured_fraction: np.ndarray
    striae_injured_fraction: np.ndarray


def _full(shape: int | tuple[int, ...], value: float) -> np.ndarray:
    """``np.full(shape, value)`` of a float ``value`` (float64), without its Python overhead."""
    out = np.empty(shape)
    out.fill(value)
    return out


def _nan(n: int) -> np.ndarray:
    return _full(n, np.nan)


_PER_SET: dict[tuple[int, str], tuple[Any, ParameterSet, Any]] = {}
"""Coefficients read from a parameter set (needles, resealing, transport, healing vector,
observation maps), by the identity of the set's values (``ps.parameters``, shared by its
:meth:`~ParameterSet.recording` views; an edited set has its own), kept with the set of values
and a view that recorded the lookups made; at most 128 entries (the least recently used
dropped). Ensemble draws (:attr:`~ParameterSet.is_draw`) have a pool of their own,
:data:`_PER_DRAW`."""

_PER_DRAW: dict[tuple[int, str], tuple[Any, ParameterSet, Any]] = {}
""":data:`_PER_SET` of ensemble draws, at most :data:`PER_DRAW_ENTRIES` entries: a 32-draw
``simulate`` makes 160 entries used once, which in a shared pool evicted the nominal set's (remade
every run); a study that runs the same few draws again still finds theirs."""

PER_DRAW_ENTRIES = 640
"""How many per-draw coefficient entries :func:`_per_set` keeps (least recently used go first):
up to five per parameter set (two, the healing vector and the observation coefficients, when a
trial chunk's pairs are prepared in one pass), so the sets of a trial with up to 128 parameter
draws stay made. A trial's chunk visits its K sets in turn (patient i under set i mod K); at 128
entries the 160 of K = 32 made set by set were evicted before their next use, every lookup a miss
(645 misses against 25 over four chunks, review of 2026-12-07)."""


def _per_set(ps: ParameterSet, what: str, make: Callable[[ParameterSet], T]) -> T:
    """``make(ps)`` for coefficients that depend only on the values of ``ps``: made once per set of
    values (0.1 ms of a course's preparation), and its lookups recorded in ``ps`` each time."""
    cache = _PER_DRAW if ps.is_draw else _PER_SET
    key = (id(ps.parameters), what)
    hit = cache.pop(key, None)  # put back last: the least recently used go first
    if hit is None or hit[0] is not ps.parameters:
        view = ps.recording()
        hit = (ps.parameters, view, make(view))
        if len(cache) >= (PER_DRAW_ENTRIES if cache is _PER_DRAW else 128):
            del cache[next(iter(cache))]
    cache[key] = hit
    ps.record_use(hit[1])
    value: T = hit[2]
    return value


_NOMINAL: dict[tuple[int, str], tuple[Any, Any, ParameterSet, Posterior | None]] = {}
"""The nominal set of a parameter set and the posterior that applies to it, by the identity of
the set's values and its label, kept with those values and the shipped posterior they were made
with; at most 16 entries."""


def nominal_set(ps: ParameterSet) -> tuple[ParameterSet, Posterior | None]:
    """``(posterior_nominal(ps), shipped_posterior(ps))``, the second ``None`` when the shipped
    posterior does not apply (the first is then ``ps`` itself).

    The nominal set is made once per set of values and per shipped posterior (0.3 ms), and each
    call gets a :meth:`~ParameterSet.recording` view of it: the views share their values, so the
    coefficients :func:`_per_set` keeps for them are made once too (without this cache every
    ``simulate`` rebuilt the set, and with it needles, resealing, transport, healing and
    observation coefficients, about 1 ms). Same values, label and recorded lookups as
    :func:`~microneedling.parameters.sampling.posterior_nominal` (tested).
    """
    post_now = shipped_calibration()
    key = (id(ps.parameters), ps.label)
    hit = _NOMINAL.get(key)
    if hit is None or hit[0] is not ps.parameters or hit[1] is not post_now:
        post = shipped_posterior(ps)
        centre = posterior_nominal(ps) if post is not None else ps
        if len(_NOMINAL) >= 16:
            _NOMINAL.clear()
        hit = (ps.parameters, post_now, centre, post)
        _NOMINAL[key] = hit
    if hit[3] is None:
        return ps, None
    return hit[2].recording(), hit[3]


_ABSORBED: dict[bytes, transport.Absorption] = {}
"""What :func:`transport.absorb` gave for a set of inputs (the distinct sessions' settings,
molecules and transport coefficients, bit for bit), at most :data:`ABSORBED_ENTRIES`, the least
recently used dropped. Designs that move one parameter at a time (screening, profiles, the
calibration's per-study settings) prepare the same topical sessions under many parameter sets
whose transport inputs are equal; the reservoir's solve is then made once (0.02 s a call)."""

ABSORBED_ENTRIES = 64
_ABSORBED_LOCK = threading.Lock()


def _numbers(obj: Any) -> np.ndarray:
    """The number fields of a coefficient dataclass, in field order, as one float array."""
    return np.array([getattr(obj, f.name) for f in fields(obj)], dtype=float)


def _absorbed(
    inputs: tuple[np.ndarray, ...], compute: Callable[[], transport.Absorption]
) -> transport.Absorption:
    """``compute()``, or the result kept for the same ``inputs`` (compared bit for bit: the
    arrays' shapes, types and bytes). The result is shared: callers index it, never write it."""
    key = b"".join(
        repr((a.shape, a.dtype.str)).encode() + np.ascontiguousarray(a).tobytes()
        for a in map(np.asarray, inputs)
    )
    with _ABSORBED_LOCK:
        hit = _ABSORBED.pop(key, None)
        if hit is not None:
            _ABSORBED[key] = hit  # most recently used last
            return hit
    out = compute()
    with _ABSORBED_LOCK:
        _ABSORBED[key] = out
        while len(_ABSORBED) > ABSORBED_ENTRIES:
            del _ABSORBED[next(iter(_ABSORBED))]
    return out


def _healing_vector(ps: ParameterSet) -> np.ndarray:
    v = healing.parameter_vector(ps)
    v.setflags(write=False)  # shared between runs
    return v


@dataclass(frozen=True)
class _Layout:
    """The courses' cases and sessions as arrays (no parameter read): (B,) per case, (B, K) per
    session; ``days`` inf and ``mask`` False where a case has fewer sessions."""

    owner: list[int]  # course of each case
    sites: list[Any]  # site names
    per_site: list[Any]  # each case's sessions
    patients: list[Any]
    fitzpatrick: np.ndarray
    age: np.ndarray
    days: np.ndarray
    mask: np.ndarray
    length_m: np.ndarray
    passes: np.ndarray
    speed: np.ndarray  # pen hand speed (m/s), NaN unless given
    occlusion: np.ndarray


def _layout(courses: Sequence[Course]) -> _Layout:
    """The cases of ``courses`` (their sites, course after course) and their sessions."""
    owner = [i for i, c in enumerate(courses) for _ in c.sites]
    sites = [s.name for c in courses for s in c.sites]
    B = len(sites)
    per_site = [courses[i].sessions_for(name) for i, name in zip(owner, sites, strict=True)]
    K = max(1, max(len(x) for x in per_site))
    patients = [courses[i].patient for i in owner]
    days = _full((B, K), np.inf)
    mask = np.zeros((B, K), dtype=bool)
    length_m = np.zeros((B, K))
    passes = np.zeros((B, K))
    speed = _full((B, K), np.nan)
    occl = np.zeros((B, K), dtype=bool)
    for b, sess in enumerate(per_site):
        for k, s in enumerate(sess):
            days[b, k] = s.day
            mask[b, k] = True
            length_m[b, k] = s.needle_length_mm * 1e-3
            passes[b, k] = s.passes
            if s.pen_speed_cm_s is not None:
                speed[b, k] = s.pen_speed_cm_s * 1e-2
            occl[b, k] = s.occlusion
    return _Layout(
        owner=owner,
        sites=sites,
        per_site=per_site,
        patients=patients,
        fitzpatrick=np.array([float(p.fitzpatrick) for p in patients]),
        age=np.array([float(p.age_years) for p in patients]),
        days=days,
        mask=mask,
        length_m=length_m,
        passes=passes,
        speed=speed,
        occlusion=occl,
    )


def prepare(course: Course, ps: ParameterSet) -> Prepared:
    """Lay a course out as arrays and run the non-ODE physics (needles, injury, transport)."""
    return prepare_many([course], ps)


def prepare_many(courses: Sequence[Course], ps: ParameterSet) -> Prepared:
    """:func:`prepare` of several courses under one parameter set, as one batch.

    The cases are the sites of each course, course after course; sessions are padded to the
    largest count (as :func:`concat_prepared` pads). Reading the courses is a loop over their
    fields; the physics (needles, injury, resealing, topical transport, the floors of depressed
    features, the healing parameters) runs once on all cases, which is what makes a cohort's
    preparation cheap: the numbers are those of ``concat_prepared([prepare(c, ps) ...])``
    (every step is elementwise over cases; tested).
    """
    courses = list(courses)
    if not courses:
        raise ValueError("prepare_many: no course")
    lay = _layout(courses)
    owner, sites, per_site, patients = lay.owner, lay.sites, lay.per_site, lay.patients
    B, K = lay.days.shape
    fitz, age = lay.fitzpatrick, lay.age
    days, mask, length_m, passes, speed = lay.days, lay.mask, lay.length_m, lay.passes, lay.speed
    occl = lay.occlusion

    skin_params = _per_set(ps, "skin", needles.SkinParameters.from_parameters)
    skin = needles.skin_layers_batch(sites, age, [p.sex for p in patients], skin_params)  # (B,)
    npar = _per_set(ps, "needles", needles.NeedleParameters.from_parameters)
    ch = _channels(courses, owner, length_m, passes, speed, skin, npar)
    closure_params = _per_set(ps, "closure", transport.ClosureParameters.from_parameters)
    phi, cleft, closure = _session_injury(ch, skin, npar, closure_params, occl, mask)

    # topical transport: every session with a topical, all in one batched call
    absorbed = _full((B, K), np.nan)  # NaN: no topical at that session
    intact = _full((B, K), np.nan)
    enh = _full((B, K), np.nan)
    by_layer = _full((B, K, 3), np.nan)
    agent = np.zeros((B, K))
    agent_e = _full(B, np.nan)  # per case: NaN = the healing file's default
    agent_k = _full(B, np.nan)
    topical = [
        (b, k, s.topical, s.occlusion)
        for b, sess in enumerate(per_site)
        for k, s in enumerate(sess)
        if s.topical is not None
    ]
    if topical:
        bi = np.array([b for b, _, _, _ in topical])
        ki = np.array([k for _, k, _, _ in topical])
        flat_i = bi * K + ki
        tops = [t for _, _, t, _ in topical]
        # the library in scope: shipped products plus the user's (using_molecules)
        mols = in_scope({t.product for t in tops})
        c0 = np.array([t.concentration_mg_ml for t in tops])  # mg/mL == kg/m^3
        film = np.array([t.volume_ul_cm2 for t in tops]) * 1e-9 / 1e-4  # uL/cm^2 -> m
        tpar = _per_set(ps, "transport", transport.TransportParameters.from_parameters)
        foll = ps.table("transport.follicular_site_factor", "1")
        fill_before = ps.value("transport.channel_fill_fraction_before", "1")
        vehicle = transport.Vehicle(
            ph=np.array([np.nan if t.ph is None else t.ph for t in tops]),
            volatile_fraction=np.array(
                [
                    tpar.volatile_fraction if t.water_fraction is None else t.water_fraction
                    for t in tops
                ]
            ),
            fill_fraction=np.array(
                [fill_before if t.applied == "before" else tpar.channel_fill_fraction for t in tops]
            ),
            follicle_factor=np.array([foll[sites[b]] for b in bi]),
            in_vitro=np.array([t.in_vitro for t in tops], dtype=bool),
        )
        products = sorted({t.product for t in tops})
        seconds = np.array([t.contact_hours for t in tops]) * 3600.0
        layers = skin.stack()[bi]
        occluded = np.array([occ for _, _, _, occ in topical])
        density = ch.density_m2[flat_i]
        radius = ch.surface_radius_m[flat_i]
        depth = ch.depth_m[flat_i]
        product = np.array([products.index(t.product) for t in tops], dtype=float)
        vehicle_columns = [getattr(vehicle, f.name) for f in fields(transport.Vehicle)]
        # sessions with the same inputs (a course repeating its product and settings) are
        # computed once: absorb works row by row, a row's numbers do not depend on the others
        inputs = np.column_stack(
            [product, c0, film, seconds, density, radius, depth, layers, occluded, *vehicle_columns]
        )
        u, inv = percase.distinct_rows(inputs)
        solute = transport.Solute.from_molecules([mols[tops[i].product] for i in u])
        ab = _absorbed(
            (inputs[u], *(getattr(solute, f.name) for f in fields(solute)), _numbers(tpar)),
            lambda: transport.absorb(
                solute,
                c0[u],
                film[u],
                seconds[u],
                density[u],
                radius[u],
                depth[u],
                layers[u],
                occluded[u],
                tpar,
                vehicle=transport.Vehicle(
                    **{f.name: getattr(vehicle, f.name)[u] for f in fields(transport.Vehicle)}
                ),
            ),
        )
        to_ug_cm2 = 1e9 / 1e4  # kg/m^2 -> ug/cm^2
        absorbed[bi, ki] = ab.total[inv] * to_ug_cm2
        intact[bi, ki] = ab.intact[inv] * to_ug_cm2
        # no intact-skin path at all (kp = 0: molecules as large as the polar pores, e.g.
        # hyaluronan): the ratio is unbounded. A short contact time gives a small intact amount,
        # not an unbounded ratio (the floor of transport.enhancement_floor_fraction keeps it finite)
        enh[bi, ki] = np.where(
            np.broadcast_to(ab.kp, ab.intact.shape)[inv] > 0.0, ab.enhancement[inv], np.inf
        )
        by_layer[bi, ki] = ab.by_layer[inv] * to_ug_cm2
        ec50 = ps.table("observe.depigmenting_ec50", "ug/cm^2")
        half = np.array([ec50.get(t.product, np.inf) for t in tops])  # inf: no depigmenting effect
        agent[bi, ki] = by_layer[bi, ki].sum(axis=1) / half
        # the case's depigmenting product sets its maximal effect and persistence (healing e_A,
        # k_A per case; the first such product of the case's sessions)
        e_max = ps.table("observe.depigmenting_max_effect", "1")
        k_loss = ps.table("observe.depigmenting_clearance", "1/d")
        for b, _, t, _ in topical:
            if t.product in ec50 and np.isnan(agent_e[b]):
                agent_e[b] = e_max[t.product]
                agent_k[b] = k_loss[t.product]

    # healing parameters per case
    nominal = _per_set(ps, "healing", _healing_vector)
    gq = ps.table("healing.g_Q", "1/d")
    lesion = np.zeros(B)
    base = _baseline(courses, owner, sites, skin, _pigment_baseline(courses, owner, sites, ps))
    base, feature_injury = _feature_physics(
        _feature_inputs(courses, owner, sites, ps),
        skin,
        base,
        ch,
        length_m,
        mask,
        npar.damage_zone_factor,
    )
    lesion[np.isfinite(base.melanin_index)] = 1.0
    slope = ps.value("healing.collagen_age_slope", "1")
    floor = ps.value("healing.collagen_age_floor", "1")
    ref_age = ps.value("healing.collagen_reference_age", "yr")
    age_factor = np.maximum(floor, 1.0 + slope * (age - ref_age) / 10.0)

    # PIH stimulus gain: the Fitzpatrick type's reactivity x photoprotection x priming
    sun_table = ps.table("observe.pih_sun_factor", "1")
    sun = np.array([sun_table[p.photoprotection] for p in patients])
    priming_effect = ps.value("observe.pih_priming_effect", "1")
    priming = np.array([priming_effect if p.priming else 0.0 for p in patients])
    per_case = {
        "lesion_drive": lesion,
        "g_Q": np.array([gq[roman(f)] for f in fitz]) * sun * (1.0 - priming),
        "e_A": np.where(np.isnan(agent_e), nominal[PIDX["e_A"]], agent_e),
        "k_A": np.where(np.isnan(agent_k), nominal[PIDX["k_A"]], agent_k),
        "k_1": nominal[PIDX["k_1"]] * age_factor,
        "k_3": nominal[PIDX["k_3"]] * age_factor,
        "k_E": nominal[PIDX["k_E"]] * age_factor,
    }
    params = healing.parameter_matrix(nominal, B, per_case)
    return Prepared(
        session_days=days,
        session_mask=mask,
        **_session_settings(mask, length_m, ch, closure),
        injured_fraction=phi,
        cleft_fraction=cleft,
        absorbed_ug_cm2=np.where(mask, absorbed, np.nan),
        absorbed_intact_ug_cm2=np.where(mask, intact, np.nan),
        enhancement=enh,
        absorbed_by_layer_ug_cm2=np.where(mask[:, :, None], by_layer, np.nan),
        agent_effect=agent,
        params=params,
        baseline=base,
        observe=_per_set(ps, "observe", observe.ObserveParameters.from_parameters),
        fitzpatrick=fitz,
        **feature_injury,
    )


def _session_injury(
    ch: needles.Channels,
    skin: needles.SkinLayers,
    npar: needles.NeedleParameters,
    closure_params: transport.ClosureParameters,
    occlusion: np.ndarray,
    mask: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per session of every case (``mask`` (B, K); the channels ``ch`` (B·K,) in case order; the
    cases' ``skin`` (B,)): the injured fraction of each layer (B, K, 3) and the fraction of the
    dermis a roller's clefts cut (B, K), both 0 where no session, and the channels' resealing
    time, 95% of the barrier clock by channel size and occlusion, [h] (B, K)."""
    shape = mask.shape
    # the layers of one row per (case, session), like the channels (``skin.repeat(K)``'s)
    layers = np.repeat(np.atleast_2d(skin.stack()), shape[1], axis=0)
    phi = injury.injured_fraction_from_channels(ch, layers, npar).reshape(*shape, 3)
    dermis = layers[:, 2:].sum(axis=1)
    cleft = injury.cleft_fraction(ch.density_m2, ch.cleft_volume_m3, dermis).reshape(shape)
    closure = transport.closure_time(ch.surface_radius_m, occlusion.reshape(-1), closure_params)
    return (
        np.where(mask[:, :, None], phi, 0.0),
        np.where(mask, cleft, 0.0),
        closure.reshape(shape) / 3600.0,
    )


def _session_settings(
    mask: np.ndarray, length_m: np.ndarray, ch: needles.Channels, closure: np.ndarray
) -> dict[str, np.ndarray]:
    """The per-session needle fields of :class:`Prepared` ((B, K), NaN where no session): needle
    length [mm], puncture density [1/cm²], penetration depth [µm], closure time [h] and whether
    the channels reach the capillary loops, from the channels of every (case, session)."""
    shape = mask.shape
    return {
        "needle_length_mm": np.where(mask, length_m * 1e3, np.nan),
        "puncture_density_cm2": np.where(mask, ch.density_m2.reshape(shape) * 1e-4, np.nan),
        "penetration_depth_um": np.where(mask, ch.depth_m.reshape(shape) * 1e6, np.nan),
        "closure_hours": np.where(mask, closure, np.nan),
        "reaches_capillaries": np.where(mask, ch.reaches_capillaries.reshape(shape), np.nan),
    }


class _Unstackable(Exception):
    """Parameter sets whose values cannot stand side by side (a parameter's units, or a keyed
    parameter's keys, differ between them): :func:`prepare_sets` prepares them one by one."""


class _Stack:
    """The values of several parameter sets side by side, read through the interface of a
    :class:`ParameterSet` (``value``, ``table``) by the coefficient classes' ``from_parameters``:
    ``value`` gives an (S,) array, set s's value in row s, and ``table`` a dict of such arrays.
    Each is the file value times the conversion factor :meth:`Parameter.as_units` uses, the same
    bits as each set's own lookup; with ``index`` (an integer array into the sets, e.g. the set of
    each case), the values of the sets ``index`` names, in its order. The names looked up collect
    in ``names``."""

    def __init__(self, sets: Sequence[ParameterSet], index: np.ndarray | None = None) -> None:
        self.sets = list(sets)
        self.index = index
        self.names: set[str] = set()

    def _entries(self, name: str) -> tuple[Any, list[Any]]:
        first = self.sets[0].parameter(name)  # an unknown name: the set's error
        params = [s.parameters[name] for s in self.sets]
        if any(p.units != first.units for p in params):
            raise _Unstackable(name)
        self.names.add(name)
        return first, params

    def _rows(self, values: np.ndarray) -> np.ndarray:
        return values if self.index is None else values[self.index]

    def value(self, name: str, units: str, key: str | None = None) -> np.ndarray:
        first, params = self._entries(name)
        first.as_units(units, key)  # a keyed/scalar mismatch or an unknown key: its error
        factor = conversion_factor(first.units, units)
        raw = [p.value if key is None else p.value.get(key) for p in params]
        if not all(isinstance(v, float) for v in raw):
            raise _Unstackable(name)
        return self._rows(np.array(raw, dtype=float) * factor)

    def table(self, name: str, units: str) -> dict[str, np.ndarray]:
        first, params = self._entries(name)
        keys = list(self.sets[0].table(name, units))  # a scalar parameter: the set's error
        if any(not isinstance(p.value, dict) or list(p.value) != keys for p in params):
            raise _Unstackable(name)
        factor = conversion_factor(first.units, units)
        return {
            k: self._rows(np.array([p.value[k] for p in params], dtype=float) * factor)
            for k in keys
        }


def prepare_sets(
    courses: Sequence[Course], sets: Sequence[ParameterSet]
) -> tuple[Prepared, list[Any]]:
    """The same courses under each of several parameter sets (an ensemble), as one batch: the
    cases of ``prepare_many(courses, sets[0])``, then those under ``sets[1]``, ...; and each set's
    observation coefficients (``observe.ObserveParameters``, in the order of ``sets``).

    The numbers are those of ``concat_prepared([prepare_many(courses, s) for s in sets])``, bit
    for bit (tested), computed in one pass: the sets' values are read side by side as arrays over
    the sets (:class:`_Stack`), and skin layers, needles, injury, resealing, the floors of
    depressed features and the healing parameters run once on every (set, case, session); the
    layout of the courses is read once. Per set remain the healing vector, the observation
    coefficients and the defaults of the sites' conditions (parameter lookups, no physics).
    Courses with a topical (transport), or sets whose parameters differ in units or keys, are
    prepared set by set (:func:`prepare_many`).
    """
    courses, sets = list(courses), list(sets)
    if not courses or not sets:
        raise ValueError("prepare_sets: no course or no parameter set")
    observes = [_per_set(s, "observe", observe.ObserveParameters.from_parameters) for s in sets]
    if len(sets) == 1:
        return prepare_many(courses, sets[0]), observes
    lay = _layout(courses)
    if not any(s.topical is not None for sess in lay.per_site for s in sess):
        S, B = len(sets), len(lay.owner)
        try:
            prep = _prepare_stacked(
                courses, _tile_layout(lay, S), sets, np.repeat(np.arange(S), B), observes[0]
            )
            return prep, observes
        except _Unstackable:
            pass
    return concat_prepared([prepare_many(courses, s) for s in sets]), observes


PAIRS_STACKED_FROM = 4
"""Fewest distinct parameter sets :func:`prepare_pairs` reads side by side; fewer are prepared set
by set (:func:`prepare_many`). Side by side costs more per case (arrays of coefficients where a
set has numbers, the per-set lookups gathered) and saves a call per set: a 250-patient trial
chunk (acne roller) took 0.56x the set-by-set time with 32 sets, 0.88x with 8, 1.03x with 4,
0.98x with 3, 1.15x with 2 (CPU, in-process interleaved, 30 rounds, 2026-12-07, load ~2.5)."""


def prepare_pairs(
    courses: Sequence[Course], sets: Sequence[ParameterSet]
) -> tuple[Prepared, list[Any]]:
    """Course ``courses[i]`` under parameter set ``sets[i]``, for every i, as one batch: the
    cases of each pair, pair after pair (a trial chunk: each patient's course under the parameter
    set the patient is assigned); and each pair's observation coefficients
    (``observe.ObserveParameters`` of ``sets[i]``).

    The numbers are those of preparing each set's courses with :func:`prepare_many` and taking
    the cases back into pair order, bit for bit (tested), computed in one pass as
    :func:`prepare_sets` does for an ensemble: the distinct sets' values are read side by side,
    one row per case (:class:`_Stack` with each case's set), and skin layers, needles, injury,
    resealing, the floors of depressed features and the healing parameters run once on every
    (case, session) of every pair; the courses' layout is read once. Per distinct set remain
    the healing vector, the observation coefficients and the defaults of its cases' conditions
    (lookups). One set is :func:`prepare_many`; fewer than :data:`PAIRS_STACKED_FROM` sets,
    courses with a topical (transport), or sets whose parameters differ in units or keys, are
    prepared set by set.
    """
    courses, sets = list(courses), list(sets)
    if not courses or len(courses) != len(sets):
        raise ValueError("prepare_pairs: no course, or not one parameter set per course")
    distinct: dict[int, int] = {}  # id(set) -> its index among the distinct sets
    set_of_course = np.array([distinct.setdefault(id(s), len(distinct)) for s in sets])
    uniq = list({id(s): s for s in sets}.values())
    observe_of = [_per_set(s, "observe", observe.ObserveParameters.from_parameters) for s in uniq]
    observes = [observe_of[g] for g in set_of_course.tolist()]
    if len(uniq) == 1:
        return prepare_many(courses, uniq[0]), observes
    lay = _layout(courses) if len(uniq) >= PAIRS_STACKED_FROM else None
    if lay is not None and not any(s.topical is not None for sess in lay.per_site for s in sess):
        try:
            case_set = set_of_course[np.asarray(lay.owner)]
            return _prepare_stacked(courses, lay, uniq, case_set, observe_of[0]), observes
        except _Unstackable:
            pass
    # set by set: each set's courses in one call, then every case back into pair order
    n_sites = np.array([len(c.sites) for c in courses])
    first_case = np.concatenate([[0], np.cumsum(n_sites)])[:-1]
    parts, order = [], []
    for g, s in enumerate(uniq):
        mine = np.flatnonzero(set_of_course == g)
        parts.append(prepare_many([courses[i] for i in mine], s))
        order += [first_case[i] + np.arange(n_sites[i]) for i in mine]
    every = concat_prepared(parts)
    rows = np.empty(int(n_sites.sum()), dtype=int)
    rows[np.concatenate(order)] = np.arange(rows.size)
    return take_prepared(every, rows), observes


def _tile_layout(lay: _Layout, S: int) -> _Layout:
    """The cases of ``lay`` S times over (set 0's, then set 1's, ...)."""
    return _Layout(
        owner=lay.owner * S,
        sites=lay.sites * S,
        per_site=lay.per_site * S,
        patients=lay.patients * S,
        fitzpatrick=np.tile(lay.fitzpatrick, S),
        age=np.tile(lay.age, S),
        **{
            name: np.tile(getattr(lay, name), (S, 1))
            for name in ("days", "mask", "length_m", "passes", "speed", "occlusion")
        },
    )


def _prepare_stacked(
    courses: Sequence[Course],
    lay: _Layout,
    sets: Sequence[ParameterSet],
    case_set: np.ndarray,
    observe_first: Any,
) -> Prepared:
    """The cases of ``lay`` (courses without a topical), case b under ``sets[case_set[b]]``, in
    one pass (:func:`prepare_sets`, :func:`prepare_pairs`)."""
    B, K = lay.days.shape
    stack = _Stack(sets)  # (S,) values: one per set
    owner, sites, patients = lay.owner, lay.sites, lay.patients
    days, mask, length_m, passes, speed = lay.days, lay.mask, lay.length_m, lay.passes, lay.speed
    occl, fitz, age = lay.occlusion, lay.fitzpatrick, lay.age
    session_set = np.repeat(case_set, K)  # the set of every (case, session)

    def per_case(x: np.ndarray) -> np.ndarray:  # (S,) -> one value per case
        return x[case_set]

    def by_case(table: dict[str, np.ndarray], keys: Sequence[str]) -> np.ndarray:
        # entry keys[b] of case b's set
        out = np.empty(B)
        key_arr = np.array(keys)
        for k in dict.fromkeys(keys):
            rows = key_arr == k
            out[rows] = table[k][case_set[rows]]
        return out

    by_case_stack = _Stack(sets, index=case_set)  # one value per case
    skin = needles.skin_layers_batch(sites, age, [p.sex for p in patients], _as_set(by_case_stack))
    npar_sets = needles.NeedleParameters.from_parameters(_as_set(stack))  # fields (S,)
    npar = _map_fields(npar_sets, lambda v: v[session_set])  # per (case, session)
    ch = _channels(courses, owner, length_m, passes, speed, skin, npar)
    closure_sets = transport.ClosureParameters.from_parameters(_as_set(stack))
    closure_params = _map_fields(closure_sets, lambda v: v[session_set])
    phi, cleft, closure = _session_injury(ch, skin, npar, closure_params, occl, mask)

    nominal = np.stack([_per_set(s, "healing", _healing_vector) for s in sets])[case_set]
    gq = stack.table("healing.g_Q", "1/d")
    # the conditions' defaults: each set's lookups on its own cases, scattered into case order
    rows_of = [np.flatnonzero(case_set == g) for g in range(len(sets))]

    def per_set_fields(
        make: Callable[[Sequence[Course], Sequence[int], Sequence[str], ParameterSet], Any],
    ) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for s, rows in zip(sets, rows_of, strict=True):
            if not rows.size:
                continue
            part = make(courses, [owner[b] for b in rows], [sites[b] for b in rows], s)
            for k, v in part.items():
                if k not in out:
                    out[k] = np.empty((B, *v.shape[1:]), dtype=v.dtype)
                out[k][rows] = v
        return out

    base = _baseline(courses, owner, sites, skin, per_set_fields(_pigment_baseline))
    base, feature_injury = _feature_physics(
        per_set_fields(_feature_inputs),
        skin,
        base,
        ch,
        length_m,
        mask,
        per_case(np.asarray(npar_sets.damage_zone_factor)),
    )
    lesion = np.zeros(B)
    lesion[np.isfinite(base.melanin_index)] = 1.0
    slope = per_case(stack.value("healing.collagen_age_slope", "1"))
    floor = per_case(stack.value("healing.collagen_age_floor", "1"))
    ref_age = per_case(stack.value("healing.collagen_reference_age", "yr"))
    age_factor = np.maximum(floor, 1.0 + slope * (age - ref_age) / 10.0)
    sun = by_case(stack.table("observe.pih_sun_factor", "1"), [p.photoprotection for p in patients])
    primed = np.array([p.priming for p in patients], dtype=bool)
    effect = per_case(stack.value("observe.pih_priming_effect", "1"))
    priming = np.where(primed, effect, 0.0)
    g_q = by_case(gq, [roman(f) for f in fitz])
    params = nominal.copy()
    for name, values in {
        "lesion_drive": lesion,
        "g_Q": g_q * sun * (1.0 - priming),
        # no topical: e_A, k_A are the healing file's (the nominal vector's)
        "k_1": nominal[:, PIDX["k_1"]] * age_factor,
        "k_3": nominal[:, PIDX["k_3"]] * age_factor,
        "k_E": nominal[:, PIDX["k_E"]] * age_factor,
    }.items():
        params[:, PIDX[name]] = values
    for s in sets:
        s.record_names(stack.names | by_case_stack.names)
    nan = _full((B, K), np.nan)
    return Prepared(
        session_days=days,
        session_mask=mask,
        **_session_settings(mask, length_m, ch, closure),
        injured_fraction=phi,
        cleft_fraction=cleft,
        absorbed_ug_cm2=nan,
        absorbed_intact_ug_cm2=nan.copy(),
        enhancement=nan.copy(),
        absorbed_by_layer_ug_cm2=_full((B, K, 3), np.nan),
        agent_effect=np.zeros((B, K)),
        params=params,
        baseline=base,
        observe=observe_first,
        fitzpatrick=fitz,
        **feature_injury,
    )


def _as_set(stack: _Stack) -> ParameterSet:
    """``stack`` where a ``from_parameters`` classmethod expects a ParameterSet (it reads values
    and tables only, with arithmetic that acts on arrays as on numbers)."""
    return cast(ParameterSet, stack)


def _device_key(geometry: needles.DeviceGeometry) -> tuple[Any, ...]:
    """A hashable identity of a device geometry (NaN fields compare equal here)."""
    values = (getattr(geometry, name) for name in _GEOMETRY_FIELDS)
    return tuple(None if isinstance(v, float) and math.isnan(v) else v for v in values)


_GEOMETRY_FIELDS = tuple(f.name for f in fields(needles.DeviceGeometry))


def _channels(
    courses: Sequence[Course],
    owner: Sequence[int],
    length_m: np.ndarray,
    passes: np.ndarray,
    speed: np.ndarray,
    skin: Any,
    npar: needles.NeedleParameters,
) -> needles.Channels:
    """The channels of every (case, session), (B·K,): one :func:`needles.channels` call per
    distinct device among the courses, scattered back into case order."""
    B, K = length_m.shape
    geometries: dict[tuple[Any, ...], needles.DeviceGeometry] = {}
    key_of: dict[Any, tuple[Any, ...]] = {}  # device (a frozen model: equal devices hash equal)
    case_device = []
    for i in owner:
        device = courses[i].device
        key = key_of.get(device)
        if key is None:
            g = needles.DeviceGeometry.from_fields(device.model_dump())
            key = _device_key(g)
            geometries.setdefault(key, g)
            key_of[device] = key
        case_device.append(key)

    def one(geo: needles.DeviceGeometry, rows: np.ndarray | slice) -> needles.Channels:
        return needles.channels(
            geo,
            needle_length_m=length_m[rows].reshape(-1),
            passes=passes[rows].reshape(-1),
            pen_speed_m_s=speed[rows].reshape(-1),
            skin=_take_skin(skin, rows).repeat(K),
            params=npar if isinstance(rows, slice) else _take_rows(npar, rows, K),
        )

    if len(geometries) == 1:
        return one(next(iter(geometries.values())), slice(None))
    parts = []
    flat_rows = []
    for key, geo in geometries.items():
        rows = np.array([b for b in range(B) if case_device[b] == key])
        parts.append(one(geo, rows))
        flat_rows.append((rows[:, None] * K + np.arange(K)).reshape(-1))
    order = np.concatenate(flat_rows)
    kw: dict[str, np.ndarray] = {}
    for f in fields(needles.Channels):
        stacked = np.concatenate([np.asarray(getattr(c, f.name)) for c in parts])
        out = np.empty_like(stacked)
        out[order] = stacked
        kw[f.name] = out
    return needles.Channels(**kw)


def _take_rows(npar: needles.NeedleParameters, rows: np.ndarray, K: int) -> Any:
    """``npar`` of the sessions of cases ``rows`` when its fields are arrays over every (case,
    session) (:func:`prepare_sets`); ``npar`` itself when they are numbers."""
    if np.ndim(npar.channel_radius_ratio) == 0:
        return npar
    flat = (rows[:, None] * K + np.arange(K)).reshape(-1)
    return _map_fields(npar, lambda v: v[flat])


def _map_fields(obj: T, f: Callable[[np.ndarray], np.ndarray]) -> T:
    """A dataclass of coefficients with ``f`` applied to each array field (and to each array of a
    dict field); other fields unchanged."""
    kw: dict[str, Any] = {}
    for fl in fields(obj):  # type: ignore[arg-type]
        v = getattr(obj, fl.name)
        if isinstance(v, np.ndarray):
            kw[fl.name] = f(v)
        elif isinstance(v, dict):
            kw[fl.name] = {k: f(x) if isinstance(x, np.ndarray) else x for k, x in v.items()}
    return replace(obj, **kw)  # type: ignore[type-var]


def _take_skin(skin: Any, rows: np.ndarray | slice) -> Any:
    """The cases ``rows`` of a batch of :class:`needles.SkinLayers`."""
    if isinstance(rows, slice) and rows == slice(None):
        return skin
    return type(skin)(**{f.name: np.asarray(getattr(skin, f.name))[rows] for f in fields(skin)})


def _baseline(
    courses: Sequence[Course],
    owner: Sequence[int],
    sites: Sequence[str],
    skin: Any,
    lesion: dict[str, Any],
) -> Any:
    """Per-case baseline conditions (NaN where the site does not have the condition); ``lesion``:
    the lesion fields of :func:`_pigment_baseline`."""

    B = len(sites)
    wr, sc, po, sw, mi, r2 = (_nan(B) for _ in range(6))
    st = np.full(B, -1)
    ss = np.full(B, -1)
    for b, (i, name) in enumerate(zip(owner, sites, strict=True)):
        for c in courses[i].site(name).conditions:
            if isinstance(c, Wrinkles):
                wr[b] = c.depth_um
            elif isinstance(c, AcneScar):
                sc[b] = c.depth_mm
                st[b] = observe.SCAR_TYPES.index(c.scar_type)
            elif isinstance(c, Pores):
                po[b] = c.diameter_um
            elif isinstance(c, Striae):
                sw[b] = c.width_mm
                ss[b] = observe.STRIAE_STAGES.index(c.stage)
            elif isinstance(c, Hyperpigmentation):
                mi[b] = c.melanin_index
            elif isinstance(c, Photoaging) and c.elasticity_r2 is not None:
                r2[b] = c.elasticity_r2
    return observe.Baseline(
        dermis_thickness_um=skin.dermis_thickness_m * 1e6,
        papillary_fraction=skin.papillary_thickness_m / skin.dermis_thickness_m,
        age_years=np.array([float(courses[i].patient.age_years) for i in owner]),
        fitzpatrick=np.array([float(courses[i].patient.fitzpatrick) for i in owner]),
        elasticity_r2=r2,
        wrinkle_depth_um=wr,
        scar_depth_mm=sc,
        scar_type=st,
        pore_diameter_um=po,
        striae_width_mm=sw,
        striae_stage=ss,
        melanin_index=mi,
        **lesion,
    )


def _pigment_baseline(
    courses: Sequence[Course], owner: Sequence[int], sites: Sequence[str], ps: ParameterSet
) -> dict[str, Any]:
    """The lesion fields of :class:`observe.Baseline` (NaN where a site has no lesion): the
    perilesional melanin index (its floor), the dermal share of its pigment, and for melasma the
    baseline MASI components (the course's, else ``observe.masi_default_*``)."""
    B = len(sites)
    peri, derm, dark, homog = (_nan(B) for _ in range(4))
    area = _full((B, len(pigment.MASI_REGIONS)), np.nan)
    excess = ps.value("observe.lesion_excess_fraction", "1")
    f_derm = ps.table("observe.dermal_pigment_fraction", "1")
    for b, (i, name) in enumerate(zip(owner, sites, strict=True)):
        for c in courses[i].site(name).conditions:
            if not isinstance(c, Hyperpigmentation):
                continue
            peri[b] = (
                c.melanin_index * (1.0 - excess)
                if c.perilesional_melanin_index is None
                else c.perilesional_melanin_index
            )
            derm[b] = f_derm[c.melasma_type if c.kind == "melasma" else c.kind]
            if c.kind != "melasma":
                continue
            a0 = ps.table("observe.masi_default_area", "%")
            given = c.masi_area_pct
            area[b] = [a0[r] if given is None else getattr(given, r) for r in pigment.MASI_REGIONS]
            dark[b] = (
                ps.value("observe.masi_default_darkness", "1")
                if c.masi_darkness is None
                else c.masi_darkness
            )
            homog[b] = (
                ps.value("observe.masi_default_homogeneity", "1")
                if c.masi_homogeneity is None
                else c.masi_homogeneity
            )
    return {
        "perilesional_melanin_index": peri,
        "dermal_pigment_fraction": derm,
        "masi_area_pct": area,
        "masi_darkness": dark,
        "masi_homogeneity": homog,
    }


# ----------------------------------------------------------------------- dermal features
#: floor profile of each scar type (Jacob 2001 via Fabbrocini 2010: icepick V-shaped tract,
#: boxcar vertical walls with a flat floor, rolling undulation)
SCAR_PROFILE = {"rolling": "rounded", "boxcar": "box", "icepick": "v_shaped"}
#: depressed features with a floor case, and the Prepared field of their floor's injury
FEATURE_INJURY = {f: f"{f}_injured_fraction" for f in observe.FEATURES}


def _feature_inputs(
    courses: Sequence[Course], owner: Sequence[int], sites: Sequence[str], ps: ParameterSet
) -> dict[str, np.ndarray]:
    """The per-case inputs of :func:`_feature_physics` under one parameter set, each (B,): the
    geometry of each depressed feature (``<feature>_width`` mm, ``_depth`` mm, ``_profile``,
    ``_distensible``; NaN where a site has none), the scar, wrinkle and striae fields of
    :class:`observe.Baseline`, the site area and the elasticity table's entries."""
    B = len(sites)
    nan = lambda: _full(B, np.nan)  # noqa: E731
    geo = {f"{f}_{k}": nan() for f in FEATURE_INJURY for k in GEOMETRY_KEYS}
    area = np.array(
        [courses[i].site(s).area_cm2 for i, s in zip(owner, sites, strict=True)], dtype=float
    )
    sc_w, sc_tau, sc_eps, sc_fs, sc_n, sc_prof = nan(), nan(), nan(), nan(), nan(), np.full(B, -1)
    wr_w = nan()
    st_d, st_tau = nan(), nan()
    w_def = ps.table("observe.scar_width", "mm")
    tau_def = ps.table("observe.scar_tethered_share", "1")
    eps_def = ps.table("observe.scar_epithelial_share", "1")
    fs_def = ps.table("observe.scar_distensible_share", "1")
    for b, (i, name) in enumerate(zip(owner, sites, strict=True)):
        for c in courses[i].site(name).conditions:
            if isinstance(c, AcneScar):
                t = c.scar_type
                sc_w[b] = w_def[t] if c.width_mm is None else c.width_mm
                sc_prof[b] = DEPRESSION_PROFILES.index(c.profile or SCAR_PROFILE[t])
                sc_tau[b] = tau_def[t] if c.tethered_share is None else c.tethered_share
                sc_eps[b] = eps_def[t] if c.epithelial_share is None else c.epithelial_share
                sc_fs[b] = fs_def[t] if c.distensible_share is None else c.distensible_share
                sc_n[b] = c.count
                geo["scar_width"][b], geo["scar_depth"][b] = sc_w[b], c.depth_mm
                geo["scar_profile"][b], geo["scar_distensible"][b] = sc_prof[b], sc_fs[b]
            elif isinstance(c, Wrinkles):
                wr_w[b] = (
                    ps.value("observe.wrinkle_width", "mm") if c.width_mm is None else c.width_mm
                )
                geo["wrinkle_width"][b], geo["wrinkle_depth"][b] = wr_w[b], c.depth_um * 1e-3
                geo["wrinkle_profile"][b] = DEPRESSION_PROFILES.index("v_shaped")
                geo["wrinkle_distensible"][b] = ps.value("observe.wrinkle_distensible_share", "1")
            elif isinstance(c, Striae):
                st_d[b] = (
                    ps.value("observe.striae_depth", "mm") if c.depth_mm is None else c.depth_mm
                )
                st_tau[b] = (
                    ps.value("observe.striae_tethered_share", "1")
                    if c.tethered_share is None
                    else c.tethered_share
                )
                geo["striae_width"][b], geo["striae_depth"][b] = c.width_mm, st_d[b]
                geo["striae_profile"][b] = DEPRESSION_PROFILES.index("rounded")
                geo["striae_distensible"][b] = ps.value("observe.striae_distensible_share", "1")
    return {
        **geo,
        "site_area_cm2": area,
        "scar_count": sc_n,
        "scar_width_mm": sc_w,
        "scar_profile": sc_prof,
        "scar_tethered": sc_tau,
        "scar_epithelial": sc_eps,
        "scar_distensible": sc_fs,
        "striae_depth_mm": st_d,
        "striae_tethered": st_tau,
        "male": np.array([1.0 if courses[i].patient.sex == "male" else 0.0 for i in owner]),
        "r2_young": np.array([ps.value("observe.r2_young", "1", key=s) for s in sites]),
        "r2_age_slope": np.array([ps.value("observe.r2_age_slope", "1", key=s) for s in sites]),
        "r2_reference_age": _full(B, ps.value("observe.r2_reference_age", "yr")),
        "r2_male_offset": _full(B, ps.value("observe.r2_male_offset", "1")),
        "r2_male_slope_factor": _full(B, ps.value("observe.r2_male_slope_factor", "1")),
    }


#: the geometry of a depressed feature's floor in :func:`_feature_inputs`
GEOMETRY_KEYS = ("width", "depth", "profile", "distensible")
#: :func:`_feature_inputs` fields that go into :class:`observe.Baseline` as they are
_BASELINE_FEATURE_FIELDS = (
    "site_area_cm2",
    "scar_count",
    "scar_width_mm",
    "scar_profile",
    "scar_tethered",
    "scar_epithelial",
    "scar_distensible",
    "striae_depth_mm",
    "striae_tethered",
)


def _feature_physics(
    inputs: dict[str, np.ndarray],
    skin: Any,
    base: Any,
    ch: Any,
    length_m: np.ndarray,
    mask: np.ndarray,
    damage_zone_factor: Any,
) -> tuple[Any, dict[str, np.ndarray]]:
    """The dermal part of the baseline and the injury of each depressed feature's floor.

    Returns ``base`` with the baseline elasticity (``observe.r2_*`` table unless measured), the
    site area and the geometry of acne scars, wrinkle grooves and striae (course values, else
    the ``observe.*`` defaults), and ``{<feature>_injured_fraction: (B, K, 3)}``: the footprint
    injury of the feature's floor (:func:`microneedling.physics.scars.footprint_injury`) per
    session, for the scars a needle touched (mean / (1 − P₀)); NaN rows where a site does not
    have the feature. P₀, the chance that no puncture lands in a feature in the course, goes to
    ``<feature>_untouched``.

    ``inputs`` are the per-case inputs of :func:`_feature_inputs` (of one parameter set or of
    several, case after case); ``damage_zone_factor`` a number or (B,).
    """
    B, K = length_m.shape
    dzf = np.broadcast_to(np.asarray(damage_zone_factor, dtype=float), (B,))
    layers = skin.stack()
    n = ch.density_m2.reshape(B, K)
    injured: dict[str, np.ndarray] = {}
    untouched: dict[str, np.ndarray] = {}
    for f, field_name in FEATURE_INJURY.items():
        g = {k: inputs[f"{f}_{k}"] for k in GEOMETRY_KEYS}
        out = _full((B, K, 3), np.nan)
        p0 = _full(B, np.nan)
        rows = np.flatnonzero(np.isfinite(g["depth"]))
        if rows.size:
            R = rows.size
            phi = scars.footprint_injury(
                n[rows].reshape(-1),
                ch.surface_radius_m.reshape(B, K)[rows].reshape(-1),
                ch.depth_m.reshape(B, K)[rows].reshape(-1),
                length_m[rows].reshape(-1),
                np.repeat(layers[rows], K, axis=0),
                np.repeat(dzf[rows], K),
                np.repeat(g["depth"][rows], K) * 1e-3,
                np.repeat(g["profile"][rows], K).astype(int),
                np.repeat(g["distensible"][rows], K),
            ).reshape(R, K, 3)
            on = mask[rows]
            lam = np.where(
                on, scars.punctures_per_session(n[rows], g["width"][rows, None] * 1e-3), 0.0
            )
            p0[rows] = scars.untouched_probability(lam)
            touched = np.maximum(1.0 - p0[rows], 1e-300)[:, None, None]
            out[rows] = np.where(on[:, :, None], np.minimum(phi / touched, 1.0), 0.0)
        injured[field_name] = out
        untouched[f] = p0
    # baseline elasticity: measured (course, deprecated) or from the age x sex x site table
    r2_table = observe.elasticity_baseline(
        base.age_years,
        inputs["male"],
        inputs["r2_young"],
        inputs["r2_age_slope"],
        inputs["r2_reference_age"],
        inputs["r2_male_offset"],
        inputs["r2_male_slope_factor"],
    )
    base = replace(
        base,
        elasticity_r2=np.where(np.isfinite(base.elasticity_r2), base.elasticity_r2, r2_table),
        **{k: inputs[k] for k in _BASELINE_FEATURE_FIELDS},
        scar_untouched=untouched["scar"],
        wrinkle_untouched=untouched["wrinkle"],
        striae_untouched=untouched["striae"],
    )
    return base, injured


def output_times(session_days: np.ndarray, horizon_days: float) -> np.ndarray:
    """Output grid (days): fine after every session (2-hourly for 2 days, 6-hourly to day 8,
    daily to day 28), weekly elsewhere, always including 0 and the horizon."""
    d = session_days[np.isfinite(session_days)]
    parts: list[np.ndarray] = [np.arange(0.0, horizon_days, 7.0), np.array([horizon_days])]
    parts += [s + _POST_SESSION_DAYS for s in np.unique(d)]
    t: np.ndarray = np.unique(np.concatenate(parts))
    return t[(t >= 0.0) & (t <= horizon_days)]


def _pad_sessions(arr: np.ndarray, K: int, fill: Any) -> np.ndarray:
    if arr.shape[1] == K:
        return arr
    pad = np.full((arr.shape[0], K - arr.shape[1], *arr.shape[2:]), fill, dtype=arr.dtype)
    return np.concatenate([arr, pad], axis=1)


def concat_prepared(preps: Sequence[Prepared]) -> Prepared:
    """Stack the cases of several :class:`Prepared` (padding sessions to the largest K)."""

    K = max(p.session_days.shape[1] for p in preps)
    fills: dict[str, Any] = {
        "session_days": np.inf,
        "session_mask": False,
        "injured_fraction": 0.0,
        "cleft_fraction": 0.0,
        "agent_effect": 0.0,
    }
    kw: dict[str, Any] = {}
    for f in fields(Prepared):
        name = f.name
        if name in ("baseline", "observe"):
            continue
        arrays = [getattr(p, name) for p in preps]
        if name in ("params", "fitzpatrick"):
            kw[name] = np.concatenate(arrays)
        elif name in FEATURE_INJURY.values():  # a case without the feature stays NaN throughout
            padded = np.concatenate([_pad_sessions(a, K, 0.0) for a in arrays])
            kw[name] = np.where(np.isnan(padded[:, :1, :1]), np.nan, padded)
        else:
            kw[name] = np.concatenate(
                [_pad_sessions(a, K, fills.get(name, np.nan)) for a in arrays]
            )
    kw["baseline"] = observe.Baseline(
        **{
            f.name: np.concatenate([getattr(p.baseline, f.name) for p in preps])
            for f in fields(observe.Baseline)
        }
    )
    kw["observe"] = preps[0].observe
    return Prepared(**kw)


def take_prepared(prep: Prepared, rows: np.ndarray | slice) -> Prepared:
    """The cases ``rows`` (indices, or a slice: views, no copies) of a prepared batch."""

    kw: dict[str, Any] = {}
    for f in fields(Prepared):
        v = getattr(prep, f.name)
        if f.name == "baseline":
            kw[f.name] = observe.Baseline(
                **{g.name: getattr(v, g.name)[rows] for g in fields(observe.Baseline)}
            )
        elif f.name == "observe":
            kw[f.name] = v
        else:
            kw[f.name] = v[rows]
    return Prepared(**kw)


def setting_values(prep: Prepared) -> dict[str, np.ndarray]:
    """The per-session records of :data:`~microneedling.engine.variables.VARIABLES` (kind
    ``setting``) from a prepared course, in their variable's units: (B, K), or (B, K, 3) per layer;
    NaN where a case has fewer sessions."""
    return {
        "session_day": np.where(prep.session_mask, prep.session_days, np.nan),
        "needle_length": prep.needle_length_mm,
        "puncture_density": prep.puncture_density_cm2,
        "penetration_depth": prep.penetration_depth_um,
        "closure_hours": prep.closure_hours,
        "reaches_capillaries": prep.reaches_capillaries,
        "injured_fraction": prep.injured_fraction,
        "absorbed_by_layer": prep.absorbed_by_layer_ug_cm2,
    }
