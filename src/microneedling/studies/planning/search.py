"""Plan search: the best course for a patient's concerns under their limits, and its Pareto set.

Decision variables (``data/planner.toml``): device (roller, pen, stamp), topical (none or a preset),
number of sessions, interval (days), and per site the needle length (the device's discrete settings,
never above the site's limit) and passes. Every site gets the same schedule and device.

Objective: the weighted, normalised predicted improvement. Each concern has an end point
(``[objective]`` of ``planner.toml``, read ``outcome_delay_days`` after the last session with
:mod:`microneedling.engine.endpoints`); it is divided by the best value any feasible candidate reaches for
that site and concern (so 1 = the best the search space offers), weighted by concern weight ×
severity weight × ``limits.concern_weights``, and summed (weights normalised to sum 1).

Constraints: per-session downtime (``downtime_days`` of each session: redness, swelling or bruising
visible, the worst site treated that day) ≤ ``limits.max_downtime_days_per_session``; total downtime ≤
``limits.max_total_downtime_days``; predicted PIH risk of every session and site ≤ the PIH limit
(default ``planning.max_pih_risk``); needle length ≤ the site's ``safety.max_needle_length`` (and ≤
``safety.typical_needle_length`` unless ``limits.allow_above_usual_depth``); sessions, interval,
devices and topicals as the limits allow.

Method (:func:`search`): the model's sites are independent cases (no coupling between sites in the
healing solve), so every site option is simulated once as a single-site course, and plans are
assembled from site options exactly. (1) One-session screen: every site option's first session is
simulated (one batch); options whose first session already breaks the PIH or downtime limit are
dropped (their plans would break it too) and options dominated in every concern, downtime and PIH by
another option of the same device and topical are dropped (a heuristic: assumes the ranking holds over
a course; ``prune_dominated=False`` turns it off). (2) Every surviving option × schedule is simulated,
one :func:`~microneedling.engine.batch.simulate_batch` call per schedule. (3) Site options are combined
per device, topical and schedule. :func:`exhaustive_search` simulates every full multi-site course of
the grid instead (the benchmark's reference).
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from microneedling.course.model import Course, safety_limits
from microneedling.course.patient import PatientFile, planner_config
from microneedling.course.screening import PlanRefused, Screening, screen
from microneedling.engine import applicability
from microneedling.engine.batch import simulate_batch
from microneedling.engine.endpoints import endpoint_values, parse_endpoint
from microneedling.errors import InputError
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.parameters.sampling import posterior_nominal, sample_parameter_sets

if TYPE_CHECKING:  # pragma: no cover
    from microneedling.engine.batch import BatchRun
    from microneedling.parameters.parameter_set import ParameterSet

__all__ = [
    "Plan",
    "PlanResult",
    "SiteOption",
    "build_course",
    "exhaustive_search",
    "objective_of",
    "pareto_mask",
    "plan_name",
    "predict",
    "renamed_plan",
    "rescore",
    "search",
    "site_caps",
    "with_pih_ceiling_on_percentile",
    "worst_pih_percentile",
]


# ------------------------------------------------------------------------------ data types
@dataclass(frozen=True)
class SiteOption:
    """One way to treat one site: device, topical, needle length and passes."""

    site: str
    device: str
    topical: str | None
    length_mm: float
    passes: int


@dataclass(frozen=True)
class Plan:
    """A complete plan and its nominal predictions."""

    device: str
    topical: str | None
    n_sessions: int
    interval_days: int
    lengths_mm: dict[str, float]
    passes: dict[str, int]
    score: float
    site_scores: dict[str, float]
    concern_values: dict[str, dict[str, float]]  # site -> {endpoint text: value}
    downtime_per_session: tuple[float, ...]  # worst site per session (d)
    total_downtime_days: float
    max_pih_risk: float
    course: Course
    recommended: bool = False

    @property
    def outside_validation(self) -> list[str]:
        """One line per output of this plan's course outside the settings the published validation
        covers, or that no validation row tests (:mod:`microneedling.engine.applicability`)."""
        return applicability.warnings(self.course)

    def summary(self) -> str:
        """One line: device, schedule, per-site length × passes, topical."""
        sites = ", ".join(
            f"{s} {self.lengths_mm[s]:g} mm × {self.passes[s]}" for s in self.lengths_mm
        )
        top = f", {self.topical}" if self.topical else ""
        every = f" every {self.interval_days} d" if self.n_sessions > 1 else ""
        return f"{self.device}: {self.n_sessions} session(s){every}; {sites}{top}"


@dataclass
class PlanResult:
    """What :func:`search` returns: the recommended plan, the Pareto set and how it was found."""

    patient: PatientFile
    screening: Screening
    recommended: Plan
    pareto: list[Plan]
    pih_limit: float
    n_simulated: int  # single-site cases simulated (or courses, for the exhaustive search)
    n_plans: int  # complete plans evaluated
    normalisers: dict[str, dict[str, float]]
    weights: dict[str, dict[str, float]]
    explanation: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    method: str = "decomposed"

    def warnings(self) -> list[str]:
        """Relative contraindications and above-usual depths of the recommended course, and its
        outputs outside the validated settings (:attr:`Plan.outside_validation`)."""
        out = [f.text() for f in self.screening.relative]
        out += [w for w in self.recommended.course.warnings if not w.startswith("patient.history")]
        out += self.recommended.outside_validation
        return out


# ------------------------------------------------------------------------------ the space
def site_caps(patient: PatientFile, device: str) -> dict[str, list[float]]:
    """Needle lengths (mm) a device may use at each site: the device's settings up to the site limit
    (``safety.max_needle_length``; ``safety.typical_needle_length`` unless above-usual is allowed)."""
    lim = safety_limits()
    dev = planner_config()["devices"][device]
    out: dict[str, list[float]] = {}
    for s in patient.sites:
        cap = lim.max_needle_length_mm[s.name]
        if not patient.limits.allow_above_usual_depth:
            cap = min(cap, lim.typical_needle_length_mm[s.name])
        out[s.name] = [float(x) for x in dev["needle_lengths_mm"] if x <= cap + 1e-12]
    return out


def _topicals(patient: PatientFile, ps: ParameterSet) -> tuple[list[str | None], list[str]]:
    """Topicals to search (None = no topical) and notes on allowed ones left out."""
    out: list[str | None] = [None]
    notes = []
    effect = ps.table("observe.depigmenting_ec50", "ug/cm^2")
    pigment = any(c.type == "hyperpigmentation" for s in patient.sites for c in s.concerns)
    for t in patient.limits.allowed_topicals:
        if pigment and t in effect:
            out.append(t)
        else:
            why = "no hyperpigmentation concern" if t in effect else "no modelled effect on any"
            notes.append(
                f"topical {t!r} not searched: {why} end point of the objective (it cannot change "
                "the predicted improvement, observe.depigmenting_ec50)"
            )
    return out, notes


def _schedules(patient: PatientFile) -> list[tuple[int, int]]:
    lim = patient.limits
    step = int(planner_config()["schedule"]["interval_step_days"])
    intervals = list(range(lim.earliest_interval_days, lim.latest_interval_days + 1, step))
    if intervals[-1] != lim.latest_interval_days:
        intervals.append(lim.latest_interval_days)
    out = [(1, intervals[0])]
    out += [(n, i) for n in range(2, lim.max_sessions + 1) for i in intervals]
    return out


def _device_table(device: str, max_length: float) -> dict[str, Any]:
    dev = planner_config()["devices"][device]
    skip = ("needle_lengths_mm", "passes", "source", "note", "pen_speed_cm_s")
    out = {k: v for k, v in dev.items() if k not in skip}
    return {"type": device, **out, "max_needle_length_mm": float(max_length)}


_PLAN_NAME = re.compile(
    r"Plan for (?P<patient>.+): (?P<device>\w+), \d+ session\(s\)( every \S+ d)?"
)


def plan_name(patient: str, device: str, n_sessions: int, interval_days: float | None) -> str:
    """The name the planner gives a course: "Plan for <patient>: <device>, <n> session(s) every
    <interval> d" (no interval for one session; ``interval_days=None``: sessions at uneven
    intervals, "(edited)")."""
    if n_sessions > 1 and interval_days is None:
        return f"Plan for {patient}: {device}, {n_sessions} session(s) (edited)"
    every = f" every {interval_days:g} d" if n_sessions > 1 else ""
    return f"Plan for {patient}: {device}, {n_sessions} session(s){every}"


def renamed_plan(name: str, device: str, days: Iterable[float]) -> str | None:
    """The planner's name (:func:`plan_name`) for a course of ``device`` with sessions on ``days``
    (one session per distinct day; the interval when they are evenly spaced), for the patient
    named in ``name``; None when ``name`` is not a name the planner gives (a name a user typed)."""
    m = _PLAN_NAME.fullmatch(name)
    if m is None:
        return None
    unique = sorted({float(d) for d in days})
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(unique)}
    every = next(iter(gaps)) if len(gaps) == 1 else (0.0 if not gaps else None)
    return plan_name(m.group("patient"), device, len(unique), every)


def build_course(
    patient: PatientFile,
    device: str,
    topical: str | None,
    n_sessions: int,
    interval_days: int,
    per_site: dict[str, tuple[float, int]],
    history: dict[str, Any] | None = None,
) -> Course:
    """The course file of a plan (validated by :class:`~microneedling.course.Course`)."""
    cfg = planner_config()
    delay = float(cfg["schedule"]["outcome_delay_days"])
    dev = cfg["devices"][device]
    sites = []
    for s in patient.sites:
        if s.name not in per_site:
            continue
        entry: dict[str, Any] = {
            "name": s.name,
            "conditions": [c.condition.model_dump() for c in s.concerns],
        }
        if s.area_cm2 is not None:
            entry["area_cm2"] = s.area_cm2
        sites.append(entry)
    sessions = []
    for k in range(n_sessions):
        for entry in sites:
            length, passes = per_site[entry["name"]]
            ses: dict[str, Any] = {
                "day": float(k * interval_days),
                "site": entry["name"],
                "needle_length_mm": float(length),
                "passes": int(passes),
            }
            if device == "pen":
                ses["pen_speed_cm_s"] = float(dev["pen_speed_cm_s"])
            if topical is not None:
                ses["topical"] = {"product": topical, **_topical_preset(topical)}
            sessions.append(ses)
    data = {
        "name": plan_name(patient.name, device, n_sessions, interval_days),
        "description": "Written by `microneedling plan`: a model estimate to discuss with a "
        "qualified practitioner, not medical advice.",
        "horizon_days": (n_sessions - 1) * interval_days + delay,
        "seed": patient.seed,
        "patient": {
            **patient.patient.model_dump(),
            "history": dict(history or {}),
        },
        "sites": sites,
        "device": _device_table(device, max(v[0] for v in per_site.values())),
        "sessions": sessions,
    }
    return Course.from_dict(data, source="plan")


def _topical_preset(name: str) -> dict[str, float]:
    t = planner_config()["topicals"][name]
    return {k: float(t[k]) for k in ("concentration_mg_ml", "volume_ul_cm2", "contact_hours")}


# --------------------------------------------------------------------------- evaluation
@dataclass
class _Cases:
    """Per simulated site case: concern values, per-session downtime and PIH."""

    values: np.ndarray  # (C, J) concern end points (J = max concerns per site; NaN padded)
    downtime: np.ndarray  # (C, K) d per session, NaN beyond the course
    pih: np.ndarray  # (C,) worst session


def objective_of(concern: Any) -> str:
    """The end point (``planner.toml`` ``[objective]``) that measures a concern: its kind's entry
    (``"type:kind"``, e.g. a melasma's MASI) when there is one, else its type's."""
    table = planner_config()["objective"]
    kind = getattr(concern.condition, "kind", None)
    return str(table.get(f"{concern.type}:{kind}", table[concern.type]))


def _concern_specs(patient: PatientFile) -> dict[str, list[Any]]:
    delay = planner_config()["schedule"]["outcome_delay_days"]
    return {
        s.name: [
            parse_endpoint(f"{objective_of(c)}@last+{delay:g}", field="objective")
            for c in s.concerns
        ]
        for s in patient.sites
    }


def _evaluate(run: BatchRun, specs_of_case: Sequence[list[Any]]) -> _Cases:
    """Concern values, per-session downtime and worst PIH of every case of a batch."""
    C = run.n_cases
    J = max(len(s) for s in specs_of_case)
    values = np.full((C, J), np.nan)
    cache: dict[str, np.ndarray] = {}
    for c, specs in enumerate(specs_of_case):
        for j, spec in enumerate(specs):
            if spec.text not in cache:
                cache[spec.text] = endpoint_values(run, spec)
            values[c, j] = cache[spec.text][c]
    ps = run.per_session
    downtime = ps["downtime_days"]
    return _Cases(values, downtime, endpoint_values(run, "pih_risk"))


def _weights(patient: PatientFile) -> dict[str, list[float]]:
    sev = planner_config()["severity_weight"]
    cw = patient.limits.concern_weights
    raw = {
        s.name: [c.weight * float(sev[c.severity]) * cw.get(c.type, 1.0) for c in s.concerns]
        for s in patient.sites
    }
    total = sum(sum(v) for v in raw.values())
    if total <= 0:
        n = sum(len(v) for v in raw.values())
        return {k: [1.0 / n] * len(v) for k, v in raw.items()}
    return {k: [w / total for w in v] for k, v in raw.items()}


def pareto_mask(
    score: np.ndarray, downtime: np.ndarray, sessions: np.ndarray, tol_days: float = 1e-3
) -> np.ndarray:
    """Rows not dominated in (score ↑, total downtime ↓, sessions ↓); exact duplicates kept once.

    Rows are visited best score first (ties: less downtime, fewer sessions), so every earlier row
    scores at least as well; a row is dominated iff an earlier row has no more sessions and no
    more downtime (``tol_days``: downtimes closer than this are equal; they are read off the
    output grid).
    """
    order = np.lexsort((sessions, downtime, -score))
    keep = np.zeros(len(score), dtype=bool)
    best: dict[int, float] = {}  # sessions -> least downtime among the rows already visited
    for r in order:
        n = int(sessions[r])
        dom = min((d for m, d in best.items() if m <= n), default=math.inf)
        keep[r] = bool(downtime[r] < dom - tol_days)
        best[n] = min(best.get(n, math.inf), float(downtime[r]))
    return keep


# ------------------------------------------------------------------------------- search
@dataclass
class _Rows:
    """Complete plans as arrays (one row per plan)."""

    group: list[tuple[str, str | None, int, int]] = field(default_factory=list)
    options: list[tuple[int, ...]] = field(default_factory=list)  # per site: case index
    downtime_sessions: list[np.ndarray] = field(default_factory=list)


def _check_patient(patient: PatientFile) -> tuple[Screening, float]:
    scr = screen(patient)
    scr.raise_if_refused()
    return scr, patient.limits.pih_limit()


def search(
    patient: PatientFile,
    parameters: ParameterSet | None = None,
    *,
    prune_dominated: bool = True,
) -> PlanResult:
    """Screen, then search the plan space (see the module docstring); raises :class:`PlanRefused`
    for an absolute contraindication or when no plan meets the limits."""

    t0 = time.perf_counter()
    scr, pih_limit = _check_patient(patient)
    # calibrated parameters at their posterior median (the centre of the ensemble's draws)
    ps = posterior_nominal(parameters or load_parameters())
    lim = patient.limits
    topicals, notes = _topicals(patient, ps)
    specs = _concern_specs(patient)
    hist = scr.course_history(patient)

    # every site option
    options: list[SiteOption] = []
    for dev in lim.allowed_devices:
        lengths = site_caps(patient, dev)
        passes = planner_config()["devices"][dev]["passes"]
        for top in topicals:
            for site in patient.sites:
                for L in lengths[site.name]:
                    for p in passes:
                        options.append(SiteOption(site.name, dev, top, L, int(p)))
    if not options:
        raise PlanRefused("no plan: no allowed device has a needle length within the site limits")

    # (1) one-session screen
    first = [
        build_course(
            patient, o.device, o.topical, 1, 1, {o.site: (o.length_mm, o.passes)}, history=hist
        )
        for o in options
    ]
    run1 = simulate_batch(first, ps)
    ev1 = _evaluate(run1, [specs[o.site] for o in options])
    n_sim = len(options)
    d1 = ev1.downtime[:, 0]
    ok = ev1.pih <= pih_limit
    if lim.max_downtime_days_per_session < lim.earliest_interval_days:
        ok &= d1 <= lim.max_downtime_days_per_session
    if not np.any(ok):
        raise PlanRefused(_why_none(options, ev1, pih_limit, lim.max_downtime_days_per_session))
    alive = np.flatnonzero(ok)
    if prune_dominated:
        alive = _undominated(options, ev1, alive)

    # (2) every surviving option under every schedule: one batch per schedule
    schedules = _schedules(patient)
    per_sched: dict[tuple[int, int], _Cases] = {}
    for n, i in schedules:
        courses = [
            build_course(
                patient,
                options[a].device,
                options[a].topical,
                n,
                i,
                {options[a].site: (options[a].length_mm, options[a].passes)},
                history=hist,
            )
            for a in alive
        ]
        run = simulate_batch(courses, ps)
        per_sched[(n, i)] = _evaluate(run, [specs[options[a].site] for a in alive])
        n_sim += len(alive)

    # (3) normalisers from every feasible single-site case, then combine sites
    feas: dict[tuple[int, int], np.ndarray] = {}
    for key, ev in per_sched.items():
        f = ev.pih <= pih_limit
        f &= np.all(np.nan_to_num(ev.downtime, nan=0.0) <= lim.max_downtime_days_per_session, 1)
        feas[key] = f
    site_names: list[str] = [str(s.name) for s in patient.sites]
    norm: dict[str, np.ndarray] = {}
    for sn in site_names:
        mine = np.array([options[a].site == sn for a in alive])
        vals = [ev.values[mine & feas[k]] for k, ev in per_sched.items()]
        stacked = np.concatenate(vals) if vals else np.zeros((0, 1))
        J = len(specs[sn])
        ref = np.ones(J)
        if stacked.size:
            best = np.nanmax(np.where(np.isfinite(stacked), stacked, -np.inf), axis=0)[:J]
            ref = np.where(np.isfinite(best) & (best > 0), best, 1.0)
        norm[sn] = ref
    weights = _weights(patient)

    plans_rows: list[tuple[float, float, int, float, Any]] = []
    for dev in lim.allowed_devices:
        for top in topicals:
            for n, i in schedules:
                ev = per_sched[(n, i)]
                f = feas[(n, i)]
                choice = []
                for s in site_names:
                    idx = [
                        k
                        for k, a in enumerate(alive)
                        if options[a].site == s
                        and options[a].device == dev
                        and options[a].topical == top
                        and f[k]
                    ]
                    choice.append(idx)
                if any(not c for c in choice):
                    continue
                site_score = {
                    s: _site_score(ev.values[c][:, : len(specs[s])], norm[s], weights[s])
                    for s, c in zip(site_names, choice, strict=True)
                }
                choice = [
                    _profile_filter(np.array(c), site_score[s], ev.downtime[c][:, :n])
                    for s, c in zip(site_names, choice, strict=True)
                ]
                for combo in itertools.product(*[range(len(c)) for c in choice]):
                    cases = [choice[j][combo[j]] for j in range(len(site_names))]
                    d = np.nanmax(np.stack([ev.downtime[c, :n] for c in cases]), axis=0)
                    total = float(np.sum(d))
                    if lim.max_total_downtime_days is not None and (
                        total > lim.max_total_downtime_days
                    ):
                        continue
                    score = float(
                        sum(
                            _site_score(ev.values[[c], : len(specs[s])], norm[s], weights[s])[0]
                            for s, c in zip(site_names, cases, strict=True)
                        )
                    )
                    pih = float(max(ev.pih[c] for c in cases))
                    plans_rows.append((score, total, n, pih, (dev, top, n, i, cases, d)))
    if not plans_rows:
        raise PlanRefused(
            "no plan meets the limits: every combination of sites exceeds the total downtime "
            f"limit ({lim.max_total_downtime_days} d) or a per-session limit"
        )

    def make(row: tuple[float, float, int, float, Any], recommended: bool) -> Plan:
        score, total, n, pih, (dev, top, _, i, cases, d) = row
        per_site = {
            s: (options[alive[c]].length_mm, options[alive[c]].passes)
            for s, c in zip(site_names, cases, strict=True)
        }
        ev = per_sched[(n, i)]
        course = build_course(patient, dev, top, n, i, per_site, history=hist)
        return Plan(
            device=dev,
            topical=top,
            n_sessions=n,
            interval_days=i,
            lengths_mm={s: v[0] for s, v in per_site.items()},
            passes={s: v[1] for s, v in per_site.items()},
            score=score,
            site_scores={
                s: float(_site_score(ev.values[[c], : len(specs[s])], norm[s], weights[s])[0])
                for s, c in zip(site_names, cases, strict=True)
            },
            concern_values={
                s: {spec.text: float(ev.values[c, j]) for j, spec in enumerate(specs[s])}
                for s, c in zip(site_names, cases, strict=True)
            },
            downtime_per_session=tuple(float(x) for x in d),
            total_downtime_days=total,
            max_pih_risk=pih,
            course=course,
            recommended=recommended,
        )

    result = _assemble(patient, scr, plans_rows, make, pih_limit, norm, weights, specs)
    result.n_simulated = n_sim
    result.notes = notes
    result.elapsed_s = time.perf_counter() - t0
    result.explanation = _explain(result, plans_rows, options, alive, per_sched, feas, specs)
    return result


def _assemble(
    patient: PatientFile,
    scr: Screening,
    rows: list[tuple[float, float, int, float, Any]],
    make: Any,
    pih_limit: float,
    norm: dict[str, np.ndarray],
    weights: dict[str, list[float]],
    specs: dict[str, list[Any]],
) -> PlanResult:
    score = np.array([r[0] for r in rows])
    total = np.array([r[1] for r in rows])
    sessions = np.array([r[2] for r in rows])
    best = int(np.lexsort((sessions, total, -score))[0])
    mask = pareto_mask(score, total, sessions)
    mask[best] = True
    pareto = [make(rows[k], k == best) for k in np.flatnonzero(mask)]
    pareto.sort(key=lambda p: (p.n_sessions, p.total_downtime_days, -p.score))
    rec = next(p for p in pareto if p.recommended)
    return PlanResult(
        patient=patient,
        screening=scr,
        recommended=rec,
        pareto=pareto,
        pih_limit=pih_limit,
        n_simulated=0,
        n_plans=len(rows),
        normalisers={
            s: {spec.text: float(norm[s][j]) for j, spec in enumerate(specs[s])} for s in norm
        },
        weights={
            s: {spec.text: float(weights[s][j]) for j, spec in enumerate(specs[s])} for s in weights
        },
    )


def _site_score(values: np.ndarray, ref: np.ndarray, w: list[float]) -> np.ndarray:
    """(n,) weighted normalised improvement of site cases (NaN end points count as 0)."""
    v = np.nan_to_num(values / ref[None, : values.shape[1]], nan=0.0)
    return np.asarray(v @ np.asarray(w[: values.shape[1]]))


def _profile_filter(cases: np.ndarray, score: np.ndarray, downtime: np.ndarray) -> list[int]:
    """Drop site options dominated by another of the same group (score ≥ and every session's
    downtime ≤): swapping them in can never lower total downtime nor score, so this is exact."""
    d = np.nan_to_num(downtime, nan=0.0)
    keep = []
    for a in range(len(cases)):
        better = (score >= score[a]) & np.all(d <= d[a], axis=1)
        strictly = (score > score[a]) | np.any(d < d[a], axis=1)
        dominated = better & strictly
        # exact ties: keep the first only
        same = better & ~strictly
        same[a] = False
        if np.any(dominated) or np.any(same[:a]):
            continue
        keep.append(int(cases[a]))
    return keep


def _undominated(options: list[SiteOption], ev: _Cases, alive: np.ndarray) -> np.ndarray:
    """Options not dominated after one session by one of the same site, device and topical."""
    keep = []
    v = np.nan_to_num(ev.values, nan=0.0)
    d = ev.downtime[:, 0]
    for a in alive:
        oa = options[a]
        dominated = False
        for b in alive:
            ob = options[b]
            if b == a or (ob.site, ob.device, ob.topical) != (oa.site, oa.device, oa.topical):
                continue
            ge = np.all(v[b] >= v[a]) and d[b] <= d[a] and ev.pih[b] <= ev.pih[a]
            gt = np.any(v[b] > v[a]) or d[b] < d[a] or ev.pih[b] < ev.pih[a]
            if ge and gt:
                dominated = True
                break
        if not dominated:
            keep.append(int(a))
    return np.array(keep, dtype=int)


def _why_none(options: list[SiteOption], ev: _Cases, pih_limit: float, dmax: float) -> str:
    k = int(np.nanargmin(ev.pih))
    o = options[k]
    if ev.pih[k] > pih_limit:
        return (
            f"no plan meets the limits: even the mildest session ({o.device}, {o.site}, "
            f"{o.length_mm:g} mm × {o.passes}) has a predicted PIH risk of {ev.pih[k]:.3f} > "
            f"the limit {pih_limit:g} (limits.max_pih_risk / planning.max_pih_risk)"
        )
    k = int(np.nanargmin(ev.downtime[:, 0]))
    o = options[k]
    return (
        f"no plan meets the limits: the shortest downtime of any session ({o.device}, {o.site}, "
        f"{o.length_mm:g} mm × {o.passes}) is {ev.downtime[k, 0]:.1f} d > "
        f"limits.max_downtime_days_per_session = {dmax:g} d"
    )


# -------------------------------------------------------------------------- explanation
def _explain(
    result: PlanResult,
    rows: list[tuple[float, float, int, float, Any]],
    options: list[SiteOption],
    alive: np.ndarray,
    per_sched: dict[tuple[int, int], _Cases],
    feas: dict[tuple[int, int], np.ndarray],
    specs: dict[str, list[Any]],
) -> list[str]:
    """Sentences: which concern drove each site's choice, and what stopped a deeper/longer plan."""
    rec = result.recommended
    lim = result.patient.limits
    out = []
    ev = per_sched[(rec.n_sessions, rec.interval_days)]
    f = feas[(rec.n_sessions, rec.interval_days)]
    for s, length in rec.lengths_mm.items():
        contrib = {
            t: result.weights[s][t] * rec.concern_values[s][t] / result.normalisers[s][t]
            for t in rec.concern_values[s]
        }
        lead = max(contrib, key=lambda t: contrib[t])
        share = contrib[lead] / sum(contrib.values()) if sum(contrib.values()) > 0 else 1.0
        text = (
            f"{s}: {length:g} mm × {rec.passes[s]} passes, driven by {lead} "
            f"(predicted {rec.concern_values[s][lead]:.1f}, {100 * share:.0f}% of this site's "
            "weighted improvement)"
        )
        caps = site_caps(result.patient, rec.device)[s]
        deeper = [L for L in caps if L > length]
        if not deeper:
            text += (
                f"; {length:g} mm is the longest setting allowed at {s} ({_cap_name(result, s)})"
            )
        else:
            nxt = deeper[0]
            k = [
                j
                for j, a in enumerate(alive)
                if options[a].site == s
                and options[a].device == rec.device
                and options[a].topical == rec.topical
                and options[a].length_mm == nxt
                and options[a].passes == rec.passes[s]
            ]
            if not k:
                text += f"; {nxt:g} mm was ruled out after one session (limits or dominated)"
            elif not f[k[0]]:
                j = k[0]
                if ev.pih[j] > result.pih_limit:
                    text += (
                        f"; {nxt:g} mm would exceed the PIH limit "
                        f"({ev.pih[j]:.3f} > {result.pih_limit:g})"
                    )
                else:
                    worst = float(np.nanmax(ev.downtime[j]))
                    text += (
                        f"; {nxt:g} mm would exceed the downtime limit "
                        f"({worst:.1f} d > {lim.max_downtime_days_per_session:g} d per session)"
                    )
            else:
                text += f"; {nxt:g} mm scored lower or cost more downtime overall"
        out.append(text)
    more = [r for r in rows if r[2] == rec.n_sessions + 1]
    if rec.n_sessions == lim.max_sessions:
        out.append(f"{rec.n_sessions} sessions: the most allowed (limits.max_sessions).")
    elif not more:
        out.append(f"{rec.n_sessions + 1} sessions: no feasible plan within the limits.")
    else:
        best_more = max(r[0] for r in more)
        out.append(
            f"{rec.n_sessions} sessions: the best plan with {rec.n_sessions + 1} scores "
            f"{best_more:.3f} vs {rec.score:.3f}."
        )
    by_dev: dict[str, float] = {}
    for r in rows:
        by_dev[r[4][0]] = max(by_dev.get(r[4][0], -math.inf), r[0])
    if len(by_dev) > 1:
        out.append(
            "device: "
            + ", ".join(f"{d} best score {v:.3f}" for d, v in sorted(by_dev.items()))
            + f"; {rec.device} chosen."
        )
    by_top: dict[str, float] = {}
    for r in rows:
        name = r[4][1] or "no topical"
        by_top[name] = max(by_top.get(name, -math.inf), r[0])
    if len(by_top) > 1:
        out.append(
            "topical: "
            + ", ".join(f"{t} best score {v:.3f}" for t, v in sorted(by_top.items()))
            + f"; {rec.topical or 'no topical'} chosen."
        )
    return out


def _cap_name(result: PlanResult, site: str) -> str:
    lim = safety_limits()
    if result.patient.limits.allow_above_usual_depth:
        return f"site limit safety.max_needle_length = {lim.max_needle_length_mm[site]:g} mm"
    return (
        f"usual depth safety.typical_needle_length = {lim.typical_needle_length_mm[site]:g} mm; "
        "limits.allow_above_usual_depth = true allows up to safety.max_needle_length = "
        f"{lim.max_needle_length_mm[site]:g} mm"
    )


# -------------------------------------------------------------------- exhaustive reference
def exhaustive_search(
    patient: PatientFile,
    parameters: ParameterSet | None = None,
    *,
    chunk: int = 400,
) -> PlanResult:
    """Every complete multi-site course of the grid, simulated in batches (no decomposition, no
    pruning): the reference the benchmark and tests compare :func:`search` against."""

    t0 = time.perf_counter()
    scr, pih_limit = _check_patient(patient)
    # calibrated parameters at their posterior median (the centre of the ensemble's draws)
    ps = posterior_nominal(parameters or load_parameters())
    lim = patient.limits
    topicals, notes = _topicals(patient, ps)
    specs = _concern_specs(patient)
    hist = scr.course_history(patient)
    site_names: list[str] = [str(s.name) for s in patient.sites]
    n_sim = 0
    raw: list[tuple[Any, np.ndarray, np.ndarray, np.ndarray, float]] = []
    for n, i in _schedules(patient):
        combos = []
        for dev in lim.allowed_devices:
            lengths = site_caps(patient, dev)
            passes = planner_config()["devices"][dev]["passes"]
            per_site = [[(L, int(p)) for L in lengths[s] for p in passes] for s in site_names]
            for top in topicals:
                for combo in itertools.product(*per_site):
                    combos.append((dev, top, dict(zip(site_names, combo, strict=True))))
        for start in range(0, len(combos), chunk):
            part = combos[start : start + chunk]
            courses = [build_course(patient, d, t, n, i, c, history=hist) for d, t, c in part]
            run = simulate_batch(courses, ps)
            n_sim += len(courses)
            S = len(site_names)
            ev = _evaluate(run, [specs[s] for _ in part for s in site_names])
            for k, (d, t, c) in enumerate(part):
                sl = slice(k * S, (k + 1) * S)
                raw.append(((d, t, n, i, c), ev.values[sl], ev.downtime[sl, :n], ev.pih[sl], 0.0))
    dmax = lim.max_downtime_days_per_session
    feasible = [r for r in raw if np.all(r[3] <= pih_limit) and np.all(np.nan_to_num(r[2]) <= dmax)]
    if lim.max_total_downtime_days is not None:
        feasible = [
            r for r in feasible if np.sum(np.nanmax(r[2], 0)) <= lim.max_total_downtime_days
        ]
    if not feasible:
        raise PlanRefused("no plan meets the limits (exhaustive search)")
    norm: dict[str, np.ndarray] = {}
    for j, s in enumerate(site_names):
        vals = np.stack([r[1][j, : len(specs[s])] for r in feasible])
        best = np.nanmax(np.where(np.isfinite(vals), vals, -np.inf), axis=0)
        norm[s] = np.where(np.isfinite(best) & (best > 0), best, 1.0)
    weights = _weights(patient)
    rows: list[tuple[float, float, int, float, Any]] = []
    for key, vals, dt, pih, _ in feasible:
        sc = sum(
            float(_site_score(vals[[j], : len(specs[s])], norm[s], weights[s])[0])
            for j, s in enumerate(site_names)
        )
        d = np.nanmax(dt, axis=0)
        rows.append((sc, float(np.sum(d)), key[2], float(np.max(pih)), (key, vals, d)))

    def make(row: tuple[float, float, int, float, Any], recommended: bool) -> Plan:
        score, total, n, pih, ((dev, top, _, i, per_site), vals, d) = row
        return Plan(
            device=dev,
            topical=top,
            n_sessions=n,
            interval_days=i,
            lengths_mm={s: v[0] for s, v in per_site.items()},
            passes={s: v[1] for s, v in per_site.items()},
            score=score,
            site_scores={
                s: float(_site_score(vals[[j], : len(specs[s])], norm[s], weights[s])[0])
                for j, s in enumerate(site_names)
            },
            concern_values={
                s: {spec.text: float(vals[j, q]) for q, spec in enumerate(specs[s])}
                for j, s in enumerate(site_names)
            },
            downtime_per_session=tuple(float(x) for x in d),
            total_downtime_days=total,
            max_pih_risk=pih,
            course=build_course(patient, dev, top, n, i, per_site, history=hist),
            recommended=recommended,
        )

    result = _assemble(patient, scr, rows, make, pih_limit, norm, weights, specs)
    result.n_simulated = n_sim
    result.notes = notes
    result.method = "exhaustive"
    result.elapsed_s = time.perf_counter() - t0
    return result


def rescore(
    plan: Plan, normalisers: dict[str, dict[str, float]], weights: dict[str, dict[str, float]]
) -> float:
    """A plan's score under other normalisers and weights (to compare two searches fairly)."""
    return float(
        sum(
            weights[s][t] * v / normalisers[s][t]
            for s, vals in plan.concern_values.items()
            for t, v in vals.items()
            if math.isfinite(v)
        )
    )


# --------------------------------------------------------------------------- prediction
def predict(
    course: Course,
    patient: PatientFile,
    parameters: ParameterSet | None = None,
    draws: int = 32,
) -> list[dict[str, Any]]:
    """The plan's concern end points (and downtime, PIH) with 10–90% intervals over ``draws``
    parameter draws (``microneedling.parameters.sampling.sample_parameter_sets`` with the patient's seed), one batch."""

    ps = parameters or load_parameters()
    sets = [posterior_nominal(ps)] + (
        sample_parameter_sets(ps, draws, patient.seed) if draws > 0 else []
    )
    run = simulate_batch([course] * len(sets), sets)
    specs = _concern_specs(patient)
    sites = [s.name for s in course.sites]
    B = len(sites)
    rows = []
    extra = [
        parse_endpoint("erythema_days"),
        parse_endpoint("oedema_days"),
        parse_endpoint("downtime_days"),
        parse_endpoint("pih_risk"),
    ]
    for b, s in enumerate(sites):
        for spec in [*specs[s], *extra]:
            v = endpoint_values(run, spec).reshape(len(sets), B)[:, b]
            lo, hi = np.nanpercentile(v[1:], [10, 90]) if draws > 0 else (np.nan, np.nan)
            rows.append(
                {
                    "site": s,
                    "endpoint": spec.text,
                    "units": spec.units,
                    "value": float(v[0]),
                    "low": float(lo),
                    "high": float(hi),
                }
            )
    return rows


def worst_pih_percentile(
    course: Course,
    seed: int,
    parameters: ParameterSet | None = None,
    draws: int = 32,
    percentile: float = 90.0,
) -> float:
    """The ``percentile`` of the worst-session, worst-site PIH risk of ``course`` over ``draws``
    parameter draws (one batch)."""
    ps = parameters or load_parameters()
    sets = sample_parameter_sets(ps, draws, seed)
    run = simulate_batch([course] * len(sets), sets)
    worst = np.nanmax(endpoint_values(run, "pih_risk").reshape(len(sets), -1), axis=1)
    return float(np.nanpercentile(worst, percentile))


def with_pih_ceiling_on_percentile(
    result: PlanResult,
    parameters: ParameterSet | None = None,
    *,
    draws: int = 32,
    percentile: float = 90.0,
) -> PlanResult:
    """The plan result with the PIH limit applied to the ``percentile`` of the worst-session risk
    over ``draws`` parameter draws instead of its nominal value: the recommended plan becomes the
    best-scoring plan of the Pareto set whose upper percentile is within the limit (the nominal
    ceiling of :func:`search` lets plans through whose 90th percentile is several times over it).

    Raises :class:`~microneedling.course.screening.PlanRefused` when no Pareto plan qualifies.
    """
    if isinstance(draws, bool) or not isinstance(draws, int) or not 8 <= draws <= 1000:
        raise InputError("draws", draws, "an integer from 8 to 1000 (the percentile needs draws)")
    order = sorted(result.pareto, key=lambda p: (-p.score, p.total_downtime_days, p.n_sessions))
    seen: list[tuple[Plan, float]] = []
    for plan in order:
        upper = worst_pih_percentile(
            plan.course, result.patient.seed, parameters, draws, percentile
        )
        seen.append((plan, upper))
        if upper <= result.pih_limit:
            pareto = [replace(p, recommended=p is plan) for p in result.pareto]
            rec = next(p for p in pareto if p.recommended)
            line = (
                f"PIH ceiling on the {percentile:g}th percentile ({draws} draws): the recommended "
                f"plan's worst-session PIH risk is {upper:.3f} at that percentile, within the "
                f"limit {result.pih_limit:g}"
            )
            if plan is not order[0]:
                line += (
                    f"; the best-scoring plan ({order[0].summary()}) was {seen[0][1]:.3f} there, "
                    "over the limit"
                )
            return replace(result, recommended=rec, pareto=pareto,
                           explanation=[line, *result.explanation])  # fmt: skip
    best_plan, best = min(seen, key=lambda x: x[1])
    raise PlanRefused(
        f"no plan of the Pareto set keeps the {percentile:g}th-percentile worst-session PIH risk "
        f"within {result.pih_limit:g}: the lowest is {best:.3f} ({best_plan.summary()}); raise "
        "--max-pih-risk or use the nominal ceiling"
    )
