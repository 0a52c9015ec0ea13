"""Schemathesis against the gateway's own OpenAPI description (/openapi.json), over real TCP.

Every operation gets schema-valid and schema-violating requests (coverage and fuzzing
phases); the checks are: no 5xx, only documented status codes and content types, bodies
that match the documented schemas, schema-violating input rejected, and auth enforced.
"""

from __future__ import annotations

import asyncio
import re
import sys

from gateway.app import create_app
from tests.conftest import API_KEY, ROOT, STAFF_KEY, make_settings

SEED = "20261122"


async def schemathesis(url: str, key: str, *only: str) -> tuple[int, str]:
    """Run `st run` against url with the given key; (exit code, output)."""
    cmd = [sys.executable, "-m", "schemathesis.cli",
           "--config-file", str(ROOT / "tests" / "schemathesis.toml"), "run", url,
           "-H", f"Authorization: Bearer {key}", "--max-examples", "100", "--seed", SEED,
           "--phases", "examples,coverage,fuzzing", "--request-timeout", "20"]
    for path in only:
        cmd += ["--include-path", path]
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def cases(output: str) -> int:
    found = re.search(r"(\d+) generated", output)
    assert found, output[-3000:]
    return int(found.group(1))


async def test_the_openapi_description_fuzzed_by_schemathesis(aiohttp_server, onprem_sim,
                                                               openai_sim, capsys):
    def mutate(data):
        data["auth"]["demo_tokens"] = True
    server = await aiohttp_server(create_app(make_settings(
        [onprem_sim.url], f"{openai_sim.url}/v1", mutate=mutate)))
    url = f"http://127.0.0.1:{server.port}/openapi.json"
    code, out = await schemathesis(url, API_KEY)
    assert code == 0, out[-6000:]
    frontend = cases(out)
    code, out = await schemathesis(url, STAFF_KEY, "/metrics", "/dashboard/data")
    assert code == 0, out[-6000:]
    staff = cases(out)
    assert frontend > 300 and staff > 5  # the run really exercised the API
    with capsys.disabled():
        print(f"\nschemathesis: {frontend} cases with the frontend key, {staff} with the staff key")
