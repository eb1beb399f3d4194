"""Validation: every held-out row is compared and reported with its predictive interval, PIT and
scores; the posterior is used for the calibrated parameters; stand-in settings widen the bands;
calculation verification, the calibration check and the virtual cohorts are computed; and the pass
count and coverage may not fall below the levels recorded in docs/credibility.md."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

import numpy as np
import pytest
from scipy.special import ndtr

from microneedling.errors import InputError
from microneedling.parameters.parameter_set import load_parameters
from microneedling.parameters.sampling import posterior_nominal
from microneedling.studies.credibility import validate as validate_module
from microneedling.studies.credibility.calibrate import load_config, predict_rows
from microneedling.studies.credibility.literature import load_protocols, rows
from microneedling.studies.credibility.validate import (
    calculation_verification,
    stand_in_draws,
    validate,
)
from tests.paths import DOCS

DOC = DOCS / "credibility.md"


def recorded_floor() -> dict[str, float]:
    """The machine-readable line of docs/credibility.md:
    ``<!-- validation-floor: pass=P evaluated=E covered=C draws=D seed=S -->``."""
    m = re.search(r"<!-- validation-floor: (.*?) -->", DOC.read_text(encoding="utf-8"))
    assert m, "docs/credibility.md must record the validation floor"
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


@pytest.fixture(scope="module")
def val():  # type: ignore[no-untyped-def]
    floor = recorded_floor()
    return validate(draws=int(floor["draws"]), seed=int(floor["seed"]), checks=False)


def test_pass_count_and_coverage_do_not_drop_below_the_recorded_level(val) -> None:  # type: ignore[no-untyped-def]
    floor = recorded_floor()
    assert val.n_evaluated >= floor["evaluated"]
    assert val.n_pass >= floor["pass"], f"{val.n_pass} rows pass, {floor['pass']:g} recorded"
    assert val.n_covered >= floor["covered"], (
        f"{val.n_covered} rows covered, {floor['covered']:g} recorded"
    )


def test_every_validation_row_is_reported_with_its_result(val) -> None:  # type: ignore[no-untyped-def]
    protocols = load_protocols()
    assert [r.key for r in val.results] == [r.key for r in rows("validation")]
    for r in val.results:
        if not protocols[r.key].evaluable:
            assert r.status == "not evaluated" and r.assumptions.strip(), r.key
            continue
        assert r.status in ("pass", "miss"), r.key
        assert r.covered in (True, False)
        assert 0.0 <= r.pit <= 1.0 or math.isnan(r.pit)
        if r.kind == "gaussian" and math.isfinite(r.low):
            # the predictive holds measurement error and discrepancy: never zero width
            assert r.high > r.low, r.key
            assert r.low50 >= r.low - 1e-9 and r.high50 <= r.high + 1e-9, r.key
    assert {"miss"} <= {r.status for r in val.results}  # misses are shown, not filtered out
    d = val.to_dict()
    assert json.loads(json.dumps(d)) == d  # plain data
    s = d["summary"]
    assert s["coverage_80"]["low"] <= s["coverage_80"]["rate"] <= s["coverage_80"]["high"]
    assert s["coverage_80"]["n"] == s["n_two_sided"]


def test_the_ensemble_draws_the_shipped_posterior(val) -> None:  # type: ignore[no-untyped-def]
    from microneedling.parameters.sampling import shipped_posterior

    post = shipped_posterior(load_parameters())
    assert val.posterior == (post.version if post is not None else None)


def test_stand_ins_are_drawn_from_their_ranges_per_study() -> None:
    protocols = load_protocols()
    ev = [r for r in rows("validation") if protocols[r.key].evaluable and protocols[r.key].ranges]
    if not ev:
        pytest.skip("no validation row with a stand-in range")
    draws = stand_in_draws(ev, protocols, 200, seed=1)
    r = ev[0]
    for name, (lo, hi) in protocols[r.key].ranges.items():
        vals = np.array([d[r.key][name] for d in draws])
        assert vals.min() >= lo and vals.max() <= hi and vals.std() > 0, name
    same = [x for x in ev if x.study == r.study]
    for d in draws[:5]:  # rows of one study share their settings
        assert all(
            d[x.key] == d[r.key]
            for x in same
            if set(protocols[x.key].ranges) == set(protocols[r.key].ranges)
        )


def test_calculation_verification_error_is_far_below_every_tolerance() -> None:
    """u_num of each row is the larger of two measured changes of its nominal prediction: on the
    refined output grid and at the tight solver tolerance (recomputed here). Both really change
    the numbers (a u_num of 0, or a refinement that refines nothing, fails): the roller - pen
    oedema contrast of El-Domyati 2024, a difference of two short swellings, moves by ~1% of
    itself on the refined grid (measured 0.0046 d of -0.457 d)."""
    from microneedling.studies.credibility.literature import load_protocol_file

    protocols = load_protocols()
    settings = load_protocol_file()["settings"]
    config = load_config()
    vc = config.validation
    ev = [r for r in rows("validation") if protocols[r.key].evaluable][:6]
    ev += [r for r in rows("validation") if r.key == "eldomyati2024_roller_minus_pen_oedema"]
    ps = posterior_nominal(load_parameters())  # the nominal set validate verifies
    out = calculation_verification(ev, ps, protocols, settings, config)
    assert [c["key"] for c in out["rows"]] == [r.key for r in ev]
    base = predict_rows(ev, [ps], protocols, settings)[0]
    refine = (vc.refine_factor, vc.refine_minutes, vc.refine_days)
    fine = predict_rows(ev, [ps], protocols, settings, refine=refine)[0]
    tight = predict_rows(ev, [ps], protocols, settings, rtol=vc.rtol_tight)[0]
    for c, b, f, t in zip(out["rows"], base, fine, tight, strict=True):
        assert c["value"] == b
        assert c["grid_change"] == abs(f - b) and c["tolerance_change"] == abs(t - b)
        assert c["u_num"] == max(abs(f - b), abs(t - b)) > 0.0, c
        assert c["relative"] == pytest.approx(c["u_num"] / abs(b), rel=1e-12)
        if c["u_num_over_tolerance"] is not None:
            assert c["u_num_over_tolerance"] < 0.01, c  # the audit measured <= 8e-4 relative
    assert all(c["tolerance_change"] > 0.0 for c in out["rows"])
    oedema = out["rows"][-1]
    assert 1e-3 < oedema["grid_change"] < 1e-2 and 2e-3 < oedema["relative"] < 2e-2, oedema
    assert out["max_relative"] == max(c["relative"] for c in out["rows"])


def test_bad_requests_name_the_field() -> None:
    with pytest.raises(InputError) as exc:
        validate(draws=1, checks=False)
    assert exc.value.field == "draws"
    with pytest.raises(InputError) as exc:
        validate(draws=4, keys=["no_such_row"], checks=False)
    assert exc.value.field == "rows"


def _result(
    key: str,
    study: str,
    family: str,
    kind: str,
    status: str,
    covered: bool | None,
    assessor: str = "",
    outcome_kind: str = "",
):  # type: ignore[no-untyped-def]
    from microneedling.studies.credibility.validate import RowResult

    nan = float("nan")
    return RowResult(
        key=key, quantity="q", sources=(study,), study=study, family=family, kind=kind,
        evidence="SEEN", units="%", observed=1.0, tolerance=1.0, bound=None, predicted=nan,
        median=nan, low=nan, high=nan, low50=nan, high50=nan, band_low=nan, band_high=nan,
        status=status, covered=covered, covered50=False if covered is None else not covered,
        pit=nan, crps=nan, crps_baseline=nan, interval_score=nan, sharpness=nan, vv20={},
        comparable="", assumptions="", assessor=assessor, outcome_kind=outcome_kind,
    )  # fmt: skip


def test_per_family_counts_add_up_to_the_totals() -> None:
    from microneedling.studies.credibility.validate import by_family

    results = [
        _result("a1", "s1", "acne_scars", "gaussian", "pass", True),
        _result("a2", "s2", "acne_scars", "gaussian", "miss", False),
        _result("a3", "s2", "acne_scars", "upper", "pass", True),  # a bound: not two-sided
        _result("p1", "s3", "pih (counts, logit)", "binomial", "miss", True),
        _result("p2", "s4", "pih", "binomial", "not evaluated", None),
        _result("d1", "s5", "downtime", "", "not evaluated", None),
    ]
    fams = {f["family"]: f for f in by_family(results)}
    assert list(fams) == ["acne_scars", "pih", "downtime"]  # the likelihood's note is dropped
    a = fams["acne_scars"]
    assert (a["rows"], a["evaluated"], a["pass"], a["studies"]) == (3, 3, 2, 2)
    assert (a["n_two_sided"], a["covered_80"], a["covered_50"]) == (2, 1, 1)
    assert (a["n_bounds"], a["bounds_consistent_80"]) == (1, 1)
    p = fams["pih"]
    assert (p["rows"], p["evaluated"], p["pass"]) == (2, 1, 0)
    assert (p["covered_80"], p["n_two_sided"]) == (1, 1)
    assert fams["downtime"]["evaluated"] == 0 and fams["downtime"]["n_two_sided"] == 0
    assert sum(f["rows"] for f in fams.values()) == len(results)
    assert sum(f["pass"] for f in fams.values()) == sum(r.status == "pass" for r in results)


def test_counts_by_assessor_follow_the_assessors_order_and_add_up() -> None:
    from microneedling.studies.credibility.validate import by_assessor

    rating, measured = "subjective rating", "measurement"
    results = [
        _result("i1", "s1", "texture", "gaussian", "pass", True, "instrument", measured),
        _result("n1", "s2", "acne_scars", "binomial", "miss", False, "not stated", rating),
        _result("n2", "s2", "acne_scars", "gaussian", "miss", True, "not stated", rating),
        _result("n3", "s6", "downtime", "gaussian", "pass", True, "not stated", measured),
        _result("b1", "s3", "acne_scars", "binomial", "pass", True, "blinded", rating),
        _result("b2", "s4", "acne_scars", "upper", "miss", False, "blinded", rating),
        _result("u1", "s5", "pih", "", "not evaluated", None),
    ]
    groups = by_assessor(results)
    # literature.ASSESSORS order (blinded first), then OUTCOME_KINDS; a row without either last
    assert [g["assessor"] for g in groups] == [
        "blinded: subjective rating",
        "not stated: subjective rating",
        "not stated: measurement",
        "instrument: measurement",
        "unknown: unknown",
    ]
    g = {x["assessor"]: x for x in groups}
    b = g["blinded: subjective rating"]
    assert (b["evaluated"], b["pass"], b["studies"], b["n_two_sided"], b["n_bounds"]) == (
        2, 1, 2, 1, 1,
    )  # fmt: skip
    ns = g["not stated: subjective rating"]
    assert (ns["pass"], ns["covered_80"], ns["n_two_sided"]) == (0, 1, 2)
    assert g["unknown: unknown"]["evaluated"] == 0
    assert sum(x["rows"] for x in groups) == len(results)


def test_the_summary_holds_the_table_by_assessor(val) -> None:  # type: ignore[no-untyped-def]
    who = val.summary["by_assessor"]
    assert sum(a["rows"] for a in who) == len(val.results)
    assert sum(a["pass"] for a in who) == val.n_pass
    assert {f"{r.assessor}: {r.outcome_kind}" for r in val.results} <= {a["assessor"] for a in who}


def test_the_summary_holds_the_per_family_table(val) -> None:  # type: ignore[no-untyped-def]
    fams = val.summary["by_family"]
    assert sum(f["rows"] for f in fams) == len(val.results)
    assert sum(f["evaluated"] for f in fams) == val.n_evaluated
    assert sum(f["pass"] for f in fams) == val.n_pass
    two = val.summary["coverage_80"]
    assert sum(f["covered_80"] for f in fams) == two["hits"]
    assert sum(f["n_two_sided"] for f in fams) == two["n"]


def test_a_responder_row_is_the_ordered_probit_of_the_typical_patient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A count row whose protocol names a threshold (a responder row) is scored as a graded
    count: the typical patient's end point in its own units (not the row's %), the between-patient
    SD and offset of a virtual cohort, and the model's % in the category = 100 Phi((c - offset -
    f) / sd); a looser category holds more patients."""
    real = load_protocols()
    key = "majid2009_responders"  # 34 of 36 patients down by >= 1 Goodman-Baron grade
    row = next(r for r in rows("validation") if r.key == key)
    nominal = posterior_nominal(load_parameters())

    def with_threshold(c: float) -> dict[str, Any]:
        proto = dataclasses.replace(
            real["vondalwig2020_rolling"], key=key, threshold=c, direction="below"
        )
        return {**real, key: proto}

    predicted = {}
    for c in (-1.0, -0.5):
        protocols = with_threshold(c)
        monkeypatch.setattr(validate_module, "load_protocols", lambda p=protocols: p)
        (r,) = validate(draws=4, seed=0, checks=False, keys=[key]).results
        assert r.kind == "ordinal" and "virtual cohort of 64 patients" in r.assumptions
        f = float(predict_rows([row], [nominal], protocols)[0, 0])  # grade change, not %
        spread = validate_module.responder_spread(
            [row], protocols, nominal, load_config(), 0, {key: f}
        )
        sd, offset = spread[key]["sd"], spread[key]["offset"]
        assert -3.0 < f < 0.0 and sd > 0
        assert r.predicted == pytest.approx(100.0 * float(ndtr((c - offset - f) / sd)), rel=1e-9)
        predicted[c] = r.predicted
    assert predicted[-0.5] > predicted[-1.0]


def test_cohort_spread_compares_the_between_patient_sd_with_the_reported_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Virtual-cohort spread with known cohorts (the simulation replaced by fixed values, 2 draws x
    4 patients): the aleatory SD is the root mean within-draw variance, the epistemic SD that of
    the draws' cohort means, the ratio predicted/observed, and the goal 0.5-2 decides
    ``within_goal``; rows without a reported SD, with n < 5 or with a bound are skipped."""
    from types import SimpleNamespace

    protocols = load_protocols()
    config = load_config()
    config = config.model_copy(
        update={
            "validation": config.validation.model_copy(
                update={"cohort_patients": 4, "cohort_draws": 8}
            )
        }
    )
    by_key = {r.key: r for r in rows()}
    # within-draw variance 20/3 in each draw, cohort means 4 and 6
    v = np.array([[1.0, 3.0, 5.0, 7.0], [3.0, 5.0, 7.0, 9.0]])
    cohorts = {"krishnegowda2023_mn_saline_grade": 0.2 * v, "conf2026_mn_txa_hemimasi": v}
    calls = []

    def fake_cohort(r, p, sets, n, seed):  # type: ignore[no-untyped-def]
        calls.append((r.key, len(sets), n))
        return SimpleNamespace(name="photoaging-adults"), cohorts[r.key]

    monkeypatch.setattr(validate_module, "cohort_values", fake_cohort)
    krish = by_key["krishnegowda2023_mn_saline_grade"]  # SD 0.53 of 40 patients, no baseline SD
    conf = dataclasses.replace(by_key["conf2026_mn_txa_hemimasi"], sd=1.0, baseline_sd=None)
    skipped = [
        dataclasses.replace(krish, key="no_sd", sd=None),
        dataclasses.replace(krish, key="four_patients", n=4),
        dataclasses.replace(krish, key="a_bound", bound="upper"),
    ]
    protocols = {**protocols, **{r.key: protocols[krish.key] for r in skipped}}
    ps = load_parameters()
    out = validate_module.cohort_spread([krish, *skipped, conf], protocols, [ps] * 3, config, 0)
    assert calls == [(krish.key, 3, 4), (conf.key, 3, 4)]  # K = min(8 draws, 3 sets)
    a, b = out["rows"]
    assert a["key"] == krish.key and b["key"] == conf.key
    assert a["predicted_sd"] == pytest.approx(0.2 * math.sqrt(20 / 3), rel=1e-12)
    assert a["epistemic_sd"] == pytest.approx(0.2 * math.sqrt(2.0), rel=1e-12)
    assert a["observed_sd"] == 0.53
    assert a["ratio"] == pytest.approx(0.2 * math.sqrt(20 / 3) / 0.53, rel=1e-12)  # 0.974
    assert a["predicted_sd_low"] == pytest.approx(a["predicted_sd"], rel=1e-12)
    assert a["within_goal"] is True
    assert b["predicted_sd"] == pytest.approx(math.sqrt(20 / 3), rel=1e-12)
    assert b["ratio"] == pytest.approx(math.sqrt(20 / 3), rel=1e-12)  # 2.58 > 2
    assert b["within_goal"] is False
    assert (out["n_within"], out["goal"], out["patients"]) == (1, [0.5, 2.0], 4)


def test_a_rows_predictive_adds_discrepancy_and_measurement_error_to_the_draws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One Gaussian row (Garg's rolling-scar depth reduction, SE 2.61 points, discrepancy scale
    |-37.25|) scored with every draw at the same prediction and the discrepancy fixed at tau: the
    parameter band has no width, and the predictive is N(f, se^2 + (tau scale)^2). With tau scale =
    2 se its 80% width is 2 x 1.2816 x sqrt(5) se (without the discrepancy it would be 2 se wide
    per side less, without the SE 11% narrower); the PIT is exact; sharpness is that width over
    the tolerance (14 points); V&V 20 takes u_num as given, u_input 0 and u_D = se."""
    from scipy.stats import norm

    from microneedling.studies.credibility.calibrate import row_specs
    from microneedling.studies.credibility.literature import load_protocol_file

    protocols = load_protocols()
    settings = load_protocol_file()["settings"]
    config = load_config()
    (row,) = [r for r in rows("validation") if r.key == "garg_rolling_reduction"]
    (spec,), _, _, factor = row_specs([row], protocols, settings, config)
    assert (spec.kind, spec.log, spec.observed, factor[0]) == ("gaussian", False, -37.25, 1.0)
    se, scale = spec.se, spec.scale
    assert scale == 37.25 and se == pytest.approx(2.608, abs=1e-3)
    tau = 2.0 * se / scale
    D, f0 = 20000, -30.0

    def fixed_tau(post, idx, groups, scales, draws, seed):  # type: ignore[no-untyped-def]
        return np.full((draws, len(groups)), tau), ["fixed"] * len(groups)

    monkeypatch.setattr(validate_module, "_tau_draws", fixed_tau)
    (r,) = validate_module._score_rows(
        [row], protocols, settings, config, np.array([f0]), np.full((D, 1), f0), None,
        None, None, 0, {row.key: 0.125},
    )  # fmt: skip
    sd = math.sqrt(se**2 + (tau * scale) ** 2)  # sqrt(5) se
    assert (r.band_low, r.band_high) == (f0, f0)  # no parameter spread
    assert r.spread_reported is False  # Garg gives the mean change alone: the SE is a default
    assert r.high - r.low == pytest.approx(2 * norm.ppf(0.9) * sd, rel=0.03)
    assert r.high50 - r.low50 == pytest.approx(2 * norm.ppf(0.75) * sd, rel=0.03)
    assert (r.low + r.high) / 2 == pytest.approx(f0, abs=0.05 * sd)
    assert r.pit == pytest.approx(float(norm.cdf((-37.25 - f0) / sd)), rel=1e-12)
    assert r.tolerance == 14.0 and r.sharpness == (r.high - r.low) / 14.0  # 80% width / tolerance
    assert r.sharpness == pytest.approx(2 * norm.ppf(0.9) * sd / 14.0, rel=0.03)  # ~1.07
    assert r.vv20["u_num"] == 0.125 and r.vv20["u_input"] == 0.0 and r.vv20["u_D"] == se
    assert r.vv20["E"] == f0 + 37.25
    assert r.vv20["u_val"] == pytest.approx(math.sqrt(0.125**2 + se**2), rel=1e-12)


def test_the_median_sharpness_is_over_two_sided_and_count_rows() -> None:
    """``sharpness_median``: the median 80% width / tolerance of the two-sided and count rows with
    a finite sharpness; bound rows and rows with no interval do not count."""
    rs = [
        dataclasses.replace(_result("a", "s1", "acne_scars", "gaussian", "pass", True), sharpness=s)
        for s in (1.0, 3.0)
    ]
    rs += [
        dataclasses.replace(_result("b", "s2", "pih", "binomial", "miss", False), sharpness=10.0),
        dataclasses.replace(_result("c", "s3", "acne_scars", "upper", "pass", True), sharpness=0.1),
        dataclasses.replace(
            _result("d", "s4", "pigment", "gaussian", "miss", False), sharpness=0.2
        ),
        _result("e", "s5", "pigment", "gaussian", "miss", False),  # sharpness NaN
        _result("f", "s6", "downtime", "", "not evaluated", None),
    ]
    s = validate_module._summary(rs, load_config(), 0)
    # median of 0.2, 1, 3 and 10 (the bound's 0.1 counted would make it 1; NaN would make it NaN)
    assert s["sharpness_median"] == 2.0
