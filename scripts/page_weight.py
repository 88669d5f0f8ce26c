"""Page weight and load time of a patient's dashboard, as a browser sees it.

Run against a running server (e.g. `make demo PORT=8001`):

    .venv/bin/python scripts/page_weight.py http://127.0.0.1:8001 clinician1@rapport.test

Prints, for a cold load (empty cache) and a warm one (same browser, page opened again): bytes
over the wire (compressed where the server compressed), bytes decoded, requests, and the time
until every chart is drawn. Median of five runs each.
"""

import statistics
import sys
import time

from playwright.sync_api import sync_playwright

PASSWORD = "rapport-demo"


def _sign_in(page, base, email):
    page.goto(base + "/accounts/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("form [type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


def _dashboard_url(page, base):
    page.goto(base + "/patients/")
    href = page.locator("table a[href^='/patients/']").first.get_attribute("href")
    return base + href.rstrip("/") + "/dashboard/"


def _load(page, url):
    sizes = {"wire": 0, "body": 0, "requests": 0}
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")

    def finished(event):
        sizes["wire"] += event.get("encodedDataLength", 0)
        sizes["requests"] += 1

    cdp.on("Network.loadingFinished", finished)
    cdp.on(
        "Network.dataReceived",
        lambda event: sizes.__setitem__("body", sizes["body"] + event["dataLength"]),
    )
    start = time.perf_counter()
    page.goto(url)
    page.wait_for_function(
        "document.querySelectorAll('.js-chart').length > 0 && "
        "[...document.querySelectorAll('.js-chart')].every(c => c.dataset.rendered === 'true')",
        timeout=60_000,
    )
    elapsed = time.perf_counter() - start
    sizes["server"] = page.evaluate(
        "performance.getEntriesByType('navigation')[0].responseEnd"
        " - performance.getEntriesByType('navigation')[0].requestStart"
    )
    cdp.detach()
    return elapsed, sizes


def main(base, email):
    rows = {"cold": [], "warm": []}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for _ in range(5):
            context = browser.new_context(viewport={"width": 1366, "height": 900})
            page = context.new_page()
            _sign_in(page, base, email)
            url = _dashboard_url(page, base)
            # The sign-in pages filled the cache with CSS; clear it for a truly cold load.
            cdp = context.new_cdp_session(page)
            cdp.send("Network.clearBrowserCache")
            rows["cold"].append(_load(page, url))
            page.goto(base + "/")
            rows["warm"].append(_load(page, url))
            context.close()
        browser.close()
    for name, runs in rows.items():
        seconds = statistics.median(r[0] for r in runs)
        wire = statistics.median(r[1]["wire"] for r in runs)
        body = statistics.median(r[1]["body"] for r in runs)
        requests = statistics.median(r[1]["requests"] for r in runs)
        server = statistics.median(r[1]["server"] for r in runs)
        print(
            f"{name}: {seconds:.2f} s to charts drawn (HTML {server / 1000:.2f} s), "
            f"{wire / 1e6:.2f} MB over the wire, {body / 1e6:.2f} MB decoded, "
            f"{requests:.0f} requests"
        )


if __name__ == "__main__":
    main(sys.argv[1].rstrip("/"), sys.argv[2])
