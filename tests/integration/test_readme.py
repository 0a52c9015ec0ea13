"""The README's commands, copied out of the README itself and run against a fresh demo: if the
README drifts from the product, this fails."""

from __future__ import annotations

import asyncio
import os
import re
import sys

import aiohttp

from tests.conftest import ROOT
from tests.servers import free_port, stopped

README = (ROOT / "README.md").read_text()


def blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


async def start_demo(port: int) -> tuple[asyncio.subprocess.Process, list[str]]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "REDIS_URL", "SCOUT_STAFF_KEYS")}
    # The quick start's own command, on a free port.
    first = blocks("bash")[0].splitlines()[0]
    demo = first.split("&&")[-1].split("#")[0].strip()
    assert demo == "scout-gateway demo", first
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "demo", "--port", str(port),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env)
    banner: list[str] = []
    async with asyncio.timeout(60):
        while "Ctrl-C" not in (line := (await proc.stdout.readline()).decode()):
            assert line, "the demo exited:\n" + "".join(banner)
            banner.append(line)
    return proc, banner


async def test_the_readme_quick_start_commands_work_as_pasted(tmp_path):
    port = free_port()
    proc, banner = await start_demo(port)
    try:
        key = next(ln.split()[2] for ln in banner if "API key" in ln)
        staff = next(ln.split("staff token:")[1].split()[0] for ln in banner if "staff token:" in ln)
        # 1. The curl, exactly as in the README, with the printed key as $KEY.
        curl = next(b for b in blocks("bash") if b.lstrip().startswith("curl"))
        out = await asyncio.create_subprocess_shell(
            curl.replace("localhost:8080", f"localhost:{port}"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "KEY": key})
        stdout, stderr = await out.communicate()
        assert out.returncode == 0, stderr
        assert b"event: done" in stdout and b'"served_by":["onprem"]' in stdout, stdout[-300:]
        # 2. The openai-python snippet, exactly as in the README.
        snippet = next(b for b in blocks("python") if "from openai import OpenAI" in b)
        script = tmp_path / "snippet.py"
        script.write_text(snippet.replace("localhost:8080", f"localhost:{port}"))
        run = await asyncio.create_subprocess_exec(
            sys.executable, str(script), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, "SCOUT_API_KEY": key})
        stdout, stderr = await run.communicate()
        assert run.returncode == 0, stderr.decode()[-2000:]
        assert b"llama-3.1-70b-instruct" in stdout
        # 3. The dashboard, signed in with the staff token the demo printed.
        async with aiohttp.ClientSession() as s:
            base = f"http://localhost:{port}"
            login = await s.post(f"{base}/dashboard/login", data={"token": staff},
                                 allow_redirects=False)
            assert login.status == 303 and login.headers["Location"] == "/dashboard"
            data = await s.get(f"{base}/dashboard/data")
            assert data.status == 200 and "tiles" in await data.json()
            root = await s.get(f"{base}/", allow_redirects=False)
            assert root.status == 302 and root.headers["Location"] == "/chat"
    finally:
        await stopped(proc)
