"""Browser tests of the web pages: a real server (``python -m microneedling serve`` on a free
loopback port, a temporary data directory, SQLite) and Debian's chromium driven by Playwright
(launched by its path: browsers cannot be downloaded here).

Without chromium (or Playwright) the tests are skipped on a developer's machine and FAIL when
``MICRONEEDLING_REQUIRE_CHROMIUM`` is set, as ``.ci/run`` does (it installs chromium when missing).
Each page's screenshot goes to a temporary directory (printed at the end of the session); every
console error of a page fails its test.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.service.live import create_admin, serve, stop

CHROMIUM = Path(os.environ.get("MICRONEEDLING_CHROMIUM", "/usr/bin/chromium"))
PASSWORD = "a long passphrase for tests"
ORG_A = ("a@clinic-a.example", "Clinic A")
ORG_B = ("b@clinic-b.example", "Clinic B")


def _missing(reason: str) -> None:
    if os.environ.get("MICRONEEDLING_REQUIRE_CHROMIUM"):
        pytest.fail(f"{reason} (MICRONEEDLING_REQUIRE_CHROMIUM is set)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def playwright_api() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _missing(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright_api: Any) -> Iterator[Any]:
    b = playwright_api.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
    )
    yield b
    b.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("web-server")
    for email, org in (ORG_A, ORG_B):
        create_admin(data, email, PASSWORD, org)
    # every browser signs in from 127.0.0.1: the sign-in limit (tested on its own in
    # tests/web/test_sign_in.py and tests/service/test_security.py) would refuse a fast run
    proc, url = serve(
        data, {"MICRONEEDLING_JOB_THREADS": "2", "MICRONEEDLING_LOGIN_PER_MINUTE": "1000"}
    )
    try:
        yield url
    finally:
        stop(proc)


_SHOTS: list[Path] = []


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go (one per page visited, per width)."""
    path = tmp_path_factory.mktemp("screenshots")
    _SHOTS.append(path)
    return path


@dataclass
class Browsing:
    """A signed-in browser tab with its console errors and a screenshot helper."""

    page: Any
    base: str
    shots: Path
    errors: list[str] = field(default_factory=list)

    def go(self, path: str) -> Any:
        return self.page.goto(self.base + path)

    def shot(self, name: str) -> Path:
        """A full-page screenshot (every chart drawn first: they are drawn as they scroll in)."""
        if self.page.locator("[data-chart]").count():
            self.charts_drawn()
        width = self.page.viewport_size["width"]
        path = self.shots / f"{name}-{width}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def charts_drawn(self) -> int:
        """Draw every chart of the page and return how many Plotly graphs rendered."""
        self.page.wait_for_load_state("load")  # the scripts at the end of the page have run
        self.page.evaluate("window.mnDrawAllCharts && window.mnDrawAllCharts()")
        self.page.wait_for_function(
            "() => [...document.querySelectorAll('[data-chart]')]"
            ".every(e => e.getAttribute('data-drawn') === '1')",
            timeout=20_000,
        )
        return int(self.page.evaluate("document.querySelectorAll('.js-plotly-plot').length"))


@pytest.fixture
def signed_in(browser: Any, server: str, shots: Path) -> Iterator[Callable[..., Browsing]]:
    """``signed_in(email, width=1440)``: a new browser context signed in through the page; at
    the end, no console error may have been logged on any page."""
    opened: list[tuple[Any, Browsing]] = []

    def make(email: str = ORG_A[0], width: int = 1440) -> Browsing:
        context = browser.new_context(
            viewport={"width": width, "height": 900}, accept_downloads=True
        )
        page = context.new_page()
        page.set_default_timeout(30_000)
        b = Browsing(page, server, shots)
        page.on("console", lambda m: b.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: b.errors.append(f"uncaught: {e}"))
        b.go("/web/login")
        page.get_by_label("E-mail address").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(re.compile(r".*/web/patients$"))
        opened.append((context, b))
        return b

    yield make
    errors = [e for _, b in opened for e in b.errors]
    for context, _ in opened:
        context.close()
    assert errors == [], f"console errors: {errors}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for d in _SHOTS:
        terminalreporter.write_line(f"web page screenshots: {d}")
