"""The one page shell: template, stylesheet, escaping, tables, packaging."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest

from microneedling.about import DISCLAIMER
from microneedling.reports import page
from tests.paths import REPO
from tests.reports.shell import Page, check_shell, check_tables

TEMPLATES = REPO / "src" / "microneedling" / "reports" / "templates"

CHILD = """{% extends "base.html.j2" %}
{% block content %}
<section id="things"><h2>Things</h2>
{{ m.kv(items) }}
{{ m.data_table(rows) }}
{{ m.data_table(nothing) }}
{{ m.notes(notes, "warnings") }}
</section>
{% endblock %}
"""


def _render(**kw: object) -> str:
    tpl = page.environment().from_string(CHILD)
    ctx: dict[str, object] = {
        "kind": "Test report",
        "title": "A title",
        "items": page.kv([("Label", "value")]),
        "rows": page.table(
            [page.column("Name"), page.column("Dose", "µg/cm²", num=True)],
            [
                {"group": "cheek"},
                ["first", page.cell("1.00", interval="[0.5–2]")],
                {"cells": ["second", "2.00"], "highlight": True},
            ],
            caption="Two rows",
        ),
        "nothing": page.table([page.column("x")], [], empty="Nothing here."),
        "notes": ["a note"],
        "provenance": page.kv([("Version", "x")]),
        "toc": [("things", "Things")],
    }
    ctx.update(kw)
    return page.render(tpl, **ctx)


def test_shell_parts_in_order() -> None:
    text = _render()
    p = check_shell(text, "Test report")
    check_tables(p)
    assert p.h1 == "A title"
    assert p.title == "A title — Test report"
    (t,) = p.tables
    assert t.headers == ["Name", "Dose (µg/cm²)"]
    assert t.rows == [["cheek"], ["first", "1.00 [0.5–2]"], ["second", "2.00"]]
    assert '<tr class="highlight">' in text
    assert '<th scope="rowgroup" colspan="2">cheek</th>' in text
    assert "Nothing here." in text
    assert '<ul class="warnings">' in text and "<li>a note</li>" in text
    assert text.index('id="things"') < text.index('id="provenance"')


def test_user_text_is_escaped_and_control_characters_dropped() -> None:
    evil = '<script>alert("x")</script> & \x00nul \x1b[31mansi\x1b[0m \x07bell'
    text = _render(title=evil, notes=[evil], items=page.kv([(evil, evil)]))
    check_shell(text, "Test report")
    assert "<script>alert" not in text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; nul ansi bell" in text
    assert Page(text).h1 == '<script>alert("x")</script> & nul ansi bell'


def test_check_shell_fails_on_a_broken_page() -> None:
    """The shell checks can fail: a second stylesheet, a missing disclaimer, raw field names."""
    good = _render()
    with pytest.raises(AssertionError):
        check_shell(good.replace("</head>", "<style>p{}</style></head>"), "Test report")
    i = good.rindex(DISCLAIMER)
    with pytest.raises(AssertionError):  # no disclaimer in the footer
        check_shell(good[:i] + good[i + len(DISCLAIMER) :], "Test report")
    with pytest.raises(AssertionError):
        check_shell(good.replace("A title", "A\x00title"), "Test report")
    bad = _render(
        rows=page.table([page.column("p_t")], [["True"]]),
    )
    with pytest.raises(AssertionError):
        check_tables(Page(bad))
    bad = _render(rows=page.table([page.column("Rate", "1")], [["0.5"]]))
    assert "(1)" not in bad  # dimensionless: no unit shown
    with pytest.raises(AssertionError):
        check_tables(Page(bad.replace('<th scope="col">Rate', '<th scope="col">Rate (1)')))


def test_table_rows_must_match_the_columns() -> None:
    with pytest.raises(ValueError, match="2 cells for 1 columns"):
        page.table([page.column("x")], [["a", "b"]])


def test_one_stylesheet_inlined_and_offline() -> None:
    css = page.stylesheet()
    assert css == (TEMPLATES / "report.css").read_text(encoding="utf-8")
    assert "</style" not in css and "url(" not in css and "@import" not in css
    # responsive: small screens and print; tables scroll inside their container
    assert "@media (max-width: 640px)" in css and "@media print" in css
    assert re.search(r"\.table-wrap \{[^}]*overflow-x: auto", css)
    # the charts of the run report are styled here too (no other stylesheet exists)
    assert "figure.chart" in css and "svg.mn-chart" not in css  # one chart engine: Plotly
    assert sorted(p.name for p in TEMPLATES.glob("*.css")) == ["report.css"]


def test_every_report_template_extends_the_shell() -> None:
    children = [
        p for p in TEMPLATES.glob("*.html.j2") if p.name not in ("base.html.j2", "macros.html.j2")
    ]
    assert {p.name for p in children} >= {
        "run.html.j2",
        "absorb.html.j2",
        "plan.html.j2",
        "trial.html.j2",
    }
    for p in children:
        text = p.read_text(encoding="utf-8")
        assert text.count('{% extends "base.html.j2" %}') == 1, p.name
        assert "<style" not in text and "<html" not in text and "|safe" not in text, p.name
        assert "DISCLAIMER" not in text and "disclaimer" not in text, p.name  # the shell's job


def test_templates_ship_as_package_data() -> None:
    """A non-editable install must ship every template (pyproject's package-data globs)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    globs = config["tool"]["setuptools"]["package-data"]["microneedling"]
    assert any(g.startswith("reports/templates/") for g in globs)
    for p in TEMPLATES.iterdir():
        rel = p.relative_to(REPO / "src" / "microneedling").as_posix()
        assert any(fnmatch(rel, g) for g in globs), rel
    deps = config["project"]["dependencies"]
    assert any(d.lower().startswith("jinja2") for d in deps)


def test_importing_the_reports_loads_no_matplotlib_or_jinja() -> None:
    code = (
        "import sys\n"
        "import microneedling.engine.simulate, microneedling.reports.run, "
        "microneedling.reports.page, microneedling.reports.figures, microneedling.reports.format, "
        "microneedling.reports.absorb, microneedling.reports.plan, microneedling.reports.trial, "
        "microneedling.reports.sensitivity\n"
        "print(sorted(m for m in ('matplotlib', 'jinja2') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_data_uri(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\nrest"
    f = tmp_path / "x.png"
    f.write_bytes(png)
    assert page.data_uri(png) == page.data_uri(f)
    assert page.data_uri(png).startswith("data:image/png;base64,iVBORw0KG")


def test_compiled_templates_are_cached_across_processes_and_a_bad_cache_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same page from a fresh environment whose templates come from the bytecode cache, from
    a damaged cache entry, and with a cache folder that cannot be made (a file in its place)."""
    context = {"kind": "Test report", "title": "T <b>", "sessions": []}

    def fresh_page() -> str:
        page.environment.cache_clear()
        return page.render("base.html.j2", **context)

    monkeypatch.setenv("MICRONEEDLING_CACHE_DIR", str(tmp_path / "cache"))
    try:
        expected = fresh_page()
        entries = sorted((tmp_path / "cache" / "jinja2").iterdir())  # the shell and its macros
        assert len(entries) == 2 and all(e.stat().st_size > 0 for e in entries)
        assert page.environment().bytecode_cache is not None
        stamps = [e.stat().st_mtime_ns for e in entries]
        assert fresh_page() == expected  # read from the entries ...
        assert [e.stat().st_mtime_ns for e in entries] == stamps  # ... not written again
        for damaged in (entries[0].read_bytes()[:40], b"garbage"):
            for e in entries:
                e.write_bytes(damaged)
            assert fresh_page() == expected
        (tmp_path / "blocked").write_text("a file", encoding="utf-8")
        monkeypatch.setenv("MICRONEEDLING_CACHE_DIR", str(tmp_path / "blocked"))
        assert fresh_page() == expected
        assert page.environment().bytecode_cache is None
        monkeypatch.setenv("MICRONEEDLING_CACHE_DIR", "")
        assert fresh_page() == expected
    finally:
        page.environment.cache_clear()
