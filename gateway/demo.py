"""`scout-gateway demo`: the gateway with simulated replicas and OpenAI (or one real small
model), nothing else needed. The simulators are demo-only (`onprem/`), read from the
checkout the gateway was installed from."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from gateway.app import create_app
from gateway.appkeys import DEMO_NOTICE
from gateway.config import Settings, settings_from_dict
from gateway.server import run_server
from gateway.state.redis_link import redis_where

EXAMPLE_CONFIG = Path(__file__).parent / "data" / "scout.yaml"


def demo_settings(onprem_urls: list[str], openai_url: str | None,
                  env: dict[str, str], port: int) -> Settings:
    """The example dealership config, pointed at local simulators; the chat page may connect."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    data["onprem"]["url"] = onprem_urls
    data["onprem"]["replicas"] = [{"name": f"sim-{i + 1}", "url": u}
                                  for i, u in enumerate(onprem_urls)]
    if openai_url is not None:
        data["openai"]["base_url"] = openai_url
    data["auth"]["demo_tokens"] = True
    # Probe every second: a fault from the banner's commands shows within ~2 s.
    data["health"].update(interval_s=1.0, timeout_s=0.5)
    data["auth"]["allowed_origins"] = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
    data["server"]["drain_grace_s"] = 0   # no load balancer in front: Ctrl-C stops it
    return settings_from_dict(data, env)


def demo_module(name: str) -> Any:
    """A module of the demo's own parts (`onprem.simulator`, `onprem.llamacpp`). They are
    not in the installed package, which is what production runs: they are read from the
    checkout this gateway was installed from (pip install -e .)."""
    import importlib
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parents[1]
        if not (checkout / "onprem" / "simulator.py").is_file():
            raise SystemExit(
                "scout-gateway demo: the simulated replicas are demo-only and not part of the "
                "installed package; run the demo from a checkout of the repository "
                "(pip install -e . there)") from None
        sys.path.insert(0, str(checkout))
        return importlib.import_module(name)


async def _real_replica(api_key: str, alias: str) -> tuple[asyncio.subprocess.Process, str]:
    """Start the real llama.cpp replica (SmolLM2-135M) and wait until it serves."""
    llamacpp = demo_module("onprem.llamacpp")

    why = llamacpp.available()
    if why:
        raise SystemExit(f"scout-gateway demo --real-model: {why}")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = Path(tempfile.gettempdir()) / "scout-demo-llamacpp.log"
    proc = await asyncio.create_subprocess_exec(*llamacpp.command(port, api_key, alias),
                                                stdout=log.open("wb"),
                                                stderr=asyncio.subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    if await llamacpp.wait_ready(url, api_key, lambda: proc.returncode is None):
        return proc, url
    if proc.returncode is None:
        proc.kill()
        why = "it did not answer in time"
    else:
        why = f"it exited with {proc.returncode}"
    tail = log.read_text(errors="replace").splitlines()[-5:]
    raise SystemExit(f"the llama.cpp replica did not start: {why}; the end of {log}:\n"
                     + "\n".join(tail))


async def run_demo(port: int, host: str, real_model: bool = False) -> None:
    simulator = demo_module("onprem.simulator")
    Knobs, ReplicaSimulator, control_app = (simulator.Knobs, simulator.ReplicaSimulator,
                                            simulator.control_app)

    demo_key = secrets.token_urlsafe(16)
    real = await _real_replica(demo_key, "llama-3.1-70b-instruct") if real_model else None
    sims = [await ReplicaSimulator(Knobs(api_key=demo_key, ttft_s=0.3, token_interval_s=0.04,
                                         tokens=45, dealer=True)).start()
            for _ in range(1 if real else 2)]
    onprem_urls = [real[1]] if real else []
    onprem_urls += [s.url for s in sims]
    real_openai = bool(os.environ.get("OPENAI_API_KEY"))
    openai_sim = None
    api_key = os.environ.get("SCOUT_DEMO_API_KEY") or f"demo-{secrets.token_urlsafe(12)}"
    # Staff keys as set (SCOUT_STAFF_KEYS), else one demo token, printed below: it opens the
    # dashboard, /metrics and the full /health.
    staff_token = None if os.environ.get("SCOUT_STAFF_KEYS") else \
        (os.environ.get("SCOUT_DEMO_STAFF_TOKEN") or f"staff-{secrets.token_urlsafe(12)}")
    env = {"ONPREM_API_KEY": demo_key, "OPENAI_API_KEY": os.environ.get("OPENAI_API_KEY", ""),
           "REDIS_URL": os.environ.get("REDIS_URL", ""), "SCOUT_API_KEYS": f"demo:{api_key}",
           "SCOUT_SIGNING_SECRET": os.environ.get("SCOUT_SIGNING_SECRET", ""),
           "SCOUT_STAFF_KEYS": os.environ.get("SCOUT_STAFF_KEYS") or f"demo-staff:{staff_token}"}
    if not real_openai:
        openai_sim = await ReplicaSimulator(Knobs(model="gpt-4o-mini", api_key=demo_key,
                                                  ttft_s=0.5, token_interval_s=0.03,
                                                  tokens=45, dealer=True)).start()
        env["OPENAI_API_KEY"] = demo_key
    settings = demo_settings(onprem_urls,
                             f"{openai_sim.url}/v1" if openai_sim else None, env, port)
    REAL_MODEL = demo_module("onprem.llamacpp").REAL_MODEL
    onprem_words = (f"1 REAL replica: {REAL_MODEL}, served as llama-3.1-70b-instruct at "
                    f"{real[1]};\n               1 SIMULATED replica at {sims[0].url}" if real else
                    f"2 SIMULATED replicas: {', '.join(s.url for s in sims)}")
    r = settings.redis
    store = (f"Redis at {redis_where(r.url.get())} (REDIS_URL)" if r.url else
             f"Redis through {len(r.sentinels)} sentinels, master {r.sentinel_master}"
             if r.sentinels else
             "in-process: cache and sessions live in this process (set REDIS_URL for Redis)")
    base = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
    # Each simulator's control port: break a replica, the GPU box or OpenAI from a shell.
    controls = []
    for sim in [*sims, *([openai_sim] if openai_sim else [])]:
        runner = web.AppRunner(control_app(sim), access_log=None)
        await runner.setup()
        control_port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", control_port).start()
        controls.append((sim, runner, f"http://127.0.0.1:{control_port}/"))
    fault_lines = "\n".join(
        f"  {'OpenAI' if sim is openai_sim else f'replica sim-{i + 1}':15}"
        f"curl -d '{{\"fault\": \"refuse\"}}' {url}"
        for i, (sim, _, url) in enumerate(controls))
    banner = f"""Scout demo
  gateway      {base}
    chat page    {base}/chat
    OpenAI API   {base}/v1/chat/completions   (model "scout")
    API key      {api_key}   (demo only; set SCOUT_DEMO_API_KEY to choose it)
    SSE chat     {base}/api/chat
    health       {base}/health   (/livez, /readyz for orchestrators)
    dashboard    {base}/dashboard   staff token: {staff_token or "one of SCOUT_STAFF_KEYS"}
                 (demo only; set SCOUT_DEMO_STAFF_TOKEN to choose it; also for /metrics)
  on-prem      {onprem_words}
  OpenAI       {'SIMULATED: ' + openai_sim.url if openai_sim else 'REAL (OPENAI_API_KEY is set)'}
  state        {store}

Try:
  curl -N {base}/api/chat -H 'Authorization: Bearer {api_key}' \\
       -d '{{"message": "Which hybrid SUV would you recommend for a family of five?"}}'
Break something and watch the dashboard (faults: refuse, http_500, http_401,
hang_before_headers, stall, drop; "none" heals it):
{fault_lines}
Press Ctrl-C to stop."""
    app = create_app(settings)
    app[DEMO_NOTICE] = ("Demo: answers come from simulated replicas" if not real else
                        "Demo: one real small model (SmolLM2-135M) and one simulated replica") + \
        ("" if real_openai else " and a simulated OpenAI") + ", not a 70B model."
    try:
        await run_server(app, host, port, lambda: print(banner, flush=True))
    finally:
        for _, runner, _ in controls:
            await runner.cleanup()
        for each in [*sims, openai_sim]:
            if each is not None:
                await each.stop()
        if real is not None:
            real[0].terminate()
            await real[0].wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
