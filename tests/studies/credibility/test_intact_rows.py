"""The absorption calibration rows made evaluable on 2026-12-07: naloxone2021 (Franz cell, Dr. Pen
250/500 µm, enhancement ratios, their ratio, the passive 6 h amount) and chambin1993 (caffeine kp,
stage ``intact_kp``); the intact-skin end points checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from microneedling.course.model import Course
from microneedling.engine.batch import simulate_batch
from microneedling.engine.endpoints import endpoint_values, parse_endpoint
from microneedling.parameters.molecules import shipped_molecules
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.physics import transport
from microneedling.studies.credibility.calibrate import predict_rows
from microneedling.studies.credibility.literature import load_literature, load_protocols
from microneedling.web.presets import DEVICES

NALOXONE = (
    "naloxone2021_er_250um",
    "naloxone2021_er_500um",
    "naloxone2021_500_over_250",
    "naloxone2021_passive_6h",
)
CHAMBIN = ("chambin1993_caffeine_kp_emulsion",)
#: the acetone arm: a vehicle effect the model does not have (not evaluable)
CHAMBIN_ACETONE = "chambin1993_caffeine_kp_acetone"
CM_H = 1e-2 / 3600.0  # m/s per cm/h


@pytest.fixture(scope="module")
def ps() -> ParameterSet:
    return load_parameters()


def test_the_rows_are_evaluable_calibration_rows_with_their_protocols() -> None:
    lit = {r.key: r for r in load_literature()}
    protocols = load_protocols()
    for key in NALOXONE + CHAMBIN:
        assert lit[key].role == "calibration" and lit[key].family == "absorption", key
        p = protocols[key]
        assert p.evaluable and not p.reason, key
    for key in NALOXONE:
        p = protocols[key]
        assert p.course is not None
        (s,) = p.course["sessions"]
        assert s["topical"]["product"] == "naloxone" and s["topical"]["contact_hours"] == 6.0
    assert protocols["naloxone2021_passive_6h"].endpoint == "absorbed_intact"
    ratio = protocols["naloxone2021_500_over_250"]
    assert ratio.reference == {"needle_length_mm": 0.25} and lit[ratio.key].contrast == "ratio"
    for key in CHAMBIN:
        assert protocols[key].stage == "intact_kp" and protocols[key].course is None
        assert protocols[key].topical == {"product": "caffeine"}


def test_each_new_row_predicts_a_finite_positive_number(ps: ParameterSet) -> None:
    lit = {r.key: r for r in load_literature()}
    keys = NALOXONE + CHAMBIN
    (pred,) = predict_rows([lit[k] for k in keys], [ps])
    got = dict(zip(keys, pred, strict=True))
    assert all(math.isfinite(v) and v > 0 for v in got.values()), got
    # a needled Franz cell delivers more than intact skin; the intact amount is the enhancement
    # ratio's denominator
    assert got["naloxone2021_er_250um"] > 1.0 and got["naloxone2021_er_500um"] > 1.0
    assert got["naloxone2021_500_over_250"] == pytest.approx(
        got["naloxone2021_er_500um"] / got["naloxone2021_er_250um"], rel=1e-9
    )
    # the model's kp has no vehicle term: the acetone arm is not evaluable, with that reason
    acetone = load_protocols()[CHAMBIN_ACETONE]
    assert not acetone.evaluable and "vehicle" in acetone.reason


def _renkin(lam: float) -> float:
    return (1 - lam) ** 2 * (1 - 2.104 * lam + 2.09 * lam**3 - 0.95 * lam**5)


def test_intact_kp_stage_is_potts_guy_plus_the_polar_route_by_hand(ps: ParameterSet) -> None:
    """Caffeine (neutral, MW 194.19, log Kow -0.07): kp = 10^(-6.3 + 0.71 log Kow - 0.0061 MW)
    cm/s (Potts-Guy) + c MW^-1/2 H(r_s/r_pore) (the polar route, r_s the Stokes-Einstein radius)."""
    caf = shipped_molecules()["caffeine"]
    v = ps.value
    pg = 10.0 ** (
        v("transport.potts_guy_intercept", "1")
        + v("transport.potts_guy_logkow_slope", "1") * caf.log_kow
        - v("transport.potts_guy_mw_slope", "1") * caf.mw_g_per_mol
    )  # cm/s
    r_s = (
        1.380649e-23 * 298.15 / (6 * math.pi * v("transport.water_viscosity", "kg/m/s") * caf.d_aq)
    )
    lam = r_s / v("transport.polar_pore_radius", "m")
    polar = v("transport.polar_pathway_coefficient", "cm/h") / math.sqrt(caf.mw_g_per_mol)
    hand = pg * 3600.0 + polar * _renkin(lam)  # cm/h
    row = next(r for r in load_literature() if r.key == CHAMBIN[0])
    assert row.units == "cm/h"
    (pred,) = predict_rows([row], [ps])
    assert pred[0] == pytest.approx(hand, rel=1e-9)
    assert 1e-5 < hand < 1e-3  # about 1.1e-4 cm/h


def _course(product: str, hours: float) -> Course:
    """One roller session with a deep film that does not evaporate (water_fraction 0)."""
    top = {
        "product": product,
        "concentration_mg_ml": 10.0,
        "volume_ul_cm2": 200.0,
        "contact_hours": hours,
        "water_fraction": 0.0,
    }
    return Course.from_dict(
        {
            "name": "intact",
            "horizon_days": 7.0,
            "patient": {"age_years": 40, "sex": "female", "fitzpatrick": 2},
            "sites": [{"name": "abdomen", "conditions": []}],
            "device": dict(DEVICES["roller"]),  # the MF8-like roller of the examples
            "sessions": [
                {
                    "day": 0.0,
                    "site": "abdomen",
                    "needle_length_mm": 0.5,
                    "passes": 10,
                    "topical": top,
                }
            ],
        },
        source="test",
    )


def test_absorbed_intact_is_kp_c_t_at_steady_state(ps: ParameterSet) -> None:
    """Caffeine through intact skin from a deep film (2,000 µg/cm²), follicular shunt off: past the
    stratum corneum's lag the amount grows at kp·C (Potts-Guy + polar, 1.1e-4 cm/h × 10 mg/mL
    = 1.1 µg/cm²/h), times the film's remaining share; the amount stays below kp·C·t (the lag)."""
    assert parse_endpoint("absorbed_intact").per_session
    ps0 = ps.with_values({"transport.follicular_kp_ref": 0.0})
    hours = (48.0, 72.0)
    run = simulate_batch([_course("caffeine", h) for h in hours], [ps0, ps0])
    a48, a72 = endpoint_values(run, "absorbed_intact")
    tp = transport.TransportParameters.from_parameters(ps0)
    sol = transport.Solute.from_molecules([shipped_molecules()["caffeine"]])
    kp = float(transport.intact_kp(sol, tp)[0]) / CM_H  # cm/h
    c = 10_000.0  # µg/cm³ (10 mg/mL)
    dose = c * 0.2  # µg/cm² (200 µL/cm²)
    remaining = 1.0 - 0.5 * (a48 + a72) / dose  # the film's share left at 60 h
    slope = (a72 - a48) / 24.0
    assert slope == pytest.approx(kp * c * remaining, rel=0.03)
    assert 0.7 * kp * c * 72.0 < a72 < kp * c * 72.0
    # with the follicular shunt (the shipped default) intact skin takes up more
    (with_follicles,) = endpoint_values(
        simulate_batch([_course("caffeine", 72.0)], [ps]), "absorbed_intact"
    )
    assert with_follicles > a72
    assert np.isfinite(with_follicles)


def test_a_course_topical_can_be_an_excised_skin_in_a_diffusion_cell(ps: ParameterSet) -> None:
    """topical.in_vitro (strict true/false, default false) reaches transport.Vehicle.in_vitro: the
    same course in a diffusion cell (no blood clearance; channels close at the occluded rate)
    delivers less into the viable skin than in vivo under occlusion. The naloxone2021 protocols (porcine skin, Franz cell) say it, and their needled
    amount is no longer the donor (before 2026-12-07: 93% of 3,600 µg/cm² in 6 h)."""
    data = _course("naloxone", 6.0).to_dict()
    data["sessions"][0]["occlusion"] = True
    vivo = Course.from_dict(data, source="test")
    assert data["sessions"][0]["topical"].get("in_vitro", False) is False
    data["sessions"][0]["topical"]["in_vitro"] = True
    vitro = Course.from_dict(data, source="test")
    run = simulate_batch([vivo, vitro], [ps, ps])
    a_vivo, a_vitro = endpoint_values(run, "absorbed_amount")
    assert 0.0 < a_vitro < a_vivo
    data["sessions"][0]["topical"]["in_vitro"] = "yes"
    with pytest.raises(Exception, match=r"topical\.in_vitro.*true or false"):
        Course.from_dict(data, source="test")
    protocols = load_protocols()
    for key in NALOXONE:
        course = protocols[key].course
        assert course is not None
        assert course["sessions"][0]["topical"]["in_vitro"] is True, key
        assert "topical.in_vitro" in protocols[key].assumptions, key
    (run_n,) = [simulate_batch([Course.from_dict(protocols[NALOXONE[1]].course, source="p")], [ps])]
    (needled,) = endpoint_values(run_n, "absorbed_amount")
    assert needled < 0.5 * 18_000.0 * 0.2  # µg/cm²: less than half the donor
