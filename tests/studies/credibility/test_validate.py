"""Validation and the credibility report: every held-out row is compared and reported, and the pass
count and interval coverage may not fall below the levels recorded in docs/credibility.md."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from microneedling import DISCLAIMER
from microneedling.cli.app import app
from microneedling.errors import InputError
from microneedling.studies.credibility.delivery import load_rows
from microneedling.studies.credibility.literature import rows
from microneedling.studies.credibility.report import LIMITS, build_report, sobol_summary
from microneedling.studies.credibility.validate import _covered, _judge, validate
from tests.paths import DOCS

DOC = DOCS / "credibility.md"


def recorded_floor() -> dict[str, float]:
    """The machine-readable line of docs/credibility.md:
    ``<!-- validation-floor: pass=P evaluated=E covered=C draws=D seed=S -->``."""
    m = re.search(r"<!-- validation-floor: (.*?) -->", DOC.read_text(encoding="utf-8"))
    assert m, "docs/credibility.md must record the validation floor"
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


@pytest.fixture(scope="module")
def report() -> dict:
    floor = recorded_floor()
    return build_report(
        draws=int(floor["draws"]), seed=int(floor["seed"]), sobol=False, verification=False
    )


def test_pass_count_and_coverage_do_not_drop_below_the_recorded_level(report: dict) -> None:
    floor = recorded_floor()
    v = report["validation"]
    assert v["n_evaluated"] >= floor["evaluated"]
    assert v["n_pass"] >= floor["pass"], f"{v['n_pass']} rows pass, {floor['pass']:g} recorded"
    assert v["n_covered"] >= floor["covered"], (
        f"{v['n_covered']} rows covered, {floor['covered']:g} recorded"
    )


def test_every_validation_row_is_reported_with_its_result(report: dict) -> None:
    v = report["validation"]
    assert [r["key"] for r in v["rows"]] == [r.key for r in rows("validation")]
    statuses = {r["status"] for r in v["rows"]}
    assert statuses <= {"pass", "miss", "not evaluated"}
    assert "miss" in statuses  # misses are shown, not filtered out
    for r in v["rows"]:
        if r["status"] == "not evaluated":
            assert r["assumptions"].strip(), r["key"]  # the reason is given
        else:
            assert r["covered"] in (True, False), r["key"]


def test_report_is_json_data_and_calibration_reproduces_shipped(report: dict) -> None:
    assert report["calibration"]["reproduces_shipped"] is True
    assert report["disclaimer"] == DISCLAIMER
    assert json.loads(json.dumps(report)) == report  # plain data; reports.credibility renders it
    assert report["code_verification"] == {"status": "skipped"}
    assert report["sensitivity"] == {"status": "skipped"}
    assert report["limits"] == list(LIMITS)


def test_limits_describe_the_current_intact_skin_model() -> None:
    """The transport limit names the function and the polar pathway it uses (not the old 'no
    intact-skin path above 500 Da', which the code no longer does)."""
    text = " ".join(LIMITS)
    assert "intact_kp" in text and "polar" in text and "Potts-Guy" in text
    assert "no intact-skin path" not in text


def test_judging_rules() -> None:
    row = next(r for r in rows() if r.key == "chu2021_transient_ae")  # upper bound
    assert _judge(row, 7.0, 1.0, 7.9) == "pass"
    assert _judge(row, 7.0, 1.0, 8.1) == "miss"
    assert _judge(row, 7.0, 1.0, math.inf) == "miss"
    assert _covered(row, 7.0, 6.9, 20.0) and not _covered(row, 7.0, 7.1, 20.0)
    two_sided = next(r for r in rows() if r.key == "dogra2014_score")
    assert _judge(two_sided, -44.6, 23.0, -21.7) == "pass"
    assert _judge(two_sided, -44.6, 23.0, -21.5) == "miss"
    assert _covered(two_sided, -44.6, -50.0, -40.0) and not _covered(two_sided, -44.6, -40, -30)
    assert not _covered(two_sided, -44.6, math.nan, math.nan)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(InputError, match="draws"):
        validate(draws=1)
    with pytest.raises(InputError, match="rows"):
        validate(draws=2, keys=["lotfi2013_collagen"])  # a calibration row is not a validation row
    res = CliRunner().invoke(app, ["validate", "--sobol-n-base", "3"])
    assert res.exit_code == 2 and "power of two" in res.output
    res = CliRunner().invoke(app, ["validate", "--delivery", "--out", "somewhere"])
    assert res.exit_code == 2 and "--delivery" in res.output


def test_validate_command_prints_the_validation_and_the_delivery_tables() -> None:
    res = CliRunner().invoke(app, ["validate", "--draws", "4"])
    assert res.exit_code == 0, res.output
    for r in rows("validation"):
        assert r.key in res.output
    assert "within tolerance:" in res.output and "(4 draws, seed 0)" in res.output
    res = CliRunner().invoke(app, ["validate", "--delivery"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("| row | molecule |")
    for row in load_rows():
        assert f"| {row.key} |" in res.output
    assert DISCLAIMER in res.output.replace("\n", " ")


def test_sobol_summary_ranks_the_threshold_first_for_downtime() -> None:
    s = sobol_summary(n_base=16, names=["observe.erythema_threshold", "healing.mu_F"], top=2)
    down = s["endpoints"]["downtime"]["top"]
    assert down[0]["parameter"] == "observe.erythema_threshold"
    assert down[0]["ST"] > down[1]["ST"]
    assert set(s["endpoints"]) == {"collagen gain", "scar-depth reduction", "downtime"}


def test_calibrate_command_writes_a_versioned_file(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["calibrate", "--out", str(tmp_path / "cal")])
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in (tmp_path / "cal").iterdir() if p.name != ".microneedling-run")
    assert files[0] == "cal-" + files[0][4:16] + ".toml" and "calibration.json" in files
    assert "condition number" in res.output and DISCLAIMER in res.output.replace("\n", " ")
