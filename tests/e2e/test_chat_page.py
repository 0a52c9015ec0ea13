"""The demo chat page in a real browser: streaming, who served, fallback, reconnect + resume."""

from __future__ import annotations

import asyncio

import aiohttp

from gateway.app import create_app
from tests.conftest import make_settings
from tests.e2e.browser import ARTIFACTS, browser_page
from tests.servers import free_port


async def answer_lengths_while_streaming(page, selector: str) -> list[int]:
    """Sample an answer's length until it is done: a streaming answer grows in steps."""
    seen = []
    for _ in range(400):
        length = await page.evaluate(
            f"(document.querySelector('{selector} .body') || {{textContent: ''}}).textContent.length")
        if not seen or seen[-1] != length:
            seen.append(length)
        if await page.query_selector(f"{selector}[data-served-by]"):
            break
        await asyncio.sleep(0.02)
    return seen


async def wait_onprem_up(base: str) -> None:
    """The monitor trusts a recovered tier after `rise` good probes."""
    async with aiohttp.ClientSession() as s:
        for _ in range(100):
            if (await (await s.get(f"{base}/health")).json())["tiers"]["onprem"]["state"] == "up":
                return
            await asyncio.sleep(0.05)
    raise AssertionError("on-prem never came back")


async def test_chat_page_streams_names_the_tier_falls_back_and_resumes(aiohttp_server, onprem_sim,
                                                                      openai_sim):
    port = free_port()

    def page_may_connect(data):
        data["auth"]["demo_tokens"] = True
        data["auth"]["allowed_origins"] = [f"http://127.0.0.1:{port}"]

    onprem_sim.knobs.token_interval_s = 0.06
    onprem_sim.knobs.tokens = 24
    settings = make_settings([onprem_sim.url], f"{openai_sim.url}/v1", mutate=page_may_connect)
    server = await aiohttp_server(create_app(settings), port=port)
    base = f"http://127.0.0.1:{server.port}"
    ARTIFACTS.mkdir(exist_ok=True)
    async with browser_page() as page:
        await page.goto(f"{base}/chat")
        await page.wait_for_selector("#status[data-state=open]", timeout=10_000)

        # 1. Ask: tokens stream in, and the answer names who served it.
        await page.fill("#q", "Which hybrid SUV would you recommend for a family of five?")
        await page.press("#q", "Enter")
        lengths = await answer_lengths_while_streaming(page, ".bot:nth-of-type(2)")
        assert len(lengths) >= 5, f"the answer arrived in one piece: {lengths}"
        first = page.locator(".bot").nth(0)
        assert await first.get_attribute("data-served-by") == "onprem"
        assert "served by onprem" in await first.inner_text()

        # 2. The GPU box goes away: the next answer comes from the backup, and says so.
        await onprem_sim.set_fault("refuse")
        await page.fill("#q", "Which minivan would you suggest for a big family?")
        await page.press("#q", "Enter")
        second = page.locator(".bot").nth(1)
        await second.wait_for(state="attached")
        await page.wait_for_selector(".bot:nth-of-type(4)[data-served-by]", timeout=10_000)
        assert await second.get_attribute("data-served-by") == "openai"
        shown = await second.inner_text()
        # Either the race failed over, or the monitor already knew and skipped on-prem.
        assert "onprem → openai" in shown or "skipped onprem" in shown, shown

        # 3. The socket drops mid-answer: the page reconnects and shows the whole answer.
        await onprem_sim.set_fault("none")
        await wait_onprem_up(base)
        await page.fill("#q", "Which truck would you recommend for towing a boat?")
        await page.press("#q", "Enter")
        third = page.locator(".bot").nth(2)
        await page.wait_for_function(
            "document.querySelectorAll('.bot')[2]?.querySelector('.body')?.textContent.length > 10")
        partial = await third.locator(".body").inner_text()
        await page.evaluate("window.scout.dropConnection()")
        await page.wait_for_selector(".bot:nth-of-type(6)[data-served-by]", timeout=15_000)
        full = await third.locator(".body").inner_text()
        assert await page.evaluate("window.scout.reconnects") >= 1
        assert full.startswith(partial.strip()) and len(full.split()) == 24
        assert await third.get_attribute("data-served-by") == "onprem"
        await page.screenshot(path=str(ARTIFACTS / "chat-page.png"), full_page=True)
