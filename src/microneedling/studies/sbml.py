"""SBML export of the wound-healing model for one treated site of a course (SBML Level 3 Version 2).

Systems-biology users can run the exported file in COPASI, tellurium/libRoadRunner or any SBML
simulator. The document mirrors :mod:`microneedling.physics.healing_rhs` term by term:

* the 35 states are species (dimensionless amounts in a unit compartment ``skin_site``, driven by
  rate rules, no reactions): the dermal block with prefixes ``pap_`` (papillary dermis) and ``ret_``
  (reticular dermis): ``D I M F P N3 N1 NE LE S NX R Bl Hm``; the epidermal block ``De K H Mp Q A Ma``;
* the quasi-steady TGF-β signals ``pap_T`` and ``ret_T`` are assignment rules;
* the 49 parameters carry the names of :data:`~microneedling.physics.healing_rhs.PARAM_NAMES` and
  the values the engine uses for that case (age-scaled collagen rates, PIH gain of the patient's
  Fitzpatrick type, ``sigma_TF`` from the loop gain, ``lesion_drive``), with units (per day or
  dimensionless; model time is in days);
* each session is an event at its day that adds the session's impulse (injured fractions per layer,
  delivered depigmenting agent) to the states, exactly like the engine's impulses;
* initial amounts are the homeostatic baseline (F = P = S = 1, Mp = Ma = lesion drive, the rest 0).

Only the healing ODE is exported: needles, injury, transport (which produce the impulses) and the
observation maps (states → clinical observables) stay in the package; their results for the case
are baked into the event assignments. Notes in the document say so, with the disclaimer.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np

from microneedling.about import DISCLAIMER, __version__
from microneedling.engine.batch import session_jumps
from microneedling.engine.prepare import prepare
from microneedling.errors import InputError, MicroneedlingError
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.parameters.sampling import posterior_nominal
from microneedling.physics.healing import PARAM_UNITS
from microneedling.physics.healing_rhs import (
    DERMAL_LAYERS,
    DERMAL_STATE_NAMES,
    EPIDERMAL_STATE_NAMES,
    N_DERMAL,
    N_PARAM,
    N_STATE,
    PARAM_NAMES,
    PIDX,
    baseline_state,
)

if TYPE_CHECKING:  # pragma: no cover
    from microneedling.course.model import Course

LAYER_PREFIX = ("pap", "ret")
#: SBML ids of the states, in the engine's state order (length N_STATE)
STATE_IDS: tuple[str, ...] = tuple(
    f"{pre}_{s}" for pre in LAYER_PREFIX for s in DERMAL_STATE_NAMES
) + tuple(EPIDERMAL_STATE_NAMES)

_STATE_DESCR = {
    "D": "injured volume fraction not yet cleared",
    "I": "inflammation (neutrophils + M1), 1 = saturating response",
    "M": "repair macrophages (M2)",
    "F": "fibroblast density relative to baseline",
    "P": "MMP activity relative to baseline",
    "N3": "new collagen III, fraction of baseline total collagen",
    "N1": "new immature collagen I (incl. matured III; MMP-labile)",
    "NE": "new elastic fibre, fraction of baseline elastin",
    "LE": "pre-existing elastin lost to MMP",
    "S": "scar tethering left (1 = untreated)",
    "NX": "mature (cross-linked) new collagen I, minus matrix lost to excess MMP",
    "R": "injury still recruiting inflammation (K_D x saturation of each session)",
    "Bl": "blood retained in a roller's clefts, not yet lysed (recruiting-injury units)",
    "Hm": "lysed retained blood, recruiting inflammation (same units as R)",
    "De": "epidermal injury (open channels in the epidermis)",
    "K": "keratinocyte activation",
    "H": "epidermal thickening, fraction of baseline",
    "Mp": "lesional pigment excess, fraction of baseline",
    "Q": "inflammation-induced pigment (PIH) excess",
    "A": "depigmenting-agent effect (delivered topical)",
    "Ma": "lesional melanocyte activity, fraction of the untreated lesion's",
}


class SBMLError(MicroneedlingError):
    """libsbml refused a construction step or the document failed its consistency check."""


def _check(code: int, what: str) -> None:
    import libsbml

    if code != libsbml.LIBSBML_OPERATION_SUCCESS:
        raise SBMLError(f"libsbml: {what} failed: {libsbml.OperationReturnValue_toString(code)}")


def dermal_rate_formulas(pre: str) -> dict[str, str]:
    """Rate-rule formulas (SBML infix) of one dermal block with species prefix ``pre``;
    term-by-term the equations of :func:`microneedling.physics.healing_rhs._dermal_rhs`."""
    s = {n: f"{pre}_{n}" for n in DERMAL_STATE_NAMES}
    D, I, M, F, P = s["D"], s["I"], s["M"], s["F"], s["P"]  # noqa: E741
    N3, N1, NE, LE, S, NX = s["N3"], s["N1"], s["NE"], s["LE"], s["S"], s["NX"]
    R, Bl, Hm = s["R"], s["Bl"], s["Hm"]
    T = f"{pre}_T"
    return {
        D: f"-(k_D + k_DI * {I}) * {D}",
        I: f"s_I * ({R} + {Hm}) / K_D - mu_I * {I}",
        M: f"s_M * {I} - mu_M * {M}",
        F: f"r_F * {F} * {T} / (K_T + {T}) * (1 - {F} / F_max) - mu_F * ({F} - 1)",
        P: f"sigma_PI * {I} + sigma_PF * ({F} - 1) - mu_P * ({P} - 1)",
        N3: f"k_3 * ({F} - 1) - (k_mat + delta_3 * {P}) * {N3}",
        N1: f"k_1 * ({F} - 1) + k_mat * {N3} - (k_x + delta_1 * {P}) * {N1}",
        NE: f"k_E * ({F} - 1) - delta_E * {P} * {NE}",
        LE: f"delta_bE * ({P} - 1) * (1 - {LE})",
        S: f"-(k_SD * {D} + k_SP * ({P} - 1)) * {S}",
        NX: f"k_x * {N1} - delta_X * {P} * {NX} - delta_b * ({P} - 1) * (C1_0 + {NX})",
        R: f"-(k_D + k_DI * {I}) * {R}",
        Bl: f"-k_lys * {Bl}",
        Hm: f"k_lys * {Bl} - k_Hm * {Hm}",
    }


def epidermal_rate_formulas() -> dict[str, str]:
    """Rate-rule formulas of the epidermal block (driven by the papillary layer's T and I)."""
    return {
        "De": "-k_De * De",
        "K": "s_K * De / (K_De + De) + s_KT * pap_T - mu_K * K",
        "H": "k_H * K - mu_H * H",
        "Mp": "kappa_T * (Ma - (1 + beta_K * K) * Mp)",
        "Q": "g_Q * (1 - e_A * A / (EC_A + A)) * pap_I - mu_Q * (1 + beta_K * K) * Q",
        "A": "-k_A * A",
        "Ma": (
            "kappa_R * (lesion_drive * (1 - e_A * A / (EC_A + A))"
            " * exp(-beta_N * (pap_N3 + pap_N1 + pap_NX)) - Ma)"
        ),
    }


def _case(course: Course, ps: ParameterSet, site: str | None) -> tuple[str, Any]:
    """(site, Prepared row data) for the chosen site of ``course``."""

    sites = [s.name for s in course.sites]
    if site is None:
        site = sites[0]
    if site not in sites:
        raise InputError("site", site, f"a site of the course: {sites}")
    b = sites.index(site)
    return site, (prepare(course, ps), b)


def case_inputs(
    course: Course, parameters: ParameterSet | None = None, site: str | None = None
) -> dict[str, Any]:
    """What the exported model of ``site`` contains, as arrays: ``params`` (N_PARAM,),
    ``y0`` (N_STATE,), ``session_days`` (K,), ``jumps`` (K, N_STATE), ``horizon_days``, ``site``.

    The same numbers the engine integrates for that case (used by :func:`export_sbml` and to
    compare the export with the engine)."""

    # the calibrated parameters at their posterior median, as simulate() and simulate_batch() use
    ps = posterior_nominal(parameters or load_parameters())
    site, (prep, b) = _case(course, ps, site)
    mask = prep.session_mask[b]
    jumps = session_jumps(prep)[b][mask]
    params = np.asarray(prep.params[b], dtype=float)
    return {
        "site": site,
        "params": params,
        "y0": baseline_state(np.array([params[PIDX["lesion_drive"]]]))[0],
        "session_days": np.asarray(prep.session_days[b][mask], dtype=float),
        "jumps": jumps,
        "horizon_days": float(course.horizon_days),
    }


def export_sbml(
    course: Course, parameters: ParameterSet | None = None, site: str | None = None
) -> str:
    """SBML L3V2 text of the healing model of one treated site of ``course``.

    Parameters
    ----------
    course:
        A validated course; its sessions at ``site`` become events.
    parameters:
        Parameter set (default: the shipped set); its calibrated parameters at their posterior
        median (as :func:`~microneedling.engine.simulate.simulate` uses them) enter as SBML
        parameters.
    site:
        Which treated site (default: the course's first site).

    Raises :class:`InputError` for an unknown site and :class:`SBMLError` if the document fails
    libsbml's consistency check (which would be a bug).
    """
    case = case_inputs(course, parameters, site)
    return build_sbml(
        case["params"],
        case["y0"],
        case["session_days"],
        case["jumps"],
        model_id=f"microneedling_healing_{case['site']}",
        name=f"microneedling healing model: {course.name}, site {case['site']}",
    )


def build_sbml(
    params: np.ndarray,
    y0: np.ndarray,
    session_days: np.ndarray,
    jumps: np.ndarray,
    *,
    model_id: str = "microneedling_healing",
    name: str = "microneedling healing model",
    validate: bool = True,
) -> str:
    """SBML L3V2 text from raw arrays (``params`` (N_PARAM,) in engine units, ``y0`` (N_STATE,),
    ``session_days`` (K,) in days, ``jumps`` (K, N_STATE) additive impulses)."""
    import libsbml

    params = np.asarray(params, dtype=float)
    y0 = np.asarray(y0, dtype=float)
    session_days = np.asarray(session_days, dtype=float).reshape(-1)
    jumps = np.asarray(jumps, dtype=float).reshape(session_days.size, N_STATE)
    if params.shape != (len(PARAM_NAMES),) or not np.all(np.isfinite(params)):
        raise InputError("params", params.shape, f"{len(PARAM_NAMES)} finite values")
    if y0.shape != (N_STATE,) or not np.all(np.isfinite(y0)):
        raise InputError("y0", y0.shape, f"{N_STATE} finite values")
    if not (np.all(np.isfinite(session_days)) and np.all(np.isfinite(jumps))):
        raise InputError("session_days", "non-finite", "finite session days and impulses")

    doc = libsbml.SBMLDocument(3, 2)
    model = doc.createModel()
    _check(model.setId(_sid(model_id)), "model id")
    model.setName(name)
    _notes(model)

    # units: time in days, rates per day, everything else dimensionless
    day = model.createUnitDefinition()
    day.setId("day")
    u = day.createUnit()
    u.setKind(libsbml.UNIT_KIND_SECOND)
    u.setExponent(1)
    u.setScale(0)
    u.setMultiplier(86400.0)
    per_day = model.createUnitDefinition()
    per_day.setId("per_day")
    u = per_day.createUnit()
    u.setKind(libsbml.UNIT_KIND_SECOND)
    u.setExponent(-1)
    u.setScale(0)
    u.setMultiplier(86400.0)
    _check(model.setTimeUnits("day"), "time units")
    _check(model.setSubstanceUnits("dimensionless"), "substance units")
    _check(model.setExtentUnits("dimensionless"), "extent units")
    _check(model.setVolumeUnits("dimensionless"), "volume units")

    comp = model.createCompartment()
    comp.setId("skin_site")
    comp.setName("one treated skin site (unit compartment: states are dimensionless)")
    comp.setConstant(True)
    comp.setSize(1.0)
    comp.setSpatialDimensions(3)
    comp.setUnits("dimensionless")

    for i, sid in enumerate(STATE_IDS):
        sp = model.createSpecies()
        sp.setId(sid)
        base = sid.split("_", 1)[1] if i < 2 * N_DERMAL else sid
        where = DERMAL_LAYERS[i // N_DERMAL] if i < 2 * N_DERMAL else "epidermis"
        sp.setName(f"{_STATE_DESCR[base]} ({where})")
        sp.setCompartment("skin_site")
        sp.setInitialAmount(float(y0[i]))
        sp.setHasOnlySubstanceUnits(True)
        sp.setBoundaryCondition(False)
        sp.setConstant(False)
        sp.setSubstanceUnits("dimensionless")

    for j, pname in enumerate(PARAM_NAMES):
        p = model.createParameter()
        p.setId(pname)
        p.setValue(float(params[j]))
        p.setConstant(True)
        p.setUnits("per_day" if PARAM_UNITS.get(pname) == "1/d" else "dimensionless")
    for pre in LAYER_PREFIX:
        t = model.createParameter()
        t.setId(f"{pre}_T")
        t.setName(f"quasi-steady TGF-beta signal ({pre})")
        t.setConstant(False)
        t.setUnits("dimensionless")
        ar = model.createAssignmentRule()
        ar.setVariable(f"{pre}_T")
        _check(ar.setMath(_math(f"{pre}_M + sigma_TF * ({pre}_F - 1)")), f"{pre}_T rule")

    formulas: dict[str, str] = {}
    for pre in LAYER_PREFIX:
        formulas.update(dermal_rate_formulas(pre))
    formulas.update(epidermal_rate_formulas())
    for sid in STATE_IDS:
        rr = model.createRateRule()
        rr.setVariable(sid)
        _check(rr.setMath(_math(formulas[sid])), f"rate rule {sid}")

    for k, (day_k, jump) in enumerate(zip(session_days, jumps, strict=True)):
        ev = model.createEvent()
        ev.setId(f"session_{k}")
        ev.setName(f"microneedling session {k} on day {day_k:g}")
        ev.setUseValuesFromTriggerTime(True)
        trig = ev.createTrigger()
        trig.setInitialValue(False)
        trig.setPersistent(True)
        _check(trig.setMath(_math(f"time >= {_num(day_k)}")), f"session {k} trigger")
        for ix in np.flatnonzero(jump != 0.0).tolist():
            ea = ev.createEventAssignment()
            ea.setVariable(STATE_IDS[ix])
            _check(ea.setMath(_math(f"{STATE_IDS[ix]} + {_num(jump[ix])}")), f"session {k} jump")

    if validate:
        _validate(doc)
    text: str = libsbml.writeSBMLToString(doc)
    return text


def _num(x: float) -> str:
    """Exact decimal text of a float (repr round-trips)."""
    return repr(float(x))


def _math(formula: str) -> Any:
    import libsbml

    ast = libsbml.parseL3Formula(formula)
    if ast is None:
        raise SBMLError(f"libsbml could not parse {formula!r}: {libsbml.getLastParseL3Error()}")
    return ast


def _sid(text: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in text)
    return out if out[:1].isalpha() or out[:1] == "_" else f"m_{out}"


def _notes(model: Any) -> None:

    body = (
        "Wound-healing ODE of the microneedling package (version "
        f"{__version__}), exported for one treated site. Time in days. The {N_STATE} states "
        f"and {N_PARAM} parameters mirror microneedling.physics.healing_rhs; sessions are events "
        "adding the session's injury and topical impulses (computed by the package's needle, "
        "injury and transport models). Observables (collagen %, scar depth, ...) are not part of this file. "
        + DISCLAIMER
    )
    xhtml = f'<body xmlns="http://www.w3.org/1999/xhtml"><p>{html.escape(body)}</p></body>'
    _check(model.setNotes(xhtml), "notes")


def validation_errors(text: str) -> list[str]:
    """Messages of libsbml's read and consistency checks at severity error or fatal (empty: valid)."""
    import libsbml

    doc = libsbml.readSBMLFromString(text)
    doc.checkConsistency()
    out = []
    for i in range(doc.getNumErrors()):
        e = doc.getError(i)
        if e.getSeverity() >= libsbml.LIBSBML_SEV_ERROR:
            out.append(f"{e.getErrorId()}: {e.getMessage().strip()}")
    return out


def _validate(doc: Any) -> None:
    import libsbml

    doc.checkConsistency()
    errs = [
        doc.getError(i)
        for i in range(doc.getNumErrors())
        if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR
    ]
    if errs:
        raise SBMLError(
            "SBML consistency check failed: "
            + "; ".join(f"{e.getErrorId()}: {e.getMessage().strip()}" for e in errs[:5])
        )


__all__ = [
    "STATE_IDS",
    "SBMLError",
    "build_sbml",
    "case_inputs",
    "dermal_rate_formulas",
    "epidermal_rate_formulas",
    "export_sbml",
    "validation_errors",
]
