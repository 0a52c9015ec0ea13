"""Real servers started by the tests: redis-server on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def need_binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}")
                                  else None)
    if path is None:
        msg = f"{name} is not installed (Debian package {package}; scripts/test installs it)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def inline_command(port: int, *args: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall((" ".join(args) + "\r\n").encode())
        time.sleep(0.05)
        return s.recv(1 << 16)


def wait_for_pong(port: int, what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"{what} did not start")


async def stopped(proc, within_s: float = 60.0, what: str = "the gateway") -> None:
    """SIGTERM a server (an asyncio subprocess) and wait for it to exit: one that doesn't
    within `within_s` is killed, and the test fails saying so, rather than hang the run."""
    import asyncio

    proc.terminate()
    try:
        async with asyncio.timeout(within_s):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{what} did not exit within {within_s:g} s of SIGTERM") from None


def model_server(cmd: list[str], log_path: Path, port: int, api_key: str,
                 what: str, timeout_s: float = 120.0) -> subprocess.Popen:
    """A model server (llama.cpp's, or llama-cpp-python's) started and listing its model.

    Its output goes to `log_path`, a file, never a pipe: it logs a lot and must not block."""
    import asyncio

    from onprem.llamacpp import wait_ready

    with log_path.open("wb") as log:   # the child keeps its own descriptor
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    if not asyncio.run(wait_ready(f"http://127.0.0.1:{port}", api_key,
                                  lambda: proc.poll() is None, timeout_s)):
        proc.kill()
        err = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{what} did not start:\n{err}")
    return proc


class RedisServer:
    """A throwaway redis-server; stop() and start() simulate an outage on the same port."""

    def __init__(self, workdir: Path, replica_of: int | None = None) -> None:
        self.binary = need_binary("redis-server", "redis-server")
        self.port = free_port()
        self.workdir = workdir
        self.replica_of = replica_of
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir),
             "--enable-debug-command", "local",
             *(["--replicaof", "127.0.0.1", str(self.replica_of)] if self.replica_of else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_pong(self.port, "redis-server")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def command(self, *args: str) -> bytes:
        """Send one inline command (tests only: DEBUG SLEEP, FLUSHALL, KEYS)."""
        return inline_command(self.port, *args)


class RedisSentinel:
    """Debian's redis-sentinel watching one master, with failover timings short enough for a
    test (the defaults wait 30 s before calling a primary down)."""

    def __init__(self, workdir: Path, master_port: int, name: str = "scout",
                 down_after_ms: int = 1000) -> None:
        self.binary = need_binary("redis-sentinel", "redis-sentinel")
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / f"sentinel-{self.port}.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {workdir}\n"
            f"sentinel monitor {name} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
            f"sentinel failover-timeout {name} 5000\n"
            f"sentinel parallel-syncs {name} 1\n")
        self.proc = subprocess.Popen([self.binary, str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for_pong(self.port, "redis-sentinel")

    def ready_for_failover(self, name: str = "scout") -> bool:
        """This sentinel knows the replica and the two other sentinels (it learns them from
        the master's INFO, every 10 s, and from hello messages): only then can they elect
        a leader and promote the replica."""
        info = inline_command(self.port, "SENTINEL", "MASTER", name)
        return b"num-slaves\r\n$1\r\n1\r\n" in info and \
            b"num-other-sentinels\r\n$1\r\n2\r\n" in info

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Nginx:
    """A real nginx running a rendered config from a temp dir (no root paths touched)."""

    def __init__(self, workdir: Path, conf: str) -> None:
        self.binary = need_binary("nginx", "nginx")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(conf)
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def version() -> tuple[int, ...]:
        """The installed nginx's version: edge configs are rendered for it."""
        from onprem.nginx_conf import nginx_version
        out = subprocess.run([need_binary("nginx", "nginx"), "-v"], capture_output=True,
                             text=True, timeout=10)
        return nginx_version(out.stderr or out.stdout)

    def test(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.binary, "-t", "-p", str(self.workdir), "-c", str(self.conf),
                               "-e", "stderr"], capture_output=True, text=True, timeout=30)

    def start(self, port: int) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-p", str(self.workdir), "-c", str(self.conf), "-e", "stderr",
             "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(self.proc.stderr.read().decode() if self.proc.stderr
                                       else "nginx exited") from None
                time.sleep(0.02)
        raise RuntimeError("nginx did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            if self.proc.stderr is not None:
                self.proc.stderr.close()
            self.proc = None


def self_signed_cert(workdir: Path) -> tuple[Path, Path]:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class PostgresServer:
    """A throwaway PostgreSQL (Debian's package) on a loopback port, its data in a temp dir.

    PostgreSQL refuses to run as root: under root it runs as the `postgres` user."""

    def __init__(self, workdir: Path) -> None:
        import glob
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
        if not found:
            msg = "PostgreSQL is not installed (Debian package postgresql; scripts/test installs it)"
            if os.environ.get("CI"):
                pytest.fail(msg)
            pytest.skip(msg)
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        # Its own directory: pytest's temp dirs are private to root, where postgres can't go.
        import tempfile
        self.workdir = Path(tempfile.mkdtemp(prefix="scout-pg-"))
        self.data = self.workdir / "pgdata"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://scout@127.0.0.1:{self.port}/postgres"

    def _as_owner(self, *cmd: str) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *cmd]
        return list(cmd)

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres")
        subprocess.run(self._as_owner(str(self.bin / "initdb"), "-D", str(self.data), "-U",
                                      "scout", "--auth=trust", "--no-sync", "-E", "UTF8"),
                       check=True, capture_output=True, timeout=120)
        self.proc = subprocess.Popen(
            self._as_owner(str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
                           "-k", str(self.workdir), "-c", "listen_addresses=127.0.0.1",
                           "-c", "fsync=off"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p",
                                    str(self.port)], capture_output=True)
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("postgres did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)
