"""The staff dashboard in a real browser: sign in, tiles fill in, a killed replica turns red."""

from __future__ import annotations

import asyncio
import os
import shutil
import time

import aiohttp

from gateway.app import create_app
from tests.conftest import API_KEY, AUTH, STAFF_KEY, make_settings
from tests.e2e.browser import ARTIFACTS, browser_page
from tests.sse_client import read_events

DOCS = ARTIFACTS.parent / "docs"


async def test_dashboard_live_tiles_and_a_replica_turning_red(aiohttp_server, openai_sim,
                                                              make_replicas):
    sims = await make_replicas(3, ttft_s=0.02)
    settings = make_settings([s.url for s in sims], f"{openai_sim.url}/v1")
    server = await aiohttp_server(create_app(settings))
    base = f"http://127.0.0.1:{server.port}"
    async with aiohttp.ClientSession(headers=AUTH) as s:  # some traffic to show
        for q in ["Which SUV would you recommend?", "Which SUV would you recommend?",
                  "Do you have a 2022 Civic in blue?", "Book a test drive on Saturday"]:
            await read_events(await s.post(f"{base}/api/chat", json={"message": q}))
        # The page and its data are never public.
        assert (await s.get(f"{base}/dashboard/data")).status == 401
    async with aiohttp.ClientSession() as anon:
        page_html = await (await anon.get(f"{base}/dashboard")).text()
        assert "Staff token" in page_html and "tiles" not in page_html
    ARTIFACTS.mkdir(exist_ok=True)
    async with browser_page() as page:
        await page.set_viewport_size({"width": 1100, "height": 900})
        await page.goto(f"{base}/dashboard")
        await page.fill("input[name=token]", API_KEY)  # a frontend key is not a staff key
        await page.click("button")
        await page.wait_for_selector("#err.on")
        await page.fill("input[name=token]", STAFF_KEY)
        await page.click("button")
        await page.wait_for_selector("#tiles .tile")
        # Tiles fill in from live data: of 3 cacheable questions, one was a cache hit.
        await page.wait_for_function(
            "document.querySelector('[data-tile=\"cache hit rate\"] .v')?.textContent === '33%'")
        rate = await page.locator('[data-tile="requests / min"] .v').inner_text()
        assert float(rate) > 0
        await page.wait_for_selector("tr[data-target='onprem.r2'][data-state=up]")
        assert await page.locator("#chart canvas").count() >= 1
        await sims[1].set_fault("refuse")
        t0 = time.monotonic()
        row = page.locator("tr[data-target='onprem.r2']")
        await page.wait_for_selector("tr[data-target='onprem.r2'][data-state=down]",
                                     timeout=5_000)
        seconds = time.monotonic() - t0
        assert await row.get_attribute("class") == "bad"
        reason = await row.locator("td").nth(2).inner_text()
        assert "connection failed (connection refused at 127.0.0.1:" in reason, reason
        assert "Connect call" not in reason, "words, not a Python repr"
        color = await row.locator(".state").evaluate("e => getComputedStyle(e).color")
        assert color == "rgb(248, 81, 73)", "red"
        await page.wait_for_function(
            "[...document.querySelectorAll('#incidents li')].some("
            "li => li.textContent.includes('r2: up → down'))")
        print(f"replica marked red on the page {seconds:.1f} s after it was killed")
        await asyncio.sleep(1.2)  # one more refresh so the chart and incidents settle
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        await page.set_viewport_size({"width": 390, "height": 844})
        # On a phone every column left is on the screen: "since" is not cut off.
        # The table is redrawn every second: wait for the laid-out row, not for a moment.
        for cell in ("td:nth-child(1)", "td:nth-child(2)", "td:nth-child(5)"):
            await page.wait_for_function(
                """(sel) => { const c = document.querySelector(sel);
                   if (!c) return false; const b = c.getBoundingClientRect();
                   return b.width > 0 && b.left >= 0 && b.right <= 390; }""",
                arg=f"tr[data-target='onprem.r2'] {cell}", timeout=5_000)
        assert (await row.locator("td:nth-child(5)").inner_text()).strip()
        await page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
    if os.environ.get("SCOUT_UPDATE_DOCS"):  # refresh the docs' screenshots on request
        DOCS.mkdir(exist_ok=True)
        shutil.copy(ARTIFACTS / "dashboard.png", DOCS / "dashboard.png")
