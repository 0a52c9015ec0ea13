"""Start the parts of a benchmark as real processes, pinned to cores, and read their CPU time."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")
KEYS = {"ONPREM_API_KEY": "bench-onprem-key", "OPENAI_API_KEY": "bench-openai-key",
        "SCOUT_SIGNING_SECRET": "bench-signing-secret-0123456789",
        "SCOUT_API_KEYS": "bench:bench-api-key-0123456789"}
API_HEADERS = {"Authorization": "Bearer bench-api-key-0123456789"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout:g} s")


def pinned(cmd: list[str], core: int | None) -> list[str]:
    if core is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return cmd
    return ["taskset", "-c", str(core), *cmd]


class Proc:
    def __init__(self, cmd: list[str], port: int, env: dict[str, str] | None = None,
                 core: int | None = None, timeout: float = 30.0, cwd: Path | None = None) -> None:
        self.port = port
        self._spawn = (pinned(cmd, core), {**os.environ, **(env or {})}, cwd, timeout)
        # stderr to a file, never a pipe nobody drains: a chatty process (llama.cpp) would block.
        self.log = tempfile.NamedTemporaryFile(prefix="scout-bench-", suffix=".log", delete=False)
        self.restart()

    def restart(self) -> None:
        """Start the process (again, after a kill: same command, same port)."""
        cmd, env, cwd, timeout = self._spawn
        self.popen = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=self.log,
                                      cwd=cwd)
        try:
            wait_port(self.port, timeout)
        except RuntimeError:
            self.stop()
            err = Path(self.log.name).read_text(errors="replace")
            raise RuntimeError(f"{cmd[:3]} did not start:\n{err[-2000:]}") from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU so far of the process and its children (nginx's workers), /proc."""
        return sum(self.cpu_by_process().values())

    def cpu_by_process(self) -> dict[int, float]:
        """User + system CPU so far of the process and of each of its children, by pid."""
        out: dict[int, float] = {}
        todo = [self.popen.pid]
        while todo:
            pid = todo.pop()
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[pid] = (int(fields[11]) + int(fields[12])) / TICK
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
        return out

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def simulator(core: int | None = None, **knobs: Any) -> Proc:
    port, control = free_port(), free_port()
    args = [sys.executable, "-m", "onprem.simulator", "--port", str(port),
            "--control-port", str(control)]
    for key, value in knobs.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    proc = Proc(args, port, core=core)
    proc.control_port = control  # type: ignore[attr-defined]
    wait_port(control)
    return proc


def redis(core: int | None = None) -> Proc:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    return Proc([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"], port, core=core)


def gateway(onprem_urls: list[str], openai_url: str | None, *, redis_url: str | None = None,
            core: int | None = None, deadlines: dict[str, float] | None = None,
            extra_args: list[str] | None = None, source: Path | None = None,
            extra_env: dict[str, str] | None = None, python: str | None = None,
            mutate: Callable[[dict[str, Any]], None] | None = None) -> Proc:
    """One gateway process; `source` runs another checkout's code (bench.ab's baseline),
    `python` another interpreter (bench.ab --head-python)."""
    # The config of the code that runs: another checkout may not know this one's settings.
    data = yaml.safe_load(((source or ROOT) / "config" / "scout.yaml").read_text())
    data["onprem"]["url"] = onprem_urls
    data["onprem"]["replicas"] = [{"name": f"r{i + 1}", "url": u} for i, u in enumerate(onprem_urls)]
    # One load-generating address: limits high enough never to refuse it (the limiter still
    # runs on every request, so its cost is in the figures).
    data["rate_limits"] = {"per_key": "10000000/minute", "per_ip": "10000000/minute",
                           "streams_per_key": 100000, "streams_per_ip": 100000}
    if source is None:   # no load balancer to wait for: SIGTERM stops it once answers end
        data.setdefault("server", {})["drain_grace_s"] = 0
    if openai_url is None:  # a benchmark never talks to the real OpenAI
        data["openai"]["enabled"] = False
    data["openai"]["base_url"] = openai_url
    if deadlines:
        data["deadlines"] = deadlines
        for intent in data["intents"].values():
            intent["deadlines"] = deadlines
    if mutate is not None:
        mutate(data)
    path = Path(tempfile.mkdtemp(prefix="scout-bench-")) / "scout.yaml"
    path.write_text(yaml.safe_dump(data))
    port = free_port()
    env = {**KEYS, "SCOUT_LOG_LEVEL": "WARNING", **(extra_env or {})}
    if redis_url:
        env["REDIS_URL"] = redis_url
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return Proc([python or sys.executable, "-m", "gateway", "serve", "--config", str(path), "--host",
                 "127.0.0.1", "--port", str(port), *(extra_args or [])], port, env=env, core=core,
                cwd=source)
