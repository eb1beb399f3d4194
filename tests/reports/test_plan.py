"""The plan report: the shell, readable tables, escaped patient text; the Pareto plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from microneedling.reports import plan as report
from microneedling.studies.planning.search import PlanResult, predict, search
from tests.planner_helpers import make_patient
from tests.reports.shell import Page, check_shell, check_tables

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def planned() -> tuple[PlanResult, list[dict[str, Any]]]:
    pf = make_patient(sites=("cheek", "nose"), history={"isotretinoin_months_ago": 8})
    result = search(pf)
    return result, predict(result.recommended.course, pf, draws=2)


@pytest.fixture(scope="module")
def written(
    planned: tuple[PlanResult, list[dict[str, Any]]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    result, preds = planned
    out = tmp_path_factory.mktemp("plan") / "plan"
    report.write_plan_directory(result, preds, out)
    return out


def test_plan_report_has_the_shell_once(written: Path) -> None:
    text = (written / "report.html").read_text(encoding="utf-8")
    page = check_shell(text, "Treatment plan")
    check_tables(page)
    # the disclaimer is the shell's (top and footer), not a third copy in the plan's own style
    assert text.count('class="disclaimer"') == 2
    # the Pareto set is the interactive chart of reports/charts.py (the web plan page's), drawn
    # from the data on the page with the library inlined; pareto.png stays beside the report
    assert page.srcs == []
    assert (written / "pareto.png").read_bytes()[:8] == PNG


def test_pareto_chart_is_the_plans(
    written: Path, planned: tuple[PlanResult, list[dict[str, Any]]]
) -> None:
    import json
    import re

    import plotly.graph_objects as go

    result, _ = planned
    text = (written / "report.html").read_text(encoding="utf-8")
    assert "plotly.js v" in text  # inlined: the report opens offline
    m = re.search(r'<script type="application/json" id="mn-charts">(.*?)</script>', text, re.S)
    assert m is not None
    fig = json.loads(m.group(1))["chart-pareto"]
    go.Figure(fig)  # a valid Plotly figure
    plans = [t for t in fig["data"] if t["name"] != "recommended"]
    star = [t for t in fig["data"] if t["name"] == "recommended"]
    indices = sorted(i for t in plans for i in t["customdata"])
    assert indices == list(range(len(result.pareto)))
    rec = next(i for i, p in enumerate(result.pareto) if p.recommended)
    assert star[0]["customdata"] == [rec]
    assert star[0]["x"] == [pytest.approx(result.pareto[rec].total_downtime_days)]
    assert star[0]["y"] == [pytest.approx(result.pareto[rec].score)]


def test_plan_tables_use_human_names_and_units(written: Path) -> None:
    page = Page((written / "report.html").read_text(encoding="utf-8"))
    weights, predictions, alternatives = page.tables
    assert predictions.headers == ["Site", "End point", "Value", "10–90% interval", "Units"]
    labels = {r[1] for r in predictions.rows}
    assert "Atrophic scar depth, reduction, 90 d after the last session" in labels
    assert "Visible redness, all sessions" in labels
    assert {r[4] for r in predictions.rows} >= {"%", "d"}
    assert "Total downtime (d)" in alternatives.headers
    assert "Needle length (mm)" in alternatives.headers
    assert alternatives.headers[0] == "Recommended"
    assert sorted(r[0] for r in alternatives.rows)[-1:] == ["★ yes"]  # one, highlighted
    assert {r[0] for r in alternatives.rows} <= {"no", "★ yes"}  # not True/False
    assert weights.rows[0][0] == "cheek"


def test_csv_files_keep_their_columns(written: Path) -> None:
    """The CSV files are data, not the page: their column names and values do not change."""
    head = (written / "pareto.csv").read_text(encoding="utf-8").splitlines()[0]
    assert head == (
        "recommended,device,topical,sessions,interval_days,needle_length_mm,passes,score,"
        "total_downtime_days,max_session_downtime_days,max_pih_risk"
    )


def test_patient_text_is_escaped(planned: tuple[PlanResult, list[dict[str, Any]]]) -> None:
    import dataclasses

    result, preds = planned
    patient = result.patient.model_copy(update={"name": "<i>Ann</i> & \x00\x1b[1mBo\x1b[0m"})
    bad = dataclasses.replace(result, patient=patient, notes=["note <script>x</script>\x07"])
    text = report.report_html(bad, preds, None)
    check_shell(text, "Treatment plan")
    assert "<i>Ann</i>" not in text and "<script>x" not in text
    assert Page(text).h1 == "Treatment plan: <i>Ann</i> & Bo"
    assert "note &lt;script&gt;x&lt;/script&gt;</li>" in text
