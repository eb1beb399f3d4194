"""Sign-in limits of every entry point (no browser: the page's form posted as a browser would):
``POST /api/v1/auth/login``, ``POST /api/v1/auth/token`` and ``POST /web/login`` count attempts per
client address and per account in the same buckets, and refuse in the same words."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import microneedling.service.accounts as accounts
import microneedling.web.pages as pages
from microneedling.service.security import SharedRateLimiter
from microneedling.web.app import create_app
from tests.service.helpers import PASSWORD, add_org, settings_for

EMAIL = "admin@sign-in.example"
WRONG = "not the password at all"

#: an attempt at one entry point: (client, e-mail, password) -> response
Attempt = Callable[[TestClient, str, str], httpx.Response]


def _api_login(c: TestClient, email: str, password: str) -> httpx.Response:
    return c.post("/api/v1/auth/login", json={"email": email, "password": password})


def _api_token(c: TestClient, email: str, password: str) -> httpx.Response:
    return c.post("/api/v1/auth/token", json={"email": email, "password": password, "name": "t"})


def _web_login(c: TestClient, email: str, password: str) -> httpx.Response:
    return c.post("/web/login", data={"email": email, "password": password},
                  follow_redirects=False)  # fmt: skip


ENTRY_POINTS = {"api-login": _api_login, "api-token": _api_token, "web-login": _web_login}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    """The web app (pages and API) whose sign-in limit allows bursts of 10 and then 10 a day (10 a
    minute would give an attempt back whenever ten argon2 checks take 6 s: not a timed test)."""
    app = create_app(settings_for(tmp_path, None, login_per_minute=10))
    ctx = app.state.context
    ctx.login_limiter = SharedRateLimiter(tmp_path / "sign-in.bin", rate=10 / 86400, burst=10)
    add_org(ctx, "Sign-in clinic", EMAIL)
    with TestClient(app):
        yield app


def _from(app: FastAPI, address: str) -> TestClient:
    """A client connecting from ``address`` (what ``client_ip`` reads)."""
    return TestClient(app, client=(address, 50000))


def _refused(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    wait = int(r.headers["retry-after"])
    assert 8000 < wait <= 8640  # one attempt back every 86400/10 s
    assert f"oo many sign-in attempts; try again in {wait} s" in r.text  # API: too, page: Too


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_one_account_tried_from_many_addresses_is_refused_the_11th_time(
    entry: str, app: FastAPI
) -> None:
    attempt = ENTRY_POINTS[entry]
    codes = [attempt(_from(app, f"10.0.0.{i}"), f" {EMAIL.upper()} ", WRONG).status_code
             for i in range(10)]  # fmt: skip
    assert codes == [401] * 10
    _refused(attempt(_from(app, "10.0.1.1"), EMAIL, PASSWORD))  # even with the password
    ok = _api_token(_from(app, "10.0.1.2"), "someone.else@sign-in.example", WRONG)
    assert ok.status_code == 401  # another account: its own limit


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_many_accounts_tried_from_one_address_are_refused_the_11th_time(
    entry: str, app: FastAPI
) -> None:
    attempt = ENTRY_POINTS[entry]
    c = _from(app, "192.0.2.7")
    codes = [attempt(c, f"user{i}@sign-in.example", WRONG).status_code for i in range(10)]
    assert codes == [401] * 10
    _refused(attempt(c, EMAIL, PASSWORD))
    assert _web_login(_from(app, "192.0.2.8"), EMAIL, PASSWORD).status_code == 303  # elsewhere


def test_the_entry_points_share_their_buckets(app: FastAPI) -> None:
    """Attempts through the API and the page count together (one helper, the same keys)."""
    for i in range(10):
        attempt = list(ENTRY_POINTS.values())[i % 3]
        assert attempt(_from(app, f"10.0.2.{i}"), EMAIL, WRONG).status_code == 401
    for attempt in ENTRY_POINTS.values():
        _refused(attempt(_from(app, "10.0.3.1"), EMAIL, PASSWORD))


@pytest.mark.parametrize("entry", ENTRY_POINTS.values(), ids=ENTRY_POINTS.keys())
def test_the_password_check_runs_off_the_event_loop(
    app: FastAPI, entry: Attempt, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The argon2 check (tens of milliseconds) must not hold up the process's other requests: it
    runs where no event loop is running (a worker thread). The web page's sign-in ran it on the
    loop until 2026-12-07."""
    on_loop: list[bool] = []
    real = accounts.verify_password

    def spy(stored: str | None, password: str) -> bool:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return real(stored, password)

    monkeypatch.setattr(accounts, "verify_password", spy)
    assert pages.authenticate is accounts.authenticate  # the page checks through accounts
    r = entry(_from(app, "10.9.9.9"), EMAIL, PASSWORD)
    assert r.status_code in (200, 201, 303), r.text
    assert on_loop == [False]
