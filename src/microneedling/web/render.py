"""Rendering of the web pages: the report shell's Jinja2 environment with the pages' templates in
front of the reports' (every page extends ``base.html.j2``; the result page extends the simulation
report's ``run.html.j2``), the static files (the chart library and our script) with their cache
headers, and the table helpers the pages share."""

from __future__ import annotations

import functools
import gzip
import hashlib
from importlib import resources
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from microneedling.reports import charts, page

if TYPE_CHECKING:  # pragma: no cover
    import jinja2

__all__ = [
    "PLOTLY_URL",
    "STATIC_CACHE",
    "compress",
    "environment",
    "plotly_url",
    "render_page",
    "static_file",
    "static_gzip",
    "web_css",
    "web_js_url",
]

#: cache header of the versioned static files (their names change with their content)
STATIC_CACHE = "public, max-age=31536000, immutable"
PLOTLY_URL = "/static/plotly-{version}.min.js"


def _text(name: str) -> str:
    return (resources.files("microneedling.web") / "static" / name).read_text(encoding="utf-8")


@functools.cache
def web_css() -> str:
    """The pages' additions to the report stylesheet (handout and page-specific rules)."""
    return _text("web.css")


@functools.cache
def _js() -> tuple[str, str]:
    text = _text("web.js")
    return text, hashlib.sha256(text.encode()).hexdigest()[:12]


def web_js_url() -> str:
    """The address of our script (named by its content's hash: cached for a year)."""
    return f"/static/web-{_js()[1]}.js"


@functools.cache
def plotly_url() -> str:
    """The address of the chart library (named by its version: cached for a year)."""
    return PLOTLY_URL.format(version=charts.plotly_version())


def static_file(name: str) -> tuple[bytes, str] | None:
    """The content and media type of a static file by its versioned name, else ``None``."""
    if name == plotly_url().rsplit("/", 1)[1]:
        return charts.plotly_js_path().read_bytes(), "text/javascript; charset=utf-8"
    text, digest = _js()
    if name == f"web-{digest}.js":
        return text.encode(), "text/javascript; charset=utf-8"
    return None


@functools.cache
def static_gzip(name: str) -> bytes | None:
    """A static file gzip-compressed (made once per process: the library shrinks from 4.8 MB to
    about a third), else ``None``."""
    found = static_file(name)
    return None if found is None else gzip.compress(found[0], compresslevel=6, mtime=0)


def compress(body: bytes, accept_encoding: str) -> tuple[bytes, dict[str, str]]:
    """``body`` gzip-compressed when the browser accepts it and it is worth it (over 16 kB),
    with the headers to send; else unchanged."""
    if len(body) < 16_384 or "gzip" not in accept_encoding.lower():
        return body, {"Vary": "Accept-Encoding"}
    return gzip.compress(body, compresslevel=5, mtime=0), {
        "Content-Encoding": "gzip",
        "Vary": "Accept-Encoding",
    }


@functools.cache
def environment() -> jinja2.Environment:
    """The report shell's environment (autoescape, strict undefined, control characters dropped)
    with ``web/templates`` searched first."""
    import jinja2

    return page.environment().overlay(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.PackageLoader("microneedling.web", "templates"),
                jinja2.PackageLoader("microneedling.reports", "templates"),
            ]
        )
    )


def render_page(template: str, **context: Any) -> str:
    """A page: the shell's variables (``kind``, ``title``, ...), the navigation's (``user``,
    ``csrf``, ``active``) and the template's own. Pages without charts get none of the chart
    scripts; pages with charts link the library (:func:`plotly_url`)."""
    ctx: dict[str, Any] = {
        "subtitle": "",
        "toc": [],
        "provenance": [],
        "user": None,
        "csrf": "",
        "active": "",
        "notice": "",
        "web_js": web_js_url(),
        **context,
    }
    ctx["css"] = Markup(page.stylesheet() + "\n" + web_css())
    return environment().get_template(template).render(**ctx)
