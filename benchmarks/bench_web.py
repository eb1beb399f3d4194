"""Web pages benchmark (run on its own: ``python benchmarks/bench_web.py``; not part of the tests).

``microneedling serve`` in a subprocess (SQLite in a temporary directory, one worker process) and
Debian's chromium driven by Playwright, as in ``tests/web``:

1. **Time to first result for a new patient through the pages.** The two-site patient of
   ``examples/patients/acne-scars-two-sites.toml`` (cheek rolling scars, nose pores) is typed into
   the intake page; the clock starts at the click on "Save and screen" and stops when the result
   page's charts are drawn, after: screening → "Plan" (a background job; the wait page follows its
   server-sent events) → the plan page with its Pareto chart → "Use this plan" (the recommended
   one) → "Save and simulate" (answered inline, 32 draws) → the result page. Also the parts:
   screening, plan (click to Pareto chart drawn), pick, simulate (click to charts drawn). Median of
   ``--repeats`` new patients. Goal (issue 14): plan and simulate of a two-site patient shown in
   under 5 s on 2 cores.
2. **Page weight.** For each page, the bytes a browser transfers on a first visit with an empty
   cache (the document and everything it loads) and on a second visit (Chrome DevTools protocol:
   encoded bytes of every finished request). Goal: every page under 1.5 MB including the chart
   library, or the library served once and cached.

    python benchmarks/bench_web.py [--repeats 3] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service.live import create_admin, serve, stop  # noqa: E402

PASSWORD = "benchmark password 1234"
EMAIL = "bench@clinic.example"


def sign_in(page: Any, base: str) -> None:
    page.goto(f"{base}/web/login")
    page.get_by_label("E-mail address").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r".*/web/patients$"))


def charts_drawn(page: Any) -> None:
    page.wait_for_load_state("load")
    page.evaluate("window.mnDrawAllCharts && window.mnDrawAllCharts()")
    page.wait_for_function(
        "() => { const c = [...document.querySelectorAll('[data-chart]')]; "
        "return c.length > 0 && c.every(e => e.getAttribute('data-drawn') === '1'); }",
        timeout=60_000,
    )


def first_result(page: Any, base: str, n: int) -> dict[str, float]:
    """One new patient through the pages; seconds per step."""
    page.goto(f"{base}/web/patients/new")
    page.get_by_label("Name or reference").fill(f"Benchmark patient {n}")
    page.get_by_label("Age (years)").fill("28")
    page.get_by_label("Fitzpatrick skin type").select_option("4")
    page.get_by_label("Isotretinoin: months since the last dose").fill("18")
    s1 = page.locator("fieldset", has_text="Site 1")
    s1.get_by_label("Concern").select_option("acne_scar")
    s1.get_by_label("Severity").select_option("severe")
    s1.get_by_label("Scar depth (mm)").fill("0.5")
    s1.get_by_label("Number of scars").fill("20")
    s2 = page.locator("fieldset", has_text="Site 2")
    s2.get_by_label("Site", exact=True).select_option("nose")
    s2.get_by_label("Concern").select_option("pores")
    s2.get_by_label("Severity").select_option("mild")
    s2.get_by_label("Pore diameter (µm)").fill("250")
    t0 = time.perf_counter()
    page.get_by_role("button", name="Save and screen").click()
    page.wait_for_url(re.compile(r".*/web/patients/\d+$"))
    t1 = time.perf_counter()
    page.get_by_label("Longest downtime per session (d)").fill("7")
    page.get_by_label("Most sessions").fill("4")
    page.get_by_role("button", name="Plan").click()
    page.wait_for_selector("#pareto", timeout=120_000)
    charts_drawn(page)
    t2 = time.perf_counter()
    page.get_by_role("button", name="Use this plan").click()
    page.wait_for_url(re.compile(r".*/web/courses/\d+$"))
    t3 = time.perf_counter()
    page.get_by_role("button", name="Save and simulate").click()
    page.wait_for_selector("#endpoints", timeout=120_000)
    charts_drawn(page)
    t4 = time.perf_counter()
    return {
        "total": t4 - t0,
        "screening": t1 - t0,
        "plan": t2 - t1,
        "pick": t3 - t2,
        "simulate": t4 - t3,
        "result_url": page.url,  # type: ignore[dict-item]
    }


def page_weight(context: Any, url: str) -> tuple[int, int, int]:
    """(document bytes, bytes of a first visit, bytes of a second visit) over the network."""
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.clearBrowserCache")
    sizes: dict[str, int] = {}
    docs: dict[str, int] = {}

    def finished(ev: dict[str, Any]) -> None:
        sizes[ev["requestId"]] = int(ev.get("encodedDataLength", 0))

    def response(ev: dict[str, Any]) -> None:
        if ev.get("type") == "Document":
            docs[ev["requestId"]] = 1

    cdp.on("Network.loadingFinished", finished)
    cdp.on("Network.responseReceived", response)
    out = []
    for _ in range(2):
        sizes.clear()
        docs.clear()
        page.goto(url)
        page.wait_for_load_state("networkidle")
        page.evaluate("window.mnDrawAllCharts && window.mnDrawAllCharts()")
        page.wait_for_timeout(300)
        out.append((sum(sizes[k] for k in docs if k in sizes), sum(sizes.values())))
    page.close()
    return out[0][0], out[0][1], out[1][1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        data = Path(tmp)
        create_admin(data, EMAIL, PASSWORD, "Benchmark clinic")
        proc, base = serve(data, {"MICRONEEDLING_JOB_THREADS": "1"})
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(
                    executable_path=args.chromium, headless=True, args=["--no-sandbox"]
                )
                context = browser.new_context(viewport={"width": 1440, "height": 900})
                page = context.new_page()
                page.set_default_timeout(60_000)
                sign_in(page, base)
                runs = [first_result(page, base, n) for n in range(args.repeats)]
                print(f"load average at the end: {os.getloadavg()[0]:.2f} (2 cores)")
                print("\nTime to first result through the pages (s), two-site patient:")
                print("| step | " + " | ".join(f"run {i + 1}" for i in range(len(runs)))
                      + " | median |")  # fmt: skip
                print("|---" * (len(runs) + 2) + "|")
                for key in ("screening", "plan", "pick", "simulate", "total"):
                    vals = [float(r[key]) for r in runs]
                    print(f"| {key} | " + " | ".join(f"{v:.2f}" for v in vals)
                          + f" | {statistics.median(vals):.2f} |")  # fmt: skip
                result = str(runs[-1]["result_url"])
                run_id = result.rstrip("/").rsplit("/", 1)[1]
                links = {
                    "sign in": f"{base}/web/login",
                    "patients": f"{base}/web/patients",
                    "intake": f"{base}/web/patients/new",
                    "result": result,
                    "handout": f"{base}/web/runs/{run_id}/handout",
                    "what-if": f"{base}/web/whatif?a={run_id}&b={run_id}",
                    "absorption form": f"{base}/web/absorb",
                    "trial builder": f"{base}/web/trials/new",
                    "credibility": f"{base}/web/credibility",
                }
                # the plan page of the last patient
                plans = page.evaluate("fetch('/api/v1/runs?kind=plan&limit=1').then(r => r.json())")
                if plans:
                    links["plan"] = f"{base}/web/runs/{plans[0]['id']}"
                print("\nPage weight (bytes over the network; cache emptied before each page):")
                print("| page | document | first visit | second visit |")
                print("|---|---|---|---|")
                for name, url in links.items():
                    fresh = browser.new_context(viewport={"width": 1440, "height": 900})
                    fp = fresh.new_page()
                    sign_in(fp, base)
                    fp.close()
                    doc, first, second = page_weight(fresh, url)
                    fresh.close()
                    print(f"| {name} | {doc / 1e3:.1f} kB | {first / 1e6:.3f} MB | "
                          f"{second / 1e6:.3f} MB |")  # fmt: skip
                browser.close()
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
