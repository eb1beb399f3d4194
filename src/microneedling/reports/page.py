"""The one page shell of every HTML report: a Jinja2 base template and one stylesheet.

Every report (simulation, absorption, plan, trial, ...) is a child template of
``templates/base.html.j2`` and is fed plain data (dicts, lists and strings prepared in Python by
the report's module). The shell gives each page the same parts, in the same order:

* ``<head>``: the title and ONE ``<style>`` element holding ``templates/report.css`` inline (every
  report is a single self-contained file that opens offline; nothing is fetched);
* a header naming the report kind and the package version, the page title and a subtitle;
* the disclaimer (:data:`microneedling.about.DISCLAIMER`) right below the header;
* a table of contents, then the report's sections (block ``content``);
* a footer with the provenance (label/value pairs) and the disclaimer once more;
* the report's scripts, if any (block ``scripts``).

Autoescaping is on for every value: user text (course names, notes, site names) is escaped, and
:func:`~microneedling.reports.format.clean_text` runs on every value before it reaches the page,
so a NUL or an ANSI escape in a course name is dropped. No HTML is built in Python: the charts
are Plotly figures (:mod:`microneedling.reports.charts`) travelling as JSON data, and the few
:class:`markupsafe.Markup` values (the stylesheet, the chart data and script) go through the same
control-character filter.

The data helpers below build the structures the shared macros (``templates/macros.html.j2``)
render: :func:`table` (columns with units, rows of cells with optional intervals) and :func:`kv`
(label/value lists); charts come from :func:`microneedling.reports.charts.context`.

>>> html = render("run.html.j2", kind="Simulation report", title="Acne scars", ...)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import contextlib
import functools
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from microneedling.about import DISCLAIMER, __version__
from microneedling.io import cache_dir, write_text_atomic
from microneedling.reports.format import clean_text, pretty_units

if TYPE_CHECKING:  # pragma: no cover
    import jinja2

__all__ = [
    "cell",
    "column",
    "data_uri",
    "environment",
    "kv",
    "render",
    "resource_text",
    "stylesheet",
    "table",
    "write_page",
]


# --------------------------------------------------------------------------- templates
def resource_text(name: str) -> str:
    """Text of a file of ``reports/templates`` (shipped as package data)."""
    return (resources.files("microneedling.reports") / "templates" / name).read_text(
        encoding="utf-8"
    )


@functools.cache
def stylesheet() -> str:
    """The one stylesheet of every report (``templates/report.css``)."""
    return resource_text("report.css")


def _finalize(value: Any) -> Any:
    """Runs on every ``{{ value }}`` before escaping: no ``None`` and no control characters."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return Markup(clean_text(str(value)))
    if isinstance(value, str):
        return clean_text(value)
    return value


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept across processes in ``cache_dir("jinja2")`` (compiling the run
    report's three templates is ~30 ms of each report). Jinja2 names an entry by the template
    and checks the template's SHA-1 and the interpreter's version before using it; an entry or
    folder that cannot be read or written is skipped (the template is compiled as without a
    cache). ``None``: no cache folder."""
    import jinja2

    folder = cache_dir("jinja2")
    if folder is None:
        return None

    class Cache(jinja2.FileSystemBytecodeCache):
        def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            try:
                super().load_bytecode(bucket)
            except Exception:  # unreadable or damaged (pickle, marshal, OS errors): compile
                bucket.reset()

        def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            with contextlib.suppress(OSError):
                super().dump_bytecode(bucket)

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return Cache(str(folder))


@functools.cache
def environment() -> jinja2.Environment:
    """The Jinja2 environment of the report templates (autoescaping, strict undefined names;
    compiled templates cached across processes: :func:`_bytecode_cache`)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("microneedling.reports", "templates"),
        bytecode_cache=_bytecode_cache(),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals.update(version=__version__, disclaimer=DISCLAIMER)
    return env


def render(template: str | jinja2.Template, **context: Any) -> str:
    """Render a child template of the shell (a file name of ``templates/``, or a template made
    with ``environment().from_string``).

    ``context`` must hold the shell's variables: ``kind`` (the report kind, e.g. "Simulation
    report"), ``title``, and may hold ``subtitle``, ``toc`` (``[(section id, heading), ...]``)
    and ``provenance`` (``[(label, value), ...]``); plus whatever the child template reads.
    """
    ctx: dict[str, Any] = {"subtitle": "", "toc": [], "provenance": [], **context}
    ctx["css"] = Markup(stylesheet())
    tpl = environment().get_template(template) if isinstance(template, str) else template
    return tpl.render(**ctx)


def write_page(path: str | Path, template: str, **context: Any) -> Path:
    """:func:`render` into ``path`` atomically; returns the path."""
    return write_text_atomic(render(template, **context), path)


# --------------------------------------------------------------------------- data helpers
def data_uri(png: bytes | str | Path) -> str:
    """A PNG (bytes or a file) as a ``data:`` URI, to embed in the page."""
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def column(label: str, units: str = "", *, num: bool = False, note: str = "") -> dict[str, Any]:
    """A table column: its human label, its units (shown after the label, made pretty: ``1`` shows
    none) and whether its cells are numbers (right-aligned, tabular digits). ``note``: a tooltip on the heading."""
    return {"label": label, "units": pretty_units(units), "num": num, "note": note}


def cell(
    text: Any, *, interval: str = "", num: bool | None = None, title: str = ""
) -> dict[str, Any]:
    """A table cell: its text, an optional interval shown below it (e.g. ``[lo–hi]``) and a
    tooltip. ``num`` overrides the column's alignment."""
    return {"text": "" if text is None else str(text), "interval": interval, "num": num,
            "title": title}  # fmt: skip


def _cell(c: Any) -> dict[str, Any]:
    return c if isinstance(c, dict) else cell(c)


def table(
    columns: Sequence[dict[str, Any]],
    rows: Iterable[Sequence[Any] | dict[str, Any]],
    *,
    caption: str = "",
    label: str = "",
    empty: str = "(none)",
) -> dict[str, Any]:
    """A table for the ``data_table`` macro.

    ``rows``: each a sequence of cells (strings or :func:`cell` dicts, one per column), or a dict
    ``{"cells": [...], "highlight": True}`` (a highlighted row) or ``{"group": "label"}`` (a row
    heading the rows below it, across every column). ``label``: the table's accessible name
    (default: the caption). ``empty``: what the page says when there are no rows.
    """
    out: list[dict[str, Any]] = []
    for r in rows:
        if isinstance(r, dict) and "group" in r:
            out.append({"group": str(r["group"]), "cells": [], "highlight": False})
            continue
        cells = r["cells"] if isinstance(r, dict) else r
        if len(cells) != len(columns):
            raise ValueError(f"table row of {len(cells)} cells for {len(columns)} columns")
        highlight = bool(r.get("highlight")) if isinstance(r, dict) else False
        out.append({"group": "", "cells": [_cell(c) for c in cells], "highlight": highlight})
    return {
        "caption": caption,
        "label": label or caption or "table",
        "columns": list(columns),
        "rows": out,
        "empty": empty,
    }


def kv(items: Iterable[tuple[str, Any]]) -> list[tuple[str, str]]:
    """Label/value pairs for the ``kv`` macro (values as text)."""
    return [(str(k), "" if v is None else str(v)) for k, v in items]
