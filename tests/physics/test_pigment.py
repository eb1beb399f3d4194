"""Pigment observables (physics.pigment) and PIH risk: the MASI / mMASI of a patchy lesion against
its closed form, the melanin index's floor, MASI reductions beyond 30% with a delivered agent, and
PIH risk ordered by Fitzpatrick type, depth, passes, device, photoprotection, priming and agent
under a patient-level threshold (the course risk is the maximum over sessions)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy.special import ndtr

from microneedling.course.model import Course
from microneedling.engine.batch import simulate_batch
from microneedling.engine.endpoints import endpoint_values
from microneedling.errors import CourseValidationError
from microneedling.parameters.parameter_set import ParameterSet, load_parameters
from microneedling.physics import pigment as pg

MF8 = {
    "type": "roller",
    "needle_count": 192,
    "needle_diameter_mm": 0.25,
    "tip_radius_um": 4.0,
    "tip": "cone",
    "max_needle_length_mm": 2.5,
    "drum_diameter_mm": 20.0,
    "drum_width_mm": 20.0,
}
PEN = {
    "type": "pen",
    "needle_count": 12,
    "needle_diameter_mm": 0.25,
    "tip_radius_um": 4.0,
    "tip": "cone",
    "max_needle_length_mm": 2.5,
    "frequency_hz": 110.0,
    "cartridge_width_mm": 7.0,
}
MELASMA = {"type": "hyperpigmentation", "kind": "melasma", "melanin_index": 300.0}
TXA = {
    "product": "tranexamic_acid",
    "concentration_mg_ml": 40.0,
    "volume_ul_cm2": 5.0,
    "contact_hours": 4.0,
}
MONTHLY = (0.0, 30.0, 60.0)


@pytest.fixture(scope="module")
def ps() -> ParameterSet:
    return load_parameters()


@pytest.fixture(scope="module")
def pp(ps: ParameterSet) -> pg.PigmentParameters:
    return pg.PigmentParameters.from_parameters(ps)


def course(
    length: float,
    passes: int = 15,
    days: tuple[float, ...] = MONTHLY,
    *,
    fitz: int = 3,
    horizon: float = 120.0,
    lesion: dict[str, Any] | None = None,
    topical: dict[str, Any] | None = None,
    device: dict[str, Any] = MF8,
    photoprotection: str = "usual",
    priming: bool = False,
) -> Course:
    site: dict[str, Any] = {"name": "cheek"}
    if lesion is not None:
        site["conditions"] = [lesion]
    sessions = []
    for d in days:
        s: dict[str, Any] = {
            "day": d,
            "site": "cheek",
            "needle_length_mm": length,
            "passes": passes,
        }
        if topical is not None:
            s["topical"] = topical
        if device["type"] == "pen":
            s["pen_speed_cm_s"] = 5.0
        sessions.append(s)
    return Course.from_dict(
        {
            "name": "pigment test",
            "horizon_days": horizon,
            "patient": {
                "age_years": 35,
                "sex": "female",
                "fitzpatrick": fitz,
                "photoprotection": photoprotection,
                "priming": priming,
            },
            "sites": [site],
            "device": device,
            "sessions": sessions,
        }
    )


def pih(courses: list[Course], ps: ParameterSet) -> np.ndarray:
    return endpoint_values(simulate_batch(courses, ps, parallel=False), "pih_risk")


# ---------------------------------------------------------------------------- MASI, exact
def test_masi_at_baseline_is_the_scale_formula(pp: pg.PigmentParameters) -> None:
    """At contrast 1 the scores are the Kimbrough-Green / Pandya formulas of the baseline."""
    area = np.array([[30.0, 50.0, 50.0, 10.0], [5.0, 95.0, 20.0, 40.0]])
    dark, homog = np.array([2.5, 3.0]), np.array([2.5, 1.0])
    m, mm = pg.masi(np.ones((2, 1)), area, dark, homog, pp)
    w = np.array(pp.region_weights)
    score = pg.area_score(area, pp)
    assert m[:, 0] == pytest.approx((score * w).sum(axis=1) * (dark + homog), rel=1e-12)
    assert mm[:, 0] == pytest.approx((score * w).sum(axis=1) * dark, rel=1e-12)
    # the area score is the bin number at the bins' midpoints, 0 without lesion, 6 at full area
    mids = np.array(pp.area_midpoints)
    assert pg.area_score(mids, pp) == pytest.approx(np.arange(1, 7))
    assert pg.area_score([0.0, 100.0], pp) == pytest.approx([0.0, 6.0])
    assert w.sum() == pytest.approx(1.0)


def test_masi_falls_faster_than_the_pigment_and_reaches_zero(pp: pg.PigmentParameters) -> None:
    """A uniform fall of the lesion's contrast shrinks the visible area and pales what stays: MASI
    falls monotonically, in proportion to the contrast at first and faster once the faint edge of
    the patch drops out of view, to 0; mMASI ≤ MASI; the melanin index
    falls only to its floor (the surrounding skin), so MASI change ≤ melanin-index change ≤ 0."""
    c = np.linspace(1.0, 1e-3, 200)[None, :]
    area = np.array([[30.0, 50.0, 50.0, 10.0]])
    m, mm = pg.masi(c, area, np.array([2.5]), np.array([2.5]), pp)
    assert np.all(np.diff(m[0]) < 0.0) and np.all(np.diff(mm[0]) < 0.0)
    assert np.all(mm <= m + 1e-12) and m[0, -1] < 1e-3 * m[0, 0]
    rel = m[0] / m[0, 0]
    near, far = c[0] > 0.8, c[0] <= 0.75
    assert np.all(np.abs(rel[near] - c[0, near]) < 0.01)  # first in proportion to the contrast,
    assert np.all(rel[far] < c[0, far])  # then faster (the faint edge leaves the visible area)
    mi = pg.melanin_index(np.array([300.0]), np.array([210.0]), c, np.zeros_like(c), pp)
    assert np.all(mi >= 210.0 - 1e-9) and mi[0, 0] == pytest.approx(300.0)
    assert np.all(100 * (rel - 1) <= 100 * (mi[0] / 300.0 - 1) + 1e-9)
    # the design's structural check: contrast 0.7 / 0.5 -> MASI about -33% / -60% (±10 points)
    for target, expect in ((0.7, -33.0), (0.5, -60.0)):
        mt, _ = pg.masi(np.array([[target]]), area, np.array([2.5]), np.array([2.5]), pp)
        assert 100 * (mt[0, 0] / m[0, 0] - 1) == pytest.approx(expect, abs=10.0)


def test_lesion_contrast_keeps_dermal_pigment() -> None:
    e = np.array([[1.0, 0.5, 0.0]])
    assert pg.lesion_contrast(e, np.array([0.4]))[0] == pytest.approx([1.0, 0.7, 0.4])


# ------------------------------------------------------------------------ MASI, engine
def test_masi_beyond_30_percent_with_a_delivered_agent(ps: ParameterSet) -> None:
    """MN 1.5 mm every 2 weeks x4 with 4% tranexamic acid delivered through the channels: MASI and
    mMASI fall beyond 30% by week 8 (published MN + TXA courses: mMASI about -45 to -57%), while
    the melanin index stays above its floor; the agent never darkens (with ≤ without, always)."""
    days = (0.0, 14.0, 28.0, 42.0)
    with_agent = course(1.5, days=days, fitz=4, horizon=120, lesion=MELASMA, topical=TXA)
    without = course(1.5, days=days, fitz=4, horizon=120, lesion=MELASMA)
    r = simulate_batch([with_agent, without], ps, parallel=False)
    i56 = int(np.searchsorted(r.t, 56.0))
    for name in ("masi_score", "mmasi_score"):
        x = r.observables[name]
        change = 100 * (x[0, i56] / x[0, 0] - 1)
        assert change < -30.0, (name, change)
        assert np.all(x[0] <= x[1] + 1e-12), name
    mi = r.observables["melanin_index"]
    floor = 300.0 * (1 - ps.value("observe.lesion_excess_fraction", "1"))
    assert np.all(mi > floor)
    assert np.all(r.prepared.absorbed_ug_cm2[0, :4] > 0.0)


def test_a_needling_course_keeps_part_of_its_melasma_improvement_for_months(
    ps: ParameterSet,
) -> None:
    """Durability (issue 10): 3 months after a course of 6 sessions every 2 weeks (0.5 mm, 20%
    vitamin C), at least 30% of the MASI improvement seen at the last session remains (Ismail 2019:
    25 of 30 patients without recurrence 3 months after; del Rosario 2018: a depigmenting drug's
    gain is lost over ~2 months; Han et al. 2024: dermal remodelling holds the gain). Two terms hold
    it: the melanocytes' activity follows its drive at kappa_R, and the remodelled papillary dermis
    lowers the drive (beta_N); with activity following at once and no dermal term (the earlier
    model) faster turnover and the agent fade within about one turnover and under 15% remains."""
    days = tuple(14.0 * k for k in range(6))
    vit_c = {
        "product": "ascorbic_acid",
        "concentration_mg_ml": 200.0,
        "volume_ul_cm2": 20.0,
        "contact_hours": 4.0,
    }
    c = course(0.5, passes=8, days=days, fitz=4, horizon=170, lesion=MELASMA, topical=vit_c)
    kept = {}
    for label, values in {
        "model": {},
        "no dermal term": {"healing.beta_N": 0.0},
        "earlier model": {"healing.beta_N": 0.0, "healing.kappa_R": 1000.0},
    }.items():
        q = ps.with_values(values, label=label) if values else ps
        r = simulate_batch([c], q, parallel=False)
        x = r.observables["masi_score"][0]
        last, later = (int(np.searchsorted(r.t, d)) for d in (70.0, 160.0))
        kept[label] = (x[0] - x[later]) / (x[0] - x[last])
    assert kept["model"] >= 0.30, kept
    assert kept["no dermal term"] < kept["model"] - 0.1, kept
    assert kept["earlier model"] < 0.15, kept


def test_no_session_keeps_the_lesion_exactly(ps: ParameterSet) -> None:
    c = Course.model_validate(
        {
            "name": "untreated",
            "horizon_days": 90,
            "patient": {"age_years": 35, "sex": "female", "fitzpatrick": 4},
            "sites": [{"name": "cheek", "conditions": [MELASMA]}, {"name": "forehead"}],
            "device": MF8,
            "sessions": [{"day": 0, "site": "forehead", "needle_length_mm": 0.5, "passes": 8}],
        }
    )
    r = simulate_batch([c], ps, parallel=False)
    cheek = r.site.index("cheek")
    for name in ("masi_score", "mmasi_score", "melanin_index"):
        x = r.observables[name][cheek]
        assert np.all(x == x[0]), name
    assert r.observables["melanin_index"][cheek, 0] == 300.0
    assert np.isnan(r.observables["masi_score"][r.site.index("forehead")]).all()


def test_course_lesion_fields_are_checked() -> None:
    bad = dict(MELASMA, perilesional_melanin_index=320.0)
    with pytest.raises(CourseValidationError, match="perilesional_melanin_index"):
        course(1.0, lesion=bad)
    with pytest.raises(CourseValidationError, match="masi_darkness"):
        course(1.0, lesion=dict(MELASMA, masi_darkness=5.0))


# ---------------------------------------------------------------------------------- PIH
def test_pih_session_risk_formula(pp: pg.PigmentParameters) -> None:
    q = np.array([[0.0, pp.pih_threshold, 2 * pp.pih_threshold, np.nan]])
    p = pg.pih_session_risk(q, pp)
    assert p[0, 0] == 0.0 and p[0, 1] == pytest.approx(0.5)
    assert p[0, 2] == pytest.approx(float(ndtr(np.log(2.0) / pp.pih_threshold_sd)))
    assert np.isnan(p[0, 3])
    assert pg.pih_course_risk(np.array([[0.1, 0.3, np.nan], [np.nan] * 3]))[0] == 0.3
    assert np.isnan(pg.pih_course_risk(np.array([[np.nan] * 3]))[0])


def test_pih_by_fitzpatrick_type(ps: ParameterSet) -> None:
    """Three monthly 1.5 mm sessions (usual photoprotection): risk strictly ordered I < ... < VI,
    near zero in I-III (under 2%: the 0-of-n studies, with which 2% is consistent, P(0 of 60) =
    0.30; the former model gave 6-9% in II-III; 1.2% for III since the clefts' blood recruits,
    under 1% before) and 3-20% in IV-V (reported 5-20%, e.g. 5/30 in IV-V). FST VI is a named
    deviation held under 25%: 21% since the refitted threshold of 2026-12-06 (retained blood), above
    the reported range, which comes from IV-V-heavy cohorts (no calibration count is of type VI)."""
    risk = pih([course(1.5, fitz=f) for f in range(1, 7)], ps)
    assert np.all(np.diff(risk) > 0.0), risk
    assert np.all(risk[:3] < 0.02), risk
    assert np.all((risk[3:5] > 0.03) & (risk[3:5] < 0.20)), risk
    assert 0.03 < risk[5] < 0.25, risk
    assert risk[4] > 0.05


def test_pih_by_fitzpatrick_type_as_shipped(shipped: ParameterSet) -> None:
    """The same course and bounds as :func:`test_pih_by_fitzpatrick_type` at the set users get
    (the test above runs the parameter files' values): ordered, under 2% in I-III, 3-20% in
    IV-V. Measured 2026-12-08 at posterior-fc556e22c52e: 0.03, 0.30, 1.99, 7.7, 18.0, 28.1%
    (type VI: the next test)."""
    risk = pih([course(1.5, fitz=f) for f in range(1, 7)], shipped)
    assert np.all(np.diff(risk) > 0.0), risk
    assert np.all(risk[:3] < 0.02), risk
    assert np.all((risk[3:5] > 0.03) & (risk[3:5] < 0.20)), risk


@pytest.mark.xfail(
    strict=True,
    reason="known miss (audit of issue 10, 2026-12-08): type VI's course risk is 28% at the "
    "shipped posterior (21% at the files' values), above the reported 5-20% and the 25% this "
    "test holds; no calibration count is of type VI",
)
def test_pih_type_vi_as_shipped_stays_under_a_quarter(shipped: ParameterSet) -> None:
    risk = pih([course(1.5, fitz=6)], shipped)[0]
    assert 0.03 < risk < 0.25, risk


def test_pih_depends_on_inflammation_intensity(ps: ParameterSet) -> None:
    """Deeper needles, more passes, denser clean channels, a roller's bleeding clefts and more
    frequent sessions raise the risk (FST V); shallow sessions carry almost none (under 2% of a
    1.5 mm session's risk)."""
    depth = pih([course(L, fitz=5) for L in (0.25, 0.5, 1.0, 1.5)], ps)
    assert np.all(np.diff(depth) > 0.0) and depth[0] < 0.02 * depth[-1], depth
    passes = pih([course(1.0, p, fitz=5) for p in (2, 8, 15)], ps)
    assert np.all(np.diff(passes) > 0.0), passes
    pen = pih([course(1.0, 3, fitz=5, device=PEN)], ps)[0]  # ~1100 /cm² vs 229 /cm²
    bloodless = pih([course(1.0, 15, fitz=5)], ps.with_values({"healing.rho_B": 0.0}))[0]
    assert pen > bloodless  # more clean channels, more inflammation
    assert passes[2] > bloodless  # the roller's clefts bleed into the dermis and recruit
    weekly = pih([course(1.0, days=tuple(7.0 * k for k in range(6)), fitz=5)], ps)[0]
    monthly = pih([course(1.0, days=tuple(30.0 * k for k in range(6)), fitz=5, horizon=200)], ps)
    assert weekly > monthly[0]


def test_pih_modifiers_photoprotection_priming_agent(ps: ParameterSet) -> None:
    """Photoprotection lowers the risk (strict < usual < none); hydroquinone priming has no effect
    at the sourced value (a null randomised trial) and lowers it within its interval; a
    depigmenting agent delivered through the channels lowers it."""
    sun = pih([course(1.5, fitz=5, photoprotection=s) for s in ("strict", "usual", "none")], ps)
    assert np.all(np.diff(sun) > 0.0), sun
    primed = pih([course(1.5, fitz=5), course(1.5, fitz=5, priming=True)], ps)
    assert primed[1] == primed[0]
    some = ps.with_values({"observe.pih_priming_effect": 0.3})
    assert pih([course(1.5, fitz=5, priming=True)], some)[0] < primed[0]
    agent = pih([course(1.5, fitz=5, topical=TXA)], ps)[0]
    assert agent < primed[0]


def test_course_risk_is_the_max_over_sessions(ps: ParameterSet) -> None:
    """One threshold per patient: a patient shows PIH in the course iff the largest stimulus of
    the course exceeds the threshold, so the course risk is the largest per-session risk, between
    the worst session and the independent-sessions bound; the stimulus accumulates over weekly
    sessions, so later sessions carry more risk."""
    r = simulate_batch([course(1.5, days=tuple(7.0 * k for k in range(6)), fitz=4)], ps)
    per = r.per_session["pih_risk"][0]
    per = per[np.isfinite(per)]
    assert np.all(np.diff(per) > 0.0)
    total = float(endpoint_values(r, "pih_risk")[0])
    assert total == pytest.approx(per.max())
    assert per.max() <= total <= 1.0 - np.prod(1.0 - per)
