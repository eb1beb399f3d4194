"""The V&V 40 structure of the credibility report: every context of use has a risk and a goal for
every factor, achieved grades follow the stated rules from the evidence (exact cases), and a use is
adequate only when every factor reaches its goal."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from microneedling.io import data_path, read_toml
from microneedling.studies.credibility.report import (
    FACTORS,
    GRADES,
    credibility_assessment,
    grade_factors,
)

USE = {
    "command": "plan",
    "families": ["acne_scars", "downtime"],
    "goals": dict.fromkeys(FACTORS, "medium"),
}


def _row(i: int, study: str, family: str, covered: bool, status: str = "pass") -> dict[str, Any]:
    return {
        "key": f"r{i}",
        "study": study,
        "family": family,
        "kind": "gaussian",
        "status": status,
        "covered": covered,
        "equivalence": "equivalent" if i % 2 else "minor",
        "vv20": {"u_D": 1.0},
        "spread_reported": True,
    }


def _report() -> dict[str, Any]:
    rows = [
        _row(i, f"s{i % 8}", ["acne_scars", "downtime"][i % 2], covered=i % 5 != 0)
        for i in range(20)
    ]
    return {
        "code_verification": {"checks": [{"passed": True}] * 12},
        "calibration": {"diagnostics": {"r_hat_max": 1.02, "ess_bulk_min": 800}},
        "validation": {
            "draws": 256,
            "posterior": "posterior-abc",
            "rows": rows,
            "summary": {"pit": [0.5] * 20},
            "calculation_verification": {
                "rows": [{"u_num_over_tolerance": 1e-4}, {"u_num_over_tolerance": 5e-3}]
            },
            "calibration_check": {
                "n_inside": 19,
                "n_rows": 20,
                "loso": {"coverage_80": {"rate": 0.8}, "max_pareto_k": 0.5},
            },
            "cohorts": {"rows": [{"within_goal": True}] * 3},
        },
    }


def grades(report: dict[str, Any]) -> dict[str, str]:
    return {f["factor"]: f["achieved"] for f in grade_factors(report, USE)}


def test_a_strong_run_is_graded_high_on_every_factor() -> None:
    g = grades(_report())
    assert g == dict.fromkeys(FACTORS, "high"), g  # 16/20 covered = 80%, all pass


@pytest.mark.parametrize(
    ("edit", "factor", "grade"),
    [
        (lambda r: r["code_verification"]["checks"].__setitem__(0, {"passed": False}),
         "code_verification", "low"),
        (lambda r: r["code_verification"].__setitem__("checks", [{"passed": True}] * 5),
         "code_verification", "medium"),
        (lambda r: r["validation"]["calculation_verification"]["rows"].append(
            {"u_num_over_tolerance": 0.05}), "calculation_verification", "medium"),
        (lambda r: r["calibration"]["diagnostics"].__setitem__("r_hat_max", 1.2),
         "model_inputs", "medium"),
        (lambda r: r["validation"].__setitem__("posterior", None), "model_inputs", "low"),
        (lambda r: r["validation"]["calibration_check"].__setitem__("n_inside", 15),
         "calibration", "medium"),
        (lambda r: r["validation"].__setitem__("rows", r["validation"]["rows"][:10]),
         "output_quantity", "medium"),
        (lambda r: r["validation"].__setitem__("draws", 32), "output_rigor", "medium"),
        (lambda r: [x.__setitem__("covered", x["key"] != "r0") for x in r["validation"]["rows"]],
         "agreement", "medium"),  # 95% coverage: outside 70-90%, its clustered CI reaches 90%
        (lambda r: [x.__setitem__("covered", True) for x in r["validation"]["rows"]],
         "agreement", "low"),  # 100% of 20: too wide to be calibrated, and its CI is 100-100%
        (lambda r: [x.__setitem__("equivalence", "major") for x in r["validation"]["rows"]],
         "input_equivalence", "low"),
        (lambda r: [x.__setitem__("spread_reported", i % 2 == 0)
                    for i, x in enumerate(r["validation"]["rows"])],
         "test_samples", "medium"),  # 10 of 20 rows
        (lambda r: r["validation"]["cohorts"].__setitem__(
            "rows", [{"within_goal": True}, {"within_goal": False}]), "population", "medium"),
    ],
)  # fmt: skip
def test_each_rule_moves_its_grade(edit: Any, factor: str, grade: str) -> None:
    rep = copy.deepcopy(_report())
    edit(rep)
    assert grades(rep)[factor] == grade


def test_test_samples_count_only_a_spread_the_study_reported() -> None:
    """A row whose SE is the default CV's (no SE, SD, CI, range or count in the paper) still has
    a u_D in the V&V 20 table; it does not count as a row with a spread (the audit of 2026-12-07
    found "56/56 rows with a spread" for the simulate use, 19/56 reported by the study)."""
    rep = _report()
    for i, r in enumerate(rep["validation"]["rows"]):
        r["spread_reported"] = i < 7  # every row keeps u_D = 1
    (f,) = [f for f in grade_factors(rep, USE) if f["factor"] == "test_samples"]
    assert f["evidence"] == "7/20 rows with a spread reported by the study, 8 studies"
    assert f["achieved"] == "low" and not f["adequate"]  # 35% < 50%


def test_a_literature_row_knows_whether_its_study_reported_a_spread() -> None:
    from microneedling.studies.credibility.literature import rows

    lit = {r.key: r for r in rows()}
    assert lit["krishnegowda2023_mn_saline_grade"].spread_reported  # SD 0.53 of 40
    assert lit["majid2009_responders"].spread_reported  # 34 of 36: a count
    garg = lit["garg_rolling_reduction"]  # a mean change only: its SE is the default CV's
    assert (garg.se, garg.sd, garg.ci_low, garg.range_low, garg.k) == (None,) * 5
    assert not garg.spread_reported


def test_applicability_counts_families_with_two_rows() -> None:
    rep = _report()
    rep["validation"]["rows"] = [r for r in rep["validation"]["rows"] if r["family"] == "downtime"]
    assert grades(rep)["applicability"] == "medium"  # 1 of 2 families


def test_every_use_has_a_risk_a_goal_per_factor_and_a_verdict() -> None:
    cfg = read_toml(data_path("calibration", "credibility.toml"))
    assert {u["command"] for u in cfg["uses"]} == {"simulate", "plan", "trial", "absorb"}
    for u in cfg["uses"]:
        assert set(u["goals"]) == set(FACTORS), u["command"]
        assert set(u["goals"].values()) <= set(GRADES)
        assert u["influence"] in GRADES and u["consequence"] in GRADES
    out = credibility_assessment(_report())
    assert out["assessed"] == cfg["assessed"]
    for u in out["uses"]:
        assert u["risk"] == cfg["risk"][u["influence"]][u["consequence"]]
        short = [f["factor"] for f in u["factors"] if not f["adequate"]]
        assert u["adequate"] == (not short)
        assert all(f in u["verdict"] for f in short)


def test_the_limits_quote_this_runs_enhancement_ratio() -> None:
    """The intact-skin limit ends with the run's own figure for Mohammed 2014 (its validation row;
    else the behaviour's nominal value), not a number written by hand."""
    from microneedling.studies.credibility.report import LIMITS, known_limits

    row = {
        "key": "mohammed2014_enhancement",
        "status": "miss",
        "observed": 6.6,
        "predicted": 63.0468,
        "low": 9.1772,
        "high": 556.498,
    }
    out = known_limits({"validation": {"rows": [row]}})
    assert len(out) == len(LIMITS) and "several hundred" not in " ".join(out)
    (intact,) = [t for t in out if "Mohammed 2014" in t]
    assert intact.endswith(
        "Mohammed 2014: observed 6.6x, predicted 63x (80% predictive interval 9.18-556x), "
        "a miss in this run."
    )
    behaviour = {"source": "mohammed2014", "measured": {"enhancement_ratio": 387.2}}
    (intact,) = [t for t in known_limits({"behaviours": [behaviour]}) if "Mohammed" in t]
    assert intact.endswith("Mohammed 2014: the nominal model gives 387x in this run.")
    (intact,) = [t for t in known_limits({}) if "Mohammed" in t]
    assert intact.endswith("Mohammed 2014: not computed in this run.")
