"""SBML export: valid L3V2, and libRoadRunner on the export reproduces the engine's 29 states."""

from __future__ import annotations

import numpy as np
import pytest

import microneedling as mn
from microneedling.engine.batch import session_jumps, simulate_batch
from microneedling.engine.prepare import output_times
from microneedling.errors import InputError
from microneedling.physics import healing
from microneedling.physics.healing_rhs import N_STATE, PARAM_NAMES
from microneedling.studies.sbml import STATE_IDS, case_inputs, export_sbml, validation_errors
from tests.paths import EXAMPLES

libsbml = pytest.importorskip("libsbml")
roadrunner = pytest.importorskip("roadrunner")


def _roadrunner(text: str, t: np.ndarray, rtol: float = 1e-10, atol: float = 1e-13) -> np.ndarray:
    rr = roadrunner.RoadRunner(text)
    rr.integrator.relative_tolerance = rtol
    rr.integrator.absolute_tolerance = atol
    rr.integrator.maximum_num_steps = 100_000
    res = rr.simulate(times=list(t), selections=["time", *STATE_IDS])
    out = np.asarray(res)
    np.testing.assert_allclose(out[:, 0], t)
    return out[:, 1:]


def _scaled_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-state max |a − b| / max|b| over time (states that stay 0 compare absolutely)."""
    scale = np.maximum(np.abs(b).max(axis=0), 1e-12)
    return np.asarray(np.abs(a - b).max(axis=0) / scale)


@pytest.mark.parametrize(
    ("example", "site"),
    [
        ("melasma-tranexamic-acid.toml", None),  # 12 sessions, a depigmenting topical, lesion
        ("acne-scars-rolling-cheek.toml", None),  # 4 sessions of 1.5 mm
        ("enlarged-pores-nose-cheek.toml", "cheek"),  # second site of a two-site course
    ],
)
def test_roadrunner_matches_engine_all_states(example: str, site: str | None) -> None:
    course = mn.Course.from_toml(EXAMPLES / example)
    case = case_inputs(course, site=site)
    assert len(case["session_days"]) >= 1
    text = export_sbml(course, site=site)
    t = output_times(case["session_days"][None, :], case["horizon_days"])
    # both solvers tight: the equations, parameters and impulses are the same to 1e-6 of each
    # state's range (measured ~1e-9)
    ours = healing.solve(
        case["params"][None], t, case["session_days"][None], case["jumps"][None], rtol=1e-10,
        atol=1e-13,
    ).y[0]  # fmt: skip
    theirs = _roadrunner(text, t)
    assert theirs.shape == (len(t), N_STATE)
    err = _scaled_error(theirs, ours)
    assert err.max() < 1e-6, dict(zip(STATE_IDS, err, strict=True))
    # the engine as users run it (simulate_batch, rtol 1e-6) vs the export: 1e-4 of the range
    run = simulate_batch([course], t_out=t)
    b = [s.name for s in course.sites].index(case["site"])
    sol = healing.solve(
        run.prepared.params[b : b + 1], t, run.prepared.session_days[b : b + 1],
        session_jumps(run.prepared)[b : b + 1],
    ).y[0]  # fmt: skip
    assert _scaled_error(theirs, sol).max() < 1e-4
    # the sessions do something: collagen and inflammation moved away from baseline
    assert np.abs(theirs[:, STATE_IDS.index("pap_N1")]).max() > 1e-3
    assert theirs[-1, STATE_IDS.index("pap_NX")] > 1e-3  # collagen matured into the mature state
    assert theirs[:, STATE_IDS.index("pap_I")].max() > 1e-2


def test_document_is_consistent_and_carries_the_case() -> None:
    course = mn.Course.from_toml(EXAMPLES / "melasma-tranexamic-acid.toml")
    text = export_sbml(course)
    assert validation_errors(text) == []
    doc = libsbml.readSBMLFromString(text)
    assert (doc.getLevel(), doc.getVersion()) == (3, 2)
    model = doc.getModel()
    case = case_inputs(course)
    assert model.getNumSpecies() == N_STATE
    assert model.getNumRules() == N_STATE + 2  # rate rules + the two TGF-beta assignment rules
    assert model.getNumEvents() == len(case["session_days"])
    for j, name in enumerate(PARAM_NAMES):
        p = model.getParameter(name)
        assert p is not None, name
        assert p.getValue() == pytest.approx(case["params"][j], rel=1e-14)  # 15 digits in XML
    assert model.getParameter("k_1").getUnits() == "per_day"
    assert model.getParameter("K_T").getUnits() == "dimensionless"
    assert model.getTimeUnits() == "day"
    assert "not a diagnosis" in text


def test_no_session_stays_at_baseline() -> None:
    course = mn.Course.from_toml(EXAMPLES / "acne-scars-rolling-cheek.toml")
    case = case_inputs(course)
    from microneedling.studies.sbml import build_sbml

    text = build_sbml(case["params"], case["y0"], np.zeros(0), np.zeros((0, N_STATE)))
    t = np.linspace(0.0, 100.0, 11)
    y = _roadrunner(text, t)
    np.testing.assert_allclose(y, np.repeat(case["y0"][None, :], len(t), axis=0), atol=1e-12)


def test_unknown_site_refused() -> None:
    course = mn.Course.from_toml(EXAMPLES / "acne-scars-rolling-cheek.toml")
    with pytest.raises(InputError) as err:
        export_sbml(course, site="elbow")
    assert err.value.field == "site"
