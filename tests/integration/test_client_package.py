"""The npm package clients/js (scout-gateway-client): it builds from TypeScript, packs,
is the very file the gateway serves to its own chat page, and works against a running
gateway over a real WebSocket (tests in clients/js/test, node:test)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from gateway.app import create_app
from tests.conftest import API_KEY, ROOT, make_settings
from tests.integration.test_ai_sdk import run_node

PACKAGE = ROOT / "clients" / "js"


def package_ready() -> None:
    assert shutil.which("node"), "Node.js 20 or newer is needed for the client package tests"
    assert (PACKAGE / "node_modules" / "typescript").is_dir(), \
        f"npm packages missing: run `npm ci` in {PACKAGE} (scripts/test does)"


def build(out: Path) -> None:
    subprocess.run([str(PACKAGE / "node_modules" / ".bin" / "tsc"), "-p", "tsconfig.json",
                    "--outDir", str(out)], cwd=PACKAGE, check=True, timeout=120)


def test_the_gateway_serves_the_package_itself_built():
    package_ready()
    with tempfile.TemporaryDirectory() as out:
        build(Path(out))
        built = (Path(out) / "index.js").read_text()
        assert (Path(out) / "index.d.ts").read_text().count("export declare class ScoutClient")
    served = (ROOT / "gateway" / "static" / "scout-client.js").read_text()
    assert served == built, "gateway/static/scout-client.js is stale: run `npm run build` " \
        "in clients/js"


def test_npm_pack_ships_the_build_its_types_and_readme():
    package_ready()
    build(PACKAGE / "dist")
    out = subprocess.run(["npm", "pack", "--dry-run", "--json", "--ignore-scripts"],
                         cwd=PACKAGE, capture_output=True, text=True, check=True, timeout=120)
    files = {f["path"] for f in json.loads(out.stdout)[0]["files"]}
    assert {"dist/index.js", "dist/index.d.ts", "dist/server.js", "dist/server.d.ts",
            "README.md", "package.json"} <= files
    assert not any(f.startswith(("src/", "test/", "node_modules/")) for f in files)


async def test_the_client_against_a_gateway_callbacks_resume_and_offline_queue(
        aiohttp_server, slow_sim):
    package_ready()
    build(PACKAGE / "dist")
    server = await aiohttp_server(create_app(make_settings([slow_sim.url], None)))
    rc, out = await run_node("--experimental-websocket", "--no-warnings", "--test",
                             "--test-reporter=spec", "test/client.test.mjs", cwd=PACKAGE, env={
                                 "SCOUT_URL": str(server.make_url("")).rstrip("/"),
                                 "SCOUT_API_KEY": API_KEY})
    print(out)
    assert rc == 0, out
    assert "ℹ fail 0" in out and "ℹ pass 4" in out, out
