"""The README's frontend snippets, copied out of the README and run as pasted: the AI SDK
route handler, the token route, and the browser client (in Node, whose WebSocket is the
browser's API), against a gateway this test starts. The URL placeholder and the browser's
relative fetch are the only things put in place."""

from __future__ import annotations

import re

from gateway.app import create_app
from tests.conftest import API_KEY, ROOT, make_settings
from tests.integration.test_ai_sdk import NODE_TESTS, node_ready, run_node

README = (ROOT / "README.md").read_text()
RUNNER = """
const { POST: chat } = await import("./chat-route.mjs");
const reply = await chat(new Request("http://app.example/api/chat", {
  method: "POST", body: JSON.stringify({ prompt: "Which hybrid SUV do you recommend? (readme)" }),
}));
const text = await reply.text();
if (!text.startsWith("Based on what you described")) throw new Error(`AI SDK snippet: ${text}`);
console.log("ai-sdk-route:", text.slice(0, 40));

const { POST: tokenRoute } = await import("./token-route.mjs");
const realFetch = globalThis.fetch;
globalThis.fetch = (url, init) =>   // the browser's relative URL is this app's own route
  String(url).startsWith("/api/scout-token") ? tokenRoute() : realFetch(url, init);
await import("./browser.mjs");
process.exit(0);   // the snippet leaves its socket open, as a page would
"""


def snippet(first_line: str) -> str:
    """The ```js block whose first line is `first_line`."""
    found = [b for b in re.findall(r"```js\n(.*?)```", README, re.S)
             if b.splitlines()[0].startswith(first_line)]
    assert len(found) == 1, f"the README has {len(found)} js blocks starting {first_line!r}"
    return found[0]


async def test_the_readme_frontend_snippets_run_as_pasted(aiohttp_server, onprem_sim):
    node_ready()
    server = await aiohttp_server(create_app(make_settings([onprem_sim.url], None)))
    base = str(server.make_url("")).rstrip("/")
    work = NODE_TESTS / ".readme"
    work.mkdir(exist_ok=True)
    (work / "chat-route.mjs").write_text(snippet("// app/api/chat/route.js"))
    (work / "token-route.mjs").write_text(snippet("// app/api/scout-token/route.js"))
    browser = snippet("// in the browser")
    assert "wss://scout.example.com/ws/chat" in browser
    (work / "browser.mjs").write_text(browser.replace("wss://scout.example.com",
                                                      base.replace("http", "ws", 1)))
    (work / "runner.mjs").write_text(RUNNER)
    rc, out = await run_node("--experimental-websocket", "--no-warnings", "runner.mjs",
                             cwd=work, env={"SCOUT_URL": base, "SCOUT_API_KEY": API_KEY,
                                            "AI_SDK_LOG_WARNINGS": "false"})
    assert rc == 0, out
    assert "ai-sdk-route: Based on what you described" in out, out
    assert "served by onprem" in out, out
    assert re.search(r"^Based on what you described.*Toyota", out, re.M), out
