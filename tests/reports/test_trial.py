"""The trial report: the shell, readable tables (no raw column names, no unit "1"), escaping."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from microneedling.reports import trial as report
from microneedling.reports.format import endpoint_label, pretty_units
from microneedling.studies.trial.run import TrialResult, run_trial
from microneedling.studies.trial.spec import TrialSpec
from tests.paths import EXAMPLES
from tests.reports.shell import (
    Page,
    check_charts,
    check_shell,
    check_tables,
    without_scripts,
    y_title,
)

PAIRED = EXAMPLES / "trials" / "split-face-needle-length.toml"
PARALLEL = EXAMPLES / "trials" / "acne-roller-vs-pen.toml"


def _run(path: Path, n: int = 6) -> TrialResult:
    # 3 parameter sets of 2 patients: every statistic over and given the sets is estimable
    spec = dataclasses.replace(TrialSpec.from_toml(path), n_per_arm=n, parameter_draws=3)
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
    assert page.srcs == []  # no embedded PNG: the charts are the interactive ones
    # the PNGs stay beside the report, for print
    for name in ("distributions", "trajectories"):
        assert (written / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trial_charts_are_the_trials(written: Path) -> None:
    """One histogram per end point holding every virtual patient of each arm, the responder
    threshold where there is one; one trajectory chart per variable with each arm's mean and its
    ±1 SD band; axis titles with units."""
    text = (written / "report.html").read_text(encoding="utf-8")
    figures = check_charts(text)
    ds = xr.open_dataset(written / "trial.nc")
    spec = TrialSpec.from_toml(written / "trial.toml")
    arms = [a.name for a in spec.arms]
    for j, e in enumerate(spec.endpoints):
        fig = figures[f"chart-distribution-{j}"]
        hists = [t for t in fig["data"] if t["type"] == "histogram"]
        assert [t["name"] for t in hists] == arms
        for a, t in enumerate(hists):
            values = ds["value"].isel(endpoint=j, arm=a).values
            assert sorted(t["x"]) == pytest.approx(sorted(values[np.isfinite(values)]), rel=1e-5)
        x_title = fig["layout"]["xaxis"]["title"]["text"]
        assert x_title.startswith(endpoint_label(e.name))
        units = pretty_units(e.spec.units)
        assert (f"({units})" in x_title) if units else "(" not in x_title
        thr = e.above if e.above is not None else e.below
        shapes = fig["layout"].get("shapes", [])
        assert [s["x0"] for s in shapes] == ([] if thr is None else [pytest.approx(thr)])
        assert y_title(fig) == "Probability density"
    trajectories = {k: f for k, f in figures.items() if k.startswith("chart-trajectory-")}
    assert trajectories
    for fig in trajectories.values():
        assert y_title(fig).endswith(")")  # the variable's units
        means = [t for t in fig["data"] if t["name"] in arms and "fill" not in t]
        bands = [t for t in fig["data"] if t.get("fill") == "tonexty"]
        assert [t["name"] for t in means] == arms and len(bands) == len(arms)
        lows = [t for t in fig["data"] if t["name"].endswith("(10th percentile)")]
        for lo, band, mean in zip(lows, bands, means, strict=True):
            assert all(a <= m <= b for a, m, b in zip(lo["y"], mean["y"], band["y"], strict=True)
                       if None not in (a, m, b))  # fmt: skip
        assert any(t["name"] == "±1 SD of patients" for t in fig["data"])
        assert len(fig["layout"]["shapes"]) == len(spec.arms[0].template["sessions"])


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
    col = summary.headers.index("Responders")
    rates = [r[col] for r in summary.rows if len(r) > 1 and r[col] != "—"]
    assert rates and all("%" in r for r in rates)
    # the trial's parameter draws (the default): where the mean and the difference fall across
    # the parameter sets, and the parameter share of the variance
    for table in (summary, comparisons):
        assert "Over parameter draws" in table.headers and "Parameter share" in table.headers
        col = table.headers.index("Over parameter draws")
        spans = [r[col] for r in table.rows if len(r) > 1]
        assert spans and all("–" in v or " to " in v for v in spans)
    # and each difference's interval given the sets, with its p value below
    assert "95% CI given the parameter sets" in comparisons.headers
    assert "95% CI given the parameter sets" not in summary.headers
    col = comparisons.headers.index("95% CI given the parameter sets")
    given = [r[col] for r in comparisons.rows if len(r) > 1]
    assert given and all(("–" in v or " to " in v) and "p " in v for v in given)
    text = without_scripts((written / "report.html").read_text("utf-8"))
    assert "drawn from the calibration's posterior" in " ".join(text.split())
    assert "p (t test)" in comparisons.headers and "p (rank test)" in comparisons.headers
    for raw in ("p_t", "u_stat", "w_stat", "responder_ci95_low", "ci95_high", "hedges_g"):
        # the page's text (the inlined chart library's own names are code)
        assert raw not in without_scripts((written / "report.html").read_text("utf-8"))


def test_csv_tables_keep_their_columns(written: Path) -> None:
    head = (written / "summary.csv").read_text(encoding="utf-8").splitlines()[0]
    assert head.startswith("endpoint,units,arm,responder_rule,n,mean,sd,ci95_low,ci95_high")
    # the parameter-draw statistics after today's columns
    assert ",epistemic80_low,epistemic80_high," in head and ",epistemic_fraction," in head
    assert head.endswith(",responder_epistemic95_low,responder_epistemic95_high")
    comp = (written / "comparisons.csv").read_text(encoding="utf-8").splitlines()[0]
    assert "epistemic80_low,epistemic80_high" in comp and "aleatory_sd" in comp


def test_without_parameter_draws_the_report_has_no_draw_columns(tmp_path: Path) -> None:
    spec = dataclasses.replace(TrialSpec.from_toml(PAIRED), n_per_arm=4, parameter_draws=0)
    out = report.write_trial(run_trial(spec, chunk_size=4), tmp_path / "t")
    page = Page((out / "report.html").read_text(encoding="utf-8"))
    for table in page.tables:
        assert "Over parameter draws" not in table.headers
    assert "epistemic" not in (out / "summary.csv").read_text(encoding="utf-8")


def test_user_text_is_escaped() -> None:
    res = _run(PAIRED, 4)
    spec = res.spec
    arms = tuple(dataclasses.replace(a, name=f"<b>{a.name}</b>\x1b[2J") for a in spec.arms)
    bad = dataclasses.replace(res, spec=dataclasses.replace(spec, name="Trial <x>\x00", arms=arms))
    text = report.report_html(bad)
    check_shell(text, "In-silico trial")
    assert "<b>" not in text and "<x>" not in text
    assert Page(text).h1 == "Trial <x>"
    assert "&lt;b&gt;1.5 mm&lt;/b&gt;" in text
