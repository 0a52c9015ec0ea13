"""The Next.js example (examples/nextjs), built and served as the Vercel frontend would be:
`next build`, `next start` against a gateway with simulated replicas, and headless Chromium
asking a question, seeing it stream, the socket dropped and the answer resumed; then the
AI SDK route answering over /v1/responses. The screenshot goes in the README."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess

import aiohttp

from gateway.app import create_app
from tests.conftest import API_KEY, ROOT, make_settings
from tests.e2e.browser import ARTIFACTS, browser_page
from tests.servers import free_port

APP = ROOT / "examples" / "nextjs"
SCREENSHOT = ROOT / "docs" / "nextjs-chat.png"


def ready() -> None:
    assert shutil.which("node"), "Node.js 20.9 or newer is needed for the Next.js example"
    for where in (APP, ROOT / "clients" / "js"):
        assert (where / "node_modules").is_dir(), \
            f"npm packages missing: run `npm ci` in {where} (scripts/test does)"


async def run(*cmd: str, cwd, env=None, within: float = 300) -> str:
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=cwd, env={**os.environ, "NEXT_TELEMETRY_DISABLED": "1", **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), within)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{text[-3000:]}"
    return text


async def wait_http(url: str, proc: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(300):
            assert proc.returncode is None, "next start exited"
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered")


async def test_the_nextjs_example_builds_streams_resumes_and_uses_the_ai_sdk(
        aiohttp_server, slow_sim):
    ready()
    await run(str(ROOT / "clients" / "js" / "node_modules" / ".bin" / "tsc"), "-p",
              "tsconfig.json", cwd=ROOT / "clients" / "js")
    build = await run("npx", "next", "build", cwd=APP)
    assert "/api/scout-token" in build and "/api/chat" in build
    port = free_port()
    origin = f"http://127.0.0.1:{port}"

    def browsers_from_the_app(data):
        data["auth"]["allowed_origins"] = [origin]

    gateway = await aiohttp_server(create_app(make_settings([slow_sim.url], None,
                                                            mutate=browsers_from_the_app)))
    gw_url = str(gateway.make_url("")).rstrip("/")
    log = (ARTIFACTS / "next-start.log")
    ARTIFACTS.mkdir(exist_ok=True)
    with log.open("wb") as out:
        # Its own process group: npx starts next-server as a child, and both must go.
        proc = await asyncio.create_subprocess_exec(
            "npx", "next", "start", "-p", str(port), "-H", "127.0.0.1", cwd=APP,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "NEXT_TELEMETRY_DISABLED": "1", "SCOUT_URL": gw_url,
                 "SCOUT_API_KEY": API_KEY})
        try:
            await wait_http(f"{origin}/", proc)
            async with browser_page() as page:
                seen = []   # every response the browser got: the API key must be in none
                page.on("response", lambda r: seen.append(r))
                bodies: list[bytes] = []

                async def read_bodies() -> None:   # before navigating away from them
                    ours = [r for r in seen if r.url.startswith(origin)
                            and not 300 <= r.status < 400]
                    bodies.extend([await r.body() for r in ours])
                    seen.clear()
                await page.set_viewport_size({"width": 900, "height": 640})
                await page.goto(f"{origin}/")
                await page.wait_for_selector("#status[data-state='connected']", timeout=20000)
                await page.fill("input[name=q]", "Which hybrid SUV would you recommend?")
                await page.press("input[name=q]", "Enter")
                # Streamed: the answer is there and growing before it is done.
                await page.wait_for_function(
                    "document.querySelector('.answer')?.textContent.startsWith('Based on')",
                    timeout=20000)
                assert await page.query_selector("[data-served-by='onprem']") is None
                await page.evaluate("window.scout.dropConnection()")
                await page.wait_for_selector("[data-served-by='onprem']", timeout=30000)
                chat = await page.query_selector("[data-chat]")
                assert chat is not None
                assert await chat.get_attribute("data-resumed") == "1"
                assert int(await page.get_attribute("#status", "data-reconnects") or 0) >= 1
                text = await page.inner_text(".answer")
                assert "served by onprem" in text and "resumed after a dropped connection" in text
                await page.wait_for_selector("#status[data-state='connected']", timeout=20000)
                await page.screenshot(path=str(SCREENSHOT))
                await read_bodies()
                # The AI SDK route: streamText over the gateway's /v1/responses.
                await page.goto(f"{origin}/ai")
                await page.fill("input[name=q]", "Which hybrid SUV would you recommend? (ai)")
                await page.press("input[name=q]", "Enter")
                await page.wait_for_function(
                    "document.querySelector('#answer').textContent.includes('Toyota')",
                    timeout=20000)
                await read_bodies()
                assert len(bodies) > 5 and not any(API_KEY.encode() in b for b in bodies)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 20)
