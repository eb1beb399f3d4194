"""The trial report: the shell, readable tables (no raw column names, no unit "1"), escaping."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from microneedling.reports import trial as report
from microneedling.studies.trial.run import TrialResult, run_trial
from microneedling.studies.trial.spec import TrialSpec
from tests.paths import EXAMPLES
from tests.reports.shell import Page, check_shell, check_tables

PAIRED = EXAMPLES / "trials" / "split-face-needle-length.toml"
PARALLEL = EXAMPLES / "trials" / "acne-roller-vs-pen.toml"


def _run(path: Path, n: int = 6) -> TrialResult:
    spec = dataclasses.replace(TrialSpec.from_toml(path), n_per_arm=n)
    return run_trial(spec, chunk_size=n)


@pytest.fixture(scope="module", params=[PARALLEL, PAIRED], ids=["parallel", "paired"])
def written(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trial") / "trial"
    report.write_trial(_run(request.param), out)
    return out


def test_trial_report_has_the_shell(written: Path) -> None:
    text = (written / "report.html").read_text(encoding="utf-8")
    page = check_shell(text, "In-silico trial")
    check_tables(page)
    assert len(page.srcs) == 2  # distributions and trajectories, embedded


def test_trial_tables_in_words_with_units(written: Path) -> None:
    page = Page((written / "report.html").read_text(encoding="utf-8"))
    summary, comparisons = page.tables
    assert summary.headers[:3] == ["Arm", "n", "Mean"]
    groups = [r[0] for r in summary.rows if len(r) == 1]
    assert any(g.startswith("Atrophic scar depth, reduction") and "(%)" in g for g in groups)
    assert any("responder: ≥ 25%" in g for g in groups)
    assert "Visible redness, all sessions (d)" in groups
    counts = [r[1] for r in summary.rows if len(r) > 1]
    assert all(c.isdigit() for c in counts)  # a count, not 6.00
    rates = [r[-1] for r in summary.rows if len(r) > 1 and r[-1] != "—"]
    assert rates and all("%" in r for r in rates)
    assert "p (t test)" in comparisons.headers and "p (rank test)" in comparisons.headers
    for raw in ("p_t", "u_stat", "w_stat", "responder_ci95_low", "ci95_high", "hedges_g"):
        assert raw not in (written / "report.html").read_text(encoding="utf-8")


def test_csv_tables_keep_their_columns(written: Path) -> None:
    head = (written / "summary.csv").read_text(encoding="utf-8").splitlines()[0]
    assert head.startswith("endpoint,units,arm,responder_rule,n,mean,sd,ci95_low,ci95_high")


def test_user_text_is_escaped() -> None:
    res = _run(PAIRED, 4)
    spec = res.spec
    arms = tuple(dataclasses.replace(a, name=f"<b>{a.name}</b>\x1b[2J") for a in spec.arms)
    bad = dataclasses.replace(res, spec=dataclasses.replace(spec, name="Trial <x>\x00", arms=arms))
    text = report.report_html(bad, [])
    check_shell(text, "In-silico trial")
    assert "<b>" not in text and "<x>" not in text
    assert Page(text).h1 == "Trial <x>"
    assert "&lt;b&gt;1.5 mm&lt;/b&gt;" in text
