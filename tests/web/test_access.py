"""Across organisations, small screens, labels, the keyboard and the chart library's caching,
in a real browser against a real server."""

from __future__ import annotations

import re
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.web.conftest import ORG_A, ORG_B, PASSWORD

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _client(server: str, email: str) -> httpx.Client:
    token = httpx.post(
        f"{server}/api/v1/auth/token", json={"email": email, "password": PASSWORD, "name": "t"}
    ).json()["token"]
    return httpx.Client(base_url=f"{server}/api/v1", headers={"Authorization": f"Bearer {token}"},
                        timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def records_a(server: str) -> dict[str, Any]:
    """Organisation A's patient, course, simulation and plan (made through the API)."""
    api = _client(server, ORG_A[0])
    patient = tomllib.loads((EXAMPLES / "patients" / "acne-scars-two-sites.toml").read_text())
    patient["name"] = "Secret patient of clinic A"
    pid = api.post("/patients", json=patient).json()["id"]
    course = tomllib.loads((EXAMPLES / "acne-scars-rolling-cheek.toml").read_text())
    cid = api.post("/courses", json={"course": course, "patient_id": pid}).json()["id"]
    sim = api.post("/runs/simulate", json={"course_id": cid, "draws": 8}).json()
    assert sim["status"] == "done"
    plan = api.post("/runs/plan", json={"patient_id": pid, "draws": 4, "figures": False}).json()
    end = time.monotonic() + 120
    while api.get(f"/runs/{plan['id']}").json()["status"] not in ("done", "failed"):
        assert time.monotonic() < end
        time.sleep(0.3)
    return {"patient": pid, "course": cid, "run": sim["id"], "plan": plan["id"],
            "name": patient["name"]}  # fmt: skip


def _csrf(page: Any) -> str:
    return page.locator("input[name=csrf_token]").first.get_attribute("value")


def test_one_organisation_never_sees_another(signed_in: Any, records_a: dict[str, Any]) -> None:
    a = signed_in(ORG_A[0])
    a.go("/web/patients")
    assert records_a["name"] in a.page.locator("main").inner_text()  # the control: A sees it
    b = signed_in(ORG_B[0])
    page = b.page
    b.go("/web/patients")
    assert records_a["name"] not in page.content()
    b.go("/web/patients?q=" + "Secret")
    assert records_a["name"] not in page.content()
    assert "No patient's name contains" in page.locator("main").inner_text()
    p, c, r, plan = records_a["patient"], records_a["course"], records_a["run"], records_a["plan"]
    gets = [f"/web/patients/{p}", f"/web/courses/{c}", f"/web/runs/{r}", f"/web/runs/{plan}",
            f"/web/runs/{r}/handout", f"/web/whatif?a={r}&b={r}", f"/api/v1/runs/{r}/files/result.nc"]  # fmt: skip
    for path in gets:
        answer = page.request.get(b.base + path)
        assert answer.status == 404, path
        assert records_a["name"] not in answer.text()
    b.go("/web/whatif")
    assert f"run {r}:" not in page.locator("main").inner_text()  # not offered for comparison
    token = _csrf(page)
    posts = [(f"/web/patients/{p}/plan", {"max_sessions": "3"}),
             (f"/web/patients/{p}/courses", {}), (f"/web/runs/{plan}/pick", {"index": "0"}),
             (f"/web/courses/{c}", {"name": "taken over", "action": "simulate"}),
             (f"/web/courses/{c}/whatif", {"sessions": "2"}),
             (f"/web/runs/{plan}/cancel", {})]  # fmt: skip
    for path, form in posts:
        answer = page.request.post(b.base + path, form={**form, "csrf_token": token})
        assert answer.status == 404, path
    # nothing B tried changed A's records
    a.go(f"/web/courses/{c}")
    assert a.page.get_by_label("Name").input_value() != "taken over"
    b.go(f"/web/runs/{r}")
    assert page.locator(".message.error").inner_text().startswith("run ")
    b.shot("other-organisation-404")
    b.errors[:] = [e for e in b.errors if "404" not in e]  # the one 404 page opened on purpose


PAGES = ["/web/patients", "/web/patients/new", "/web/patients/{patient}", "/web/courses/{course}",
         "/web/runs/{run}", "/web/runs/{plan}", "/web/runs/{run}/handout", "/web/absorb",
         "/web/trials/new", "/web/credibility", "/web/whatif?a={run}&b={run}", "/web/account",
         "/web/patients/{patient}/edit", "/web/patients/{patient}/delete",
         "/web/courses/{course}/delete", "/web/runs/{run}/delete"]  # fmt: skip

UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                 && !e.getAttribute('aria-labelledby'))
    .map(e => e.name || e.id)"""


@pytest.mark.parametrize("width", [375, 1440])
def test_readable_and_labelled(signed_in: Any, records_a: dict[str, Any], width: int) -> None:
    """Every page at 375 px (phone) and 1440 px: no sideways scrolling of the page (wide tables
    scroll inside their own box), a label on every input, the disclaimer."""
    b = signed_in(ORG_A[0], width=width)
    page = b.page
    for path in PAGES:
        b.go(path.format(**records_a))
        page.wait_for_load_state("load")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, (path, overflow)
        assert page.evaluate(UNLABELLED) == [], path
        assert page.locator(".disclaimer").first.is_visible(), path
        name = re.sub(r"[^a-z0-9]+", "-", path.format(**records_a).lower()).strip("-")
        b.shot(name)


def test_keyboard_reaches_every_field(signed_in: Any) -> None:
    """Tab alone reaches every input of the intake form in document order, and Enter submits."""
    b = signed_in(ORG_A[0])
    page = b.page
    b.go("/web/patients/new")
    wanted = page.evaluate("""() => [...document.querySelectorAll(
        'form.stack input:not([type=hidden]):not(:disabled), form.stack select:not(:disabled)')]
        .filter(e => e.offsetParent !== null).map(e => e.id)""")  # fmt: skip
    seen: list[str] = []
    for _ in range(len(wanted) + 20):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("document.activeElement.id"))
    order = [i for i in seen if i in wanted]
    assert order[: len(wanted)] == wanted
    page.get_by_label("Name or reference").focus()
    page.keyboard.type("Keyboard only")
    page.get_by_label("Age (years)").focus()
    page.keyboard.type("40")
    page.get_by_label("Scar depth (mm)").first.focus()
    page.keyboard.type("0.4")
    page.get_by_label("Number of scars").first.focus()
    page.keyboard.type("5")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/web/patients/\d+$"))


def test_chart_library_served_once_and_cached(signed_in: Any, records_a: dict[str, Any]) -> None:
    b = signed_in(ORG_A[0])
    page = b.page
    loads: list[str] = []
    page.on("requestfinished", lambda r: loads.append(r.url))
    b.go(f"/web/runs/{records_a['run']}")
    src = page.locator("script[src*='plotly']").get_attribute("src")
    assert re.fullmatch(r"/static/plotly-[\d.]+\.min\.js", src)
    head = page.request.get(b.base + src)
    assert head.status == 200 and "immutable" in head.headers["cache-control"]
    assert "max-age=31536000" in head.headers["cache-control"]
    html = page.request.get(page.url).text()
    assert (
        len(html.encode()) < 1_500_000
        and "Plotly.newPlot" not in html.split("charts.js")[0][:0] + ""
    )
    assert "plotly.js v" not in html  # linked, not inlined
    b.go(f"/web/whatif?a={records_a['run']}&b={records_a['run']}")
    assert sum("plotly" in u for u in loads) >= 1
