"""Checks every report page must pass: the one shell, escaping, tables people can read.

Used by the tests of each report (run, absorb, plan, trial) and by ``test_page.py``.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

from microneedling.about import DISCLAIMER, __version__

#: a snake_case identifier (``tip_radius_um``, ``p_t``, ``responder_ci95_low``) shown as text
RAW_FIELD = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
#: Python's spelling of values that people should not read
PYTHON_WORDS = re.compile(r"^(?:True|False|None|nan|NaN|inf)$")
#: control characters that must never reach a page (tab and newline are fine)
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass
class Table:
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    wrapped: bool = False  # inside a scrolling container


class Page(HTMLParser):
    """Well-formedness (balanced tags), links, images, tables and the text of chosen elements."""

    VOID = frozenset({"meta", "link", "img", "br", "hr", "input", "col", "area", "base", "wbr"})

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, dict[str, str | None]]] = []
        self.errors: list[str] = []
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.tables: list[Table] = []
        self.h1 = ""
        self.title = ""
        self.styles = 0
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._in_head = False
        self.feed(text)
        self.close()

    def _inside(self, tag: str, cls: str | None = None) -> bool:
        return any(
            t == tag and (cls is None or cls in str(a.get("class") or "").split())
            for t, a in self.stack
        )

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("src"):
            self.srcs.append(str(a["src"]))
        if a.get("href"):
            self.hrefs.append(str(a["href"]))
        if tag == "style":
            self.styles += 1
        if tag == "table":
            self.tables.append(Table(wrapped=self._inside("div", "table-wrap")))
        if tag == "tr" and self.tables:
            self._row = []
        if tag in ("td", "th") and self._row is not None:
            self._cell = []
        if tag not in self.VOID:
            self.stack.append((tag, a))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("src"):
            self.srcs.append(str(a["src"]))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {[t for t, _ in self.stack[-3:]]})")
            return
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self.tables:
            t = self.tables[-1]
            if self._inside("thead"):
                t.headers = self._row
            else:
                t.rows.append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self.stack and self.stack[-1][0] == "h1":
            self.h1 += data
        if self.stack and self.stack[-1][0] == "title":
            self.title += data


SCRIPT = re.compile(r"(<script\b[^>]*>)(.*?)(</script>)", re.S)


def without_scripts(text: str) -> str:
    """``text`` with the bodies of its <script> elements emptied (the inlined chart library holds
    strings such as ``url(`` that are code, not page content)."""
    return SCRIPT.sub(lambda m: m.group(1) + m.group(3), text)


def check_shell(text: str, kind: str) -> Page:
    """The page has exactly the shell: one <style>, no external resource, the header naming the
    report kind and version, the disclaimer once right after the header and once in the footer
    (after every section), balanced tags, no raw control character. A page with charts carries
    their data and the chart library inlined (it opens offline)."""
    page = Page(text)
    if 'id="mn-charts"' in text:
        assert "plotly.js v" in text, "charts without their library"
        assert "<!-- microneedling:plotly.js -->" not in text
    text = without_scripts(text)
    assert page.errors == [], page.errors[:5]
    assert [t for t, _ in page.stack] == []
    assert text.startswith("<!DOCTYPE html>")
    assert page.styles == 1 and text.count("<style") == 1
    assert "<link" not in text and "@import" not in text and "url(" not in text
    assert "<script src" not in text
    assert all(s.startswith("data:image/png;base64,") for s in page.srcs)
    assert all(h.startswith(("#", "https://", "http://")) for h in page.hrefs), page.hrefs
    assert f'<p class="kind">{kind} · microneedling {__version__}</p>' in text
    d = html.escape(DISCLAIMER, quote=False)
    assert text.count(d) == 2, text.count(d)
    body = text[text.index("<body>") :]
    first, last = body.index(d), body.rindex(d)
    assert body.index("</header>") < first < body.index("<main")
    assert last > body.index("</main>") and last > body.index('id="provenance"')
    assert body.count("<h1>") == 1
    assert not CONTROL.search(text), repr(CONTROL.search(text))
    assert "\x1b" not in text
    return page


def check_tables(page: Page, allow: tuple[str, ...] = ()) -> None:
    """Every table sits in a scrolling container, and no header or cell shows a raw field name
    (``tip_radius_um``, ``p_t``), a Python word (True, False, None, nan) or the unit ``1``.
    ``allow``: identifiers that are legitimately shown (e.g. a parameter's dotted name)."""
    assert page.tables, "no table on the page"
    for t in page.tables:
        assert t.wrapped, t.headers
        for text in [*t.headers, *(c for r in t.rows for c in r)]:
            raw = [m for m in RAW_FIELD.findall(text) if m not in allow]
            assert not raw, (raw, text, t.headers)
            assert not PYTHON_WORDS.match(text), (text, t.headers)
        for h in t.headers:
            assert not h.endswith("(1)"), h


CHARTS = re.compile(r'<script type="application/json" id="mn-charts">(.*?)</script>', re.S)


def chart_figures(text: str) -> dict[str, dict[str, Any]]:
    """The Plotly figures a page embeds (chart id → ``{"data", "layout"}``), each with its
    ``<figure>`` on the page; ``{}`` when the page has no chart."""
    m = CHARTS.search(text)
    if m is None:
        return {}
    figures: dict[str, dict[str, Any]] = json.loads(m.group(1))
    for cid in figures:
        assert f'data-chart="{cid}"' in text, cid
    return figures


def check_charts(text: str) -> dict[str, dict[str, Any]]:
    """Every embedded figure is a valid Plotly figure with its library inlined; no axis title is
    clipped (``automargin``; the y-axis title, if any, written above the plot); axis titles and
    trace names are words, not raw field names; no hand-made ``<svg>`` on the page."""
    import plotly.graph_objects as go

    figures = chart_figures(text)
    assert figures, "no chart on the page"
    assert "plotly.js v" in text
    assert "<svg" not in without_scripts(text)
    for cid, fig in figures.items():
        go.Figure(fig)  # raises on anything Plotly would not draw
        layout = fig["layout"]
        for axis in ("xaxis", "yaxis"):
            assert layout[axis]["automargin"], (cid, axis)
        titles = [layout["xaxis"]["title"]["text"], layout["yaxis"]["title"]["text"]]
        titles += [a["text"] for a in layout.get("annotations", []) if a.get("yref") == "paper"]
        names = [str(t.get("name", "")) for t in fig["data"]]
        for words in [*titles, *names]:
            assert not RAW_FIELD.search(words.replace("-", " ")), (cid, words)
            assert not PYTHON_WORDS.match(words), (cid, words)
    return figures


def y_title(fig: dict[str, Any]) -> str:
    """The y-axis title of a chart of ``reports/charts.py`` (written above the plot)."""
    above = [a["text"] for a in fig["layout"].get("annotations", []) if a.get("y") == 1]
    return above[0] if above else fig["layout"]["yaxis"]["title"]["text"]
