"""The demo as a newcomer meets it, in a real browser: the chat page says what is simulated
and answers in whole sentences; the fault command the banner prints turns a replica red on
the dashboard within 3 s, with its incident. Screenshots at 1280 and 390 px go to docs/
when SCOUT_UPDATE_DOCS is set."""

from __future__ import annotations

import asyncio
import os
import shutil
import time

from tests.e2e.browser import ARTIFACTS, browser_page
from tests.integration.test_readme import start_demo
from tests.servers import free_port

DOCS = ARTIFACTS.parent / "docs"


async def test_the_demo_explains_itself_and_its_fault_commands_show_on_the_dashboard():
    port = free_port()
    proc, banner = await start_demo(port)
    base = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        staff = next(ln.split("staff token:")[1].split()[0] for ln in banner
                     if "staff token:" in ln)
        fault = next(ln.split(None, 2)[2].strip() for ln in banner if "replica sim-1" in ln)
        assert fault.startswith("curl -d '{\"fault\": \"refuse\"}' http://127.0.0.1:")
        async with browser_page() as page:
            # The chat page: a notice that the answers are simulated, then a whole answer.
            for width in (1280, 390):
                await page.set_viewport_size({"width": width, "height": 844})
                await page.goto(f"{base}/")          # the demo's root is the chat page
                notice = page.locator("#notice")
                await notice.wait_for(state="visible")
                assert "simulated replicas" in await notice.inner_text()
                await page.wait_for_selector("#status[data-state=open]")
                await page.fill("#q", "Do you have a blue RAV4 hybrid in stock?")
                await page.click("form button")
                await page.wait_for_function(
                    "[...document.querySelectorAll('.msg.bot')].some(m => "
                    "m.textContent.includes('hold one for a test drive?'))", timeout=15_000)
                await page.screenshot(path=str(ARTIFACTS / f"chat-{width}.png"), full_page=True)
            # The dashboard, signed in with the printed staff token.
            await page.set_viewport_size({"width": 1280, "height": 900})
            await page.goto(f"{base}/dashboard")
            await page.fill("input[name=token]", staff)
            await page.click("button")
            await page.wait_for_selector("tr[data-target='onprem.sim-1'][data-state=up]")
            # Run the banner's command as printed.
            kill = await asyncio.create_subprocess_shell(
                fault, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            _, err = await kill.communicate()
            assert kill.returncode == 0, err
            t0 = time.monotonic()
            await page.wait_for_selector("tr[data-target='onprem.sim-1'][data-state=down]",
                                         timeout=3_000)
            print(f"sim-1 red on the dashboard {time.monotonic() - t0:.1f} s after the command")
            await page.wait_for_function(
                "[...document.querySelectorAll('#incidents li')].some("
                "li => li.textContent.includes('sim-1: up → down'))", timeout=3_000)
            await page.screenshot(path=str(ARTIFACTS / "dashboard-1280.png"), full_page=True)
            await page.set_viewport_size({"width": 390, "height": 844})
            await page.screenshot(path=str(ARTIFACTS / "dashboard-390.png"), full_page=True)
    finally:
        proc.terminate()
        await proc.wait()
    if os.environ.get("SCOUT_UPDATE_DOCS"):
        DOCS.mkdir(exist_ok=True)
        for name in ("chat-1280.png", "chat-390.png", "dashboard-1280.png", "dashboard-390.png"):
            shutil.copy(ARTIFACTS / name, DOCS / name)
