"""The absorption report: figures and the page, on a real (small) absorption table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from microneedling.course.model import Course
from microneedling.parameters.parameter_set import load_parameters
from microneedling.reports import absorb as report
from microneedling.reports.figures import FIGURE_FOOTER
from microneedling.studies import absorb
from tests.paths import EXAMPLES
from tests.reports.shell import Page, check_shell, check_tables

PNG = b"\x89PNG\r\n\x1a\n"
NAME = 'Serum <b>"test"</b> & co\x00\x1b[31m red\x1b[0m'


@pytest.fixture(scope="module")
def solved() -> tuple[Any, dict[tuple[Any, ...], absorb.Resolved]]:
    course = Course.from_file(EXAMPLES / "serum-absorption-study.toml")
    return absorb.absorption_table(course, load_parameters(), draws=2, seed=1)


@pytest.fixture(scope="module")
def written(solved: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Path]]:
    table, rvs = solved
    out = tmp_path_factory.mktemp("absorb")
    figures: dict[str, list[Path]] = {}
    for rv in rvs.values():
        c = rv.case
        figures[f"{c.product}: {c.label}"] = [
            report.plot_map(rv, out / "figures" / f"map_{c.stem}.png"),
            report.plot_curves(rv, out / "figures" / f"curves_{c.stem}.png"),
        ]
    path = report.write_report(out, table, figures, NAME, draws=2, seed=1)
    assert path == out / "report.html"
    return path.read_text(encoding="utf-8"), [p for ps in figures.values() for p in ps]


def test_report_has_the_shell_and_readable_tables(written: tuple[str, list[Path]]) -> None:
    text, pngs = written
    page = check_shell(text, "Absorption report")
    check_tables(page)
    assert len(page.srcs) == len(pngs) == 2
    assert all(p.read_bytes()[:8] == PNG for p in pngs)
    amounts, layers, settings = page.tables
    # every amount column says its unit (the dose column had none)
    assert amounts.headers[:3] == ["Session", "Product", "Dose applied (µg/cm²)"]
    assert all(h.endswith("(µg/cm²)") for h in amounts.headers[2:5] + amounts.headers[6:9])
    assert all(h.endswith("(µg/cm²)") for h in layers.headers[1:])
    assert "Channel model vs resolved (%)" in amounts.headers
    (row,) = amounts.rows
    assert row[0] == "cheek, session 1 (day 0)"
    assert row[2] == "500"  # 50 mg/mL x 10 uL/cm^2
    assert "[" in row[3]  # the interval over the draws, below the value
    assert settings.headers[2:5] == [
        "Concentration (mg/mL)",
        "Applied volume (µL/cm²)",
        "Contact time (h)",
    ]
    assert settings.rows[0][5] == "no"  # occluded: yes/no, not False


def test_report_escapes_the_course_name(written: tuple[str, list[Path]]) -> None:
    text, _ = written
    assert '<b>"test"</b>' not in text
    assert Page(text).h1 == 'Serum <b>"test"</b> & co red'


def test_report_without_resolved_cell(solved: Any) -> None:
    table, _ = solved
    keep = [c for c in table.columns if not c.startswith("resolved_") and c != "difference_pct"]
    text = report.render_report(table[keep], {}, "plain")
    page = check_shell(text, "Absorption report")
    check_tables(page)
    assert "Absorbed, resolved" not in text
    assert "The resolved unit cell was not run" in text


def test_map_labels_are_readable_on_any_colour(
    solved: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Layer names on the (yellow-to-black) map sit on a dark box; every figure has the footer."""
    _, rvs = solved
    (rv,) = rvs.values()
    seen: dict[str, Any] = {}
    real = report.save_png

    def spy(fig: Any, path: Path) -> Path:
        seen[path.stem] = fig
        return real(fig, path)

    monkeypatch.setattr(report, "save_png", spy)
    report.plot_map(rv, tmp_path / "map.png")
    report.plot_curves(rv, tmp_path / "curves.png")
    for fig in seen.values():
        assert any(FIGURE_FOOTER in t.get_text() for t in fig.texts)
    labels = [t for ax in seen["map"].axes for t in ax.texts if "dermis" in t.get_text()]
    assert labels and all(t.get_bbox_patch() is not None for t in labels)
    assert all("_" not in t.get_text() for t in labels)
    for ax in seen["map"].axes[:1] + seen["curves"].axes:
        assert "(" in ax.get_ylabel() and ")" in ax.get_ylabel()  # label (units)
