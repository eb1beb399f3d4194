"""Runs started from the pages: the same inline limit as the API's, off the event loop (no
browser: the pages' forms posted with the session cookie and CSRF token)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from microneedling.web.app import create_app
from tests.service.helpers import PASSWORD, add_org, count_inline_simulations, example, settings_for

API = "/api/v1"


@pytest.mark.parametrize("threads", [1, 3])
def test_simulations_started_from_the_web_pages_keep_the_same_limit(
    threads: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pages start their simulations through the same limit as the API, off the event loop:
    three what-if comparisons posted at once (two inline simulations each) run at most
    ``inline_threads`` simulations together, and with 3 allowed, 3 do (on the event loop they
    would run one at a time whatever the setting)."""
    peak = count_inline_simulations(monkeypatch)
    app = create_app(settings_for(tmp_path, None, inline_threads=threads))
    a = add_org(app.state.context, "Clinic A", "admin@a-web.example")
    with TestClient(app) as c:
        course = {"course": example("acne-scars-rolling-cheek.toml")}
        cid = c.post(f"{API}/courses", json=course, headers=a.h).json()["id"]
        signed = c.post("/web/login", data={"email": a.email, "password": PASSWORD},
                        follow_redirects=False)  # fmt: skip
        assert signed.status_code in (302, 303), signed.text
        page = c.get(f"/web/courses/{cid}").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token, "the course page carries its CSRF token"
        form = {"csrf_token": token.group(1), "sessions": "2"}

        def whatif(_: int) -> int:
            r = c.post(f"/web/courses/{cid}/whatif", data=form, follow_redirects=False)
            return r.status_code

        with ThreadPoolExecutor(3) as pool:
            codes = list(pool.map(whatif, range(3)))
        assert codes == [303] * 3, codes
        runs = c.get(f"{API}/runs", headers=a.h).json()
        assert len(runs["items"] if isinstance(runs, dict) else runs) == 6
    assert peak() == threads
