"""The interactive charts of the reports (microneedling.reports.charts)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from microneedling.reports import charts


def test_chart_numbers_are_six_digits_with_gaps_for_non_finite_values() -> None:
    """charts._values is charts._finite of each element: six significant digits, None for NaN
    and infinities, whatever the shape."""
    rng = np.random.default_rng(0)
    a = rng.lognormal(0.0, 6.0, size=(40, 25)) * rng.choice([-1.0, 1.0], size=(40, 25))
    a[::7, ::3] = np.nan
    a[1, 1], a[2, 2], a[3, 3] = np.inf, -np.inf, -0.0
    got = charts._values(a)
    assert got == [charts._finite(v) for v in a.ravel()]
    assert got[1 * 25 + 1] is None and got[2 * 25 + 2] is None and got[0] is None
    assert charts._values([0.1234567, 123456789.0]) == [0.123457, 123457000.0]


def test_the_library_embedded_as_bytes_is_the_page_embed_library_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """embed_library_bytes(html) == embed_library(html).encode() for the shipped library, a page
    without charts, and a library with Windows line ends and non-ASCII text (read_text's
    newline translation is kept)."""
    page = "<p>µ – é</p>" + charts.LIBRARY_PLACEHOLDER + "<p>end " + charts.LIBRARY_PLACEHOLDER
    assert charts.embed_library_bytes(page) == charts.embed_library(page).encode("utf-8")
    assert charts.embed_library_bytes("<p>no chart – µ</p>") == "<p>no chart – µ</p>".encode()
    lib = tmp_path / "plotly.min.js"
    lib.write_bytes("/* plotly.js v9 */\r\nvar a='µ';\rvar b=1;\n".encode())
    monkeypatch.setattr(charts, "plotly_js_path", lambda: lib)
    for cached in (charts.plotly_js, charts.plotly_js_bytes):
        cached.cache_clear()
    try:
        got = charts.embed_library_bytes(page)
        assert got == charts.embed_library(page).encode("utf-8")
        assert b"\r" not in got and "var a='µ';\nvar b=1;\n".encode() in got
    finally:
        for cached in (charts.plotly_js, charts.plotly_js_bytes):
            cached.cache_clear()
